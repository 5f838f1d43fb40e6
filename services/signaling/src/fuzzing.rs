//! Fuzz target body for the frame scanner, shared by `fuzz/` (cargo-fuzz) and
//! `tests/fuzz_frame_scanner.rs` (stable). Hidden from the documentation: test
//! support, not part of the node.

use crate::frame_guard::{FrameScanner, Violation};

/// Arbitrary bytes as a socket's byte stream. The first two bytes pick the frame
/// limit (small limits make `TooBig` reachable), the third how the rest is cut into
/// chunks. The scanner must never panic, must report offsets inside the chunk it was
/// given, and must reach the same verdict however the stream is chunked: TCP may
/// deliver a header one byte at a time.
pub fn frame_scanner_target(data: &[u8]) {
    let [a, b, cut, stream @ ..] = data else {
        return;
    };
    let limit = usize::from(u16::from_be_bytes([*a, *b]));
    let whole = verdict(limit, [stream].into_iter());
    let step = usize::from(*cut % 16) + 1;
    let chunked = verdict(limit, stream.chunks(step));
    assert_eq!(whole, chunked, "verdict depends on chunking by {step}");
}

fn verdict<'a>(limit: usize, chunks: impl Iterator<Item = &'a [u8]>) -> Option<Violation> {
    let mut scanner = FrameScanner::new(limit);
    for chunk in chunks {
        if let Err((at, violation)) = scanner.scan(chunk) {
            assert!(
                at <= chunk.len(),
                "offset {at} past a chunk of {}",
                chunk.len()
            );
            return Some(violation);
        }
    }
    None
}

/// Seeds: a 16-bit limit, a cut, then frames as a browser sends them (masked text,
/// fragments, pings, close, 16- and 64-bit lengths) and a few that break the rules.
pub const FRAME_SEEDS: &[&[u8]] = &[
    b"\x01\x00\x03\x81\x85abcdhello",
    b"\x01\x00\x00\x01\x83abcdhel\x80\x82abcdlo",
    b"\x00\x10\x01\x89\x80abcd\x81\x80abcd\x88\x82abcd\x03\xe8",
    b"\x10\x00\x07\x82\xfe\x01\x00abcd",
    b"\x10\x00\x05\x82\xff\x00\x00\x00\x00\x00\x00\x01\x00abcd",
    b"\x00\x04\x02\x81\x85abcdhello",
    b"\x01\x00\x01\xc1\x80abcd",
    b"\x01\x00\x01\x09\x80abcd",
    b"\x01\x00\x01\x80\x80abcd",
    b"\x01\x00\x01\x89\xfeabcd",
];
