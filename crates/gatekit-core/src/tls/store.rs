//! SNI certificate selection over an atomically replaceable set of certificates.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;

// === impl SniMap ===

/// Values keyed by TLS server name: exact names, one-label wildcards (`*.example.com`)
/// and an optional default, looked up as the [module docs](super) describe. Both
/// certificates ([`CertSet`]) and per-listener TLS settings
/// ([`ServerTls`](super::ServerTls)) are chosen this way.
#[derive(Clone)]
pub struct SniMap<T> {
    exact: HashMap<Box<str>, T>,
    /// Keyed by the suffix after `*.`, e.g. `example.com` for `*.example.com`.
    wildcard: HashMap<Box<str>, T>,
    default: Option<T>,
}

impl<T> Default for SniMap<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        }
    }
}

impl<T> SniMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `hostname` to `value`: an exact DNS name or `*.` followed by one, matching
    /// exactly one leftmost label. Names are case-insensitive. A later insert for the
    /// same name replaces the earlier one.
    ///
    /// # Errors
    ///
    /// [`TlsError::InvalidHostname`] when `hostname` is empty, contains a `*` anywhere but
    /// as the whole first label, or has empty labels.
    pub fn insert(&mut self, hostname: &str, value: T) -> Result<(), TlsError> {
        let invalid = |reason| TlsError::InvalidHostname {
            name: hostname.to_owned(),
            reason,
        };
        let name = hostname.to_ascii_lowercase();
        let (map, name) = match name.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, name.as_str()),
        };
        if name.is_empty() {
            return Err(invalid("empty name"));
        }
        if name.contains('*') {
            return Err(invalid(
                "a wildcard must be the whole first label, as in *.example.com",
            ));
        }
        if name.split('.').any(str::is_empty) {
            return Err(invalid("empty label"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(invalid("only letters, digits, '-' and '.' are allowed"));
        }
        map.insert(name.into(), value);
        Ok(())
    }

    /// The value for names nothing else matches, and for clients that send no SNI.
    pub fn set_default(&mut self, value: T) {
        self.default = Some(value);
    }

    /// How many names (exact and wildcard) the map holds, not counting the default.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether the map has neither names nor a default.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.default.is_none()
    }

    /// The value for SNI `server_name`: exact name, then wildcard, then the default.
    pub fn get(&self, server_name: Option<&str>) -> Option<&T> {
        let Some(name) = server_name else {
            return self.default.as_ref();
        };
        // rustls already lowercases SNI; keep the lookup correct for other callers without
        // allocating in the common case.
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(value) = self.exact.get(name) {
            return Some(value);
        }
        if let Some((first, suffix)) = name.split_once('.')
            && !first.is_empty()
            && let Some(value) = self.wildcard.get(suffix)
        {
            return Some(value);
        }
        self.default.as_ref()
    }

    /// Every value with its name (`*.suffix` for wildcards, `None` for the default).
    pub fn iter(&self) -> impl Iterator<Item = (Option<String>, &T)> {
        let exact = self.exact.iter().map(|(n, v)| (Some(n.to_string()), v));
        let wildcard = self
            .wildcard
            .iter()
            .map(|(n, v)| (Some(format!("*.{n}")), v));
        exact
            .chain(wildcard)
            .chain(self.default.iter().map(|v| (None, v)))
    }

    /// The same names with each value mapped by `f`.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> SniMap<U> {
        let mut map = |m: &HashMap<Box<str>, T>| -> HashMap<Box<str>, U> {
            m.iter().map(|(k, v)| (k.clone(), f(v))).collect()
        };
        let exact = map(&self.exact);
        let wildcard = map(&self.wildcard);
        SniMap {
            exact,
            wildcard,
            default: self.default.as_ref().map(f),
        }
    }

    /// The same names with each value mapped by `f`, which may fail.
    ///
    /// # Errors
    ///
    /// The first error of `f`.
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<SniMap<U>, E> {
        let mut map = |m: &HashMap<Box<str>, T>| -> Result<HashMap<Box<str>, U>, E> {
            m.iter().map(|(k, v)| Ok((k.clone(), f(v)?))).collect()
        };
        let exact = map(&self.exact)?;
        let wildcard = map(&self.wildcard)?;
        let default = match &self.default {
            Some(v) => Some(f(v)?),
            None => None,
        };
        Ok(SniMap {
            exact,
            wildcard,
            default,
        })
    }
}

impl<T> fmt::Debug for SniMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self.iter().filter_map(|(n, _)| n).collect();
        names.sort();
        f.debug_struct("SniMap")
            .field("names", &names)
            .field("default", &self.default.is_some())
            .finish()
    }
}

// === impl CertSet ===

/// An immutable set of certificates keyed by hostname: exact names, one-label wildcards
/// (`*.example.com`) and an optional default. Built off the handshake path, then handed
/// to [`CertStore::new`] or [`CertStore::replace`].
#[derive(Clone, Default)]
pub struct CertSet {
    names: SniMap<Arc<CertifiedKey>>,
}

impl CertSet {
    /// An empty set: every handshake fails until certificates are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `key` for `hostname`: an exact DNS name or `*.` followed by one, matching
    /// exactly one leftmost label. Names are case-insensitive. A later insert for the same
    /// name replaces the earlier one.
    ///
    /// # Errors
    ///
    /// [`TlsError::InvalidHostname`] when `hostname` is empty, contains a `*` anywhere but
    /// as the whole first label, or has empty labels.
    pub fn insert(&mut self, hostname: &str, key: Arc<CertifiedKey>) -> Result<(), TlsError> {
        self.names.insert(hostname, key)
    }

    /// Serves `key` when no name matches, and to clients that send no SNI.
    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.names.set_default(key);
    }

    /// Builder form of [`set_default`](Self::set_default).
    #[must_use]
    pub fn with_default(mut self, key: Arc<CertifiedKey>) -> Self {
        self.set_default(key);
        self
    }

    /// How many hostnames (exact and wildcard) the set serves, not counting the default.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the set has neither hostnames nor a default.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The certificate for a handshake with SNI `server_name`: exact name, then wildcard,
    /// then the default.
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.names.get(server_name).cloned()
    }
}

impl fmt::Debug for CertSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self.names.iter().filter_map(|(n, _)| n).collect();
        names.sort();
        f.debug_struct("CertSet")
            .field("names", &names)
            .field("default", &self.names.get(None).is_some())
            .finish()
    }
}

// === impl CertStore ===

/// A rustls certificate resolver choosing by SNI from a [`CertSet`] that can be replaced
/// at any time without a restart (see the [module docs](super)).
///
/// Share it as `Arc<CertStore>`: one clone goes into [`server_config`](super::server_config),
/// the other stays with whoever reloads certificates.
pub struct CertStore {
    current: ArcSwap<CertSet>,
}

impl CertStore {
    /// A store serving `set`.
    pub fn new(set: CertSet) -> Self {
        Self {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// Atomically replaces the served set. Handshakes from now on see `set`; established
    /// connections are unaffected.
    pub fn replace(&self, set: CertSet) {
        self.current.store(Arc::new(set));
    }

    /// The set being served.
    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    /// The certificate a handshake with SNI `server_name` would get now.
    pub fn resolve_name(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.current.load().resolve(server_name)
    }
}

impl Default for CertStore {
    fn default() -> Self {
        Self::new(CertSet::new())
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("current", &*self.current.load())
            .finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = self.resolve_name(client_hello.server_name());
        if key.is_none() {
            tracing::debug!(sni = ?client_hello.server_name(), "no certificate for SNI");
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        crate::tls::load_certified_key(
            cert.cert.pem().as_bytes(),
            cert.signing_key.serialize_pem().as_bytes(),
            name,
        )
        .unwrap()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let (a, w, d) = (key("a.example.com"), key("*.example.com"), key("default"));
        let mut set = CertSet::new();
        set.insert("A.example.com", a.clone()).unwrap();
        set.insert("*.example.com", w.clone()).unwrap();
        let store = CertStore::new(set.clone());
        let got = |n| store.resolve_name(n);
        assert!(Arc::ptr_eq(&got(Some("a.example.com")).unwrap(), &a));
        assert!(Arc::ptr_eq(&got(Some("A.EXAMPLE.COM")).unwrap(), &a));
        assert!(Arc::ptr_eq(&got(Some("b.example.com")).unwrap(), &w));
        assert!(
            got(Some("example.com")).is_none(),
            "wildcard needs one label"
        );
        assert!(
            got(Some("x.b.example.com")).is_none(),
            "wildcard covers one label only"
        );
        assert!(got(None).is_none());

        store.replace(set.with_default(d.clone()));
        assert!(Arc::ptr_eq(
            &store.resolve_name(Some("other.test")).unwrap(),
            &d
        ));
        assert!(Arc::ptr_eq(&store.resolve_name(None).unwrap(), &d));
        assert!(Arc::ptr_eq(
            &store.resolve_name(Some("a.example.com")).unwrap(),
            &a
        ));
    }

    #[test]
    fn bad_hostnames_are_rejected() {
        let k = key("x.test");
        let mut set = CertSet::new();
        for bad in [
            "", "*.", "a.*.com", "*a.com", "a..com", "*", "a b.com", "**.x.com",
        ] {
            let err = set.insert(bad, k.clone()).unwrap_err();
            assert!(
                matches!(err, TlsError::InvalidHostname { .. }),
                "{bad:?}: {err}"
            );
        }
        assert!(set.is_empty());
    }
}
