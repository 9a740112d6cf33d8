//! Allow and deny rules on the client address, JWT claims and headers (Envoy Gateway's
//! SecurityPolicy `authorization`).
//!
//! An [`AuthzConfig`] is an ordered list of [`AuthzRule`]s and a default [`Action`].
//! For each request the rules are tried in order and the **first** whose principal (and
//! methods, if any) matches decides: [`Action::Allow`] lets the request through,
//! [`Action::Deny`] refuses it with a gatekit [`Error`](gatekit_core::Error) of kind
//! [`Forbidden`](gatekit_core::ErrorKind::Forbidden) (403, `forbidden`). When no rule
//! matches, the default action decides; it is [`Action::Deny`] unless set, as in Envoy
//! Gateway.
//!
//! A [`Principal`] matches when **every** part it names matches (an empty principal
//! matches every request):
//!
//! - client CIDRs: the client address lies in **one** of the ranges. The address is
//!   [`ConnectionInfo::remote_addr`](gatekit_core::ConnectionInfo::remote_addr) from the
//!   request's extensions: the client the listener's `clientIPDetection` found behind
//!   trusted proxies (`X-Forwarded-For` or a custom header) when it has one, else the
//!   PROXY protocol address when the connection came from a trusted proxy, else the TCP
//!   peer. A request without a `ConnectionInfo` never
//!   matches a CIDR principal.
//! - JWT ([`JwtPrincipal`]): the request carries
//!   [`VerifiedClaims`](crate::VerifiedClaims) (put there by the
//!   [`jwt`](crate::jwt) layer, which must sit outside this one), from the named
//!   provider if one is named; **every** [`ClaimMatch`] matches (the claim, found by a
//!   dot-separated path, equals one of the values, or for an array claim contains one);
//!   and **every** scope is granted (`scope`, a space-delimited string, or `scp`, an
//!   array). A request without verified claims never matches a JWT principal.
//! - headers ([`HeaderMatch`]): **every** named header has a value equal to one of the
//!   configured values.
//!
//! # IP allow and deny lists
//!
//! A CIDR list is two lines of this model, and [`AuthzConfig::allow_cidrs`] /
//! [`AuthzConfig::deny_cidrs`] write them:
//!
//! - allow list: one `Allow` rule with the ranges, default `Deny`;
//! - deny list: one `Deny` rule with the ranges, default `Allow`.
//!
//! ```
//! use gatekit_auth::authz::{AuthzConfig, AuthzLayer};
//! use gatekit_core::ratelimit::Cidr;
//!
//! let office: Cidr = "203.0.113.0/24".parse()?;
//! let vpn: Cidr = "2001:db8:10::/48".parse()?;
//! // Only the office and the VPN reach the rule; everyone else gets 403.
//! let layer = AuthzLayer::new(AuthzConfig::allow_cidrs([office, vpn]));
//! # let _ = layer; Ok::<(), gatekit_core::ConfigError>(())
//! ```
//!
//! # In a server of your own
//!
//! ```
//! use gatekit_auth::authz::{Action, AuthzConfig, AuthzLayer, AuthzRule, JwtPrincipal, Principal};
//! use gatekit_core::{Body, BoxError, HandleErrorLayer};
//! use tower::ServiceBuilder;
//!
//! let admins = AuthzRule::new(
//!     Action::Allow,
//!     Principal::default().with_jwt(JwtPrincipal::default().with_scope("admin")),
//! );
//! let config = AuthzConfig::new(Action::Deny).with_rule(admins);
//! let app = tower::service_fn(|_req: http::Request<Body>| async {
//!     Ok::<_, BoxError>(http::Response::new(Body::from("hello")))
//! });
//! // Refusals are errors: gatekit's error handling outside turns them into 403s.
//! let svc = ServiceBuilder::new()
//!     .layer(HandleErrorLayer::new())
//!     .layer(AuthzLayer::new(config))
//!     .service(app);
//! # let _ = svc;
//! ```
//!
//! In a gatekit route rule, wrap the layer in an [`AuthzPolicy`].

mod config;
mod layer;
mod service;

pub use self::config::{
    Action, AuthzConfig, AuthzRule, ClaimMatch, ClaimValueType, HeaderMatch, JwtPrincipal,
    Principal,
};
pub use self::layer::{AuthzLayer, AuthzPolicy};
pub use self::service::Authz;
pub use crate::future::ResponseFuture;

#[cfg(test)]
mod tests;
