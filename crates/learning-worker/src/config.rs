//! From flags and environment to a validated configuration. Bad numbers fall back
//! to their defaults with a warning (a worker should start rather than crash-loop
//! on a typo); a bad DSN, backend or log format is a configuration error (exit 2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dsn::Environment;
use worker_core::ollama::{BaseUrl, OllamaConfig};
use worker_core::stub::{StubAdapter, parse_stub_failures};

use crate::cli::Settings;

/// The worker DSN's variables, in precedence order.
pub const DATABASE_URLS: [&str; 3] = ["LEARNING_DATABASE_URL", "LEARNING_DB_URL", "DATABASE_URL"];

/// A configuration error: one line naming the variable, never a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<dsn::Error> for ConfigError {
    fn from(error: dsn::Error) -> ConfigError {
        ConfigError(error.to_string())
    }
}

/// `AI_BACKEND`.
pub enum Backend {
    /// Deterministic, no network.
    Stub(StubAdapter),
    /// Ollama.
    Local(OllamaConfig),
}

/// The validated configuration, and the warnings to log once logging is up.
pub struct Config {
    /// The variable the DSN came from, for logs and messages.
    pub variable: &'static str,
    /// Connection settings from the DSN, password included.
    pub database: tokio_postgres::Config,
    /// TLS as the DSN's `sslmode` and `sslrootcert` ask, for every connection.
    pub tls: pg_tls::MakeTls,
    /// `WORKER_CONCURRENCY`, capped by `WORKER_CONCURRENCY_CAP`.
    pub concurrency: usize,
    /// `WORKER_LEASE_SECONDS`.
    pub lease: Duration,
    /// `WORKER_MAX_RETRIES`.
    pub max_retries: i32,
    /// `WORKER_BACKOFF_SECONDS`.
    pub backoff: Duration,
    /// `WORKER_POLL_INTERVAL`.
    pub poll_interval: Duration,
    /// `WORKER_SHUTDOWN_GRACE_SECONDS`.
    pub shutdown_grace: Duration,
    /// `WORKER_HEALTH_ADDR`.
    pub health_addr: Option<SocketAddr>,
    /// `AI_BACKEND` and its settings.
    pub backend: Backend,
    /// `ALLOW_SERVICE_DSN_FOR_TESTING=true`.
    pub allow_privileged: bool,
    /// Settings that fell back to their defaults, to log once logging is up.
    pub warnings: Vec<String>,
}

/// `LOG_FORMAT`, read before everything else so that later errors are logged in it.
pub fn log_format(settings: &Settings) -> Result<service_log::LogFormat, ConfigError> {
    settings
        .log_format
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|error: service_log::InvalidLogFormat| ConfigError(error.to_string()))
}

/// The validated configuration from flags and environment.
pub fn load(settings: &Settings, env: &Environment) -> Result<Config, ConfigError> {
    let resolved = dsn::resolve(env, &DATABASE_URLS)?.ok_or_else(|| {
        ConfigError(format!(
            "no database configured: set one of {}",
            DATABASE_URLS.join(", ")
        ))
    })?;
    let mut database = resolved
        .dsn
        .to_tokio_postgres()
        .map_err(|reason| ConfigError(format!("{}: {reason}", resolved.variable)))?;
    let tls = pg_tls::MakeTls::for_dsn(&resolved.dsn)
        .map_err(|reason| ConfigError(format!("{}: {reason}", resolved.variable)))?;
    let mut warnings = Vec::new();
    let cap = lenient(
        settings.concurrency_cap.as_deref(),
        "WORKER_CONCURRENCY_CAP",
        4usize,
        1..=256,
        &mut warnings,
    );
    let mut concurrency = lenient(
        settings.concurrency.as_deref(),
        "WORKER_CONCURRENCY",
        1usize,
        1..=usize::MAX,
        &mut warnings,
    );
    if concurrency > cap {
        warnings.push(format!(
            "WORKER_CONCURRENCY={concurrency} is above WORKER_CONCURRENCY_CAP={cap}; using {cap}"
        ));
        concurrency = cap;
    }
    let lease = lenient_seconds(
        settings.lease_seconds.as_deref(),
        "WORKER_LEASE_SECONDS",
        45.0,
        1.0,
        &mut warnings,
    );
    worker_core::connection::harden(&mut database, lease);
    let max_retries = lenient(
        settings.max_retries.as_deref(),
        "WORKER_MAX_RETRIES",
        3i32,
        0..=100,
        &mut warnings,
    );
    let backoff = lenient_seconds(
        settings.backoff_seconds.as_deref(),
        "WORKER_BACKOFF_SECONDS",
        10.0,
        0.0,
        &mut warnings,
    );
    let poll_interval = lenient_seconds(
        settings.poll_interval.as_deref(),
        "WORKER_POLL_INTERVAL",
        0.5,
        0.01,
        &mut warnings,
    );
    let shutdown_grace = lenient_seconds(
        settings.shutdown_grace_seconds.as_deref(),
        "WORKER_SHUTDOWN_GRACE_SECONDS",
        30.0,
        0.0,
        &mut warnings,
    );
    let health_addr = match non_empty(settings.health_addr.as_deref()) {
        Some(addr) => Some(addr.parse().map_err(|_| {
            ConfigError(format!(
                "WORKER_HEALTH_ADDR: expected an address like 127.0.0.1:9464, got {addr:?}"
            ))
        })?),
        None => None,
    };
    let backend = match non_empty(settings.ai_backend.as_deref()).unwrap_or("stub") {
        "stub" => Backend::Stub(StubAdapter {
            delay: Duration::from_millis(lenient(
                env.var("AI_STUB_DELAY_MS")?,
                "AI_STUB_DELAY_MS",
                0u64,
                0..=86_400_000,
                &mut warnings,
            )),
            failures: parse_stub_failures(env.var("AI_STUB_FAIL")?.unwrap_or(""))
                .map_err(|reason| ConfigError(format!("AI_STUB_FAIL: {reason}")))?,
            call_log: env.var("AI_STUB_CALL_LOG")?.map(PathBuf::from),
        }),
        "local" => Backend::Local(OllamaConfig {
            base_url: BaseUrl::parse(
                non_empty(env.var("OLLAMA_BASE_URL")?).unwrap_or("http://ollama:11434"),
            )
            .map_err(|reason| ConfigError(format!("OLLAMA_BASE_URL: {reason}")))?,
            vision_model: non_empty(env.var("AI_VISION_MODEL")?)
                .unwrap_or("qwen2.5vl:3b")
                .to_owned(),
            feedback_model: non_empty(env.var("AI_FEEDBACK_MODEL")?)
                .unwrap_or("gpt-oss:latest")
                .to_owned(),
            vision_timeout: lenient_seconds(
                env.var("AI_TIMEOUT_VISION")?,
                "AI_TIMEOUT_VISION",
                30.0,
                0.1,
                &mut warnings,
            ),
            feedback_timeout: lenient_seconds(
                env.var("AI_TIMEOUT_FEEDBACK")?,
                "AI_TIMEOUT_FEEDBACK",
                15.0,
                0.1,
                &mut warnings,
            ),
            storage_root: non_empty(settings.storage_root.as_deref()).map(PathBuf::from),
            pdf_tools_path: None,
        }),
        other => {
            return Err(ConfigError(format!(
                "AI_BACKEND: expected stub or local, got {other:?}"
            )));
        }
    };
    let allow_privileged = env.var("ALLOW_SERVICE_DSN_FOR_TESTING")? == Some("true");
    Ok(Config {
        variable: resolved.variable,
        database,
        tls,
        concurrency,
        lease,
        max_retries,
        backoff,
        poll_interval,
        shutdown_grace,
        health_addr,
        backend,
        allow_privileged,
        warnings,
    })
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// A number in `range`, or `default` with a warning.
fn lenient<T>(
    value: Option<&str>,
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    warnings: &mut Vec<String>,
) -> T
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(text) = non_empty(value) else {
        return default;
    };
    match text.parse::<T>() {
        Ok(parsed) if range.contains(&parsed) => parsed,
        _ => {
            warnings.push(format!("{name}={text:?} is not valid; using {default}"));
            default
        }
    }
}

/// Seconds (fractions allowed) of at least `min`, or `default` with a warning.
fn lenient_seconds(
    value: Option<&str>,
    name: &str,
    default: f64,
    min: f64,
    warnings: &mut Vec<String>,
) -> Duration {
    let seconds = lenient(value, name, default, min..=86_400.0 * 365.0, warnings);
    Duration::from_secs_f64(seconds)
}
