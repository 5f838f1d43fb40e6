#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vc_signaling::fuzzing::frame_scanner_target(data));
