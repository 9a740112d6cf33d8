//! [`ServerTls`]: the TLS settings of a port's listeners, chosen per handshake by SNI.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;

use super::{ListenerConfig, ListenerTls, SniMap, TlsError};

/// What a handshake can run with: the configurations by server name.
struct Configs {
    by_name: SniMap<ListenerConfig>,
    /// For a server name nothing matches when the map has no default.
    fallback: ListenerConfig,
    /// Whether the listeners' settings differ (see [`TlsInfo::strict_sni`](crate::TlsInfo::strict_sni)).
    strict: bool,
}

/// The TLS settings of one port, by SNI: each listener hostname has its
/// [`ListenerTls`] made into a rustls configuration, and a handshake runs with the
/// one its ClientHello's server name picks (exact name, then one-label wildcard, then
/// the default; as certificates are picked). All share one certificate resolver
/// (usually a [`CertStore`](super::CertStore)).
///
/// [`replace`](Self::replace) swaps in new settings atomically; configurations whose
/// settings did not change are kept, with their session caches and ticket keys, so
/// clients keep resuming sessions across reloads. Each distinct settings value has its
/// own session cache and ticket key: a session made under one listener's settings
/// cannot be resumed under another's (which could skip its client certificate check).
pub struct ServerTls {
    resolver: Arc<dyn ResolvesServerCert>,
    current: ArcSwap<Configs>,
}

impl ServerTls {
    /// Settings `settings` by server name, with certificates from `resolver`.
    ///
    /// # Errors
    ///
    /// The first error of [`ListenerTls::build`].
    pub fn new(
        resolver: Arc<dyn ResolvesServerCert>,
        settings: &SniMap<ListenerTls>,
    ) -> Result<Self, TlsError> {
        let configs = build(&resolver, settings, None)?;
        Ok(Self {
            resolver,
            current: ArcSwap::from_pointee(configs),
        })
    }

    /// One rustls configuration for every handshake.
    pub fn fixed(config: Arc<ServerConfig>) -> Self {
        let config = ListenerConfig::from_server_config(config);
        let resolver = config.server_config().cert_resolver.clone();
        Self {
            resolver,
            current: ArcSwap::from_pointee(Configs {
                by_name: SniMap::new(),
                fallback: config,
                strict: false,
            }),
        }
    }

    /// Serves `settings` from the next handshake on (established connections keep
    /// theirs). On error the current settings stay.
    ///
    /// # Errors
    ///
    /// The first error of [`ListenerTls::build`].
    pub fn replace(&self, settings: &SniMap<ListenerTls>) -> Result<(), TlsError> {
        let previous = self.current.load_full();
        let configs = build(&self.resolver, settings, Some(&previous))?;
        self.current.store(Arc::new(configs));
        Ok(())
    }

    /// The configuration a handshake with SNI `server_name` runs with, and whether the
    /// port's listeners differ in settings.
    pub fn config_for(&self, server_name: Option<&str>) -> (ListenerConfig, bool) {
        let configs = self.current.load();
        let config = configs
            .by_name
            .get(server_name)
            .unwrap_or(&configs.fallback)
            .clone();
        (config, configs.strict)
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let configs = self.current.load();
        f.debug_struct("ServerTls")
            .field("names", &configs.by_name)
            .field("strict", &configs.strict)
            .finish_non_exhaustive()
    }
}

/// The configurations of `settings`, reusing `previous`'s for equal settings.
fn build(
    resolver: &Arc<dyn ResolvesServerCert>,
    settings: &SniMap<ListenerTls>,
    previous: Option<&Configs>,
) -> Result<Configs, TlsError> {
    let mut made: Vec<ListenerConfig> = Vec::new();
    let mut reuse = |wanted: &ListenerTls| -> Result<ListenerConfig, TlsError> {
        if let Some(found) = made.iter().find(|c| c.settings() == wanted) {
            return Ok(found.clone());
        }
        let old = previous.and_then(|p| {
            p.by_name
                .iter()
                .map(|(_, c)| c)
                .chain(std::iter::once(&p.fallback))
                .find(|c| c.settings() == wanted)
                .cloned()
        });
        let config = match old {
            Some(config) => config,
            None => wanted.build(resolver.clone())?,
        };
        made.push(config.clone());
        Ok(config)
    };
    let by_name = settings.try_map(&mut reuse)?;
    let fallback = match by_name.get(None) {
        Some(default) => default.clone(),
        None => reuse(&ListenerTls::default())?,
    };
    let strict = made.len() > 1;
    Ok(Configs {
        by_name,
        fallback,
        strict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{CertStore, ClientCertMode, ClientValidation, TlsVersion};

    fn settings(pairs: &[(Option<&str>, ListenerTls)]) -> SniMap<ListenerTls> {
        let mut map = SniMap::new();
        for (name, tls) in pairs {
            match name {
                Some(n) => map.insert(n, tls.clone()).unwrap(),
                None => map.set_default(tls.clone()),
            }
        }
        map
    }

    #[test]
    fn the_server_name_picks_the_settings_and_unchanged_ones_are_kept() {
        let resolver = Arc::new(CertStore::default());
        let strict = ListenerTls::default().versions(TlsVersion::Tls13, TlsVersion::Tls13);
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        let mtls = ListenerTls::default().client_validation(Some(ClientValidation::new(
            vec![ca.cert.der().clone()],
            ClientCertMode::Required,
        )));
        let map = settings(&[
            (Some("a.test"), strict.clone()),
            (Some("*.b.test"), mtls.clone()),
            (None, ListenerTls::default()),
        ]);
        let tls = ServerTls::new(resolver, &map).unwrap();
        let (a, strict_sni) = tls.config_for(Some("a.test"));
        assert!(strict_sni, "the listeners differ");
        assert_eq!(a.settings(), &strict);
        let (b, _) = tls.config_for(Some("x.b.test"));
        assert!(b.settings().client().is_some());
        let (other, _) = tls.config_for(Some("c.test"));
        assert_eq!(other.settings(), &ListenerTls::default());
        let (none, _) = tls.config_for(None);
        assert!(none.settings().client().is_none());

        // A reload with the same settings for a.test keeps its config (and its session
        // cache and ticket key); a changed one is new.
        let map = settings(&[(Some("a.test"), strict), (None, mtls)]);
        tls.replace(&map).unwrap();
        let (a2, _) = tls.config_for(Some("a.test"));
        assert!(Arc::ptr_eq(a.server_config(), a2.server_config()));
        let (none2, _) = tls.config_for(None);
        assert!(none2.settings().client().is_some());
        assert!(!Arc::ptr_eq(none.server_config(), none2.server_config()));
    }

    #[test]
    fn one_settings_value_is_not_strict() {
        let tls = ServerTls::new(
            Arc::new(CertStore::default()),
            &settings(&[
                (Some("a.test"), ListenerTls::default()),
                (None, ListenerTls::default()),
            ]),
        )
        .unwrap();
        assert!(!tls.config_for(None).1);
    }
}
