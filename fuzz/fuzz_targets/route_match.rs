#![no_main]
//! `route_match`: see [`gatekit_core::fuzzing::route_match`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_core::fuzzing::route_match(data));
