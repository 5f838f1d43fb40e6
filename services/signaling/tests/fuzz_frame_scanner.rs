//! The frame scanner's fuzz target of `fuzz/` on the stable toolchain: every seed,
//! then a bounded, deterministic run of mutants (see docs/fuzzing.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

use vc_protocol::fuzzing::Mutator;
use vc_signaling::fuzzing::{frame_scanner_target, FRAME_SEEDS};

#[test]
fn frame_scanner_never_panics_and_ignores_chunking() {
    Mutator::new(0x5eed_0003).run(FRAME_SEEDS, 200_000, frame_scanner_target);
}
