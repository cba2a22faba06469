//! Scheduled logical backups of the platform's PostgreSQL databases and file
//! storage: the library behind the `backup-cron` binary.
//!
//! One run ([`run::run_once`]) takes the run lock in `BACKUP_DIR`, creates a stamp
//! directory, runs each step best-effort (`pg_dump` of the platform database, of
//! the optional Keycloak database, a tar.gz of the storage directory, each through
//! `dump-runner`), writes `manifest.json` last and atomically, and only when every
//! step succeeded applies [`retention`]. [`run::run_scheduler`] repeats that at
//! each tick of a cron [`schedule`]; [`inspect`] reads backups back for `verify`
//! and `status`. [`config`] turns flags and environment into a validated
//! [`config::RunConfig`] before anything is created, so a configuration error
//! (exit 2) leaves no trace.
//!
//! With `BACKUP_AGE_RECIPIENTS`, every artifact is encrypted as it streams (the
//! `encryption` crate, through `dump-runner`); with `BACKUP_S3_URL`, [`copies`]
//! uploads the run's backup and catches up earlier ones after the manifest is
//! written (the `offsite` crate does the transfer), and retention waits for the
//! off-site copy too.
//!
//! Where things live: the on-disk format (manifest, `offsite.json`, stamp
//! directories, the lock file) is the `manifest` crate's; when to run, what to
//! upload and what to delete are this crate's ([`schedule`], [`copies`],
//! [`retention`]); secrets are `dsn`'s: passwords reach `pg_dump` only through its
//! private pgpass file, S3 keys only the request signer.
//!
//! # Example
//!
//! ```no_run
//! use clap::Parser as _;
//!
//! let cli = backup_cron::cli::Cli::parse_from(["backup-cron", "once"]);
//! let env = dsn::Environment::from_pairs([
//!     ("BACKUP_DIR", "/backups"),
//!     ("DATABASE_URL_FILE", "/run/secrets/backup_dsn"),
//! ]);
//! let exit = backup_cron::execute(&cli, &env);
//! # let _ = exit;
//! ```
//!
//! Exit codes: 0 ok, 1 backup failed or check failed, 2 configuration error
//! (nothing created), 3 another run holds the lock.

pub mod cli;
pub mod config;
pub mod copies;
pub mod inspect;
pub mod logging;
pub mod metrics;
pub mod restore;
pub mod retention;
pub mod run;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// The tool name and version recorded in every manifest.
pub const TOOL: &str = concat!("backup-cron ", env!("CARGO_PKG_VERSION"));

/// What went wrong outside a backup step (those end up in the manifest instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid: one line naming the variable, never a secret's value.
    /// Exit 2, before anything is created.
    #[error("{0}")]
    Config(String),
    /// `BACKUP_DIR` could not be listed or locked.
    #[error(transparent)]
    Backups(#[from] manifest::Error),
    /// Deleting an expired backup failed.
    #[error("cannot delete expired backup {}", path.display())]
    Delete {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl From<dsn::Error> for Error {
    fn from(error: dsn::Error) -> Error {
        // dsn errors name the variable and never contain a secret.
        Error::Config(error.to_string())
    }
}

/// Runs the command `cli` names with `env`; `Err` is a configuration error.
pub fn execute(cli: &Cli, env: &dsn::Environment) -> Result<ExitCode, Error> {
    let once = || Command::Once {
        common: cli.common.clone(),
        backup: cli.backup.clone(),
        restore: cli.restore.clone(),
        offsite: cli.offsite.clone(),
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
    | Command::Restore { common, .. }
    | Command::Drill { common, .. }
    | Command::Verify { common, .. }
    | Command::Sync { common, .. }
    | Command::Status { common, .. }) = &command;
    logging::init(config::log_format(common)?, env);
    match command {
        Command::Once {
            common,
            backup,
            restore,
            offsite,
        } => {
            let config = config::run_config(&common, &backup, &restore, &offsite, env)?;
            let cancellation = run::cancel_on_signals();
            Ok(run::run_once(&config, TOOL, &cancellation).exit_code())
        }
        Command::Run {
            common,
            backup,
            scheduling,
            restore,
            offsite,
        } => {
            let schedule = config::schedule(&scheduling)?;
            let config = config::run_config(&common, &backup, &restore, &offsite, env)?;
            let cancellation = run::cancel_on_signals();
            run::run_scheduler(&config, &schedule, TOOL, &cancellation);
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            dir,
            artifact,
            into,
            common,
            restore,
        } => {
            let config = config::restore_config(&restore, env)?;
            let artifact = config::artifact_name(&artifact)?;
            let dir = config::restore_source(dir, &common)?;
            let cancellation = run::cancel_on_signals();
            let outcome = match (artifact, into) {
                (manifest::ArtifactName::Storage, Some(into)) => {
                    restore::restore_storage(&dir, &into, &config).map(|unpacked| {
                        format!(
                            "{} files, {} bytes unpacked into {}",
                            unpacked.files,
                            unpacked.bytes,
                            into.display()
                        )
                    })
                }
                (manifest::ArtifactName::Storage, None) => {
                    return Err(Error::Config(
                        "--artifact storage needs --into PATH".to_owned(),
                    ));
                }
                (_, Some(_)) => {
                    return Err(Error::Config(
                        "--into is for --artifact storage only".to_owned(),
                    ));
                }
                (database, None) => {
                    let target = config.target.as_ref().ok_or_else(|| {
                        Error::Config(
                            "RESTORE_DATABASE_URL is required to restore a database".to_owned(),
                        )
                    })?;
                    restore::restore_database(&dir, database, target, &config, &cancellation)
                        .and_then(|restored| restore::checked(&restored))
                }
            };
            Ok(report_restore(&dir, outcome))
        }
        Command::Drill {
            dir,
            common,
            restore,
        } => {
            let config = config::restore_config(&restore, env)?;
            let server = config.target.as_ref().ok_or_else(|| {
                Error::Config("RESTORE_DATABASE_URL is required for a drill".to_owned())
            })?;
            let dir = config::restore_source(dir, &common)?;
            let metrics_file = config::metrics_file(&common)?;
            let cancellation = run::cancel_on_signals();
            let drill = restore::drill(&dir, server, &config, &cancellation);
            if let Some(path) = metrics_file {
                metrics::record_drill(&path, &drill);
            }
            let outcome = match &drill.error {
                None => Ok(format!(
                    "drill ok: {} tables, {} rows as recorded",
                    drill.tables_checked, drill.rows_checked
                )),
                Some(error) => Err(restore::Failure {
                    code: error.code,
                    detail: format!("{} tables differ", drill.mismatches.len()),
                }),
            };
            Ok(report_restore(&dir, outcome))
        }
        Command::Verify {
            dir,
            remote,
            common,
            identity,
            offsite,
        } => {
            let identities = config::identities(&identity)?;
            if remote {
                let stamp = dir.map(|stamp| stamp.display().to_string());
                if let Some(stamp) = &stamp
                    && manifest::UtcTime::parse_stamp(stamp).is_none()
                {
                    return Err(Error::Config(format!(
                        "verify --remote: expected a stamp like 2026-11-29_020000, got {stamp:?}"
                    )));
                }
                let backup_dir = config::existing_backup_dir(&common)?;
                let local = config::retention(&cli::RetentionSettings {
                    retention_days: None,
                    keep_min: None,
                })?;
                let copies = config::offsite_config(&offsite, local, env)?.ok_or_else(|| {
                    Error::Config("verify --remote needs BACKUP_S3_URL".to_owned())
                })?;
                let cancellation = run::cancel_on_signals();
                return Ok(inspect::verify_remote(
                    &copies,
                    &backup_dir,
                    stamp.as_deref(),
                    identities.as_ref(),
                    &cancellation,
                )
                .print());
            }
            let dir = match dir {
                Some(dir) => dir,
                None => config::existing_backup_dir(&common)?,
            };
            Ok(inspect::verify(&dir, identities.as_ref()).print())
        }
        Command::Sync {
            common,
            retention,
            offsite,
        } => {
            let retention = config::retention(&retention)?;
            let copies = config::offsite_config(&offsite, retention, env)?
                .ok_or_else(|| Error::Config("sync needs BACKUP_S3_URL".to_owned()))?;
            let backups = manifest::BackupDir::new(&config::existing_backup_dir(&common)?);
            let metrics_file = config::metrics_file(&common)?;
            let cancellation = run::cancel_on_signals();
            Ok(copies::sync(
                &backups,
                &copies,
                retention,
                metrics_file.as_deref(),
                &cancellation,
            ))
        }
        Command::Status {
            max_age,
            common,
            offsite,
        } => {
            let max_age = config::duration("--max-age", &max_age)?;
            let dir = config::existing_backup_dir(&common)?;
            let offsite_required = offsite
                .s3_url
                .as_deref()
                .is_some_and(|url| !url.trim().is_empty());
            Ok(inspect::status(&dir, max_age, manifest::UtcTime::now(), offsite_required).print())
        }
    }
}

/// Prints a restore's or drill's outcome: one line on stdout when it worked, one
/// line on stderr with the code when it did not.
fn report_restore(dir: &std::path::Path, outcome: Result<String, restore::Failure>) -> ExitCode {
    match outcome {
        Ok(summary) => {
            tracing::info!(dir = %dir.display(), "{summary}");
            #[expect(clippy::print_stdout, reason = "the command's result")]
            {
                println!("{}: {summary}", dir.display());
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            tracing::error!(dir = %dir.display(), code = %failure.code, error = %failure.detail, "restore failed");
            eprintln!(
                "backup-cron: {}: {}: {}",
                failure.code,
                dir.display(),
                failure.detail
            );
            ExitCode::from(1)
        }
    }
}
