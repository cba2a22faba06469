//! `learning-worker`: leases submission-analysis jobs from PostgreSQL, runs OCR and
//! AI feedback on them, and writes each result exactly once.
//!
//! A thin binary: configuration ([`config`]), logging ([`logging`]), signals, the
//! refusal of privileged roles, and wiring of `lease` and `worker-core`. Exit codes:
//! 0 ok, 1 check failed or fatal error, 2 configuration error.

mod cli;
mod config;
mod logging;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use deadpool_postgres::{Manager, Pool};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use worker_core::adapter::{FeedbackAdapter, VisionAdapter};
use worker_core::metrics::Metrics;
use worker_core::ollama::OllamaAdapter;
use worker_core::pipeline::Pipeline;
use worker_core::worker::{self, Mode, WorkerConfig};

use crate::cli::{Cli, Command};
use crate::config::{Backend, Config, ConfigError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = dsn::Environment::from_process();
    let config = config::log_format(&cli.settings).and_then(|format| {
        logging::init(format, &env);
        config::load(&cli.settings, &env)
    });
    let config = match config {
        Ok(config) => config,
        Err(error) => return configuration_error(&error),
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built");
    let command = cli.command.unwrap_or(Command::Run);
    match runtime.block_on(run(command, config)) {
        Ok(code) => code,
        Err(Failure::Config(error)) => configuration_error(&error),
        Err(Failure::Fatal(error)) => {
            tracing::error!(error = format!("{error:#}"), "fatal error");
            ExitCode::from(1)
        }
    }
}

fn configuration_error(error: &ConfigError) -> ExitCode {
    eprintln!("learning-worker: configuration error: {error}");
    ExitCode::from(2)
}

enum Failure {
    Config(ConfigError),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Fatal(error)
    }
}

async fn run(command: Command, config: Config) -> Result<ExitCode, Failure> {
    let pool = Pool::builder(Manager::new(config.database.clone(), NoTls))
        .max_size(config.concurrency + 2)
        .build()
        .context("cannot build the connection pool")?;
    if command == Command::Check {
        return check(&pool).await;
    }
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    refuse_privileged_role(&pool, &config, &shutdown).await?;
    tracing::info!(source = config.variable, "database configured");

    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.health_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let state = worker_core::health::HealthState {
            metrics: Arc::clone(&metrics),
            pool: pool.clone(),
        };
        tokio::spawn(worker_core::health::serve(
            listener,
            state,
            shutdown.clone(),
        ));
        tracing::info!(addr = %addr, "health endpoint listening");
    }
    let queue_config = lease::QueueConfig::new("public.learning_submission_jobs", "submission_id")
        .context("the queue table name is valid")?;
    let (vision, feedback): (Arc<dyn VisionAdapter>, Arc<dyn FeedbackAdapter>) =
        match &config.backend {
            Backend::Stub(stub) => {
                let stub = Arc::new(stub.clone());
                (stub.clone(), stub)
            }
            Backend::Local(ollama) => {
                if ollama.storage_root.is_none() {
                    tracing::warn!(
                        "LEARNING_STORAGE_ROOT is not set: image and PDF submissions will fail"
                    );
                }
                let adapter = Arc::new(
                    OllamaAdapter::new(ollama.clone()).context("cannot build the HTTP client")?,
                );
                tracing::info!(
                    base_url = %without_credentials(&ollama.base_url),
                    vision_model = %ollama.vision_model,
                    feedback_model = %ollama.feedback_model,
                    "AI backend: Ollama"
                );
                (adapter.clone(), adapter)
            }
        };
    let pipeline = Arc::new(Pipeline {
        queue: lease::Queue::new(pool, &queue_config),
        vision,
        feedback,
        max_retries: config.max_retries,
        backoff: config.backoff,
    });
    let settings = WorkerConfig {
        concurrency: config.concurrency,
        lease: config.lease,
        poll_interval: config.poll_interval,
        shutdown_grace: config.shutdown_grace,
        channel: "learning_submission_jobs".to_owned(),
    };
    let mode = if command == Command::Drain {
        Mode::Drain
    } else {
        Mode::Run
    };
    worker::run(
        pipeline,
        settings,
        config.database,
        metrics,
        mode,
        shutdown.clone(),
    )
    .await
    .context("the worker stopped")?;
    shutdown.cancel();
    Ok(ExitCode::SUCCESS)
}

/// Connects (retrying while the database is down) and refuses privileged roles.
async fn refuse_privileged_role(
    pool: &Pool,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<(), Failure> {
    let mut pause = Duration::from_millis(200);
    let role = loop {
        match current_role(pool).await {
            Ok(role) => break role,
            Err(error) => {
                tracing::warn!(error = %error, "database not reachable yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return Err(Failure::Fatal(anyhow::anyhow!("stopped before the database was reachable"))),
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    };
    if role.is_privileged() {
        if !config.allow_privileged {
            return Err(Failure::Config(ConfigError(format!(
                "{}: refusing to run as privileged role {:?} (superuser, BYPASSRLS or a service role); \
                 connect as gustav_worker, or set ALLOW_SERVICE_DSN_FOR_TESTING=true in tests",
                config.variable, role.name
            ))));
        }
        tracing::warn!(role = %role.name, "running as a privileged role because ALLOW_SERVICE_DSN_FOR_TESTING=true");
    }
    Ok(())
}

async fn current_role(pool: &Pool) -> Result<worker_core::schema::RoleInfo, String> {
    let client = pool.get().await.map_err(|error| error.to_string())?;
    worker_core::schema::role_info(&client)
        .await
        .map_err(|error| error.to_string())
}

async fn check(pool: &Pool) -> Result<ExitCode, Failure> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            let _ = writeln!(out, "FAIL  connect: {error}");
            return Ok(ExitCode::from(1));
        }
    };
    let _ = writeln!(out, "ok    connect");
    let checks = worker_core::schema::check(&client)
        .await
        .context("schema check failed")?;
    for check in &checks {
        let _ = writeln!(
            out,
            "{}  {}",
            if check.ok { "ok  " } else { "FAIL" },
            check.name
        );
    }
    Ok(if checks.iter().all(|check| check.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A URL for the log: `user:password@` (basic auth for a proxied Ollama) becomes `***@`.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The first SIGTERM or SIGINT starts a graceful shutdown.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(error = %error, "cannot install the SIGTERM handler");
                    return;
                }
            };
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        }
        shutdown.cancel();
    });
}
