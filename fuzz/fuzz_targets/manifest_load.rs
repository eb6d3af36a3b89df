#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| twinops_fuzz::manifest_load(data));
