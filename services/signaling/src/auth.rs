//! Join tokens: HS256 JWTs that grant one room to one identity until they expire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use vc_protocol::ErrorCode;

use crate::config::{AuthMode, AuthSettings};

/// What a join token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The identity: shown to the others as the member's `user`.
    pub sub: String,
    /// The one room this token opens.
    pub room: String,
    /// Display name to use instead of the one the client sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Not valid before, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("this node requires a token to join")]
    Required,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token grants room \"{granted}\", not this one")]
    WrongRoom { granted: String },
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Required => ErrorCode::AuthRequired,
            AuthError::Expired | AuthError::NotYetValid => ErrorCode::AuthExpired,
            AuthError::WrongRoom { .. } => ErrorCode::AuthWrongRoom,
            AuthError::Invalid(_) => ErrorCode::AuthInvalid,
        }
    }
}

/// Longest `sub` shown to the others as a member's `user`, in characters.
pub const MAX_SUBJECT_CHARS: usize = 128;

/// Who a join is allowed to be, and until when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub user: Option<String>,
    pub name: Option<String>,
    /// The token's `exp` in unix milliseconds: the seat ends with it.
    pub expires_ms: Option<u64>,
}

/// Checks join tokens (and mints them, for operators and tests).
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Self {
        let secret = settings.jwt_secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_nbf = true;
        let issuer = (!settings.issuer.is_empty()).then(|| settings.issuer.clone());
        if let Some(iss) = &issuer {
            validation.set_required_spec_claims(&["exp", "sub", "iss"]);
            validation.set_issuer(&[iss]);
        } else {
            validation.set_required_spec_claims(&["exp", "sub"]);
        }
        Self {
            mode: settings.mode,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer,
        }
    }

    /// Decides whether a join of `room` with `token` may proceed.
    pub fn authorize(&self, room: &str, token: Option<&str>) -> Result<Grant, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(Grant::default());
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Required)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm must be HS256".into()),
                ErrorKind::InvalidIssuer => AuthError::Invalid("unexpected issuer".into()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("missing claim \"{claim}\""))
                }
                _ => AuthError::Invalid("malformed token".into()),
            })?;
        let claims = data.claims;
        if claims.room != room {
            return Err(AuthError::WrongRoom {
                granted: claims.room,
            });
        }
        check_subject(&claims.sub)?;
        Ok(Grant {
            user: Some(claims.sub),
            name: claims.name,
            expires_ms: Some(claims.exp.saturating_mul(1000)),
        })
    }

    /// Mints a token for `room` and `user`, valid for `ttl`.
    pub fn mint(
        &self,
        room: &str,
        user: &str,
        name: Option<&str>,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = unix_now();
        let claims = Claims {
            sub: user.to_owned(),
            room: room.to_owned(),
            name: name.map(str::to_owned),
            exp: now + ttl.as_secs(),
            nbf: None,
            iat: Some(now),
            iss: self.issuer.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }
}

/// `sub` reaches every member's screen as `user`: bounded, and printable.
fn check_subject(sub: &str) -> Result<(), AuthError> {
    let invalid = |why: &str| Err(AuthError::Invalid(format!("claim \"sub\" {why}")));
    if sub.is_empty() {
        return invalid("is empty");
    }
    if sub.chars().count() > MAX_SUBJECT_CHARS {
        return invalid(&format!("is longer than {MAX_SUBJECT_CHARS} characters"));
    }
    if let Err(e) = vc_protocol::check_visible_text(sub) {
        return invalid(&e.to_string());
    }
    if sub.trim() != sub {
        return invalid("has surrounding white space");
    }
    Ok(())
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn jwt(issuer: &str) -> Authenticator {
        Authenticator::new(&AuthSettings {
            mode: AuthMode::Jwt,
            jwt_secret: SECRET.into(),
            issuer: issuer.into(),
            leeway: Duration::ZERO,
        })
    }

    #[test]
    fn none_mode_lets_everyone_in() {
        let auth = Authenticator::new(&AuthSettings::default());
        assert_eq!(auth.authorize("any", None), Ok(Grant::default()));
    }

    #[test]
    fn token_grants_its_room_only() {
        let auth = jwt("");
        let token = auth
            .mint("room-a", "user-1", Some("Ann"), Duration::from_secs(60))
            .expect("mints");
        assert_eq!(
            auth.authorize("room-a", Some(&token)),
            Ok(Grant {
                user: Some("user-1".into()),
                name: Some("Ann".into()),
                expires_ms: auth
                    .authorize("room-a", Some(&token))
                    .ok()
                    .and_then(|g| g.expires_ms),
            })
        );
        assert_eq!(
            auth.authorize("room-b", Some(&token)),
            Err(AuthError::WrongRoom {
                granted: "room-a".into()
            })
        );
    }

    #[test]
    fn refusals_are_classified() {
        let auth = jwt("");
        assert_eq!(auth.authorize("r", None), Err(AuthError::Required));
        assert_eq!(
            auth.authorize("r", Some("not.a.jwt")).map_err(|e| e.code()),
            Err(ErrorCode::AuthInvalid)
        );
        let claims = Claims {
            sub: "u".into(),
            room: "r".into(),
            name: None,
            exp: unix_now() - 10,
            nbf: None,
            iat: None,
            iss: None,
        };
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let expired = jsonwebtoken::encode(&Header::default(), &claims, &key).expect("encodes");
        assert_eq!(auth.authorize("r", Some(&expired)), Err(AuthError::Expired));
        let other_key = EncodingKey::from_secret(b"another-secret-another-secret-!!");
        let claims = Claims {
            exp: unix_now() + 60,
            ..claims
        };
        let forged =
            jsonwebtoken::encode(&Header::default(), &claims, &other_key).expect("encodes");
        assert_eq!(
            auth.authorize("r", Some(&forged)).map_err(|e| e.code()),
            Err(ErrorCode::AuthInvalid)
        );
    }

    fn signed(claims: &Claims) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::default(), claims, &key).expect("encodes")
    }

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.into(),
            room: "r".into(),
            name: None,
            exp: unix_now() + 60,
            nbf: None,
            iat: None,
            iss: None,
        }
    }

    #[test]
    fn a_token_is_refused_before_its_nbf_and_its_grant_ends_at_exp() {
        let auth = jwt("");
        let early = Claims {
            nbf: Some(unix_now() + 600),
            ..claims("u")
        };
        assert_eq!(
            auth.authorize("r", Some(&signed(&early))),
            Err(AuthError::NotYetValid)
        );
        let grant = auth
            .authorize("r", Some(&signed(&claims("u"))))
            .expect("valid");
        assert_eq!(grant.expires_ms, Some((unix_now() + 60) * 1000));
    }

    #[test]
    fn subjects_that_would_disturb_other_screens_are_refused() {
        let auth = jwt("");
        for sub in [
            String::new(),
            "x".repeat(129),
            "ann\u{202E}nimda".into(),
            "a\nb".into(),
            "\u{200B}".into(),
            " padded".into(),
        ] {
            assert_eq!(
                auth.authorize("r", Some(&signed(&claims(&sub))))
                    .map_err(|e| e.code()),
                Err(ErrorCode::AuthInvalid),
                "{sub:?}"
            );
        }
        assert!(auth
            .authorize("r", Some(&signed(&claims("user@example.org"))))
            .is_ok());
    }

    #[test]
    fn issuer_is_checked_when_configured() {
        let minted_elsewhere = jwt("")
            .mint("r", "u", None, Duration::from_secs(60))
            .expect("mints");
        let strict = jwt("video-caller");
        assert_eq!(
            strict
                .authorize("r", Some(&minted_elsewhere))
                .map_err(|e| e.code()),
            Err(ErrorCode::AuthInvalid)
        );
        let own = strict
            .mint("r", "u", None, Duration::from_secs(60))
            .expect("mints");
        assert!(strict.authorize("r", Some(&own)).is_ok());
    }
}
