//! The names people and links choose, parsed once where they come in: room
//! names travel in URLs and Redis keys, display names end up in other people's
//! browsers. A [`RoomName`] or a [`DisplayName`] is one that passed its checks.

use std::sync::Arc;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};
use serde::Deserialize;
use thiserror::Error;

/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 64;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {max} characters")]
    TooLong { max: usize },
    #[error("may contain only letters, digits, '-' and '_'")]
    BadCharacters,
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("must not contain text direction controls (bidi overrides, isolates or marks), which can disguise it")]
    BidiControls,
    #[error("must not contain line or paragraph separators")]
    LineSeparators,
    #[error("must contain at least one visible letter, digit, punctuation mark or symbol")]
    Invisible,
    /// Only for a name read back from the bus or Redis, which the node stored
    /// normalized.
    #[error("is not in its normalized form")]
    NotNormalized,
}

/// A room's name, checked: 1 to 64 of `[A-Za-z0-9_-]`, safe in a URL path, a
/// Redis key and a log line without escaping. Cheap to clone (rooms name every
/// envelope, seat and key). On the bus and in Redis it is the plain string, and
/// it is checked again when read back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct RoomName(Arc<str>);

impl RoomName {
    pub fn parse(room: &str) -> Result<Self, NameError> {
        check_token(room)?;
        Ok(Self(Arc::from(room)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The rule of room names, for the other names that share it (a node's id): 1 to
/// [`MAX_ROOM_CHARS`] of `[A-Za-z0-9_-]`.
pub fn check_token(text: &str) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.len() > MAX_ROOM_CHARS {
        return Err(NameError::TooLong {
            max: MAX_ROOM_CHARS,
        });
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(NameError::BadCharacters);
    }
    Ok(())
}

impl TryFrom<String> for RoomName {
    type Error = NameError;

    fn try_from(room: String) -> Result<Self, NameError> {
        check_token(&room)?;
        Ok(Self(Arc::from(room)))
    }
}

/// A display name, checked and normalized: 1 to 64 characters of any script, in
/// NFC, with something to see, and nothing that could make it look like
/// something else: no control characters, no text direction controls, no line
/// breaks. Zero-width joiners are kept inside a name (emoji sequences and some
/// scripts need them), but a name made only of invisible characters is refused.
/// Read back from the bus or Redis, it is checked again and must come back as it
/// was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// The name normalized and trimmed, if it is one.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let normalized = ComposingNormalizerBorrowed::new_nfc().normalize(name);
        let trimmed = normalized.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(NameError::TooLong {
                max: MAX_NAME_CHARS,
            });
        }
        check_visible_text(trimmed)?;
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for DisplayName {
    type Error = NameError;

    fn try_from(name: String) -> Result<Self, NameError> {
        let parsed = Self::parse(&name)?;
        if parsed.0 != name {
            return Err(NameError::NotNormalized);
        }
        Ok(parsed)
    }
}

/// What every checked text type shares, for a type with `fn as_str(&self) ->
/// &str`: it serializes as its plain string, shows as it, reads as a `&str`
/// (maps keyed by it are read with one), and compares with one. Used by the
/// node's ids too, so that all of them behave alike.
#[doc(hidden)]
#[macro_export]
macro_rules! text_impls {
    ($name:ty) => {
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl ::std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

text_impls!(RoomName);
text_impls!(DisplayName);

/// The character rules of display names, without their length: text shown to
/// other people that must show something and cannot disguise itself.
pub fn check_visible_text(text: &str) -> Result<(), NameError> {
    let categories = CodePointMapData::<GeneralCategory>::new();
    let bidi = CodePointSetData::new::<BidiControl>();
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let mut visible = false;
    for c in text.chars() {
        let category = categories.get(c);
        match category {
            GeneralCategory::Control => return Err(NameError::ControlCharacters),
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
                return Err(NameError::LineSeparators)
            }
            _ if bidi.contains(c) => return Err(NameError::BidiControls),
            _ => {}
        }
        // U+2800 is a symbol by category but an empty cell on screen, a favourite
        // for blank names.
        visible |= !ignorable.contains(c) && shows_ink(category) && c != BRAILLE_BLANK;
    }
    if !visible {
        return Err(NameError::Invisible);
    }
    Ok(())
}

const BRAILLE_BLANK: char = '\u{2800}';

/// Letters, digits, punctuation and symbols: the categories that draw something
/// by themselves (marks need a base, separators and formats draw nothing).
fn shows_ink(category: GeneralCategory) -> bool {
    use GeneralCategory as G;
    matches!(
        category,
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::DecimalNumber
            | G::LetterNumber
            | G::OtherNumber
            | G::DashPunctuation
            | G::OpenPunctuation
            | G::ClosePunctuation
            | G::ConnectorPunctuation
            | G::OtherPunctuation
            | G::InitialPunctuation
            | G::FinalPunctuation
            | G::MathSymbol
            | G::CurrencySymbol
            | G::ModifierSymbol
            | G::OtherSymbol
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(text: &str) -> Result<String, NameError> {
        RoomName::parse(text).map(|r| r.to_string())
    }

    #[test]
    fn rooms() {
        assert_eq!(room("daily-standup_2").as_deref(), Ok("daily-standup_2"));
        assert_eq!(room(""), Err(NameError::Empty));
        assert_eq!(room("a b"), Err(NameError::BadCharacters));
        assert_eq!(room("a.b"), Err(NameError::BadCharacters));
        assert_eq!(room("salle-à-manger"), Err(NameError::BadCharacters));
        assert_eq!(room(&"r".repeat(64)), Ok("r".repeat(64)));
        assert_eq!(room(&"r".repeat(65)), Err(NameError::TooLong { max: 64 }));
    }

    #[test]
    fn room_names_cross_serde_as_their_plain_string_and_are_checked_on_the_way_back() {
        let standup = RoomName::parse("standup").expect("a room name");
        let json = serde_json::to_string(&standup).expect("serializes");
        assert_eq!(json, r#""standup""#);
        assert_eq!(
            serde_json::from_str::<RoomName>(&json).expect("reads back"),
            standup
        );
        for bad in [r#""""#, r#""a b""#, r#""a.b""#, "7"] {
            assert!(serde_json::from_str::<RoomName>(bad).is_err(), "{bad}");
        }
        assert_eq!(standup, "standup");
        assert_eq!(standup.as_str(), "standup");
    }

    #[test]
    fn display_names_cross_serde_as_their_plain_string_only_when_normalized() {
        let name = DisplayName::parse(" Zoë ").expect("a display name");
        let json = serde_json::to_string(&name).expect("serializes");
        assert_eq!(json, r#""Zoë""#);
        assert_eq!(
            serde_json::from_str::<DisplayName>(&json).expect("reads back"),
            name
        );
        // Stored names were normalized and trimmed: anything else was not stored
        // by a node.
        for (bad, why) in [
            (r#"" Zoë""#, "untrimmed"),
            ("\"Zoe\u{0308}\"", "decomposed"),
            (r#""\u200B""#, "invisible"),
            (r#""""#, "empty"),
        ] {
            assert!(serde_json::from_str::<DisplayName>(bad).is_err(), "{why}");
        }
    }

    #[test]
    fn display_names() {
        let ok = |name: &str| DisplayName::parse(name).map(DisplayName::into_string);
        assert_eq!(ok("  Zoë  ").as_deref(), Ok("Zoë"));
        assert_eq!(ok("山田").as_deref(), Ok("山田"));
        assert_eq!(ok("   "), Err(NameError::Empty));
        assert_eq!(ok("a\u{0007}b"), Err(NameError::ControlCharacters));
        assert_eq!(ok(&"é".repeat(64)).as_deref(), Ok(&*"é".repeat(64)));
        assert_eq!(ok(&"é".repeat(65)), Err(NameError::TooLong { max: 64 }));
    }

    #[test]
    fn display_names_are_normalized_before_they_are_counted() {
        // "e" + combining acute is one character once composed.
        let decomposed = "e\u{0301}".repeat(64);
        assert_eq!(ok_len(&decomposed), Ok(64));
        assert_eq!(
            DisplayName::parse("Zoe\u{0308}").map(DisplayName::into_string),
            Ok("Zoë".to_owned())
        );
    }

    fn ok_len(name: &str) -> Result<usize, NameError> {
        DisplayName::parse(name).map(|n| n.as_str().chars().count())
    }

    #[test]
    fn invisible_and_disguising_names_are_refused() {
        for (name, why) in [
            ("\u{200B}\u{200B}", NameError::Invisible), // zero-width spaces
            ("\u{200D}", NameError::Invisible),         // a lone zero-width joiner
            ("\u{3164}\u{3164}", NameError::Invisible), // Hangul fillers
            ("\u{FE0F}", NameError::Invisible),         // a variation selector
            ("\u{0301}\u{0301}", NameError::Invisible), // marks with no base
            ("\u{00AD}", NameError::Invisible),         // a soft hyphen
            ("\u{2800}", NameError::Invisible),         // braille blank
            ("Ann\u{202E}nimda", NameError::BidiControls),
            ("\u{2067}Bob\u{2069}", NameError::BidiControls),
            ("Ann\u{200F}", NameError::BidiControls),
            ("Ann\u{2028}Bob", NameError::LineSeparators),
            ("Ann\u{2029}Bob", NameError::LineSeparators),
            ("Ann\u{0085}Bob", NameError::ControlCharacters),
        ] {
            assert_eq!(DisplayName::parse(name), Err(why), "{name:?}");
        }
        // Joiners inside a visible name stay: emoji sequences and Persian need them.
        assert!(DisplayName::parse("👩\u{200D}💻").is_ok());
        assert!(DisplayName::parse("می\u{200C}خواهم").is_ok());
    }
}
