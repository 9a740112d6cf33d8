#![no_main]
//! `client_hello`: see [`gatekit_core::fuzzing::client_hello`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_core::fuzzing::client_hello(data));
