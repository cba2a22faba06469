//! Logs to stderr through `service_log`, as text or JSON lines, filtered by
//! `RUST_LOG` (default `info`).
//!
//! Nothing secret is logged by construction: DSNs are logged through their
//! redacting `Display`, and free text from outside (pg_dump's stderr, error chains)
//! passes through `manifest::redact` first.

pub use service_log::LogFormat;

/// Installs the global subscriber. An unparsable `RUST_LOG` falls back to `info`
/// with a warning rather than failing a backup.
pub fn init(format: LogFormat, env: &dsn::Environment) {
    service_log::init(format, env.var("RUST_LOG").ok().flatten(), "RUST_LOG");
}
