//! Logs to stderr, as text or JSON lines, filtered by `RUST_LOG` (default `info`).
//!
//! Nothing secret is logged by construction: DSNs are logged through their
//! redacting `Display`, and free text from outside (pg_dump's stderr, error chains)
//! passes through `manifest::redact` first.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// `LOG_FORMAT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. An unparsable `RUST_LOG` falls back to `info`
/// with a warning rather than failing a backup.
pub fn init(format: LogFormat, env: &dsn::Environment) {
    let directives = env.var("RUST_LOG").ok().flatten().unwrap_or("info");
    let (filter, bad_filter) = match directives.parse::<Targets>() {
        Ok(filter) => (filter, false),
        Err(_) => ("info".parse().expect("a valid filter"), true),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).init(),
    }
    if bad_filter {
        tracing::warn!("RUST_LOG is not a valid filter; logging at info");
    }
}
