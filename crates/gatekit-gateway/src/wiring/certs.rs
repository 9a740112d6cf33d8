//! The certificates and TLS settings an HTTPS port serves, assembled from its
//! listeners at each reload.
//!
//! # Last good certificates
//!
//! A Secret whose pair cannot be served (malformed PEM, a key that is not the
//! certificate's, expired, not yet valid: the translation names the problem, see
//! [`Certificate::problem`]) is reported (an error naming the listener and the Secret,
//! and the listener's `ResolvedRefs` condition) and the listener goes on serving the
//! pair it last served from that Secret, kept here by (listener, Secret). A listener
//! never served before has no such pair and is left without a certificate until the
//! Secret is fixed. The kept pairs of (listener, Secret)s no longer in the
//! configuration are forgotten. A kept pair that expires meanwhile is still served
//! (nothing better exists) and its expiry warning says so.
//!
//! # Expiry
//!
//! Every served certificate's `notAfter` is the gauge
//! `gatekit_certificate_not_after_seconds{secret, gateway, listener}` and a field of
//! `/config`'s `certificates` (with the days left). From [`EXPIRY_WARNING_DAYS`] days
//! before it, each reload logs a warning per certificate and `/config` marks it.

use std::collections::HashMap;
use std::sync::Arc;

use gatekit_core::ConfigError;
use gatekit_core::tls::{CertSet, CertifiedKey, ListenerTls, SniMap, load_certified_key};
use gatekit_k8s::status::ResourceRef;
use gatekit_k8s::translate::{ListenerSpec, PortListeners};
use serde::Serialize;

/// Days before `notAfter` from which a certificate is warned about.
pub(crate) const EXPIRY_WARNING_DAYS: i64 = 30;

const DAY: i64 = 86_400;

/// Who a kept pair belongs to: the listener (its Gateway or ListenerSet, and name) and
/// the Secret.
type Key = (String, String);

/// A pair that was served.
#[derive(Clone)]
struct Good {
    key: Arc<CertifiedKey>,
    not_after: i64,
}

/// One served certificate, for the metrics and `/config`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServedCert {
    /// The Secret, `namespace/name`.
    pub(crate) secret: String,
    /// The listener's Gateway, `namespace/name`.
    pub(crate) gateway: String,
    /// The listener's name.
    pub(crate) listener: String,
    /// Its `notAfter`, seconds since the Unix epoch.
    pub(crate) not_after: i64,
    /// Served from the last good pair: the Secret's current one cannot be served.
    pub(crate) last_good: bool,
}

impl ServedCert {
    /// Whole days left at `now` (negative once expired).
    pub(crate) fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(DAY)
    }

    /// Whether it expires within [`EXPIRY_WARNING_DAYS`] of `now`.
    pub(crate) fn expiring(&self, now: i64) -> bool {
        self.not_after - now < EXPIRY_WARNING_DAYS * DAY
    }
}

/// What one HTTPS port serves: certificates and TLS settings by SNI.
pub(super) struct PortTls {
    pub(super) certs: CertSet,
    pub(super) settings: SniMap<ListenerTls>,
}

/// The last good pairs, kept across reloads.
#[derive(Default)]
pub(super) struct Certs {
    last_good: HashMap<Key, Good>,
    /// The keys looked at during the current reload (the others are forgotten).
    seen: Vec<Key>,
    /// What the current reload serves.
    served: Vec<ServedCert>,
}

impl Certs {
    /// Starts a reload.
    pub(super) fn begin(&mut self) {
        self.seen.clear();
        self.served.clear();
    }

    /// Ends a reload: forgets the pairs of (listener, Secret)s not looked at, logs the
    /// expiry warnings, and returns what is served.
    pub(super) fn finish(&mut self, now: i64) -> Arc<[ServedCert]> {
        let seen = std::mem::take(&mut self.seen);
        self.last_good.retain(|k, _| seen.contains(k));
        self.seen = seen;
        for c in &self.served {
            if c.expiring(now) {
                tracing::warn!(
                    secret = %c.secret,
                    gateway = %c.gateway,
                    listener = %c.listener,
                    not_after = c.not_after,
                    days_left = c.days_left(now),
                    last_good = c.last_good,
                    "certificate expires within {EXPIRY_WARNING_DAYS} days"
                );
            }
        }
        self.served.clone().into()
    }

    /// The certificates and TLS settings of HTTPS port `port`: each listener's first
    /// servable certificate (or last good one) under its hostname; the listener without
    /// a hostname (else the first listener) is the default, for clients that send no or
    /// an unknown SNI name. Problems go to `errors`.
    pub(super) fn port(&mut self, port: &PortListeners, errors: &mut Vec<ConfigError>) -> PortTls {
        let mut certs = CertSet::new();
        let mut settings = SniMap::new();
        let mut default: Option<(Arc<CertifiedKey>, ListenerTls)> = None;
        let mut first: Option<(Arc<CertifiedKey>, ListenerTls)> = None;
        for listener in port.listeners() {
            let tls = listener
                .tls_settings()
                .map(|s| (**s).clone())
                .unwrap_or_default();
            let Some(key) = self.listener_key(listener, errors) else {
                continue;
            };
            first.get_or_insert_with(|| (key.clone(), tls.clone()));
            match listener.hostname() {
                Some(hostname) => {
                    if let Err(error) = certs
                        .insert(hostname, key)
                        .and_then(|()| settings.insert(hostname, tls))
                    {
                        errors.push(ConfigError::new(
                            format!("listeners[{}].hostname", listener.name()),
                            error.to_string(),
                        ));
                    }
                }
                None => {
                    default.get_or_insert((key, tls));
                }
            }
        }
        if let Some((key, tls)) = default.or(first) {
            certs.set_default(key);
            settings.set_default(tls);
        }
        PortTls { certs, settings }
    }

    /// The pair `listener` serves: its first servable certificate, else the last good
    /// pair of one of its Secrets.
    fn listener_key(
        &mut self,
        listener: &ListenerSpec,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<CertifiedKey>> {
        let owner = listener.listener_set().unwrap_or(listener.gateway());
        let id = format!("{owner}/{}", listener.name());
        let field = format!("listeners[{}].tls.certificateRefs", listener.name());
        let mut fallback: Option<(Good, &ResourceRef)> = None;
        for cert in listener.certificates() {
            let secret = cert.secret().to_string();
            let key: Key = (id.clone(), secret.clone());
            if !self.seen.contains(&key) {
                self.seen.push(key.clone());
            }
            let loaded = match cert.problem() {
                Some(problem) => Err(problem.to_owned()),
                None => load_certified_key(cert.cert_pem(), cert.key_pem(), &secret)
                    .map_err(|e| e.to_string())
                    .and_then(|k| {
                        let not_after = k
                            .cert
                            .first()
                            .and_then(gatekit_core::tls::certificate_not_after)
                            .ok_or_else(|| format!("{secret}: the certificate cannot be parsed"))?;
                        Ok(Good { key: k, not_after })
                    }),
            };
            match loaded {
                Ok(good) => {
                    self.last_good.insert(key, good.clone());
                    self.record(listener, cert.secret(), good.not_after, false);
                    return Some(good.key);
                }
                Err(problem) => {
                    let kept = self.last_good.get(&key).cloned();
                    let what = if kept.is_some() {
                        "the last good certificate of this Secret keeps serving"
                    } else {
                        "no certificate of this Secret was served before"
                    };
                    tracing::error!(listener = %id, %secret, %problem, "{what}");
                    errors.push(ConfigError::new(
                        field.clone(),
                        format!("{secret}: {problem} ({what})"),
                    ));
                    if let Some(good) = kept {
                        fallback.get_or_insert((good, cert.secret()));
                    }
                }
            }
        }
        let (good, secret) = fallback?;
        self.record(listener, secret, good.not_after, true);
        Some(good.key)
    }

    fn record(
        &mut self,
        listener: &ListenerSpec,
        secret: &ResourceRef,
        not_after: i64,
        last_good: bool,
    ) {
        let name = |r: &ResourceRef| format!("{}/{}", r.namespace().unwrap_or_default(), r.name());
        self.served.push(ServedCert {
            secret: name(secret),
            gateway: name(listener.gateway()),
            listener: listener.name().to_owned(),
            not_after,
            last_good,
        });
    }
}

/// `/config`'s `certificates`: each served certificate with its days left at `now` and
/// whether it is within the warning window.
pub(crate) fn dump(served: &[ServedCert], now: i64) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Json<'a> {
        #[serde(flatten)]
        cert: &'a ServedCert,
        days_left: i64,
        warning: Option<String>,
    }
    let list: Vec<Json<'_>> = served
        .iter()
        .map(|c| Json {
            cert: c,
            days_left: c.days_left(now),
            warning: c.expiring(now).then(|| {
                format!(
                    "expires in {} days (notAfter {}); renew the Secret's certificate",
                    c.days_left(now),
                    c.not_after
                )
            }),
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned())
}
