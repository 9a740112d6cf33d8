//! rustls server settings and the TLS accept path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use super::{ServerTls, TlsError};
use crate::TlsInfo;

/// How long [`TlsAcceptor`] waits for a client to finish its handshake unless told
/// otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Server settings for terminating TLS: the `ring` provider, TLS 1.3 and 1.2 only, no
/// client authentication, certificates chosen by `resolver` (usually a
/// [`CertStore`](super::CertStore)), ALPN `h2` then `http/1.1`.
///
/// # Errors
///
/// [`TlsError::Config`] if rustls refuses the protocol versions for the provider (it
/// does not with `ring`).
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Runs server-side TLS handshakes under a deadline, each with the rustls
/// configuration its ClientHello's server name picks from a [`ServerTls`]. Cheap to
/// clone (one `Arc`).
#[derive(Clone)]
pub struct TlsAcceptor {
    configs: Arc<ServerTls>,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    /// An acceptor running every handshake with `config`, with the [default handshake
    /// timeout](DEFAULT_HANDSHAKE_TIMEOUT).
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self::with_server_tls(Arc::new(ServerTls::fixed(config)))
    }

    /// An acceptor choosing each handshake's settings from `configs` by server name
    /// (replace them there at any time), with the [default handshake
    /// timeout](DEFAULT_HANDSHAKE_TIMEOUT).
    pub fn with_server_tls(configs: Arc<ServerTls>) -> Self {
        Self {
            configs,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The settings handshakes choose from.
    pub fn server_tls(&self) -> &Arc<ServerTls> {
        &self.configs
    }

    /// Sets how long a client may take to complete the handshake.
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client may take to complete the handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Completes the server side of a TLS handshake on `io`.
    ///
    /// # Errors
    ///
    /// [`TlsError::HandshakeTimeout`] when the client is too slow,
    /// [`TlsError::Handshake`] when the handshake fails (including an SNI name no
    /// certificate serves).
    pub async fn accept<IO>(&self, io: IO) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.handshake(io).await.map(|(stream, _)| stream)
    }

    /// Completes the server side of a TLS handshake on `io` (as
    /// [`accept`](Self::accept)) and says what it established: server name, ALPN,
    /// the client's verified identity (see [`TlsInfo::from_handshake`]).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept); a client certificate that is required and missing,
    /// or does not verify, fails the handshake.
    pub async fn handshake<IO>(&self, io: IO) -> Result<(TlsStream<IO>, TlsInfo), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = async {
            let start =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
                    .await?;
            let (config, strict) = self.configs.config_for(start.client_hello().server_name());
            let stream = start.into_stream(config.server_config().clone()).await?;
            let info = TlsInfo::from_handshake(stream.get_ref().1, &config, strict);
            Ok::<_, std::io::Error>((stream, info))
        };
        match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => Err(TlsError::Handshake(error)),
            Err(_) => Err(TlsError::HandshakeTimeout(self.handshake_timeout)),
        }
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}
