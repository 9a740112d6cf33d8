#![no_main]
//! `balancer`: see [`gatekit_lb::fuzzing::balancer`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekit_lb::fuzzing::balancer(data));
