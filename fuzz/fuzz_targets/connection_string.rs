#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| twinops_fuzz::connection_string(data));
