//! `backup-cron`: scheduled logical backups of the platform's PostgreSQL databases
//! and file storage.
//!
//! A thin binary: it parses configuration ([`config`]), sets up logging
//! ([`logging`]) and signal handling, and wires the `dsn`, `dump-runner` and
//! `manifest` crates together ([`backup`] for one run, [`inspect`] for `verify`
//! and `status`). Exit codes: 0 ok, 1 backup failed or check failed, 2
//! configuration error (nothing created), 3 another run holds the lock.

mod backup;
mod cli;
mod config;
mod inspect;
mod logging;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::config::ConfigError;

/// The tool name and version recorded in every manifest.
const TOOL: &str = concat!("backup-cron ", env!("CARGO_PKG_VERSION"));

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = dsn::Environment::from_process();
    match run(&cli, &env) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("backup-cron: configuration error: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli, env: &dsn::Environment) -> Result<ExitCode, ConfigError> {
    let once = || Command::Once {
        common: cli.common.clone(),
        backup: cli.backup.clone(),
    };
    let command = match (&cli.command, cli.once) {
        (Some(command), _) => command.clone(),
        (None, true) => once(),
        (None, false) => {
            eprintln!("{}", <Cli as clap::CommandFactory>::command().render_help());
            return Ok(ExitCode::from(2));
        }
    };
    let (Command::Once { common, .. }
    | Command::Run { common, .. }
    | Command::Verify { common, .. }
    | Command::Status { common, .. }) = &command;
    logging::init(config::log_format(common)?, env);
    match command {
        Command::Once { common, backup } => {
            let config = config::run_config(&common, &backup, env)?;
            let cancellation = backup::cancel_on_signals();
            Ok(backup::run_once(&config, TOOL, &cancellation).exit_code())
        }
        Command::Run {
            common,
            backup,
            scheduling,
        } => {
            let schedule = config::schedule(&scheduling)?;
            let config = config::run_config(&common, &backup, env)?;
            let cancellation = backup::cancel_on_signals();
            backup::run_scheduler(&config, &schedule, TOOL, &cancellation);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir, common } => {
            let dir = match dir {
                Some(dir) => dir,
                None => config::existing_backup_dir(&common)?,
            };
            Ok(inspect::verify(&dir))
        }
        Command::Status { max_age, common } => {
            let max_age = config::duration("--max-age", &max_age)?;
            Ok(inspect::status(
                &config::existing_backup_dir(&common)?,
                max_age,
            ))
        }
    }
}
