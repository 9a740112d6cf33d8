#![no_main]
//! `filters`: see [`gatekit_core::fuzzing::filters`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_core::fuzzing::filters(data));
