//! Fuzz regressions: every input the fuzz targets in `fuzz/` found a crash with, replayed
//! through the same library functions the targets call (see `docs/fuzzing.md`).
#![allow(clippy::unwrap_used)]

use gatekit_core::fuzzing as core_fuzz;

/// Each target runs on an empty input and a few fixed bytes without panicking: the
/// entry points stay wired up even before any crash was found.
#[test]
fn every_target_accepts_trivial_inputs() {
    for data in [
        &b""[..],
        b"\0",
        b"\xff\xff\xff\xff",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        core_fuzz::route_match(data);
        core_fuzz::hostname(data);
        core_fuzz::filters(data);
        core_fuzz::proxy_pipeline(data);
        gatekit_lb::fuzzing::balancer(data);
        gatekit_k8s::fuzzing::manifest(data);
    }
}
