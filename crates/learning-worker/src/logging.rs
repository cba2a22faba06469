//! Logs to stderr, as text or JSON lines. Level from `RUST_LOG`, else `LOG_LEVEL`,
//! else `info`. `tokio_postgres` is capped at `info` whatever is asked: at `debug`
//! it logs statement parameters, which include student identifiers and texts.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Installs the global subscriber.
pub fn init(format: LogFormat, env: &dsn::Environment) {
    let requested = env
        .var("RUST_LOG")
        .ok()
        .flatten()
        .or_else(|| env.var("LOG_LEVEL").ok().flatten())
        .unwrap_or("info");
    let (filter, bad_filter) = match requested.parse::<Targets>() {
        Ok(filter) => (filter, false),
        Err(_) => (Targets::new().with_default(LevelFilter::INFO), true),
    };
    let filter = filter.with_target("tokio_postgres", LevelFilter::INFO);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).init(),
    }
    if bad_filter {
        tracing::warn!("RUST_LOG/LOG_LEVEL is not a valid filter; logging at info");
    }
}
