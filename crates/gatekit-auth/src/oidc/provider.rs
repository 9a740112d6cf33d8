//! Talking to the provider: discovery in the background, and the token endpoint
//! (authorization-code and refresh-token grants).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatekit_core::{Backend, Body};
use http::{HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use tokio::sync::watch;

use crate::jwt::{JwksFetches, JwksSource, JwtConfig, JwtLayer, JwtProvider, RemoteJwks};

/// The provider as discovered (and overridden by the configuration).
pub(super) struct Discovered {
    pub(super) authorization: Uri,
    pub(super) token: Uri,
    pub(super) end_session: Option<Uri>,
    /// Verifies ID tokens (and pass-through bearer tokens) with the provider's JWKS.
    pub(super) jwt: JwtLayer,
}

/// How the background work is going, published through
/// [`OidcLayer::status`](super::OidcLayer::status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OidcStatus {
    discovery_failures: u64,
    discovered: bool,
    keys: JwksFetches,
}

impl OidcStatus {
    /// Failed discovery attempts so far.
    pub fn discovery_failures(&self) -> u64 {
        self.discovery_failures
    }

    /// Whether discovery succeeded (requests are served from then on).
    pub fn discovered(&self) -> bool {
        self.discovered
    }

    /// The provider's JWKS fetches so far.
    pub fn keys(&self) -> JwksFetches {
        self.keys
    }
}

/// What discovery needs from the configuration.
pub(super) struct DiscoveryConfig {
    pub(super) name: String,
    pub(super) issuer: String,
    pub(super) client_id: String,
    pub(super) backend: Backend,
    pub(super) authorization: Option<Uri>,
    pub(super) token: Option<Uri>,
    pub(super) end_session: Option<Uri>,
    pub(super) clock_skew: Duration,
    pub(super) backoff: (Duration, Duration),
    pub(super) timeout: Duration,
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
}

/// Discovers the provider into `store`, retrying with backoff until it succeeds, then
/// mirrors the JWKS fetch counts into `status` until aborted.
pub(super) async fn discover(
    config: DiscoveryConfig,
    store: Arc<ArcSwapOption<Discovered>>,
    status: Arc<watch::Sender<OidcStatus>>,
) {
    let uri = format!(
        "{}/.well-known/openid-configuration",
        config.issuer.trim_end_matches('/')
    );
    let mut wait = config.backoff.0.max(Duration::from_millis(10));
    let discovered = loop {
        match discover_once(&config, &uri).await {
            Ok(d) => break d,
            Err(reason) => {
                tracing::warn!(oidc = %config.name, %uri, %reason, "OIDC discovery failed");
                status.send_modify(|s| s.discovery_failures += 1);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(config.backoff.1.max(wait));
            }
        }
    };
    let mut keys = discovered.jwt.fetches();
    tracing::debug!(oidc = %config.name, "OIDC provider discovered");
    store.store(Some(Arc::new(discovered)));
    status.send_modify(|s| s.discovered = true);
    loop {
        let now = *keys.borrow_and_update();
        status.send_modify(|s| s.keys = now);
        if keys.changed().await.is_err() {
            return;
        }
    }
}

async fn discover_once(config: &DiscoveryConfig, uri: &str) -> Result<Discovered, String> {
    let parsed: Uri = uri
        .parse()
        .map_err(|e| format!("not a discovery URL: {e}"))?;
    let remote = RemoteJwks::new(parsed, config.backend.clone()).timeout(config.timeout);
    let body = crate::jwt::fetch_document(&remote).await?;
    let doc: Document =
        serde_json::from_slice(&body).map_err(|e| format!("not a discovery document: {e}"))?;
    if doc.issuer != config.issuer {
        return Err(format!(
            "the document's issuer {:?} is not the configured {:?}",
            doc.issuer, config.issuer
        ));
    }
    let endpoint = |configured: &Option<Uri>, found: Option<String>, field: &str| {
        if let Some(uri) = configured {
            return Ok(uri.clone());
        }
        found
            .ok_or_else(|| format!("no {field}"))?
            .parse::<Uri>()
            .map_err(|e| format!("{field}: {e}"))
    };
    let authorization = endpoint(
        &config.authorization,
        doc.authorization_endpoint,
        "authorization_endpoint",
    )?;
    let token = endpoint(&config.token, doc.token_endpoint, "token_endpoint")?;
    let end_session = match &config.end_session {
        Some(uri) => Some(uri.clone()),
        None => doc.end_session_endpoint.and_then(|u| u.parse().ok()),
    };
    let jwks_uri: Uri = doc.jwks_uri.parse().map_err(|e| format!("jwks_uri: {e}"))?;
    let provider = JwtProvider::new(
        config.name.clone(),
        JwksSource::Remote(
            RemoteJwks::new(jwks_uri, config.backend.clone()).timeout(config.timeout),
        ),
    )
    .issuer(config.issuer.clone())
    .audiences([config.client_id.clone()])
    .clock_skew(config.clock_skew);
    let jwt = JwtLayer::new(JwtConfig::new([provider])).map_err(|e| e.to_string())?;
    Ok(Discovered {
        authorization,
        token,
        end_session,
        jwt,
    })
}

/// A token endpoint's answer.
#[derive(Deserialize)]
pub(super) struct Tokens {
    pub(super) access_token: String,
    #[serde(default)]
    pub(super) id_token: Option<String>,
    #[serde(default)]
    pub(super) refresh_token: Option<String>,
    #[serde(default)]
    pub(super) expires_in: Option<u64>,
}

/// Why a token request failed.
#[derive(Debug)]
pub(super) enum TokenError {
    /// The provider refused (4xx: a bad code, verifier, client or refresh token).
    Refused(String),
    /// The provider could not be asked (unreachable, 5xx, timed out, unreadable).
    Unavailable(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(r) => write!(f, "refused: {r}"),
            Self::Unavailable(r) => write!(f, "unavailable: {r}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// The client's credentials for the token endpoint.
pub(super) struct TokenClient {
    pub(super) backend: Backend,
    /// `Basic base64(client_id:client_secret)`, form-encoded parts (RFC 6749 §2.3.1).
    pub(super) authorization: HeaderValue,
    pub(super) timeout: Duration,
}

impl TokenClient {
    pub(super) fn new(
        backend: Backend,
        client_id: &str,
        client_secret: &str,
        timeout: Duration,
    ) -> Option<Self> {
        let mut creds = form_encode(client_id);
        creds.push(':');
        creds.push_str(&form_encode(client_secret));
        let mut authorization =
            HeaderValue::try_from(format!("Basic {}", STANDARD.encode(creds))).ok()?;
        authorization.set_sensitive(true);
        Some(Self {
            backend,
            authorization,
            timeout,
        })
    }

    /// A POST of `form` to `endpoint`.
    pub(super) async fn request(
        &self,
        endpoint: &Uri,
        form: &[(&str, &str)],
    ) -> Result<Tokens, TokenError> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = Request::post(endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, self.authorization.clone());
        if let Some(authority) = endpoint.authority() {
            req = req.header(header::HOST, authority.as_str());
        }
        let req = req
            .body(Body::from(body))
            .map_err(|e| TokenError::Unavailable(format!("bad request: {e}")))?;
        let exchange = async {
            let rsp = self
                .backend
                .send(req)
                .await
                .map_err(|e| TokenError::Unavailable(format!("request failed: {e}")))?;
            let status = rsp.status();
            let body = Limited::new(rsp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| TokenError::Unavailable(format!("reading the body: {e}")))?
                .to_bytes();
            if status.is_client_error() {
                // The error code only: the body is the provider's, not ours to log.
                let code = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                return Err(TokenError::Refused(format!("status {status} {code}")));
            }
            if !status.is_success() {
                return Err(TokenError::Unavailable(format!("status {status}")));
            }
            serde_json::from_slice::<Tokens>(&body)
                .map_err(|e| TokenError::Unavailable(format!("not a token response: {e}")))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| TokenError::Unavailable(format!("timed out after {:?}", self.timeout)))?
    }
}

/// `application/x-www-form-urlencoded` (and URL query) encoding of one component:
/// everything but unreserved characters percent-encoded.
pub(super) fn form_encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
