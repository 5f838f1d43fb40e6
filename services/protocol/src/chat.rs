//! What people say to the whole room: chat text, its rules, the entries of a
//! room's chat history, and the reactions a node relays.

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The reactions a client may send, as the emoji people see. A fixed set: the
/// node relays nothing else, so a reaction is never free text.
pub const REACTIONS: [&str; 6] = ["👍", "👏", "😂", "😮", "❤️", "🎉"];

/// Why a chat text was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChatTextError {
    #[error("is empty: a message needs at least one visible character")]
    Empty,
    #[error("is longer than {max} bytes (UTF-8, after normalization)")]
    TooLong { max: usize },
    #[error("must not contain control characters other than line breaks (\\n)")]
    ControlCharacters,
}

/// Checks one chat message and returns it as the others will see it: normalized
/// to NFC and trimmed, at most `max_bytes` bytes of UTF-8, with something to see,
/// and no control characters but the newline. The text is never interpreted:
/// what it says is shown as text, whatever it looks like.
pub fn validate_chat_text(text: &str, max_bytes: usize) -> Result<String, ChatTextError> {
    let normalized = ComposingNormalizerBorrowed::new_nfc().normalize(text);
    let trimmed = normalized.trim();
    if trimmed.len() > max_bytes {
        return Err(ChatTextError::TooLong { max: max_bytes });
    }
    let categories = CodePointMapData::<GeneralCategory>::new();
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let mut visible = false;
    for c in trimmed.chars() {
        let category = categories.get(c);
        if category == GeneralCategory::Control && c != '\n' {
            return Err(ChatTextError::ControlCharacters);
        }
        visible |= !c.is_whitespace()
            && !ignorable.contains(c)
            && !matches!(
                category,
                GeneralCategory::Control
                    | GeneralCategory::Format
                    | GeneralCategory::NonspacingMark
                    | GeneralCategory::EnclosingMark
                    | GeneralCategory::SpaceSeparator
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
                    | GeneralCategory::Unassigned
            )
            && c != '\u{2800}';
    }
    if !visible {
        return Err(ChatTextError::Empty);
    }
    Ok(trimmed.to_owned())
}

/// Whether `emoji` is one of [`REACTIONS`].
pub fn is_reaction(emoji: &str) -> bool {
    REACTIONS.contains(&emoji)
}

/// One message of a room's chat, as the node stamps it: the sender's identity
/// comes from its seat, never from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatEntry {
    /// Unique id of the message (16 hex digits), for clients to tell a message
    /// they already have from a new one.
    pub message_id: String,
    /// The sender's peer id.
    pub from: String,
    /// The sender's display name when it was sent.
    pub name: String,
    pub text: String,
    /// When the node accepted it, unix milliseconds.
    pub at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_text_is_normalized_trimmed_and_kept_as_written() {
        let ok = |text: &str| validate_chat_text(text, 100);
        assert_eq!(ok("  hello  ").as_deref(), Ok("hello"));
        assert_eq!(ok("Zoe\u{0308}").as_deref(), Ok("Zoë"));
        assert_eq!(ok("two\nlines\n").as_deref(), Ok("two\nlines"));
        assert_eq!(
            ok("<script>alert(1)</script>").as_deref(),
            Ok("<script>alert(1)</script>")
        );
        assert_eq!(ok("👩\u{200D}💻").as_deref(), Ok("👩\u{200D}💻"));
        assert_eq!(ok("שלום").as_deref(), Ok("שלום"));
    }

    #[test]
    fn chat_text_refuses_empty_invisible_too_long_and_controls() {
        let check = |text: &str| validate_chat_text(text, 8);
        assert_eq!(check(""), Err(ChatTextError::Empty));
        assert_eq!(check(" \n\n "), Err(ChatTextError::Empty));
        assert_eq!(check("\u{200B}\u{200D}"), Err(ChatTextError::Empty));
        assert_eq!(check("\u{2800}"), Err(ChatTextError::Empty));
        assert_eq!(check("a\u{0007}b"), Err(ChatTextError::ControlCharacters));
        assert_eq!(check("a\rb"), Err(ChatTextError::ControlCharacters));
        assert_eq!(check("a\tb"), Err(ChatTextError::ControlCharacters));
        assert_eq!(check("12345678").as_deref(), Ok("12345678"));
        assert_eq!(check("123456789"), Err(ChatTextError::TooLong { max: 8 }));
        // Bytes, not characters: "é" is two.
        assert_eq!(check("ééééé"), Err(ChatTextError::TooLong { max: 8 }));
        // Counted after composing: e + combining acute is one two-byte "é".
        assert_eq!(
            check("e\u{0301}e\u{0301}e\u{0301}e\u{0301}").as_deref(),
            Ok("éééé")
        );
    }

    #[test]
    fn reactions_are_a_fixed_set() {
        assert!(is_reaction("👍"));
        assert!(is_reaction("❤️"));
        assert!(!is_reaction("❤"));
        assert!(!is_reaction("hello"));
        assert!(!is_reaction(""));
    }
}
