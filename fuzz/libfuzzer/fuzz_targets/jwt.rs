#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revenant_fuzz::jwt(data));
