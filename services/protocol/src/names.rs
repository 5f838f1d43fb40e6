//! Validation of the names people and links choose: room names travel in URLs and
//! Redis keys, display names end up in other people's browsers.

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

/// A display name is 1 to 64 characters of any script, not blank, without control
/// characters. Returns the name trimmed of surrounding white space.
pub fn validate_display_name(name: &str) -> Result<&str, NameError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong {
            max: MAX_NAME_CHARS,
        });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(NameError::ControlCharacters);
    }
    Ok(trimmed)
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
        assert_eq!(validate_display_name("  Zoë  "), Ok("Zoë"));
        assert_eq!(validate_display_name("山田"), Ok("山田"));
        assert_eq!(validate_display_name("   "), Err(NameError::Empty));
        assert_eq!(
            validate_display_name("a\u{0007}b"),
            Err(NameError::ControlCharacters)
        );
        assert_eq!(validate_display_name(&"é".repeat(64)), Ok(&*"é".repeat(64)));
        assert_eq!(
            validate_display_name(&"é".repeat(65)),
            Err(NameError::TooLong { max: 64 })
        );
    }
}
