//! Secrets stay secret: the gateway's debug logs captured while a test runs, and one
//! scan of the logs, `/config` and `/metrics` for every secret the test configured or
//! saw.

use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

use crate::wired::Wired;

/// The debug logs of this thread's tracing, captured from [`capture`](Self::capture)
/// until dropped.
#[allow(missing_debug_implementations)]
pub struct CapturedLogs {
    buf: Logs,
    _guard: DefaultGuard,
}

impl CapturedLogs {
    /// Captures every event at DEBUG and above, without colours.
    pub fn capture() -> Self {
        let buf = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(buf.clone())
            .with_ansi(false)
            .finish();
        Self {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.0.lock().unwrap()).into_owned()
    }
}

/// Asserts that no secret appears in the captured logs (which must hold something),
/// `/config` or `/metrics`; returns `/config` and `/metrics` as text for further
/// checks.
pub async fn assert_hidden<S: AsRef<str>>(
    wired: &Wired,
    logs: &CapturedLogs,
    secrets: impl IntoIterator<Item = S>,
) -> (String, String) {
    let config = wired.config().await.to_string();
    let (_, metrics) = wired.admin("/metrics").await;
    let logs = logs.text();
    assert!(!logs.is_empty(), "no logs captured");
    for secret in secrets {
        let secret = secret.as_ref();
        assert!(!secret.is_empty(), "an empty secret matches everything");
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!config.contains(secret), "{secret} in /config");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
    (config, metrics)
}

/// A log writer into a shared buffer.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
