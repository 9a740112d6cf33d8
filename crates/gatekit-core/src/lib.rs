//! gatekit-core: the data plane of the gatekit gateway toolkit.
//!
//! This crate owns the shared vocabulary of gatekit and everything a request touches on
//! its way through a gateway, except the choice of an endpoint:
//!
//! - [`Body`], the one body type that flows through gatekit services;
//! - [`Error`], the typed request-path error, and [`error_response`], the one place that
//!   turns any error into a 4xx/5xx response;
//! - [`Endpoint`] and [`Change`], the endpoint vocabulary that discovery produces and
//!   balancers (in `gatekit-lb`) consume;
//! - the route model ([`route`]) with Gateway API HTTPRoute semantics, compiled into an
//!   immutable [`RouteTable`] and served by the [`Router`] tower service;
//! - HTTP filters ([`filter`]): header modifiers, redirects, URL rewrites, mirrors;
//! - access policies ([`access`]): where authentication and authorization layers plug
//!   into a rule's stack, and the [`access::Identity`] they establish;
//! - the layers of a rule's stack, each usable alone: [`filter::FilterLayer`],
//!   [`proxy::ProxyHeadersLayer`], [`timeout::TimeoutLayer`] (HTTPRoute `timeouts`),
//!   [`retry::RetryLayer`] (HTTPRoute `retry`, with body replay and budgets) and
//!   the weighted backend choice ([`weighted`]);
//! - the upstream HTTP client and proxying helpers ([`client`], [`proxy`]);
//! - request path normalisation before routing ([`path`]);
//! - rate limits whose state every connection and clone shares ([`ratelimit`]);
//! - TLS termination helpers ([`tls`]): PEM loading, SNI certificate selection, rustls
//!   server settings;
//! - the serving path ([`server`]): accepting, connection limits, TLS, HTTP/1.1 and
//!   HTTP/2, request-head checks and graceful draining;
//! - the real client address behind trusted proxies ([`client_ip`]: `X-Forwarded-For`
//!   or a custom header), resolved once per request by the server.
//!
//! It knows nothing of Kubernetes and of balancing algorithms: a [`Backend`] is any
//! service that takes a request, looked up by name when a route table is built.
//!
//! # A minimal composition
//!
//! ```no_run
//! # async fn run() -> Result<(), gatekit_core::BoxError> {
//! use gatekit_core::{route, Backend, Router, RouteTable, client::Client};
//! use std::collections::HashMap;
//!
//! let client = Client::new(Default::default());
//! let mut backends = HashMap::new();
//! backends.insert("echo".to_string(), Backend::single(&client, "127.0.0.1:3000".parse()?));
//!
//! let mut rule = route::Rule::default();
//! rule.backends.push(route::BackendRef::new("echo", 1));
//! let mut r = route::Route::new(route::RouteId::new("default", "echo"));
//! r.rules.push(rule);
//!
//! let table = RouteTable::build(vec![r], &backends)?;
//! let router = Router::new(table);
//! // `router` is a `tower::Service<http::Request<B>>`; serve it with hyper-util.
//! # let _ = router; Ok(()) }
//! ```

pub mod access;
mod backend;
mod body;
pub mod breaker;
pub mod chunked;
pub mod client;
pub mod client_ip;
mod connection;
pub mod cookie;
mod endpoint;
mod error;
pub mod exchange;
pub mod filter;
pub mod fnv;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod handle_error;
mod http1;
pub mod limit;
pub mod path;
pub mod proxy;
pub mod ratelimit;
pub mod retry;
pub mod route;
mod router;
pub mod server;
pub mod session;
pub mod small_list;
pub mod stream;
pub mod timeout;
pub mod tls;
pub mod weighted;

pub use crate::backend::{Backend, Backends, ErrorExtensions};
pub use crate::body::Body;
pub use crate::connection::{ConnectionInfo, TlsInfo};
pub use crate::endpoint::{Change, Endpoint, EndpointState};
pub use crate::error::{
    BoxError, ConfigError, Error, ErrorKind, Result, Side, WithResponseExtensions, classify,
    error_response, take_unsent_request, update_unsent_request,
};
pub use crate::handle_error::{HandleError, HandleErrorLayer};
pub use crate::route::{PortTable, RouteTable};
pub use crate::router::{MatchedRoute, ResponseFuture, Router};
