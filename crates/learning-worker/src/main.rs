//! `learning-worker`: leases submission-analysis jobs from PostgreSQL, runs OCR and
//! AI feedback on them, and writes each result exactly once. Wiring only: the
//! library (`learning_worker`) does the work; this reads the configuration, starts
//! logging and the runtime, and maps errors to exit codes (0 ok, 1 check failed or
//! fatal, 2 configuration error).

use std::process::ExitCode;

use clap::Parser as _;
use learning_worker::config::{self, ConfigError};
use learning_worker::{Error, cli, logging};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
    let command = cli.command.unwrap_or(cli::Command::Run);
    match runtime.block_on(learning_worker::run(command, config)) {
        Ok(code) => code,
        Err(Error::Config(error)) => configuration_error(&error),
        Err(error) => {
            // tracing prints an error's sources too (`error.sources=[…]`).
            tracing::error!(error = &error as &dyn std::error::Error, "fatal error");
            error.exit_code()
        }
    }
}

fn configuration_error(error: &ConfigError) -> ExitCode {
    eprintln!("learning-worker: configuration error: {error}");
    ExitCode::from(2)
}
