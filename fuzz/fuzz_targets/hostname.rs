#![no_main]
//! `hostname`: see [`gatekit_core::fuzzing::hostname`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_core::fuzzing::hostname(data));
