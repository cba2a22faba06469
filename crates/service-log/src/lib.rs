//! Logging for a small service: one call at start-up, lines on stderr, text or JSON.
//!
//! Both of the workspace's services log the same way, so the choices live here once:
//!
//! - **stderr only.** stdout belongs to a command's result (`status`, `check`), and a
//!   container runtime collects stderr anyway.
//! - **`LOG_FORMAT`** is `text` (the default) or `json`, one object per line with the
//!   event's fields flattened, for a log shipper. Anything else is an error: a typo must
//!   not silently change what a log pipeline receives.
//! - **The level filter** is `tracing_subscriber`'s `Targets` syntax (`info`,
//!   `warn,lease=debug`). An unparsable filter falls back to `info` with a warning
//!   instead of stopping the service: a backup or a student's job is worth more than a
//!   log level.
//! - **`tokio_postgres` is capped at `info`** whatever is asked: at `debug` it logs
//!   statement parameters, which carry student identifiers and texts.
//!
//! ```no_run
//! let format: service_log::LogFormat = "json".parse()?;
//! service_log::init(format, Some("info,lease=debug"), "RUST_LOG");
//! tracing::info!(jobs = 3, "drained");
//! # Ok::<(), service_log::InvalidLogFormat>(())
//! ```

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How lines are written: the value of `LOG_FORMAT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A `LOG_FORMAT` that is neither `text` nor `json` (nor empty, which means text).
/// The value is not kept: configuration errors never echo one.
#[derive(Debug, thiserror::Error)]
#[error("LOG_FORMAT: expected text or json")]
pub struct InvalidLogFormat;

impl FromStr for LogFormat {
    type Err = InvalidLogFormat;

    fn from_str(text: &str) -> Result<LogFormat, InvalidLogFormat> {
        match text {
            "" => Ok(LogFormat::Text),
            text => match text.trim() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(InvalidLogFormat),
            },
        }
    }
}

/// Installs the global subscriber. `filter` is the level filter the operator set
/// (`None` or empty: `info`); `source` names where it came from, for the warning an
/// unparsable filter gets.
pub fn init(format: LogFormat, filter: Option<&str>, source: &str) {
    let (filter, bad_filter) = targets(filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).init(),
    }
    if bad_filter {
        tracing::warn!("{source} is not a valid filter; logging at info");
    }
}

/// The filter to install, and whether the requested one was unparsable.
fn targets(requested: Option<&str>) -> (Targets, bool) {
    let requested = requested.map(str::trim).filter(|text| !text.is_empty());
    let (filter, bad_filter) = match requested.unwrap_or("info").parse::<Targets>() {
        Ok(filter) => (filter, false),
        Err(_) => (Targets::new().with_default(LevelFilter::INFO), true),
    };
    (
        filter.with_target("tokio_postgres", LevelFilter::INFO),
        bad_filter,
    )
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn log_format_accepts_text_json_and_nothing() {
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert_eq!(" json ".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("".parse::<LogFormat>().unwrap(), LogFormat::Text);
        let error = "JSON".parse::<LogFormat>().unwrap_err().to_string();
        assert_eq!(error, "LOG_FORMAT: expected text or json");
        assert!(
            " ".parse::<LogFormat>().is_err(),
            "white space is not unset"
        );
    }

    #[test]
    fn the_filter_defaults_to_info_and_survives_garbage() {
        let (filter, bad) = targets(None);
        assert!(!bad);
        assert!(filter.would_enable("lease", &Level::INFO));
        assert!(!filter.would_enable("lease", &Level::DEBUG));

        let (filter, bad) = targets(Some("lease=[[["));
        assert!(bad);
        assert!(filter.would_enable("lease", &Level::INFO));
    }

    #[test]
    fn tokio_postgres_never_logs_parameters() {
        let (filter, bad) = targets(Some("trace"));
        assert!(!bad);
        assert!(filter.would_enable("lease", &Level::TRACE));
        assert!(!filter.would_enable("tokio_postgres::query", &Level::DEBUG));
        assert!(filter.would_enable("tokio_postgres::connection", &Level::INFO));
    }
}
