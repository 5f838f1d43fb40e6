//! Fuzz target bodies, shared by the cargo-fuzz targets in `fuzz/` (nightly,
//! coverage-guided) and by `tests/fuzz_stable.rs` (stable, a seeded mutational
//! generator) so that both exercise exactly the same properties. Hidden from the
//! documentation: it is test support, not part of the protocol.

use crate::{parse_client_message, validate_chat_text, DisplayName, MAX_NAME_CHARS};

/// The chat limit the chat text target checks against.
pub const FUZZ_CHAT_BYTES: usize = 64;

/// Arbitrary bytes as a client frame: the parser must never panic, and any message
/// it accepts must serialize and parse back to itself, so that what the node relays
/// is what it read.
pub fn parse_client_message_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(message) = parse_client_message(text) else {
        return;
    };
    let json = match serde_json::to_string(&message) {
        Ok(json) => json,
        Err(e) => panic!("accepted message does not serialize: {e}: {message:?}"),
    };
    match parse_client_message(&json) {
        Ok(again) => assert_eq!(again, message, "round trip changed {json}"),
        Err(e) => panic!("re-serialized message refused: {e}: {json}"),
    }
}

/// Arbitrary bytes as a display name: never a panic, and an accepted name is short
/// enough and already in its final form (validating it again changes nothing).
pub fn validate_display_name_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(name) = DisplayName::parse(text) else {
        return;
    };
    assert!(
        name.as_str().chars().count() <= MAX_NAME_CHARS,
        "too long: {name:?}"
    );
    assert_eq!(
        DisplayName::parse(name.as_str()).as_ref(),
        Ok(&name),
        "not idempotent"
    );
}

/// Arbitrary bytes as a chat message: never a panic, and an accepted text is within
/// the limit, has no control character but the newline, and is already in its
/// final form (validating it again changes nothing).
pub fn validate_chat_text_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(kept) = validate_chat_text(text, FUZZ_CHAT_BYTES) else {
        return;
    };
    assert!(kept.len() <= FUZZ_CHAT_BYTES, "too long: {kept:?}");
    assert!(
        kept.chars().all(|c| c == '\n' || !c.is_control()),
        "control character kept: {kept:?}"
    );
    assert_eq!(
        validate_chat_text(&kept, FUZZ_CHAT_BYTES).as_deref(),
        Ok(kept.as_str()),
        "not idempotent"
    );
}

/// Seeds for chat texts: several lines, scripts, emoji, markup, invisible and
/// control characters, decomposed letters at the limit.
pub const CHAT_TEXT_SEEDS: &[&str] = &[
    "hello",
    "two\nlines",
    "<b>not bold</b> & \"quoted\"",
    "👩\u{200D}💻 ok",
    "שלום עולם",
    "\u{200B}\u{2800}",
    "a\u{0007}b",
    "\r\n",
    "e\u{0301}e\u{0301}e\u{0301}",
    "  padded  ",
];

/// Seeds for the parser: one valid frame of each type plus near misses.
pub const CLIENT_MESSAGE_SEEDS: &[&str] = &[
    r#"{"type":"join","id":1,"room":"r","name":"n","token":"t","protocol":1}"#,
    r#"{"type":"resume","id":"a","token":"t","protocol":1}"#,
    r#"{"type":"offer","to":"p","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}"#,
    r#"{"type":"answer","to":"p","sdp":"v=0"}"#,
    r#"{"type":"candidate","to":"p","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
    r#"{"type":"candidate","to":"p","candidate":null}"#,
    r#"{"type":"app-data","to":"p","data":{"muted":true,"n":[1,2.5,-3e7,"\u00e9"]}}"#,
    r#"{"type":"leave","id":"x"}"#,
    r#"{"type":"report","report":{"final":true}}"#,
    r#"{"type":"report","id":2,"report":{"final":false,"rttMs":12.5}}"#,
    r#"{"type":"ping","id":3}"#,
    r#"{"type":"ping","id":"nonce"}"#,
    r#"{"type":"chat","id":4,"text":"hi\nthere"}"#,
    r#"{"type":"call-state","hand":false}"#,
    r#"{"type":"call-state","id":5,"muted":true,"cameraOff":false,"sharing":true}"#,
    r#"{"type":"call-state"}"#,
    r#"{"type":"reaction","emoji":"🎉"}"#,
    r#"{"type":"dance"}"#,
    r#"{"type":7,"id":{"a":1}}"#,
    r#"[1,2]"#,
    r#"{"type":"join","room":"r"}"#,
    "{\"type\":\"join\",\"room\":\"\\ud800\",\"name\":\"n\"}",
    "",
];

/// Seeds for display names: scripts, emoji sequences, invisible and direction
/// characters, combining marks.
pub const DISPLAY_NAME_SEEDS: &[&str] = &[
    "Ada",
    "  Grace Hopper  ",
    "José",
    "Jose\u{301}",
    "李小龍",
    "محمد",
    "👩\u{200d}💻",
    "\u{200b}\u{200d}",
    "a\u{202e}b",
    "line\nbreak",
    "\u{1}",
    "e\u{301}\u{301}\u{301}\u{301}",
    "\u{fdfa}",
    "ǅ",
];

/// A deterministic mutational generator (xorshift64*): the stable toolchain's
/// stand-in for libFuzzer, so the same inputs come back on every run and a failure
/// can be replayed from its seed and step.
pub struct Mutator {
    state: u64,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self { state: seed | 1 }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Bytes that tend to matter to JSON, WebSocket headers and Unicode rules.
    const INTERESTING: &'static [&'static [u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\\",
        b"\\u",
        b"\\ud800",
        b"null",
        b"true",
        b"-0",
        b"1e309",
        b"18446744073709551616",
        b"\"type\"",
        b"\"id\"",
        b"\xe2\x80\x8d",
        b"\xe2\x80\xae",
        b"\xcc\x81",
        b"\xf0\x9f\x91\xa9",
        b"\x00",
        b"\xff",
        b"\x7f",
        b"\x80",
        b"\x81\x7e",
        b"\x82\x7f",
        b"\x88\x80",
        b"\x00\xfe",
    ];

    /// One to four random edits of `input`: flip, insert, delete, duplicate or
    /// splice in an interesting token, or cross over with `other`.
    pub fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(7) {
                0 if !out.is_empty() => {
                    let i = self.below(out.len());
                    out[i] ^= 1 << self.below(8);
                }
                1 => out.insert(at, self.next_u64() as u8),
                2 if !out.is_empty() => {
                    let end = (at + 1 + self.below(8)).min(out.len());
                    out.drain(at.min(end)..end);
                }
                3 => {
                    let token = Self::INTERESTING[self.below(Self::INTERESTING.len())];
                    out.splice(at..at, token.iter().copied());
                }
                4 if !out.is_empty() => {
                    let start = self.below(out.len());
                    let end = (start + 1 + self.below(16)).min(out.len());
                    let piece = out[start..end].to_vec();
                    out.splice(at..at, piece);
                }
                5 if !other.is_empty() => {
                    let start = self.below(other.len());
                    let end = (start + 1 + self.below(32)).min(other.len());
                    out.splice(at..at, other[start..end].iter().copied());
                }
                _ => {
                    let token = Self::INTERESTING[self.below(Self::INTERESTING.len())];
                    let end = (at + token.len()).min(out.len());
                    out.splice(at..end, token.iter().copied());
                }
            }
        }
        out
    }

    /// Runs `target` over every seed, then over `runs` mutants. Each mutant grows
    /// from a seed or from an earlier mutant kept in a small pool, which reaches
    /// deeper than mutating seeds alone without coverage feedback.
    pub fn run(&mut self, seeds: &[&[u8]], runs: usize, target: impl Fn(&[u8])) {
        let mut pool: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
        for seed in &pool {
            target(seed);
        }
        if pool.is_empty() {
            pool.push(Vec::new());
        }
        let base = pool.len();
        for _ in 0..runs {
            let a = self.below(pool.len());
            let b = self.below(pool.len());
            let mutant = self.mutate(&pool[a], &pool[b]);
            target(&mutant);
            if mutant.len() <= 4096 {
                if pool.len() < base + 256 {
                    pool.push(mutant);
                } else {
                    let slot = base + self.below(256);
                    pool[slot] = mutant;
                }
            }
        }
    }
}
