//! Logs three lines in the format `LOG_FORMAT` names, filtered by `RUST_LOG`.
//!
//! `LOG_FORMAT=json RUST_LOG=debug cargo run -p service-log --example log_lines`

fn main() -> Result<(), service_log::InvalidLogFormat> {
    let format: service_log::LogFormat = std::env::var("LOG_FORMAT").unwrap_or_default().parse()?;
    service_log::init(
        format,
        std::env::var("RUST_LOG").ok().as_deref(),
        "RUST_LOG",
    );
    tracing::debug!(shown = "only at debug", "a detail");
    tracing::info!(jobs = 3, "drained");
    tracing::warn!(code = "db_unreachable", "the database does not answer");
    Ok(())
}
