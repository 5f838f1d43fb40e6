#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vc_protocol::fuzzing::validate_chat_text_target(data));
