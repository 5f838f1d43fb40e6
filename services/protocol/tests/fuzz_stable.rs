//! The fuzz targets of `fuzz/` on the stable toolchain: every seed, then a bounded,
//! deterministic run of mutants. Coverage-guided runs need cargo-fuzz (see
//! docs/fuzzing.md); this keeps the same properties checked on every `cargo test`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

use vc_protocol::fuzzing::{
    parse_client_message_target, validate_chat_text_target, validate_display_name_target, Mutator,
    CHAT_TEXT_SEEDS, CLIENT_MESSAGE_SEEDS, DISPLAY_NAME_SEEDS,
};

fn bytes<'a>(seeds: &[&'a str]) -> Vec<&'a [u8]> {
    seeds.iter().map(|s| s.as_bytes()).collect()
}

#[test]
fn parse_client_message_never_panics_and_round_trips() {
    Mutator::new(0x5eed_0001).run(
        &bytes(CLIENT_MESSAGE_SEEDS),
        200_000,
        parse_client_message_target,
    );
}

#[test]
fn validate_display_name_never_panics_and_is_idempotent() {
    Mutator::new(0x5eed_0002).run(
        &bytes(DISPLAY_NAME_SEEDS),
        100_000,
        validate_display_name_target,
    );
}

#[test]
fn validate_chat_text_never_panics_and_is_idempotent() {
    Mutator::new(0x5eed_0003).run(&bytes(CHAT_TEXT_SEEDS), 100_000, validate_chat_text_target);
}
