//! The library behind the `learning-worker` binary: configuration, start-up and
//! `check`, wired onto `lease` and `worker-core`.
//!
//! [`config::load`] turns flags and environment into a validated [`config::Config`]
//! (every bad value is a configuration error, exit 2, naming the variable and never
//! showing the value; only an invalid `WORKER_CONCURRENCY` falls back to 1 with a
//! warning, as the contract asks). [`run`] then builds the
//! connection pool with the DSN's TLS rules, starts the health endpoint (before the
//! first connection, so `/readyz` can say why the database refuses), waits until
//! the database serves ([`start-up`](#start-up)), refuses a privileged role, and
//! hands over to `worker_core::worker::run`, or runs `check`.
//!
//! # Start-up
//!
//! `run` keeps retrying every database problem with backoff (an operator may fix
//! it while the worker waits) and logs each cause once; `drain` gives up at once
//! on a problem waiting cannot cure (a wrong password, a missing schema, a TLS
//! certificate that does not fit).
//!
//! # Example
//!
//! ```no_run
//! use clap::Parser as _;
//!
//! # async fn example() -> Result<(), learning_worker::Error> {
//! let cli = learning_worker::cli::Cli::parse_from(["learning-worker", "check"]);
//! let env = dsn::Environment::from_process();
//! let config = learning_worker::config::load(&cli.settings, &env)?;
//! let exit = learning_worker::run(learning_worker::cli::Command::Check, config).await?;
//! # let _ = exit;
//! # Ok(())
//! # }
//! ```

mod check;
pub mod cli;
pub mod config;
pub mod logging;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use worker_core::adapter::{FeedbackAdapter, VisionAdapter};
use worker_core::database::DatabaseProblem;
use worker_core::ollama::OllamaAdapter;
use worker_core::pipeline::Pipeline;
use worker_core::readiness::Readiness;
use worker_core::schema::RoleInfo;
use worker_core::worker::{self, Mode, Observers, WorkerConfig};

use crate::cli::Command;
use crate::config::{Backend, Config, ConfigError};

/// Why the worker could not start or stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration error, including a refused privileged role: exit 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The connection pool could not be built.
    #[error("cannot build the connection pool")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// The Ollama HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The health endpoint's address cannot be bound.
    #[error("cannot listen on {addr}")]
    HealthListen {
        /// `WORKER_HEALTH_ADDR`.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// `drain` gave up on a database problem that waiting cannot cure.
    #[error("{variable}: {problem}; fix: {fix}", fix = problem.fix())]
    Database {
        /// The DSN's variable.
        variable: &'static str,
        /// What is wrong.
        problem: DatabaseProblem,
    },
    /// SIGTERM or SIGINT came before the database was usable.
    #[error("stopped before the database was usable ({0})")]
    StoppedBeforeDatabase(DatabaseProblem),
    /// The worker loop gave up.
    #[error("the worker stopped")]
    Worker(#[source] worker_core::Error),
}

impl Error {
    /// 2 for a configuration error, else 1.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

/// Runs `command` (`run`, `drain` or `check`) with `config` until it ends.
pub async fn run(command: Command, config: Config) -> Result<ExitCode, Error> {
    let pool = worker_core::connection::pool(
        config.database.clone(),
        config.tls.clone(),
        config.concurrency + 2,
        config.lease,
    )
    .map_err(Error::Pool)?;
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
            .map_err(|source| Error::HealthListen { addr, source })?;
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

    let pipeline = Arc::new(Pipeline::new(
        worker_core::connection::queue(pool, config.lease),
        vision,
        feedback,
        config.max_retries,
        config.backoff,
    ));
    let settings = WorkerConfig {
        concurrency: config.concurrency,
        lease: config.lease,
        poll_interval: config.poll_interval,
        shutdown_grace: config.shutdown_grace,
    };
    let listener = lease::Listener::spawn(
        config.database,
        config.tls,
        worker_core::schema::JOB_CHANNEL,
    )
    .expect("the job channel is a valid identifier");
    worker::run(
        pipeline,
        settings,
        listener,
        observers,
        mode,
        shutdown.clone(),
    )
    .await
    .map_err(Error::Worker)?;
    shutdown.cancel();
    Ok(ExitCode::SUCCESS)
}

type Adapters = (Arc<dyn VisionAdapter>, Arc<dyn FeedbackAdapter>);

fn adapters(config: &Config) -> Result<Adapters, Error> {
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
            let adapter = Arc::new(OllamaAdapter::new(ollama.clone()).map_err(Error::HttpClient)?);
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
) -> Result<RoleInfo, Error> {
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
            return Err(Error::Database {
                variable: config.variable,
                problem,
            });
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
            () = shutdown.cancelled() => return Err(Error::StoppedBeforeDatabase(problem)),
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
fn refuse_privileged_role(role: &RoleInfo, config: &Config) -> Result<(), Error> {
    if !role.is_privileged() {
        return Ok(());
    }
    if !config.allow_privileged {
        return Err(Error::Config(ConfigError(format!(
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
