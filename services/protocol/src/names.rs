//! Validation of the names people and links choose: room names travel in URLs and
//! Redis keys, display names end up in other people's browsers.

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};
use thiserror::Error;

/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 64;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
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
}

/// A room name is 1 to 64 of `[A-Za-z0-9_-]`: safe in a URL path, a Redis key and a
/// log line without escaping.
pub fn validate_room(room: &str) -> Result<(), NameError> {
    if room.is_empty() {
        return Err(NameError::Empty);
    }
    if room.len() > MAX_ROOM_CHARS {
        return Err(NameError::TooLong {
            max: MAX_ROOM_CHARS,
        });
    }
    if !room
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(NameError::BadCharacters);
    }
    Ok(())
}

/// A display name is 1 to 64 characters of any script, in NFC, with something to
/// see, and nothing that could make it look like something else: no control
/// characters, no text direction controls, no line breaks. Zero-width joiners are
/// kept inside a name (emoji sequences and some scripts need them), but a name made
/// only of invisible characters is refused. Returns the name normalized and trimmed.
pub fn validate_display_name(name: &str) -> Result<String, NameError> {
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
    Ok(trimmed.to_owned())
}

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

    #[test]
    fn rooms() {
        assert_eq!(validate_room("daily-standup_2"), Ok(()));
        assert_eq!(validate_room(""), Err(NameError::Empty));
        assert_eq!(validate_room("a b"), Err(NameError::BadCharacters));
        assert_eq!(
            validate_room("salle-à-manger"),
            Err(NameError::BadCharacters)
        );
        assert_eq!(validate_room(&"r".repeat(64)), Ok(()));
        assert_eq!(
            validate_room(&"r".repeat(65)),
            Err(NameError::TooLong { max: 64 })
        );
    }

    #[test]
    fn display_names() {
        let ok = |name: &str| validate_display_name(name);
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
        assert_eq!(validate_display_name("Zoe\u{0308}").as_deref(), Ok("Zoë"));
    }

    fn ok_len(name: &str) -> Result<usize, NameError> {
        validate_display_name(name).map(|n| n.chars().count())
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
            assert_eq!(validate_display_name(name), Err(why), "{name:?}");
        }
        // Joiners inside a visible name stay: emoji sequences and Persian need them.
        assert!(validate_display_name("👩\u{200D}💻").is_ok());
        assert!(validate_display_name("می\u{200C}خواهم").is_ok());
    }
}
