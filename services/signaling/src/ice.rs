//! The ICE servers handed to each peer, with TURN credentials minted per join.

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha1::Sha1;
use vc_protocol::IceServer;

use crate::config::{IceSettings, Secret};

/// Builds `iceServers` for a peer. TURN credentials follow the TURN REST
/// convention that coturn's `use-auth-secret` checks: the username is
/// `"<expiry unix seconds>:<peer id>"` and the password is
/// base64(HMAC-SHA1(shared secret, username)), so the TURN server needs no
/// database and a leaked credential dies on its own.
#[derive(Clone)]
pub struct IceServers {
    stun: Vec<String>,
    turn: Vec<String>,
    secret: Secret,
    ttl: Duration,
}

impl IceServers {
    pub fn new(settings: &IceSettings) -> Self {
        Self {
            stun: settings.stun_urls.clone(),
            turn: settings.turn_urls.clone(),
            secret: settings.turn_secret.clone(),
            ttl: settings.turn_ttl,
        }
    }

    /// The servers for `peer`, with credentials valid from `now_unix` for the TTL.
    pub fn for_peer(&self, peer: &str, now_unix: u64) -> Vec<IceServer> {
        let mut servers = Vec::with_capacity(2);
        if !self.stun.is_empty() {
            servers.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.turn.is_empty() {
            let username = format!("{}:{peer}", now_unix + self.ttl.as_secs());
            servers.push(IceServer {
                urls: self.turn.clone(),
                credential: Some(turn_password(
                    self.secret.expose_secret().as_bytes(),
                    &username,
                )),
                username: Some(username),
            });
        }
        servers
    }
}

/// base64(HMAC-SHA1(secret, username)).
pub fn turn_password(secret: &[u8], username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_turn_rest_vector() {
        // Computed independently: printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        assert_eq!(
            turn_password(b"secret", "1700000000:alice"),
            "d8soP47RbdIKLDUOpnJPVQyq5Ts="
        );
    }

    #[test]
    fn stun_and_turn_entries() {
        let ice = IceServers::new(&IceSettings {
            stun_urls: vec!["stun:127.0.0.1:3478".into()],
            turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            turn_secret: "secret".into(),
            turn_ttl: Duration::from_secs(600),
        });
        let servers = ice.for_peer("p1", 1_000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        let turn = &servers[1];
        assert_eq!(turn.username.as_deref(), Some("1600:p1"));
        assert_eq!(
            turn.credential.as_deref(),
            Some(turn_password(b"secret", "1600:p1").as_str())
        );
    }

    #[test]
    fn nothing_configured_gives_no_servers() {
        assert!(IceServers::new(&IceSettings::default())
            .for_peer("p", 0)
            .is_empty());
    }
}
