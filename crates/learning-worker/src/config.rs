//! From flags and environment to a validated configuration. Every bad value is a
//! configuration error (exit 2) naming the variable and never showing the value,
//! except `WORKER_CONCURRENCY`, which the contract makes lenient: an invalid one
//! falls back to 1 with a warning. Empty means unset; white space alone is an error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dsn::{Environment, seconds, setting, whole_number};
use worker_core::ollama::{BaseUrl, OllamaConfig};
use worker_core::stub::{StubAdapter, parse_stub_failures};

use crate::cli::Settings;

/// The longest any duration setting may be, in seconds.
const A_YEAR: f64 = 86_400.0 * 365.0;

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
    let cap = whole_number(
        settings.concurrency_cap.as_deref(),
        "WORKER_CONCURRENCY_CAP",
        4usize,
        1..=256,
    )?;
    let mut concurrency = match whole_number(
        settings.concurrency.as_deref(),
        "WORKER_CONCURRENCY",
        1usize,
        1..=usize::MAX,
    ) {
        Ok(concurrency) => concurrency,
        // The contract's one lenient setting: start with one slot rather than not at all.
        Err(reason) => {
            warnings.push(format!("{reason}; using 1"));
            1
        }
    };
    if concurrency > cap {
        warnings.push(format!(
            "WORKER_CONCURRENCY={concurrency} is above WORKER_CONCURRENCY_CAP={cap}; using {cap}"
        ));
        concurrency = cap;
    }
    let lease = seconds(
        settings.lease_seconds.as_deref(),
        "WORKER_LEASE_SECONDS",
        45.0,
        1.0..=A_YEAR,
    )?;
    worker_core::connection::harden(&mut database, lease);
    let max_retries = whole_number(
        settings.max_retries.as_deref(),
        "WORKER_MAX_RETRIES",
        3i32,
        0..=100,
    )?;
    let backoff = seconds(
        settings.backoff_seconds.as_deref(),
        "WORKER_BACKOFF_SECONDS",
        10.0,
        0.0..=A_YEAR,
    )?;
    let poll_interval = seconds(
        settings.poll_interval.as_deref(),
        "WORKER_POLL_INTERVAL",
        0.5,
        0.01..=A_YEAR,
    )?;
    let shutdown_grace = seconds(
        settings.shutdown_grace_seconds.as_deref(),
        "WORKER_SHUTDOWN_GRACE_SECONDS",
        30.0,
        0.0..=A_YEAR,
    )?;
    let health_addr = match setting(settings.health_addr.as_deref(), "WORKER_HEALTH_ADDR")? {
        Some(addr) => Some(addr.parse().map_err(|_| {
            ConfigError("WORKER_HEALTH_ADDR: expected an address like 127.0.0.1:9464".to_owned())
        })?),
        None => None,
    };
    let backend = match setting(settings.ai_backend.as_deref(), "AI_BACKEND")?.unwrap_or("stub") {
        "stub" => Backend::Stub(StubAdapter {
            delay: Duration::from_millis(whole_number(
                env.var("AI_STUB_DELAY_MS")?,
                "AI_STUB_DELAY_MS",
                0u64,
                0..=86_400_000,
            )?),
            failures: parse_stub_failures(env.var("AI_STUB_FAIL")?.unwrap_or(""))
                .map_err(|reason| ConfigError(format!("AI_STUB_FAIL: {reason}")))?,
            call_log: env.var("AI_STUB_CALL_LOG")?.map(PathBuf::from),
        }),
        "local" => Backend::Local(OllamaConfig {
            base_url: BaseUrl::parse(
                setting(env.var("OLLAMA_BASE_URL")?, "OLLAMA_BASE_URL")?
                    .unwrap_or("http://ollama:11434"),
            )
            .map_err(|reason| ConfigError(format!("OLLAMA_BASE_URL: {reason}")))?,
            vision_model: setting(env.var("AI_VISION_MODEL")?, "AI_VISION_MODEL")?
                .unwrap_or("qwen2.5vl:3b")
                .to_owned(),
            feedback_model: setting(env.var("AI_FEEDBACK_MODEL")?, "AI_FEEDBACK_MODEL")?
                .unwrap_or("gpt-oss:latest")
                .to_owned(),
            vision_timeout: seconds(
                env.var("AI_TIMEOUT_VISION")?,
                "AI_TIMEOUT_VISION",
                30.0,
                0.1..=A_YEAR,
            )?,
            feedback_timeout: seconds(
                env.var("AI_TIMEOUT_FEEDBACK")?,
                "AI_TIMEOUT_FEEDBACK",
                15.0,
                0.1..=A_YEAR,
            )?,
            storage_root: setting(settings.storage_root.as_deref(), "LEARNING_STORAGE_ROOT")?
                .map(PathBuf::from),
            pdf_tools_path: None,
        }),
        _ => {
            return Err(ConfigError("AI_BACKEND: expected stub or local".to_owned()));
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
