#![no_main]
//! `manifest`: see [`gatekit_k8s::fuzzing::manifest`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_k8s::fuzzing::manifest(data));
