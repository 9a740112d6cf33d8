//! An OpenID Connect provider on a loopback port, for tests of OIDC logins, and a
//! [`Browser`] (an HTTP client with a cookie jar) to drive the login flow.
//!
//! The provider speaks plain HTTP: discovery (`/.well-known/openid-configuration`),
//! `/authorize` (approves at once: records the request and redirects to its
//! `redirect_uri` with a code and the state), `/token` (client_secret_basic, one-time
//! codes, PKCE S256, `redirect_uri` checked; authorization-code and refresh-token
//! grants; ES256 ID tokens signed with ring), `/jwks` and `/end_session`. Knobs let a
//! test rotate the signing key, revoke refresh tokens, spoil the next ID token, break
//! discovery and count requests per endpoint.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self as sig, KeyPair};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};

/// What to spoil in the next ID token the provider issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spoil {
    /// A nonce other than the one asked for.
    Nonce,
    /// An audience other than the client.
    Audience,
    /// An issuer other than the provider.
    Issuer,
    /// A signature that does not verify.
    Signature,
}

struct Grant {
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
}

struct State {
    issuer: String,
    client_id: String,
    client_secret: String,
    keys: Vec<(String, sig::EcdsaKeyPair)>,
    codes: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, ()>,
    expires_in: Option<u64>,
    id_token_ttl: u64,
    spoil: Option<Spoil>,
    discovery_failing: bool,
    end_session: bool,
    subject: String,
    extra_claims: Map<String, Value>,
    counts: HashMap<String, usize>,
    last_authorize: Option<HashMap<String, String>>,
    last_end_session: Option<HashMap<String, String>>,
    last_token_error: Option<String>,
    issued: Vec<String>,
    serial: u64,
}

/// The test provider; stops when dropped.
pub struct Provider {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn random(rng: &SystemRandom) -> String {
    let mut b = [0u8; 24];
    rng.fill(&mut b).unwrap();
    URL_SAFE_NO_PAD.encode(b)
}

fn new_key(rng: &SystemRandom) -> sig::EcdsaKeyPair {
    let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, rng).unwrap();
    sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).unwrap()
}

/// Percent-decodes a form or query component (`+` is a space).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `k=v&...` pairs of a query or form body, decoded (repeated keys: the last).
pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Every value of `key` in a query, decoded.
pub fn query_values(q: &str, key: &str) -> Vec<String> {
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| decode(k) == key)
        .map(|(_, v)| decode(v))
        .collect()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn token_error(state: &mut State, error: &str, why: &str) -> Response<Full<Bytes>> {
    state.last_token_error = Some(why.to_owned());
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": error }))
}

impl Provider {
    /// A provider for client `client_id` with secret `client_secret` on a free
    /// loopback port. Tokens last an hour (`expires_in` 3600) unless told otherwise.
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rng = SystemRandom::new();
        let state = Arc::new(Mutex::new(State {
            issuer: format!("http://{addr}"),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            keys: vec![("k1".to_owned(), new_key(&rng))],
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            expires_in: Some(3600),
            id_token_ttl: 3600,
            spoil: None,
            discovery_failing: false,
            end_session: true,
            subject: "alice".to_owned(),
            extra_claims: Map::new(),
            counts: HashMap::new(),
            last_authorize: None,
            last_end_session: None,
            last_token_error: None,
            issued: Vec::new(),
            serial: 1,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((io, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            let (head, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let rsp = handle(&state, &head.method, &head.uri, &head.headers, &body);
                            Ok::<_, Infallible>(rsp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// The provider's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer: `http://<addr>`.
    pub fn issuer(&self) -> String {
        self.state.lock().unwrap().issuer.clone()
    }

    /// Signs from now on with a new key (new `kid`); the JWKS publishes only it.
    pub fn rotate_key(&self) {
        let mut s = self.state.lock().unwrap();
        s.serial += 1;
        let kid = format!("k{}", s.serial);
        let key = new_key(&SystemRandom::new());
        s.keys = vec![(kid, key)];
    }

    /// Forgets every refresh token issued so far.
    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh_tokens.clear();
    }

    /// Spoils the next ID token issued.
    pub fn spoil_next_id_token(&self, spoil: Spoil) {
        self.state.lock().unwrap().spoil = Some(spoil);
    }

    /// The `expires_in` of token responses (`None`: left out).
    pub fn set_expires_in(&self, secs: Option<u64>) {
        self.state.lock().unwrap().expires_in = secs;
    }

    /// Discovery answers 503 while `failing`.
    pub fn set_discovery_failing(&self, failing: bool) {
        self.state.lock().unwrap().discovery_failing = failing;
    }

    /// Whether discovery names an `end_session_endpoint` (it does by default).
    pub fn set_end_session(&self, on: bool) {
        self.state.lock().unwrap().end_session = on;
    }

    /// Claims added to every ID token from now on.
    pub fn set_extra_claims(&self, claims: Value) {
        if let Value::Object(map) = claims {
            self.state.lock().unwrap().extra_claims = map;
        }
    }

    /// The `sub` of the ID tokens (`alice` by default).
    pub fn set_subject(&self, sub: &str) {
        self.state.lock().unwrap().subject = sub.to_owned();
    }

    /// Requests so far to `endpoint`: `discovery`, `authorize`, `token`, `jwks`,
    /// `end_session`, or `token:<grant_type>`.
    pub fn count(&self, endpoint: &str) -> usize {
        *self
            .state
            .lock()
            .unwrap()
            .counts
            .get(endpoint)
            .unwrap_or(&0)
    }

    /// The query parameters of the last authorization request.
    pub fn last_authorize(&self) -> Option<HashMap<String, String>> {
        self.state.lock().unwrap().last_authorize.clone()
    }

    /// The query parameters of the last end-session request.
    pub fn last_end_session(&self) -> Option<HashMap<String, String>> {
        self.state.lock().unwrap().last_end_session.clone()
    }

    /// Why the token endpoint last refused a request.
    pub fn last_token_error(&self) -> Option<String> {
        self.state.lock().unwrap().last_token_error.clone()
    }

    /// Every code, access, ID and refresh token issued so far, in order (to look for
    /// them where they must not be).
    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    /// A valid ID token for the client with `nonce` (for bearer pass-through tests).
    pub fn id_token(&self, nonce: Option<&str>) -> String {
        let mut s = self.state.lock().unwrap();
        issue_id_token(&mut s, nonce)
    }
}

fn issue_id_token(s: &mut State, nonce: Option<&str>) -> String {
    let spoil = s.spoil.take();
    let t = now();
    let mut claims = Map::new();
    claims.insert(
        "iss".into(),
        json!(if spoil == Some(Spoil::Issuer) {
            "http://other.example".to_owned()
        } else {
            s.issuer.clone()
        }),
    );
    claims.insert("sub".into(), json!(s.subject));
    claims.insert(
        "aud".into(),
        json!(if spoil == Some(Spoil::Audience) {
            "someone-else".to_owned()
        } else {
            s.client_id.clone()
        }),
    );
    claims.insert("iat".into(), json!(t));
    claims.insert("exp".into(), json!(t + s.id_token_ttl));
    if let Some(nonce) = nonce {
        let nonce = if spoil == Some(Spoil::Nonce) {
            "wrong-nonce".to_owned()
        } else {
            nonce.to_owned()
        };
        claims.insert("nonce".into(), json!(nonce));
    }
    for (k, v) in &s.extra_claims {
        claims.insert(k.clone(), v.clone());
    }
    let (kid, key) = &s.keys[0];
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
    );
    let mut signature = key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    if spoil == Some(Spoil::Signature) {
        signature[5] ^= 0x55;
    }
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn handle(
    state: &Mutex<State>,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<Full<Bytes>> {
    let mut s = state.lock().unwrap();
    let query = parse_query(uri.query().unwrap_or(""));
    let endpoint = match uri.path() {
        "/.well-known/openid-configuration" => "discovery",
        "/authorize" => "authorize",
        "/token" => "token",
        "/jwks" => "jwks",
        "/end_session" => "end_session",
        _ => "other",
    };
    *s.counts.entry(endpoint.to_owned()).or_default() += 1;
    match endpoint {
        "discovery" => {
            if s.discovery_failing {
                return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({}));
            }
            let iss = s.issuer.clone();
            let mut doc = json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}/authorize"),
                "token_endpoint": format!("{iss}/token"),
                "jwks_uri": format!("{iss}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
            });
            if s.end_session {
                doc["end_session_endpoint"] = json!(format!("{iss}/end_session"));
            }
            json_response(StatusCode::OK, &doc)
        }
        "jwks" => {
            let keys: Vec<Value> = s
                .keys
                .iter()
                .map(|(kid, key)| {
                    let p = key.public_key().as_ref();
                    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                           "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])})
                })
                .collect();
            json_response(StatusCode::OK, &json!({ "keys": keys }))
        }
        "authorize" => {
            s.last_authorize = Some(query.clone());
            let ok = query.get("client_id") == Some(&s.client_id)
                && query.get("response_type").map(String::as_str) == Some("code")
                && query.get("code_challenge_method").map(String::as_str) == Some("S256");
            let (Some(redirect_uri), Some(challenge), true) =
                (query.get("redirect_uri"), query.get("code_challenge"), ok)
            else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "invalid_request"}),
                );
            };
            let code = random(&SystemRandom::new());
            s.issued.push(code.clone());
            s.codes.insert(
                code.clone(),
                Grant {
                    nonce: query.get("nonce").cloned(),
                    challenge: challenge.clone(),
                    redirect_uri: redirect_uri.clone(),
                },
            );
            let sep = if redirect_uri.contains('?') { '&' } else { '?' };
            let mut location = format!("{redirect_uri}{sep}code={}", encode(&code));
            if let Some(state) = query.get("state") {
                location.push_str(&format!("&state={}", encode(state)));
            }
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, location)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        "token" if method == Method::POST => {
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!(
                    "{}:{}",
                    encode(&s.client_id),
                    encode(&s.client_secret)
                ))
            );
            if headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                != Some(&expected)
            {
                let rsp = token_error(&mut s, "invalid_client", "client authentication");
                return Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .body(rsp.into_body())
                    .unwrap();
            }
            let form = parse_query(std::str::from_utf8(body).unwrap_or(""));
            let grant_type = form.get("grant_type").cloned().unwrap_or_default();
            *s.counts.entry(format!("token:{grant_type}")).or_default() += 1;
            let nonce = match grant_type.as_str() {
                "authorization_code" => {
                    let Some(grant) = form.get("code").and_then(|c| s.codes.remove(c)) else {
                        return token_error(&mut s, "invalid_grant", "unknown or used code");
                    };
                    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                        return token_error(&mut s, "invalid_grant", "redirect_uri");
                    }
                    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
                        &ring::digest::SHA256,
                        verifier.as_bytes(),
                    ));
                    if challenge != grant.challenge {
                        return token_error(&mut s, "invalid_grant", "PKCE verifier");
                    }
                    grant.nonce
                }
                "refresh_token" => {
                    let rt = form.get("refresh_token").cloned().unwrap_or_default();
                    if s.refresh_tokens.remove(&rt).is_none() {
                        return token_error(&mut s, "invalid_grant", "unknown refresh token");
                    }
                    None
                }
                _ => return token_error(&mut s, "unsupported_grant_type", "grant type"),
            };
            let rng = SystemRandom::new();
            let id_token = issue_id_token(&mut s, nonce.as_deref());
            let refresh_token = random(&rng);
            s.refresh_tokens.insert(refresh_token.clone(), ());
            let access_token = format!("at-{}", random(&rng));
            s.issued.extend([
                access_token.clone(),
                id_token.clone(),
                refresh_token.clone(),
            ]);
            let mut body = json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "id_token": id_token,
                "refresh_token": refresh_token,
            });
            if let Some(e) = s.expires_in {
                body["expires_in"] = json!(e);
            }
            json_response(StatusCode::OK, &body)
        }
        "end_session" => {
            s.last_end_session = Some(query);
            Response::new(Full::new(Bytes::from_static(b"logged out")))
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({})),
    }
}

// === Browser ===

/// A response as the browser saw it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION)?.to_str().ok()
    }

    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

/// An HTTP/1.1 client with a cookie jar (one host's worth: names only, no domains or
/// paths), one connection per request.
#[derive(Debug, Default, Clone)]
pub struct Browser {
    /// The cookies, by name.
    pub jar: HashMap<String, String>,
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    /// A GET of `url` (`http://host:port/path`), cookies sent and stored.
    pub async fn get(&mut self, url: &str) -> Page {
        self.request(Method::GET, url, &[]).await
    }

    /// A request with `headers`; cookies sent and stored.
    pub async fn request(&mut self, method: Method, url: &str, headers: &[(&str, &str)]) -> Page {
        let uri: http::Uri = url.parse().unwrap();
        let authority = uri.authority().unwrap().as_str().to_owned();
        let addr: SocketAddr = authority.parse().unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
            TcpStream::connect(addr).await.unwrap(),
        ))
        .await
        .unwrap();
        tokio::spawn(conn);
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, authority);
        if !self.jar.is_empty() {
            let cookie = self
                .jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header(header::COOKIE, cookie);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let rsp = sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let (head, body) = rsp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let page = Page {
            status: head.status,
            headers: head.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        for c in page.set_cookies() {
            self.store(&c);
        }
        page
    }

    /// Stores one `Set-Cookie` value (`Max-Age=0` deletes).
    pub fn store(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
            return;
        };
        let deleted = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
        if deleted {
            self.jar.remove(name);
        } else {
            self.jar.insert(name.to_owned(), value.to_owned());
        }
    }

    /// Follows redirects from `url` (at most 10): every page on the way, the last one
    /// last. Relative `Location`s resolve against the previous URL's host.
    pub async fn follow(&mut self, url: &str) -> Vec<Page> {
        let mut pages = Vec::new();
        let mut url = url.to_owned();
        for _ in 0..10 {
            let page = self.get(&url).await;
            let next = page.location().map(str::to_owned);
            let redirect = page.status.is_redirection();
            pages.push(page);
            match next {
                Some(loc) if redirect => {
                    url = if loc.starts_with('/') {
                        let uri: http::Uri = url.parse().unwrap();
                        format!("http://{}{loc}", uri.authority().unwrap())
                    } else {
                        loc
                    };
                }
                _ => break,
            }
        }
        pages
    }
}
