//! The JWT layer's configuration: plain structs, built in code or by the gateway from
//! Envoy Gateway's `SecurityPolicy.spec.jwt`.

use std::fmt;
use std::time::Duration;

use gatekit_core::Backend;
use http::{HeaderName, Uri, header};

use crate::credential::CredentialSource;

/// The JWT check: the providers a token may come from, and what to do without one.
/// Envoy Gateway's `jwt` (`providers`, `optional`).
#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub(super) providers: Vec<JwtProvider>,
    pub(super) optional: bool,
    pub(super) realm: String,
}

impl JwtConfig {
    /// A check that accepts a token verified by any of `providers`.
    pub fn new(providers: impl IntoIterator<Item = JwtProvider>) -> Self {
        Self {
            providers: providers.into_iter().collect(),
            optional: false,
            realm: "gatekit".to_owned(),
        }
    }

    /// Lets requests without any token through unauthenticated (EG `optional`); a
    /// token that is present must still verify. Off by default.
    #[must_use]
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    /// The realm named in the `WWW-Authenticate: Bearer` challenge (`gatekit` by
    /// default).
    #[must_use]
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }
}

/// One issuer of tokens and where its keys come from (EG `jwt.providers[]`).
#[derive(Clone)]
pub struct JwtProvider {
    pub(super) name: String,
    pub(super) issuer: Option<String>,
    pub(super) audiences: Vec<String>,
    pub(super) keys: JwksSource,
    pub(super) claim_to_headers: Vec<(HeaderName, String)>,
    pub(super) extract_from: Vec<CredentialSource>,
    pub(super) forward: bool,
    pub(super) clock_skew: Duration,
    pub(super) allow_hmac: bool,
}

impl JwtProvider {
    /// A provider named `name` (for logs, metrics and
    /// [`VerifiedClaims::provider`](crate::VerifiedClaims)) whose keys come from `keys`.
    ///
    /// Defaults: any issuer, any audience, the token read from `Authorization: Bearer`
    /// and forwarded to the backend as it came, 60 s of clock skew on `exp` and `nbf`,
    /// HMAC (`HS*`) keys ignored, `exp` required.
    pub fn new(name: impl Into<String>, keys: JwksSource) -> Self {
        Self {
            name: name.into(),
            issuer: None,
            audiences: Vec::new(),
            keys,
            claim_to_headers: Vec::new(),
            extract_from: vec![CredentialSource::Header(header::AUTHORIZATION)],
            forward: true,
            clock_skew: Duration::from_secs(60),
            allow_hmac: false,
        }
    }

    /// The required `iss` (EG `issuer`). With several providers, a token goes to the
    /// providers whose issuer is its `iss` (and those without an issuer).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The accepted audiences (EG `audiences`): the token's `aud` must hold one of
    /// them. Empty (the default): `aud` is not checked.
    #[must_use]
    pub fn audiences(mut self, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Copies the claim at `claim` (a name or a dotted path into nested objects) into
    /// request header `header` (EG `claimToHeaders`). A client's own `header` is always
    /// removed first, so it cannot be spoofed.
    #[must_use]
    pub fn claim_to_header(mut self, header: HeaderName, claim: impl Into<String>) -> Self {
        self.claim_to_headers.push((header, claim.into()));
        self
    }

    /// Where the token is looked for, in order (EG `extractFrom`). Default:
    /// `Authorization: Bearer`.
    #[must_use]
    pub fn extract_from(mut self, sources: impl IntoIterator<Item = CredentialSource>) -> Self {
        self.extract_from = sources.into_iter().collect();
        self
    }

    /// Whether the token goes on to the backend (default `true`, as Envoy Gateway
    /// does). `false` removes it (the header, cookie or query parameter it came in).
    #[must_use]
    pub fn forward(mut self, forward: bool) -> Self {
        self.forward = forward;
        self
    }

    /// The clock skew allowed on `exp` and `nbf` (default 60 s).
    #[must_use]
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Accepts HMAC (`HS256/384/512`) tokens verified with the JWKS's `oct` keys. Off by
    /// default: shared secrets in a JWKS are rare and an explicit choice.
    #[must_use]
    pub fn allow_hmac(mut self, allow: bool) -> Self {
        self.allow_hmac = allow;
        self
    }
}

impl fmt::Debug for JwtProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys)
            .field("claim_to_headers", &self.claim_to_headers)
            .field("extract_from", &self.extract_from)
            .field("forward", &self.forward)
            .field("clock_skew", &self.clock_skew)
            .field("allow_hmac", &self.allow_hmac)
            .finish()
    }
}

/// Where a provider's keys come from.
#[derive(Clone)]
pub enum JwksSource {
    /// A JWKS document given inline (EG `localJWKS`), parsed when the layer is built.
    Local(String),
    /// A JWKS fetched over HTTP(S) and kept fresh in the background (EG `remoteJWKS`).
    Remote(RemoteJwks),
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Public keys are not secret, but an `oct` key in a local JWKS is.
            Self::Local(_) => f.write_str("Local(..)"),
            Self::Remote(r) => f.debug_tuple("Remote").field(r).finish(),
        }
    }
}

/// A remote JWKS: its URI, the [`Backend`] that reaches its host, and how fresh to
/// keep it.
///
/// The request goes to `backend` with `uri` as its target and `Host`; the backend
/// decides how the host is reached: a
/// [`Backend::single_with`](gatekit_core::Backend::single_with) over
/// [`Transport::http1().with_tls(..)`](gatekit_core::client::Transport::with_tls) with
/// a CA of your choice for `https`, or a balanced upstream. gatekit-auth does no DNS.
#[derive(Clone)]
pub struct RemoteJwks {
    pub(super) uri: Uri,
    pub(super) backend: Backend,
    pub(super) cache_duration: Duration,
    pub(super) min_refresh_interval: Duration,
    pub(super) timeout: Duration,
    pub(super) max_size: usize,
}

impl RemoteJwks {
    /// `uri` fetched through `backend`. Defaults: refetched every 5 minutes (EG
    /// `cacheDuration`), at most one extra fetch per 10 s for tokens with an unknown
    /// `kid`, 10 s fetch timeout, 1 MiB largest document.
    pub fn new(uri: Uri, backend: Backend) -> Self {
        Self {
            uri,
            backend,
            cache_duration: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            max_size: 1 << 20,
        }
    }

    /// How long fetched keys are used before the JWKS is fetched again.
    #[must_use]
    pub fn cache_duration(mut self, d: Duration) -> Self {
        self.cache_duration = d;
        self
    }

    /// The least time between two fetches caused by tokens with an unknown `kid` (and
    /// between retries after a failed fetch).
    #[must_use]
    pub fn min_refresh_interval(mut self, d: Duration) -> Self {
        self.min_refresh_interval = d;
        self
    }

    /// The time a fetch may take, response body included.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("uri", &self.uri)
            .field("cache_duration", &self.cache_duration)
            .field("min_refresh_interval", &self.min_refresh_interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
