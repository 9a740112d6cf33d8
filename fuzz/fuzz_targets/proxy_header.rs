#![no_main]
//! `proxy_header`: see [`gatekit_core::fuzzing::proxy_header`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_core::fuzzing::proxy_header(data));
