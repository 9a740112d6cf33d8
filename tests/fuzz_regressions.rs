//! Fuzz regressions: every input the fuzz targets in `fuzz/` found a crash with, replayed
//! through the same library functions the targets call (see `docs/fuzzing.md`), plus the
//! committed seed corpora.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use gatekit_core::fuzzing as core_fuzz;
use gatekit_k8s::fuzzing as k8s_fuzz;
use gatekit_lb::fuzzing as lb_fuzz;

/// A fuzz target's library function.
type Target = fn(&[u8]);

/// The fuzz targets by name, as in `fuzz/Cargo.toml`.
const TARGETS: &[(&str, Target)] = &[
    ("route_match", core_fuzz::route_match),
    ("hostname", core_fuzz::hostname),
    ("filters", core_fuzz::filters),
    ("manifest", k8s_fuzz::manifest),
    ("balancer", lb_fuzz::balancer),
    ("proxy_pipeline", core_fuzz::proxy_pipeline),
    ("client_hello", core_fuzz::client_hello),
    ("proxy_header", core_fuzz::proxy_header),
    ("h1_server", core_fuzz::h1_server),
];

/// Each target runs on an empty input and a few fixed bytes without panicking.
#[test]
fn every_target_accepts_trivial_inputs() {
    for data in [
        &b""[..],
        b"\0",
        b"\xff\xff\xff\xff",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        for (_, target) in TARGETS {
            target(data);
        }
    }
}

/// The committed seeds (`fuzz/corpus/<target>/seed-*`) pass their target's checks, and
/// every target has some.
#[test]
fn seed_corpora_pass() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, target) in TARGETS {
        let mut seeds = 0;
        for entry in std::fs::read_dir(corpus.join(name)).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if file.starts_with("seed-") {
                target(&std::fs::read(&path).unwrap());
                seeds += 1;
            }
        }
        assert!(seeds >= 3, "{name} has {seeds} seeds");
    }
}

// === crashes found ===

/// `filters`: a redirect without a configured hostname copied the client's `Host: {`
/// header into `Location: https://{:15733/`, which is not a URI. Fixed in gatekit-core's
/// redirect filter: a `Host` header that is not a valid host gives a relative `Location`.
#[test]
fn filters_redirect_location_from_invalid_host_header() {
    core_fuzz::filters(&[
        46, 117, 197, 64, 216, 61, 152, 1, 97, 77, 33, 109, 234, 123, 224, 117, 197, 123, 61, 10,
        0, 10, 172, 81, 244, 233, 82, 74, 227, 167, 152, 197, 117, 61, 152, 87, 49, 127, 252, 213,
        83, 83,
    ]);
}

/// `filters`: a redirect of an authority-form target (`GET host:port`, which has no path)
/// whose host was unusable answered `Location: ""`. Fixed in gatekit-core's redirect
/// filter: an empty request path is written as `/`.
#[test]
fn filters_redirect_of_authority_form_target_has_a_path() {
    core_fuzz::filters(&[
        224, 117, 197, 123, 120, 45, 97, 88, 87, 199, 58, 58, 58, 58, 58, 58, 58, 58, 61, 58, 119,
        98, 39, 58, 58, 224, 58, 58, 186, 61, 126, 197, 123, 61, 103, 54, 224, 87, 199, 58, 58, 58,
        58, 58, 58, 58, 186, 61, 33, 58, 224, 117, 58, 224, 58, 196, 58, 58, 58, 224, 117, 196, 58,
    ]);
}

/// Found by the `filters` target in CI (crash-81fe63c0…): a redirect of an asterisk-form
/// target (`OPTIONS *`) with no usable host answered `Location: *`. The redirect filter
/// now uses `/` for any target without a path.
#[test]
fn filters_redirect_of_asterisk_form_target_has_a_path() {
    gatekit_core::fuzzing::filters(&[
        224, 117, 197, 41, 44, 20, 52, 179, 174, 14, 95, 8, 0, 0, 0, 0, 0, 0, 0, 182, 35, 13, 129,
        131, 42, 250, 109, 119, 46, 114, 74, 212, 179, 46, 9, 9, 9, 9, 9, 9, 52,
    ]);
}

/// Found by `proxy_pipeline` once it served with the binary's HTTP/1 + h2 config: a head
/// with a bare CR that never ends before EOF is closed without an answer (the HTTP/1-only
/// server answered 400); either way nothing reaches a backend and nothing panics or hangs.
#[test]
fn proxy_pipeline_unterminated_heads_with_a_bare_cr() {
    core_fuzz::proxy_pipeline(
        b"POST /api HTTP/1.1\r\nHost: apmple.com\r\nCont\rent-Length* 5L\x00\x00\x00\x00\x00\x00\x00tion:zzzzzzzzzzzzz close\r\n:\x9a\xca\x00llo",
    );
    core_fuzz::proxy_pipeline(
        b"POST / HTTP/1.1\r\nHost: a\r\xdc\nContent-Length: 4\r\nTransfer-Enco\x00inGET /admin HTTP/1.1\r\nHost: a\r\nHost: a\r\xdc\nContent-L\r\n",
    );
    // The h2 preface's request line after empty lines: hyper refuses it without an
    // HTTP/1 answer (it is not an HTTP/1.x request), as it always did.
    core_fuzz::proxy_pipeline(
        b"\n\n\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\n\nPOST /x HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    // Nothing but line breaks and bytes that are no request line.
    core_fuzz::proxy_pipeline(b"\r\n\r\n\r\n\n\n\r\n\r\n\n\n\r\n\r\x80\r\n\x80\x80");
    // Leading empty lines do not end the head.
    core_fuzz::proxy_pipeline(
        b"\r\n\r\nGET http://api.example.com/api HTTP/1.1\r\nHost: otherSSSSSSSSSSSSSS\x00\xca\x9a;SSSSGETT-------SSSS-----SG",
    );
}

/// Found by the `client_hello` target: an SNI of dots (`........o.m..`) was accepted, and
/// kept a trailing dot. The ClientHello parser now takes only DNS names (no empty label).
#[test]
fn client_hello_sni_with_empty_labels_is_refused() {
    core_fuzz::client_hello(&[
        22, 3, 1, 0, 89, 1, 0, 0, 85, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 239, 0, 0, 4, 19, 1, 0, 47, 1, 0, 0, 40, 0, 0, 0,
        18, 0, 16, 0, 0, 13, 46, 46, 46, 46, 46, 46, 46, 46, 111, 46, 109, 46, 46, 0, 16, 0, 14, 0,
        12, 2, 0, 22, 3, 0, 0, 0, 4, 19, 1, 1, 16,
    ]);
}

/// Found by `proxy_pipeline` once gatekit's HTTP/1.1 codec served the first request: the
/// h2 preface that followed went to hyper's automatic builder, which switched the
/// connection to HTTP/2 mid-stream (binary frames after an HTTP/1.1 response). A
/// connection the codec has served requests on is handed to hyper's HTTP/1 server only.
#[test]
fn proxy_pipeline_h2_preface_after_a_served_request() {
    core_fuzz::proxy_pipeline(b"*POST /rewrite/xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?q=2 HTTP/1.1\r\nHost: a.example.com\r\nTransfer-t: om:8080\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\nHEAD /mis\xffsing HTTP/1.1\r\xeb\nHost: x-\n\r\n");
}
