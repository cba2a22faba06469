//! `learning-worker`: leases submission-analysis jobs from PostgreSQL, runs OCR and
//! AI feedback on them, and writes each result exactly once.
//!
//! A thin binary: configuration ([`config`]), logging ([`logging`]), signals, the
//! refusal of privileged roles, `check` ([`check`]), and wiring of `lease` and
//! `worker-core`. Exit codes: 0 ok, 1 check failed or fatal error (`drain` giving up
//! on a cause waiting cannot cure), 2 configuration error.

mod check;
mod cli;
mod config;
mod logging;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use deadpool_postgres::{Manager, Pool};
use tokio_util::sync::CancellationToken;
use worker_core::adapter::{FeedbackAdapter, VisionAdapter};
use worker_core::database::DatabaseProblem;
use worker_core::ollama::OllamaAdapter;
use worker_core::pipeline::Pipeline;
use worker_core::readiness::Readiness;
use worker_core::schema::RoleInfo;
use worker_core::worker::{self, Mode, Observers, WorkerConfig};

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
    let pool = Pool::builder(Manager::new(config.database.clone(), config.tls.clone()))
        .max_size(config.concurrency + 2)
        .build()
        .context("cannot build the connection pool")?;
    let (vision, feedback) = adapters(&config)?;
    if command == Command::Check {
        return Ok(check::run(&pool, &config, vision.as_ref(), feedback.as_ref()).await);
    }
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let observers = Observers::default();
    if let Some(addr) = config.health_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let state = worker_core::health::HealthState {
            observers: observers.clone(),
            pool: pool.clone(),
        };
        tokio::spawn(worker_core::health::serve(
            listener,
            state,
            shutdown.clone(),
        ));
        tracing::info!(addr = %addr, "health endpoint listening");
    }
    let mode = if command == Command::Drain {
        Mode::Drain
    } else {
        Mode::Run
    };
    let role = connect(&pool, &config, &observers.readiness, mode, &shutdown).await?;
    refuse_privileged_role(&role, &config)?;
    tracing::info!(source = config.variable, role = %role.name, "database configured");

    let queue_config = lease::QueueConfig::new("public.learning_submission_jobs", "submission_id")
        .context("the queue table name is valid")?;
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
    };
    let listener = lease::Listener::spawn(config.database, config.tls, "learning_submission_jobs")
        .context("the channel name is valid")?;
    worker::run(
        pipeline,
        settings,
        listener,
        observers,
        mode,
        shutdown.clone(),
    )
    .await
    .context("the worker stopped")?;
    shutdown.cancel();
    Ok(ExitCode::SUCCESS)
}

type Adapters = (Arc<dyn VisionAdapter>, Arc<dyn FeedbackAdapter>);

fn adapters(config: &Config) -> anyhow::Result<Adapters> {
    Ok(match &config.backend {
        Backend::Stub(stub) => {
            let stub = Arc::new(stub.clone());
            (stub.clone(), stub)
        }
        Backend::Local(ollama) => {
            if ollama.storage_root.is_none() {
                tracing::warn!(
                    "LEARNING_STORAGE_ROOT is not set: image and PDF submissions will wait until it is"
                );
            }
            let adapter = Arc::new(
                OllamaAdapter::new(ollama.clone()).context("cannot build the HTTP client")?,
            );
            tracing::info!(
                base_url = %ollama.base_url,
                vision_model = %ollama.vision_model,
                feedback_model = %ollama.feedback_model,
                "AI backend: Ollama"
            );
            (adapter.clone(), adapter)
        }
    })
}

/// Connects, retrying while the database cannot serve. `run` retries every
/// problem (an operator may mend it meanwhile) and logs each cause once; `drain`
/// gives up at once on a problem that waiting cannot cure.
async fn connect(
    pool: &Pool,
    config: &Config,
    readiness: &Readiness,
    mode: Mode,
    shutdown: &CancellationToken,
) -> Result<RoleInfo, Failure> {
    let mut pause = Duration::from_millis(200);
    loop {
        let problem = match current_role(pool).await {
            Ok(role) => {
                readiness.database_up();
                return Ok(role);
            }
            Err(problem) => problem,
        };
        if mode == Mode::Drain && !problem.may_pass() {
            return Err(Failure::Fatal(anyhow::anyhow!(
                "{}: {problem}; fix: {}",
                config.variable,
                problem.fix()
            )));
        }
        if readiness.database_down(problem) {
            tracing::warn!(
                cause = problem.code(),
                fix = problem.fix(),
                "cannot use the database yet ({}); retrying",
                problem.describe()
            );
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return Err(Failure::Fatal(anyhow::anyhow!("stopped before the database was usable ({problem})"))),
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn current_role(pool: &Pool) -> Result<RoleInfo, DatabaseProblem> {
    let client = pool
        .get()
        .await
        .map_err(|error| DatabaseProblem::of_pool(&error))?;
    worker_core::schema::role_info(&client)
        .await
        .map_err(|error| DatabaseProblem::of_postgres(&error))
}

/// Refuses privileged roles unless tests allow them.
fn refuse_privileged_role(role: &RoleInfo, config: &Config) -> Result<(), Failure> {
    if !role.is_privileged() {
        return Ok(());
    }
    if !config.allow_privileged {
        return Err(Failure::Config(ConfigError(format!(
            "{}: refusing to run as privileged role {:?} (superuser, BYPASSRLS or a service role); \
             connect as gustav_worker, or set ALLOW_SERVICE_DSN_FOR_TESTING=true in tests",
            config.variable, role.name
        ))));
    }
    tracing::warn!(role = %role.name, "running as a privileged role because ALLOW_SERVICE_DSN_FOR_TESTING=true");
    Ok(())
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
