//! Log output: `tracing` events as text or JSON lines on stderr.
//!
//! The filter comes from `RUST_LOG` (e.g. `info,gatekit::access=off`); without it, `info`.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. Returns `false` if one was already installed (tests
/// start several processes in one binary).
pub fn init(format: LogFormat) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().try_init().is_ok(),
        _ => builder.try_init().is_ok(),
    }
}
