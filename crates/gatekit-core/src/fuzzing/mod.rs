//! Fuzzing entry points (feature `fuzzing`): each function takes the fuzzer's bytes,
//! builds a structured input from them with [`arbitrary`], runs gatekit on it and checks
//! an oracle, panicking on a violation. The cargo-fuzz targets in `fuzz/` are one line
//! each; keeping the logic here lets `cargo test` replay any input that crashed
//! (`tests/fuzz_regressions.rs`). See `docs/fuzzing.md` for how to run them.
//!
//! - [`route_match`]: route sets and requests; [`RouteTable::find`](crate::RouteTable::find)
//!   against the linear [`reference_find`].
//! - [`hostname`]: route hostname validation, request host extraction and host matching:
//!   case-insensitivity, port stripping, wildcards, IPv6 literals, no false positives.
//! - [`filters`]: header modifiers, URL rewrites and redirects on arbitrary requests: the
//!   result is a valid request (or redirect) with a consistent host.
//! - [`proxy_pipeline`]: arbitrary bytes as a client connection to
//!   [`serve_connection_with`](crate::server::serve_connection_with) with a
//!   [`Router`](crate::Router), filters and an in-process backend: the output is a
//!   sequence of well-formed HTTP/1.1 responses, 4xx for malformed input.
//! - [`h1_server`]: arbitrary bytes as pipelined request heads to gatekit's HTTP/1.1
//!   server codec and to hyper's server: every head the codec accepts, hyper accepts
//!   identically (method, target, version, header fields, no body).
//! - [`client_hello`], [`proxy_header`]: the TLS ClientHello peek and the PROXY protocol
//!   header parser on arbitrary bytes (see `stream.rs` for their oracles).
//!
//! Inputs are bounded (a few routes, short strings) so that each run is fast and a
//! crash reproduces from a small file. The module is also compiled for gatekit-core's
//! own tests, which share the reference matcher.

mod filters;
mod h1_server;
mod hostname;
mod proxy_pipeline;
mod reference;
mod route_match;
mod stream;

pub use self::filters::filters;
pub use self::h1_server::h1_server;
pub use self::hostname::hostname;
pub use self::proxy_pipeline::proxy_pipeline;
pub use self::reference::reference_find;
pub use self::route_match::route_match;
pub use self::stream::{client_hello, proxy_header};

/// Longest free-form string taken from an input, in characters.
const MAX_TEXT: usize = 64;

/// At most `max` items of `items`.
fn truncate<T>(items: &[T], max: usize) -> &[T] {
    &items[..items.len().min(max)]
}

/// A string of at most [`MAX_TEXT`] characters of `alphabet`, chosen by `bytes`.
fn alphabet_text(alphabet: &[u8], bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(MAX_TEXT)
        .map(|&b| char::from(alphabet[usize::from(b) % alphabet.len()]))
        .collect()
}
