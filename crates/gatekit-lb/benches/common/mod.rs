//! What the pick and update benches and `examples/pick_count.rs` share: endpoint
//! addresses and a request with a client address (included with `#[path]`).
#![allow(dead_code)]

use std::net::SocketAddr;

use gatekit_core::{Change, ConnectionInfo, Endpoint};
use http::Request;

/// Endpoint `i`'s address: 10.x.y.z:8080, distinct for up to 15 million endpoints.
pub(crate) fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((
        [
            10,
            (i / 62500) as u8,
            (i / 250 % 250) as u8,
            (i % 250) as u8 + 1,
        ],
        8080,
    ))
}

/// A request from 192.168.7.9 (what the hash algorithms key on).
pub(crate) fn request() -> Request<()> {
    let mut r = Request::new(());
    r.extensions_mut().insert(ConnectionInfo::new(
        "192.168.7.9:50000".parse().unwrap(),
        "127.0.0.1:80".parse().unwrap(),
        false,
    ));
    r
}

/// `n` endpoints of weights 1, 2, 3 in turn, as one replacing change.
pub(crate) fn endpoints(n: usize) -> Change {
    Change::Replace(
        (0..n)
            .map(|i| Endpoint::new(addr(i)).with_weight(1 + (i % 3) as u32))
            .collect(),
    )
}
