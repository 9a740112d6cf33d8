#![no_main]
//! `proxy_pipeline`: see [`gatekit_core::fuzzing::proxy_pipeline`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_core::fuzzing::proxy_pipeline(data));
