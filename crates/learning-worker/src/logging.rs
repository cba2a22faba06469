//! Logs to stderr through `service_log`, as text or JSON lines. Level from
//! `RUST_LOG`, else `LOG_LEVEL`, else `info`; `tokio_postgres` stays at `info`
//! whatever is asked, as its `debug` lines carry statement parameters.

pub use service_log::LogFormat;

/// Installs the global subscriber.
pub fn init(format: LogFormat, env: &dsn::Environment) {
    let requested = env
        .var("RUST_LOG")
        .ok()
        .flatten()
        .or_else(|| env.var("LOG_LEVEL").ok().flatten());
    service_log::init(format, requested, "RUST_LOG/LOG_LEVEL");
}
