//! The login flow: what a request gets (pass, login redirect, callback, refresh,
//! logout), and the steps that talk to the provider.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatekit_core::ratelimit::ClientMatch;
use gatekit_core::{Body, BoxError, Error, ErrorKind};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use ring::rand::SystemRandom;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::cookie::{self, Attributes, CookieKey};
use super::provider::{Discovered, OidcStatus, TokenClient, TokenError, Tokens, form_encode};
use super::session::{LoginState, Session, payload};
use crate::VerifiedClaims;
use crate::credential::CredentialSource;
use crate::header::{Digest, digest_of};
use crate::jwt::TokenCheck;

pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Login states remembered as used (replays refused), at most; the oldest go first.
const USED_STATES: usize = 4096;

/// How long a callback waits for the JWKS fetch its ID token's unknown `kid` asked for.
const KEY_WAIT: Duration = Duration::from_secs(5);

/// Where the redirect URL comes from.
pub(super) enum RedirectUrl {
    /// Configured whole.
    Absolute(String),
    /// A path on the request's host.
    Path(String),
}

/// What a request gets.
pub(super) enum Decision {
    /// Through to the inner service (the request was edited).
    Pass,
    /// A response made here (a redirect).
    Respond(Response<Body>),
    /// Refused.
    Refuse(Error),
    /// A login callback: the token exchange, then a response.
    Callback(BoxFuture<Result<Response<Body>, BoxError>>),
    /// An expired session being renewed; `None`: renewal failed.
    Refresh(BoxFuture<Option<Refreshed>>),
}

/// A renewed session and the `Set-Cookie` values carrying it.
pub(super) struct Refreshed {
    pub(super) session: Session,
    pub(super) cookies: Vec<HeaderValue>,
}

/// Everything a layer's services share.
pub(super) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) client_id: String,
    /// `openid` and the configured scopes, space-separated.
    pub(super) scope: String,
    pub(super) resources: Vec<String>,
    pub(super) redirect: RedirectUrl,
    pub(super) callback_path: String,
    pub(super) logout_path: String,
    pub(super) post_logout: Option<String>,
    pub(super) forward_access_token: bool,
    pub(super) default_token_ttl: Option<u64>,
    pub(super) refresh: bool,
    pub(super) default_refresh_ttl: u64,
    pub(super) session_name: String,
    /// `<session name>-`: chunks and login states.
    pub(super) session_prefix: String,
    pub(super) state_prefix: String,
    pub(super) session_key: CookieKey,
    pub(super) state_key: CookieKey,
    pub(super) attrs: Attributes,
    pub(super) same_site: &'static str,
    pub(super) deny_redirect: Vec<ClientMatch>,
    pub(super) pass_through: bool,
    pub(super) csrf_ttl: u64,
    pub(super) token: TokenClient,
    pub(super) rng: SystemRandom,
    pub(super) used_states: parking_lot::Mutex<HashMap<Digest, u64>>,
    pub(super) discovered: Arc<ArcSwapOption<Discovered>>,
    pub(super) status: Arc<watch::Sender<OidcStatus>>,
    pub(super) task: Option<AbortHandle>,
    /// Seconds added to the clock (tests).
    #[cfg(test)]
    pub(super) clock_offset: std::sync::atomic::AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn unauthenticated() -> Error {
    Error::new(ErrorKind::Unauthenticated)
}

impl Shared {
    /// Unix seconds.
    pub(super) fn now(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        #[cfg(test)]
        let now = now + self.clock_offset.load(std::sync::atomic::Ordering::Relaxed);
        now
    }

    /// Decides what `req` gets; on [`Decision::Pass`] the request carries its identity.
    pub(super) fn decide<B>(self: &Arc<Self>, req: &mut Request<B>) -> Decision {
        let Some(disc) = self.discovered.load_full() else {
            return Decision::Refuse(Error::new(ErrorKind::AuthUnavailable));
        };
        let path = req.uri().path();
        if path == self.callback_path {
            let Some(redirect_uri) = self.redirect_uri(req) else {
                return Decision::Refuse(Error::new(ErrorKind::BadRequest));
            };
            let this = self.clone();
            let (uri, headers) = (req.uri().clone(), req.headers().clone());
            return Decision::Callback(Box::pin(async move {
                this.callback(disc, uri, headers, redirect_uri)
                    .await
                    .map_err(BoxError::from)
            }));
        }
        if path == self.logout_path {
            return Decision::Respond(self.logout(&disc, req.headers()));
        }
        if self.pass_through
            && CredentialSource::Header(header::AUTHORIZATION)
                .find(req.uri(), req.headers())
                .is_some()
        {
            return match disc.jwt.check(req) {
                Ok(()) => Decision::Pass,
                Err(e) => Decision::Refuse(e),
            };
        }
        let now = self.now();
        match self.open_session(req.headers()) {
            Some(session) if now < session.exp => {
                if self.admit(req, &session) {
                    Decision::Pass
                } else {
                    self.login(req, &disc)
                }
            }
            Some(session)
                if self.refresh && session.rt.is_some() && session.rexp.is_none_or(|r| now < r) =>
            {
                let this = self.clone();
                let stale = cookie::chunks_present(req.headers(), &self.session_name);
                Decision::Refresh(Box::pin(
                    async move { this.renew(disc, session, stale).await },
                ))
            }
            _ => self.login(req, &disc),
        }
    }

    /// After a refresh: the request passes with the renewed session, or a login.
    pub(super) fn after_refresh<B>(
        self: &Arc<Self>,
        req: &mut Request<B>,
        refreshed: Option<&Refreshed>,
    ) -> Decision {
        if let Some(r) = refreshed
            && self.admit(req, &r.session)
        {
            return Decision::Pass;
        }
        match self.discovered.load_full() {
            Some(disc) => self.login(req, &disc),
            None => Decision::Refuse(Error::new(ErrorKind::AuthUnavailable)),
        }
    }

    /// The session a request's cookies hold, if they hold a good one.
    fn open_session(&self, headers: &HeaderMap) -> Option<Session> {
        let sealed = cookie::join(headers, &self.session_name)?;
        let plain = self.session_key.open(&self.session_name, &sealed)?;
        serde_json::from_slice(&plain).ok()
    }

    /// Lets `req` through as `session`'s user; `false` when the session's ID token has
    /// no readable claims.
    fn admit<B>(&self, req: &mut Request<B>, session: &Session) -> bool {
        let Some(claims) = session.claims() else {
            return false;
        };
        self.strip_cookies(req.headers_mut());
        if self.forward_access_token {
            let Ok(mut bearer) = HeaderValue::try_from(format!("Bearer {}", session.at)) else {
                return false;
            };
            bearer.set_sensitive(true);
            req.headers_mut().insert(header::AUTHORIZATION, bearer);
        }
        VerifiedClaims::establish(req, "oidc", self.name.clone(), claims);
        true
    }

    /// Removes the session's and login states' cookies from a request going upstream.
    fn strip_cookies(&self, headers: &mut HeaderMap) {
        let ours = |k: &str| k == self.session_name || k.starts_with(&self.session_prefix);
        if !gatekit_core::cookie::request_cookies(headers).any(|(k, _)| ours(k)) {
            return;
        }
        let kept: Vec<String> = gatekit_core::cookie::request_cookies(headers)
            .filter(|(k, _)| !ours(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        headers.remove(header::COOKIE);
        if !kept.is_empty()
            && let Ok(value) = HeaderValue::try_from(kept.join("; "))
        {
            headers.insert(header::COOKIE, value);
        }
    }

    /// The redirect URL for a request (its `Host` completing a configured path).
    fn redirect_uri<B>(&self, req: &Request<B>) -> Option<String> {
        match &self.redirect {
            RedirectUrl::Absolute(url) => Some(url.clone()),
            RedirectUrl::Path(path) => {
                let host = match req.headers().get(header::HOST) {
                    Some(h) => h.to_str().ok()?,
                    None => req.uri().authority()?.as_str(),
                };
                // An authority and nothing else: no path, userinfo or odd characters
                // slip into the URL the provider sends the browser to.
                let authority: Authority = host.parse().ok()?;
                if authority.as_str().contains('@') {
                    return None;
                }
                let scheme = if self.attrs.secure { "https" } else { "http" };
                Some(format!("{scheme}://{authority}{path}"))
            }
        }
    }

    /// A redirect to the provider's login (or 401 where a redirect cannot help).
    fn login<B>(&self, req: &Request<B>, disc: &Discovered) -> Decision {
        let redirectable = matches!(*req.method(), Method::GET | Method::HEAD)
            && !self.deny_redirect.iter().any(|m| m.matches(req));
        if !redirectable {
            return Decision::Refuse(unauthenticated());
        }
        let Some(redirect_uri) = self.redirect_uri(req) else {
            return Decision::Refuse(Error::new(ErrorKind::BadRequest));
        };
        match self.login_redirect(req, disc, &redirect_uri) {
            Some(rsp) => Decision::Respond(rsp),
            None => Decision::Refuse(Error::new(ErrorKind::AuthUnavailable)),
        }
    }

    fn login_redirect<B>(
        &self,
        req: &Request<B>,
        disc: &Discovered,
        redirect_uri: &str,
    ) -> Option<Response<Body>> {
        let state = cookie::random_token(&self.rng)?;
        let nonce = cookie::random_token(&self.rng)?;
        let verifier = cookie::random_token(&self.rng)?;
        let challenge = URL_SAFE_NO_PAD.encode(digest_of(verifier.as_bytes()).as_bytes());
        let login = LoginState {
            url: original_url(req.uri()),
            state,
            nonce,
            verifier,
            exp: self.now() + self.csrf_ttl,
        };
        let name = self.state_cookie_name(&login.state);
        let plain = serde_json::to_vec(&login).ok()?;
        let sealed = self.state_key.seal(&self.rng, &name, &plain)?;
        let set = cookie::set_cookie(&self.attrs, "Lax", &name, &sealed, self.csrf_ttl)?;

        let mut location = disc.authorization.to_string();
        location.push(if disc.authorization.query().is_some() {
            '&'
        } else {
            '?'
        });
        let mut params: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", &self.scope),
            ("state", &login.state),
            ("nonce", &login.nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ];
        params.extend(self.resources.iter().map(|r| ("resource", r.as_str())));
        location.push_str(&query(&params));
        let mut rsp = redirect(&location, vec![set])?;
        rsp.extensions_mut().insert(super::LoginRedirect);
        Some(rsp)
    }

    /// `<session>-state-<16 hex digits of the state's digest>`: one cookie per login
    /// in progress, so logins in two tabs do not undo each other.
    pub(super) fn state_cookie_name(&self, state: &str) -> String {
        let d = digest_of(state.as_bytes());
        let mut name = self.state_prefix.clone();
        for b in &d.as_bytes()[..8] {
            name.push_str(&format!("{b:02x}"));
        }
        name
    }

    /// The callback: state checked, code exchanged, ID token verified, session set.
    async fn callback(
        self: Arc<Self>,
        disc: Arc<Discovered>,
        uri: Uri,
        headers: HeaderMap,
        redirect_uri: String,
    ) -> Result<Response<Body>, Error> {
        let param = |name: &str| CredentialSource::Query(name.to_owned()).find(&uri, &headers);
        if let Some(error) = param("error") {
            tracing::debug!(oidc = %self.name, error = %error, "the provider refused the login");
            return Err(unauthenticated());
        }
        let (Some(state), Some(code)) = (param("state"), param("code")) else {
            return Err(Error::new(ErrorKind::BadRequest));
        };
        let name = self.state_cookie_name(&state);
        let login: LoginState = cookie::find(&headers, &name)
            .and_then(|v| self.state_key.open(&name, v))
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(|| {
                tracing::debug!(oidc = %self.name, "login callback without its state cookie");
                unauthenticated()
            })?;
        let now = self.now();
        if !cookie::ct_eq(&login.state, &state) || login.exp <= now {
            tracing::debug!(oidc = %self.name, "login callback: state mismatch or expired");
            return Err(unauthenticated());
        }
        if !self.first_use(&login.state, login.exp, now) {
            tracing::debug!(oidc = %self.name, "login callback replayed");
            return Err(unauthenticated());
        }
        let tokens = self
            .token
            .request(
                &disc.token,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect_uri),
                    ("code_verifier", &login.verifier),
                ],
            )
            .await
            .map_err(|e| self.token_error(&e))?;
        let Some(id_token) = tokens.id_token.as_deref() else {
            tracing::warn!(oidc = %self.name, "token response without an ID token");
            return Err(unauthenticated());
        };
        let claims = self.verify_id_token(&disc, id_token).await?;
        let nonce_ok = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| cookie::ct_eq(n, &login.nonce));
        if !nonce_ok {
            tracing::warn!(oidc = %self.name, "ID token nonce does not match the login's");
            return Err(unauthenticated());
        }
        let session = self.session(&tokens, id_token.to_owned(), &claims, None, now);
        let stale = cookie::chunks_present(&headers, &self.session_name);
        let mut cookies = self
            .session_cookies(&session, &stale, now)
            .ok_or_else(|| Error::new(ErrorKind::AuthUnavailable))?;
        cookies.extend(cookie::set_cookie(&self.attrs, "Lax", &name, "", 0));
        redirect(&login.url, cookies).ok_or_else(|| Error::new(ErrorKind::AuthUnavailable))
    }

    /// Marks a login state used; `false` when it already was.
    fn first_use(&self, state: &str, exp: u64, now: u64) -> bool {
        let key = digest_of(state.as_bytes());
        let mut used = self.used_states.lock();
        if used.contains_key(&key) {
            return false;
        }
        if used.len() >= USED_STATES {
            used.retain(|_, e| *e > now);
            if used.len() >= USED_STATES
                && let Some(oldest) = used.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k)
            {
                used.remove(&oldest);
            }
        }
        used.insert(key, exp);
        true
    }

    fn token_error(&self, e: &TokenError) -> Error {
        tracing::warn!(oidc = %self.name, error = %e, "token request failed");
        match e {
            TokenError::Refused(_) => unauthenticated(),
            TokenError::Unavailable(_) => Error::new(ErrorKind::AuthUnavailable),
        }
    }

    /// An ID token's claims after its signature, `iss`, `aud`, `exp` and `nbf` checks;
    /// a token signed with a key not yet fetched waits for the fetch it asked for.
    async fn verify_id_token(
        &self,
        disc: &Discovered,
        token: &str,
    ) -> Result<serde_json::Map<String, Value>, Error> {
        let mut fetches = disc.jwt.fetches();
        fetches.borrow_and_update();
        for attempt in 0..2 {
            match disc.jwt.verify_token(token) {
                TokenCheck::Valid(claims) => return Ok(claims),
                TokenCheck::Unavailable => return Err(Error::new(ErrorKind::AuthUnavailable)),
                TokenCheck::Invalid { refreshing: true } if attempt == 0 => {
                    let _ = tokio::time::timeout(KEY_WAIT, fetches.changed()).await;
                }
                TokenCheck::Invalid { .. } => break,
            }
        }
        tracing::warn!(oidc = %self.name, "ID token refused");
        Err(unauthenticated())
    }

    /// A session from a token response.
    fn session(
        &self,
        tokens: &Tokens,
        id_token: String,
        claims: &serde_json::Map<String, Value>,
        old_refresh: Option<&str>,
        now: u64,
    ) -> Session {
        let exp = tokens
            .expires_in
            .map(|s| now.saturating_add(s))
            .or(self.default_token_ttl.map(|s| now.saturating_add(s)))
            .or_else(|| claims.get("exp").and_then(Value::as_u64))
            .unwrap_or(now);
        let rt = if self.refresh {
            tokens
                .refresh_token
                .clone()
                .or_else(|| old_refresh.map(str::to_owned))
        } else {
            None
        };
        let rexp = rt.as_deref().map(|rt| {
            payload(rt)
                .and_then(|c| c.get("exp").and_then(Value::as_u64))
                .unwrap_or(now.saturating_add(self.default_refresh_ttl))
        });
        Session {
            id: id_token,
            at: tokens.access_token.clone(),
            rt,
            exp,
            rexp,
        }
    }

    /// The `Set-Cookie` values carrying `session`, deleting chunks (`stale`, from the
    /// request) the new value does not use. `None` when it cannot be sealed or is too
    /// large for cookies.
    fn session_cookies(
        &self,
        session: &Session,
        stale: &[usize],
        now: u64,
    ) -> Option<Vec<HeaderValue>> {
        let plain = serde_json::to_vec(session).ok()?;
        let sealed = self
            .session_key
            .seal(&self.rng, &self.session_name, &plain)?;
        let Some(parts) = cookie::split(&self.session_name, &sealed) else {
            tracing::warn!(oidc = %self.name, size = sealed.len(), "session too large for cookies");
            return None;
        };
        let max_age = session.cookie_until().saturating_sub(now).max(1);
        let mut out = Vec::with_capacity(parts.len() + stale.len());
        for (name, value) in &parts {
            out.push(cookie::set_cookie(
                &self.attrs,
                self.same_site,
                name,
                value,
                max_age,
            )?);
        }
        for i in stale.iter().filter(|i| **i >= parts.len()) {
            let name = cookie::chunk_name(&self.session_name, *i);
            out.extend(cookie::set_cookie(
                &self.attrs,
                self.same_site,
                &name,
                "",
                0,
            ));
        }
        Some(out)
    }

    /// Renews an expired session with its refresh token.
    async fn renew(
        self: Arc<Self>,
        disc: Arc<Discovered>,
        session: Session,
        stale: Vec<usize>,
    ) -> Option<Refreshed> {
        let rt = session.rt.as_deref()?;
        let tokens = match self
            .token
            .request(
                &disc.token,
                &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            )
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(oidc = %self.name, error = %e, "refresh failed: a new login");
                return None;
            }
        };
        let (id_token, claims) = match tokens.id_token.as_deref() {
            Some(id) => (id.to_owned(), self.verify_id_token(&disc, id).await.ok()?),
            None => (session.id.clone(), session.claims()?),
        };
        let now = self.now();
        let renewed = self.session(&tokens, id_token, &claims, Some(rt), now);
        let cookies = self.session_cookies(&renewed, &stale, now)?;
        Some(Refreshed {
            session: renewed,
            cookies,
        })
    }

    /// The logout: cookies deleted, a redirect to the provider's end-session endpoint
    /// (or `/`).
    fn logout(&self, disc: &Discovered, headers: &HeaderMap) -> Response<Body> {
        let hint = self.open_session(headers).map(|s| s.id);
        let location = match &disc.end_session {
            Some(end) => {
                let mut params: Vec<(&str, &str)> = Vec::new();
                if let Some(hint) = &hint {
                    params.push(("id_token_hint", hint));
                }
                if let Some(post) = &self.post_logout {
                    params.push(("post_logout_redirect_uri", post));
                }
                params.push(("client_id", &self.client_id));
                let sep = if end.query().is_some() { '&' } else { '?' };
                format!("{end}{sep}{}", query(&params))
            }
            None => "/".to_owned(),
        };
        let mut cookies: Vec<HeaderValue> =
            cookie::set_cookie(&self.attrs, self.same_site, &self.session_name, "", 0)
                .into_iter()
                .collect();
        for i in cookie::chunks_present(headers, &self.session_name) {
            let name = cookie::chunk_name(&self.session_name, i);
            cookies.extend(cookie::set_cookie(
                &self.attrs,
                self.same_site,
                &name,
                "",
                0,
            ));
        }
        redirect(&location, cookies).unwrap_or_else(|| {
            let mut rsp = Response::new(Body::empty());
            *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            rsp
        })
    }
}

/// `k=v&k=v`, form-encoded.
fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A 302 to `location` setting `cookies`, not to be cached.
fn redirect(location: &str, cookies: Vec<HeaderValue>) -> Option<Response<Body>> {
    let mut rsp = Response::new(Body::empty());
    *rsp.status_mut() = StatusCode::FOUND;
    let headers = rsp.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::try_from(location).ok()?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        headers.append(header::SET_COOKIE, c);
    }
    Some(rsp)
}

/// Where to send the browser back after a login: the request's path and query only,
/// never a URL of another host (`//host` and `/\host` become `/`).
fn original_url(uri: &Uri) -> String {
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let bytes = pq.as_bytes();
    let escapes = bytes.first() != Some(&b'/') || matches!(bytes.get(1), Some(b'/' | b'\\'));
    if escapes {
        "/".to_owned()
    } else {
        pq.to_owned()
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn original_urls_stay_on_this_host() {
        let u = |s: &str| original_url(&s.parse().unwrap());
        assert_eq!(u("/a/b?c=d"), "/a/b?c=d");
        assert_eq!(u("http://evil.example/x?y"), "/x?y");
        assert_eq!(u("//evil.example/x"), "/");
        assert_eq!(u("/\\evil.example"), "/");
        assert_eq!(u("*"), "/");
    }
}
