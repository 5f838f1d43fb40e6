//! Random ids: the text of peer and connection ids (typed by
//! [`vocabulary`](crate::vocabulary)), resume secrets, chat message ids and the
//! suffix of a generated node id.

use rand::Rng;

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_hex_of_the_asked_length() {
        let id = random_hex(8);
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(random_hex(8), random_hex(8));
    }
}
