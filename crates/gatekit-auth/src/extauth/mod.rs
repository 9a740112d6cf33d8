//! External authorization: each request is checked by an authorization service before
//! it goes on (Envoy Gateway's SecurityPolicy `extAuth`, Envoy's `ext_authz` filter).
//!
//! The service is reached through a [`Backend`](gatekit_core::Backend): in the gateway,
//! a balanced upstream of the service's endpoints (with its pool, health checks and
//! TLS); in a server of your own, any backend, such as
//! [`Backend::single`](gatekit_core::Backend::single). Two protocols:
//!
//! - **HTTP** ([`ExtAuthConfig::http`]): the check is a copy of the request's head to
//!   the service; a 2xx answer allows, a 5xx is a failure, anything else is a denial
//!   sent to the client as it is. Details in the `http` section below.
//! - **gRPC** (`ExtAuthConfig::grpc`, cargo feature `grpc`): Envoy's
//!   `envoy.service.auth.v3.Authorization/Check`, so servers written for Envoy (OPA's
//!   Envoy plugin and others) work unchanged.
//!
//! # HTTP mode
//!
//! The check request has the client request's method, the configured path prefix
//! followed by the request's path and query, its `Host` and `Authorization`, the headers
//! named in [`ExtAuthConfig::with_headers_to_ext_auth`], and the buffered body (with
//! its `Content-Length` and Envoy's `x-envoy-auth-partial-body`) when body forwarding
//! is on. A 2xx answer allows the request and the headers named in
//! [`HttpService::with_headers_to_backend`] are copied from it onto the request,
//! replacing the request's own; a client's value of such a name is removed even when
//! the answer lacks it (Envoy keeps it then), so the upstream can trust these headers
//! as the service's. Envoy admits only `200`; gatekit admits any 2xx (as
//! nginx's `auth_request` does). A 5xx answer is a failure of the service (as in
//! Envoy). Any other answer is the denial: its status, headers (less hop-by-hop ones)
//! and body go to the client.
//!
//! # gRPC mode
//!
//! A hand-rolled unary gRPC call through the backend (which must speak HTTP/2): the
//! message behind gRPC's 5-byte prefix, uncompressed, `grpc-timeout` set to the check's
//! timeout, `grpc-status` read from the trailers. The messages are declared by hand
//! with prost's derive (field numbers from Envoy's protos): no protoc, no build script,
//! no tonic (its transport would be a second HTTP/2 client beside gatekit's). The
//! check request carries the client and gateway addresses, the method, path, host,
//! scheme, protocol, `x-request-id`, the headers (all, or those named in
//! `headersToExtAuth`; with `:authority`, `:method`, `:path`, as Envoy sends them) and
//! the buffered body. The messages are public in `proto` (encode and decode them
//! with `prost::Message`), for an authorization service or a test of your own. An
//! `OK` status allows: `ok_response.headers` change the request
//! (`append: true` appends, otherwise they replace; `append_action` add-if-absent and
//! overwrite-if-exists are honoured), `headers_to_remove` are removed (never `Host`)
//! and `response_headers_to_add` go on the client's response. Any other status denies
//! with `denied_response`'s status (403 when unset), headers and body.
//!
//! # Failures, timeout, fail open
//!
//! A check that cannot be done (service unreachable, no answer within
//! [`ExtAuthConfig::with_timeout`], 10 s by default as in Envoy Gateway, a 5xx, a
//! failed or undecodable gRPC call) fails **closed** by default: the request is
//! refused with 503 `auth-unavailable` ([`ErrorKind::AuthUnavailable`]). Envoy answers
//! 403 there by default (its `status_on_error`); gatekit says what happened, a service
//! outage rather than a refusal of the client. With
//! [`ExtAuthConfig::with_fail_open`] the request goes on unchecked instead, logged at
//! `warn` and counted in [`ExtAuthStats::failed_open`].
//!
//! # Body forwarding
//!
//! With [`ExtAuthConfig::with_body`] the body is buffered up to
//! [`BodyToExtAuth`]'s limit before the check and then sent on to the upstream as it
//! was (the buffered bytes replayed, followed by any unread rest). A body over the
//! limit is refused with 413 before any check, whatever fail open says (as in Envoy),
//! unless partial bodies are allowed: then the first `max_bytes` go to the service and
//! the whole body to the upstream. The buffering bounds memory, not time: a slow client
//! body is bounded by the server's own limits.
//!
//! # Denials and counters
//!
//! A denial is a response, not an error: it carries a [`Denied`] extension so that
//! metrics can tell it from the upstream's answers. [`ExtAuthLayer::stats`] counts
//! allowed, denied, failed closed, failed open and too-large requests.
//!
//! # Cost
//!
//! A check is one round trip to the service. Per request the layer allocates the boxed
//! check future (one `Box`), the check request and, in gRPC mode, the encoded message.
//!
//! # In a server of your own
//!
//! ```no_run
//! # async fn run() -> Result<(), gatekit_core::BoxError> {
//! use gatekit_auth::extauth::{ExtAuthConfig, ExtAuthLayer, HttpService};
//! use gatekit_core::{Backend, Body, BoxError, HandleErrorLayer, client::Client};
//! use http::HeaderName;
//! use tower::ServiceBuilder;
//!
//! let client = Client::new(Default::default());
//! let auth_service = Backend::single(&client, "127.0.0.1:9000".parse()?);
//! let config = ExtAuthConfig::http(
//!     auth_service,
//!     HttpService::new()
//!         .with_path_prefix("/verify")
//!         .with_headers_to_backend([HeaderName::from_static("x-user")]),
//! )
//! .with_timeout(std::time::Duration::from_millis(500));
//! let app = tower::service_fn(|_req: http::Request<Body>| async {
//!     Ok::<_, BoxError>(http::Response::new(Body::from("hello")))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(HandleErrorLayer::new())
//!     .layer(ExtAuthLayer::new(config))
//!     .service(app);
//! // Serve `svc` with hyper-util.
//! # let _ = svc; Ok(()) }
//! ```
//!
//! In a gatekit route rule, wrap the configuration in an [`ExtAuthPolicy`].
//!
//! [`ErrorKind::AuthUnavailable`]: gatekit_core::ErrorKind::AuthUnavailable

mod check;
mod config;
mod future;
#[cfg(feature = "grpc")]
mod grpc_check;
mod http_check;
mod layer;
#[cfg(feature = "grpc")]
pub mod proto;
mod service;

#[cfg(feature = "grpc")]
pub use self::config::GrpcService;
pub use self::config::{BodyToExtAuth, DEFAULT_TIMEOUT, ExtAuthConfig, ExtAuthStats, HttpService};
pub use self::future::ResponseFuture;
pub use self::layer::{ExtAuthLayer, ExtAuthPolicy};
pub use self::service::ExtAuth;

/// Marks a response that is an authorization service's denial (in its extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied;

#[cfg(test)]
mod tests;
