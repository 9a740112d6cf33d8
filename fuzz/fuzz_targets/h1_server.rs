#![no_main]
//! `h1_server`: see [`gatekit_core::fuzzing::h1_server`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_core::fuzzing::h1_server(data));
