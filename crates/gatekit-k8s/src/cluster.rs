//! One Kubernetes cluster gatekit talks to: where its API server is, how to trust and
//! authenticate to it, its timeouts, and what it is used for ([`Role`]).
//!
//! A [`ClusterSpec`] is what a settings file says about a cluster (it deserializes from
//! the camelCase YAML below); [`ClusterSpec::client`] turns it into a kube-rs
//! [`Client`]. Each cluster gets its own client: own connection pool, own CA, own
//! credentials, own timeouts.
//!
//! ```yaml
//! name: east
//! server: https://east.example:6443
//! caFile: /etc/gatekit/clusters/east/ca.crt    # or caData (PEM), or insecureSkipVerify: true
//! tokenFile: /etc/gatekit/clusters/east/token  # or token, or kubeconfig (+ context)
//! connectTimeout: 5s
//! readTimeout: 30s
//! writeTimeout: 30s
//! roles: [endpoints]                            # default: [config, endpoints]
//! ```
//!
//! `inCluster: true` uses the pod's service account (token and CA mounted by Kubernetes,
//! API server from `KUBERNETES_SERVICE_HOST`). A token file is re-read by kube-rs when it
//! changes (projected service-account tokens rotate).

pub use crate::error::ClusterError;

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

/// What a cluster is used for.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Role {
    /// Routes, Gateways, ReferenceGrants, policies and TLS Secrets are read from it (and
    /// statuses written back to it).
    Config,
    /// Services' endpoints (EndpointSlices) are read from it and aggregated with the
    /// other endpoint clusters'. A ReferenceGrant found here grants nothing.
    Endpoints,
}

/// A cluster, as the settings file describes it (see the [module docs](self)).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterSpec {
    /// The cluster's name: endpoint labels, metrics, logs. Unique.
    pub name: String,
    /// Use the pod's own service account (the cluster gatekit runs in).
    #[serde(default)]
    pub in_cluster: bool,
    /// The API server URL (`https://host:port`).
    #[serde(default)]
    pub server: Option<String>,
    /// PEM CA certificate(s) that sign the API server's certificate.
    #[serde(default)]
    pub ca_data: Option<String>,
    /// A file holding PEM CA certificate(s).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Only for tests and labs; must be explicit.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// A bearer token.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding a bearer token (re-read when it changes).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A kubeconfig file (server, CA and credentials come from it).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[serde(default)]
    pub context: Option<String>,
    /// TCP + TLS connect timeout (default 10 s).
    #[serde(default, with = "opt_duration")]
    pub connect_timeout: Option<Duration>,
    /// Read timeout of non-watch requests (default none; watches have their own idle
    /// timeout).
    #[serde(default, with = "opt_duration")]
    pub read_timeout: Option<Duration>,
    /// Write timeout (default 295 s, kube-rs's).
    #[serde(default, with = "opt_duration")]
    pub write_timeout: Option<Duration>,
    /// What the cluster is used for (default both).
    #[serde(default = "all_roles")]
    pub roles: Vec<Role>,
}

fn all_roles() -> Vec<Role> {
    vec![Role::Config, Role::Endpoints]
}

impl ClusterSpec {
    /// A cluster at `server` with both roles and no credentials (set the fields you
    /// need).
    pub fn new(name: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            in_cluster: false,
            server: Some(server.into()),
            ca_data: None,
            ca_file: None,
            insecure_skip_verify: false,
            token: None,
            token_file: None,
            kubeconfig: None,
            context: None,
            connect_timeout: None,
            read_timeout: None,
            write_timeout: None,
            roles: all_roles(),
        }
    }

    /// Whether the cluster has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Checks that the spec says one way to reach the cluster and one way to trust it.
    ///
    /// # Errors
    ///
    /// A [`ClusterError`] naming the conflicting or missing fields.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let err = |reason: &str| Err(ClusterError::new(&self.name, reason));
        if self.name.is_empty() {
            return err("name must not be empty");
        }
        let sources = usize::from(self.in_cluster)
            + usize::from(self.server.is_some())
            + usize::from(self.kubeconfig.is_some());
        if sources != 1 {
            return err("set exactly one of inCluster, server, kubeconfig");
        }
        if self.server.is_some() {
            let trust = usize::from(self.ca_data.is_some())
                + usize::from(self.ca_file.is_some())
                + usize::from(self.insecure_skip_verify);
            if trust > 1 {
                return err("set at most one of caData, caFile, insecureSkipVerify");
            }
            if self.token.is_some() && self.token_file.is_some() {
                return err("set at most one of token, tokenFile");
            }
        } else if self.ca_data.is_some()
            || self.ca_file.is_some()
            || self.token.is_some()
            || self.token_file.is_some()
        {
            return err(
                "caData, caFile, token and tokenFile go with server (inCluster and kubeconfig bring their own)",
            );
        }
        if self.context.is_some() && self.kubeconfig.is_none() {
            return err("context needs kubeconfig");
        }
        if self.roles.is_empty() {
            return err("roles must not be empty");
        }
        Ok(())
    }

    /// The kube-rs configuration for this cluster.
    ///
    /// # Errors
    ///
    /// An invalid spec, an unreadable CA, kubeconfig or in-cluster environment.
    pub async fn config(&self) -> Result<Config, ClusterError> {
        self.validate()?;
        let err = |reason: String| ClusterError::new(&self.name, reason);
        let mut config = if self.in_cluster {
            Config::incluster().map_err(|e| err(format!("in-cluster configuration: {e}")))?
        } else if let Some(path) = &self.kubeconfig {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| err(format!("kubeconfig {}: {e}", path.display())))?;
            let options = KubeConfigOptions {
                context: self.context.clone(),
                ..KubeConfigOptions::default()
            };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| err(format!("kubeconfig {}: {e}", path.display())))?
        } else {
            let server = self.server.as_deref().unwrap_or_default();
            let url = server
                .parse()
                .map_err(|e| err(format!("server {server:?}: {e}")))?;
            let mut config = Config::new(url);
            if let Some(pem) = &self.ca_data {
                config.root_cert =
                    Some(pem_certs(pem.as_bytes()).map_err(|e| err(format!("caData: {e}")))?);
            }
            if let Some(path) = &self.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| err(format!("caFile {}: {e}", path.display())))?;
                config.root_cert = Some(
                    pem_certs(&pem).map_err(|e| err(format!("caFile {}: {e}", path.display())))?,
                );
            }
            config.accept_invalid_certs = self.insecure_skip_verify;
            if let Some(token) = &self.token {
                config.auth_info.token = Some(token.clone().into());
            }
            if let Some(path) = &self.token_file {
                config.auth_info.token_file = Some(path.display().to_string());
            }
            config
        };
        config.connect_timeout = Some(self.connect_timeout.unwrap_or(Duration::from_secs(10)));
        if self.read_timeout.is_some() {
            config.read_timeout = self.read_timeout;
        }
        if self.write_timeout.is_some() {
            config.write_timeout = self.write_timeout;
        }
        Ok(config)
    }

    /// A kube-rs client for this cluster.
    ///
    /// # Errors
    ///
    /// As [`config`](Self::config), or when the client cannot be built from it.
    pub async fn client(&self) -> Result<Client, ClusterError> {
        let config = self.config().await?;
        Client::try_from(config).map_err(|e| ClusterError::new(&self.name, e.to_string()))
    }
}

/// DER certificates from PEM text; at least one.
fn pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".to_owned());
    }
    Ok(certs)
}

/// Serde for optional Gateway API duration strings (`5s`, `1m30s`).
pub(crate) mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => crate::duration::parse(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> ClusterSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn settings_yaml_parses_with_defaults() {
        let c =
            parse("name: east\nserver: https://127.0.0.1:6443\ntoken: abc\nconnectTimeout: 2s\n");
        assert_eq!(c.name, "east");
        assert_eq!(c.roles, vec![Role::Config, Role::Endpoints]);
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(2)));
        assert!(c.validate().is_ok());
        let c = parse("name: e\nserver: https://x\nroles: [endpoints]\n");
        assert!(c.has_role(Role::Endpoints) && !c.has_role(Role::Config));
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_refused() {
        assert!(serde_norway::from_str::<ClusterSpec>("name: e\nservr: x\n").is_err());
        let e = serde_norway::from_str::<ClusterSpec>("name: e\nserver: x\nreadTimeout: 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("readTimeout") || e.contains("duration"), "{e}");
    }

    #[test]
    fn conflicting_sources_are_refused() {
        let both = parse("name: e\nserver: https://x\ninCluster: true\n");
        assert!(
            both.validate()
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
        let none = parse("name: e\n");
        assert!(none.validate().is_err());
        let trust = parse("name: e\nserver: https://x\ncaData: x\ninsecureSkipVerify: true\n");
        assert!(
            trust
                .validate()
                .unwrap_err()
                .to_string()
                .contains("at most one")
        );
        let roles = parse("name: e\nserver: https://x\nroles: []\n");
        assert!(roles.validate().is_err());
    }

    #[tokio::test]
    async fn config_carries_ca_token_and_timeouts() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let mut c = ClusterSpec::new("a", "https://127.0.0.1:6443");
        c.ca_data = Some(cert.cert.pem());
        c.token = Some("t0k".to_owned());
        c.read_timeout = Some(Duration::from_secs(3));
        let config = c.config().await.unwrap();
        assert_eq!(config.root_cert.as_ref().map(Vec::len), Some(1));
        assert_eq!(config.read_timeout, Some(Duration::from_secs(3)));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(10)));
        assert!(config.auth_info.token.is_some());
        let mut bad = ClusterSpec::new("b", "https://127.0.0.1:6443");
        bad.ca_data = Some("not pem".to_owned());
        let e = bad.config().await.unwrap_err().to_string();
        assert!(e.contains("cluster b") && e.contains("caData"), "{e}");
    }
}
