//! HTTP/1.1 upgrades (WebSocket and the like) through the proxy.
//!
//! The request goes to the upstream on a fresh, unpooled HTTP/1.1 connection that
//! supports upgrades. When the upstream answers `101 Switching Protocols`, a task awaits
//! both sides' upgraded connections (the client's from the request, the upstream's from
//! the response) and copies bytes both ways until either side closes. The 101 response
//! itself goes back to the client, whose server then completes its side of the upgrade.
//! Any other answer is returned as a normal response.

use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

use super::h1::{has_token, to_origin_form};
use super::pool::{Conn, EndpointPool};
use crate::server::{DrainSignal, Phase, RetiredSignal};
use crate::{Body, Error, ErrorKind};

/// Whether the request asks for a protocol upgrade: `Connection` names `upgrade` and an
/// `Upgrade` header is present.
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"upgrade"))
}

pub(super) async fn send(
    pool: Arc<EndpointPool>,
    mut req: Request<Body>,
) -> Result<Response<Body>, Error> {
    to_origin_form(&mut req, pool.addr());
    // The connection's slot under the connection cap: shared with its hyper task, and
    // kept by the copying task below for as long as the upgraded connection lives.
    let (conn, slot) = match pool.connect_upgradable().await {
        Ok(connected) => connected,
        // A failed connect hands the request back whole, with the client's side of the
        // upgrade still in it.
        Err(e) => return Err(super::hand_back(e, req)),
    };
    let mut tx = match conn {
        Conn::H1(tx) => tx,
        Conn::H2(_) => {
            return Err(Error::with_source(
                ErrorKind::UpstreamProtocol,
                "the upstream negotiated h2 for an HTTP/1.1 upgrade request",
            ));
        }
    };
    let downstream = hyper::upgrade::on(&mut req);
    // The client connection's drain and the route's retirement: the tunnel is closed
    // at the first deadline.
    let mut drain = req
        .extensions_mut()
        .remove::<DrainSignal>()
        .unwrap_or(DrainSignal::none());
    let mut retired = req
        .extensions_mut()
        .remove::<RetiredSignal>()
        .map_or(DrainSignal::none(), |r| r.0);
    let mut rsp = match tx.try_send_request(req).await {
        Ok(rsp) => rsp,
        Err(mut err) => {
            let unsent = err.take_message();
            let error = Error::with_source(ErrorKind::UpstreamProtocol, err.into_error())
                .retry_safe(unsent.is_some());
            return Err(match unsent {
                Some(mut req) => {
                    // Not sent: the client's side of the upgrade goes back with it.
                    req.extensions_mut().insert(downstream);
                    error.with_unsent_request(req)
                }
                None => error,
            });
        }
    };
    if rsp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut rsp);
        tokio::spawn(async move {
            let _slot = slot;
            let (downstream, upstream) = tokio::join!(downstream, upstream);
            match (downstream, upstream) {
                (Ok(down), Ok(up)) => {
                    let mut down = TokioIo::new(down);
                    let mut up = TokioIo::new(up);
                    tokio::select! {
                        copied = tokio::io::copy_bidirectional(&mut down, &mut up) => {
                            if let Err(e) = copied {
                                tracing::debug!(error = %e, "upgraded connection ended with an error");
                            }
                        }
                        () = drain.reached(Phase::Hard) => {
                            tracing::debug!("upgraded connection closed: its listener's drain deadline passed");
                        }
                        () = retired.reached(Phase::Hard) => {
                            tracing::debug!("upgraded connection closed: its route was removed");
                        }
                    }
                }
                (down, up) => {
                    tracing::debug!(
                        downstream_ok = down.is_ok(),
                        upstream_ok = up.is_ok(),
                        "upgrade failed"
                    );
                }
            }
        });
    }
    Ok(rsp.map(Body::from))
}
