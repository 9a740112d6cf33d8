//! API keys: each request carries a key that names a consumer.
//!
//! An [`ApiKeyConfig`] lists consumers (a name and one or more keys: several during a
//! rotation, when the old and the new key are both valid) and where a request carries
//! its key ([`CredentialSource`]s: a header such as `x-api-key`, a query parameter, a
//! cookie; the first source that holds a key decides).
//!
//! # What is held, and in what form
//!
//! Keys are held only as [`KeyDigest`]s (SHA-256, gatekit-core's, the same the
//! gateway's translation makes from Kubernetes Secrets). The configuration takes
//! digests ([`ApiKeyConfig::with_consumer_digests`]) or plaintext keys
//! ([`ApiKeyConfig::with_consumer`]), which it hashes at once, zeroing the plaintext it
//! was given; neither the configuration nor the layer ever holds a key. A request's key
//! is hashed once and looked up by its digest in a map from digest to consumer, so no
//! key is compared byte by byte (no timing side channel on the key) and no key stays in
//! memory (a heap dump or a `Debug` print shows no key; `Debug` shows no digest
//! either). The request's own copy of its key is the request's: the layer neither
//! copies nor keeps it.
//!
//! A request that passes carries `Identity::new("api-key", consumer)` in its extensions
//! (a rate limit keyed by
//! [`KeyPart::Identity`](gatekit_core::ratelimit::KeyPart::Identity) then counts per
//! consumer) and, when configured, the consumer's name in a header to the backend. A
//! header of that name sent by the client is always removed first, whether the request
//! passes or not: a client cannot name itself. With
//! [`strip_credential`](ApiKeyConfig::strip_credential) the key is removed from every
//! configured source before the request goes on (Envoy Gateway's `sanitize`).
//!
//! A request without a key, or with a key no consumer has, is refused with
//! [`ErrorKind::Unauthenticated`](gatekit_core::ErrorKind::Unauthenticated) (401) and
//! the challenge `WWW-Authenticate: ApiKey realm="<realm>"`. `ApiKey` is not a
//! registered HTTP authentication scheme; RFC 9110 requires a challenge on every 401
//! and this one tells a client which realm wants a key. Both refusals are identical, so
//! a client learns nothing about which keys exist. A key repeated in one source (two
//! `x-api-key` headers, two `api_key` parameters) counts as no key.
//!
//! This is Envoy Gateway's `apiKeyAuth` (`credentialRefs`, `extractFrom`,
//! `forwardClientIDHeader`, `sanitize`).
//!
//! # Example
//!
//! In a server of your own, put gatekit's error handling outside the layer:
//!
//! ```
//! use gatekit_auth::apikey::{ApiKeyConfig, ApiKeyLayer, KeyDigest};
//! use gatekit_auth::credential::CredentialSource;
//! use gatekit_core::access::Identity;
//! use gatekit_core::{Body, BoxError, HandleErrorLayer};
//! use http::{HeaderName, Request, Response};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), gatekit_core::ConfigError> {
//! let keys = ApiKeyLayer::new(
//!     ApiKeyConfig::new("api")
//!         .with_consumer("billing", ["k-2024", "k-2025"])
//!         // Or digests kept instead of keys (SHA-256 of each key):
//!         .with_consumer_digests("search", [KeyDigest::of(b"k-search")])
//!         .with_source(CredentialSource::Header(HeaderName::from_static("x-api-key")))
//!         .forward_consumer(HeaderName::from_static("x-consumer"))
//!         .strip_credential(true),
//! )?;
//! let app = ServiceBuilder::new()
//!     .layer(HandleErrorLayer::new())
//!     .layer(keys)
//!     .service_fn(|req: Request<Body>| async move {
//!         let who = req.extensions().get::<Identity>().map(|i| i.subject().to_owned());
//!         Ok::<_, BoxError>(Response::new(Body::from(who.unwrap_or_default())))
//!     });
//! // Serve `app` with hyper-util's `TowerToHyperService`, or use it in axum.
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod layer;
mod service;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;

use http::HeaderName;
use zeroize::Zeroizing;

use crate::credential::CredentialSource;

pub use self::layer::{ApiKeyLayer, ApiKeyPolicy};
pub use self::service::ApiKey;
pub use crate::future::ResponseFuture;
pub use gatekit_core::access::KeyDigest;

/// What an API key check accepts: consumers and the digests of their keys, where keys
/// are read, and what is forwarded. Consumed by [`ApiKeyLayer::new`]. Holds no
/// plaintext key: keys given as text are hashed as they are added. `Debug` shows
/// consumer names and key counts, never a key or a digest.
#[derive(Clone)]
pub struct ApiKeyConfig {
    pub(crate) realm: String,
    pub(crate) consumers: Vec<Consumer>,
    pub(crate) sources: Vec<CredentialSource>,
    pub(crate) forward_consumer: Option<HeaderName>,
    pub(crate) strip_credential: bool,
}

/// One consumer and the digests of its keys.
#[derive(Clone)]
pub(crate) struct Consumer {
    pub(crate) name: String,
    pub(crate) keys: Vec<KeyDigest>,
}

impl ApiKeyConfig {
    /// No consumers, no key sources; `realm` names the protected space in the
    /// challenge (`WWW-Authenticate: ApiKey realm="<realm>"`).
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            consumers: Vec::new(),
            sources: Vec::new(),
            forward_consumer: None,
            strip_credential: false,
        }
    }

    /// Adds a consumer called `name` with `keys` (several during a rotation), each
    /// hashed at once: only its [`KeyDigest`] is kept, and the `String` it became is
    /// zeroed (a `&str` given here is the caller's to clear). A name given twice adds
    /// keys to the same consumer.
    #[must_use]
    pub fn with_consumer<K: Into<String>>(
        self,
        name: impl Into<String>,
        keys: impl IntoIterator<Item = K>,
    ) -> Self {
        let digests = keys.into_iter().map(|k| {
            let key = Zeroizing::new(k.into());
            KeyDigest::of(key.as_bytes())
        });
        self.with_consumer_digests(name, digests)
    }

    /// Adds a consumer called `name` whose keys have these digests (SHA-256 of each
    /// key, made with [`KeyDigest::of`] or stored instead of the keys). A name given
    /// twice adds keys to the same consumer.
    #[must_use]
    pub fn with_consumer_digests(
        mut self,
        name: impl Into<String>,
        digests: impl IntoIterator<Item = KeyDigest>,
    ) -> Self {
        self.consumers.push(Consumer {
            name: name.into(),
            keys: digests.into_iter().collect(),
        });
        self
    }

    /// Adds a place a request's key is read from; sources are tried in the order added
    /// and the first that holds a key decides.
    #[must_use]
    pub fn with_source(mut self, source: CredentialSource) -> Self {
        self.sources.push(source);
        self
    }

    /// Sends the consumer's name to the backend in `header` (Envoy Gateway's
    /// `forwardClientIDHeader`). A client-sent header of that name is always removed.
    #[must_use]
    pub fn forward_consumer(mut self, header: HeaderName) -> Self {
        self.forward_consumer = Some(header);
        self
    }

    /// Whether the key is removed from every configured source before the request
    /// goes on (Envoy Gateway's `sanitize`; default `false`).
    #[must_use]
    pub fn strip_credential(mut self, strip: bool) -> Self {
        self.strip_credential = strip;
        self
    }
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Consumers<'a>(&'a [Consumer]);
        impl fmt::Debug for Consumers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|c| (&c.name, KeyCount(c.keys.len()))))
                    .finish()
            }
        }
        struct KeyCount(usize);
        impl fmt::Debug for KeyCount {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} key(s), redacted", self.0)
            }
        }
        f.debug_struct("ApiKeyConfig")
            .field("realm", &self.realm)
            .field("consumers", &Consumers(&self.consumers))
            .field("sources", &self.sources)
            .field("forward_consumer", &self.forward_consumer)
            .field("strip_credential", &self.strip_credential)
            .finish()
    }
}
