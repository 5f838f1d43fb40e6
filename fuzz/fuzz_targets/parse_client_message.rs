#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vc_protocol::fuzzing::parse_client_message_target(data));
