//! One backup run and the scheduler: lock, stamp directory, the steps, the
//! manifest, retention. Each step's work lives in `dump-runner`; the on-disk
//! layout in `manifest`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dump_runner::{ArchiveJob, Cancellation, DumpJob};
use manifest::{Artifact, ArtifactName, ErrorCode, Manifest, Source, Status, UtcTime};

use crate::config::RunConfig;
use crate::schedule::Schedule;

/// How a run ended, for the exit status.
pub enum RunOutcome {
    /// Every step succeeded and the manifest says `ok`.
    Ok,
    /// A manifest with `status: failed` was written.
    Failed,
    /// Another run holds the lock; nothing was touched.
    Locked,
    /// The backup is ok, but its drill (`BACKUP_DRILL=true`) failed; retention
    /// was skipped.
    DrillFailed,
    /// The backup is ok locally, but its off-site copy failed; retention was
    /// skipped.
    OffsiteFailed,
}

impl RunOutcome {
    /// 0, 1 or 3.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunOutcome::Ok => ExitCode::SUCCESS,
            RunOutcome::Failed | RunOutcome::DrillFailed | RunOutcome::OffsiteFailed => {
                ExitCode::from(1)
            }
            RunOutcome::Locked => ExitCode::from(3),
        }
    }
}

/// A cancellation fired by the first SIGTERM or SIGINT.
pub fn cancel_on_signals() -> Cancellation {
    let cancellation = Cancellation::new();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .expect("signal handlers can be installed");
    let on_signal = cancellation.clone();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::warn!(signal, "signal received; ending the current run");
                on_signal.cancel();
            }
        })
        .expect("the OS can start a thread");
    cancellation
}

/// Runs a backup at every tick until cancelled. Runs never overlap: the next tick
/// is computed after a run ends, so ticks missed during a long run are skipped.
pub fn run_scheduler(
    config: &RunConfig,
    schedule: &Schedule,
    tool: &str,
    cancellation: &Cancellation,
) {
    if let Err(error) = config.backup_dir.record_scheduler_start(UtcTime::now()) {
        // `status` then reports unhealthy until the first backup: loud, not fatal.
        tracing::error!(error = %error, "cannot record the scheduler's start");
    }
    loop {
        let now = UtcTime::now();
        let Some(next) = schedule.next_after(now) else {
            tracing::error!("BACKUP_SCHEDULE never matches; nothing to schedule");
            cancellation.wait_timeout(Duration::MAX);
            return;
        };
        tracing::info!(next = %next.rfc3339(), "next backup scheduled");
        let wait = Duration::from_secs(
            u64::try_from(next.unix_seconds() - now.unix_seconds()).unwrap_or(0),
        );
        // Sleeping to the wall-clock second of the tick, not by a monotonic delay.
        let wait = wait.saturating_sub(subsecond_now());
        if cancellation.wait_timeout(wait) {
            tracing::info!("stopping the scheduler");
            return;
        }
        run_once(config, tool, cancellation);
        if cancellation.is_cancelled() {
            tracing::info!("stopping the scheduler");
            return;
        }
    }
}

fn subsecond_now() -> Duration {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_nanos(u64::from(since_epoch.subsec_nanos()))
}

/// One run: lock, stamp directory, every step best-effort (a step after a
/// cancellation is recorded `interrupted`, not run), the manifest, and retention
/// only when every step succeeded.
pub fn run_once(config: &RunConfig, tool: &str, cancellation: &Cancellation) -> RunOutcome {
    let _lock = match config.backup_dir.lock() {
        Ok(lock) => lock,
        Err(manifest::Error::Locked { .. }) => {
            tracing::error!("another backup run holds the lock; nothing was touched");
            return RunOutcome::Locked;
        }
        Err(error) => {
            tracing::error!(error = %error, "cannot take the run lock");
            return RunOutcome::Failed;
        }
    };
    let started_at = UtcTime::now();
    let started = Instant::now();
    let run_dir = match config.backup_dir.create_run_dir(started_at) {
        Ok(dir) => dir,
        Err(error) => {
            tracing::error!(error = %error, code = %error.code(), "cannot create the backup directory");
            return RunOutcome::Failed;
        }
    };
    let run_name = run_dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();
    tracing::info!(dir = %run_name, source = config.platform.variable, "backup started");

    let mut artifacts = Vec::new();
    let platform_source =
        Source::from_variable(config.platform.variable).expect("a platform variable");
    artifacts.push(step(
        ArtifactName::SupabaseDb,
        platform_source,
        cancellation,
        || {
            dump(
                config,
                &config.platform.dsn,
                &run_dir.join(stored_file_name(config, ArtifactName::SupabaseDb)),
                cancellation,
            )
        },
    ));
    if let Some(keycloak) = &config.keycloak {
        artifacts.push(step(
            ArtifactName::KeycloakDb,
            Source::KcDbUrl,
            cancellation,
            || {
                dump(
                    config,
                    keycloak,
                    &run_dir.join(stored_file_name(config, ArtifactName::KeycloakDb)),
                    cancellation,
                )
            },
        ));
    }
    if let Some(root) = &config.storage_root {
        artifacts.push(step(
            ArtifactName::Storage,
            Source::SupabaseStorageRoot,
            cancellation,
            || {
                dump_runner::archive(&ArchiveJob {
                    root,
                    output: &run_dir.join(stored_file_name(config, ArtifactName::Storage)),
                    compression: config.compression,
                    recipients: config.recipients.as_ref(),
                    cancellation,
                })
            },
        ));
    }

    let manifest =
        Manifest::new(tool, started_at, UtcTime::now(), artifacts).with_duration(started.elapsed());
    if let Err(error) = manifest.write_atomic(&run_dir) {
        tracing::error!(error = %error, code = %error.code(), "cannot write manifest.json; the run counts as interrupted");
        return RunOutcome::Failed;
    }
    if let Some(path) = &config.metrics_file {
        crate::metrics::record_run(path, &manifest);
    }
    if manifest.status == Status::Failed {
        let error = manifest
            .error
            .expect("a failed manifest names its first error");
        tracing::error!(dir = %run_name, code = %error.code, step = %error.step, "backup failed; retention skipped");
        // Earlier backups still get their off-site copies.
        copy_off_site(config, cancellation);
        return RunOutcome::Failed;
    }
    tracing::info!(dir = %run_name, duration_ms = manifest.duration_ms, "backup ok");
    if let Some(restore) = &config.drill
        && let Some(server) = &restore.target
    {
        let drill = crate::restore::drill(&run_dir, server, restore, cancellation);
        if let Some(path) = &config.metrics_file {
            crate::metrics::record_drill(path, &drill);
        }
        if drill.status != Status::Ok {
            tracing::error!(dir = %run_name, code = ?drill.error.map(|error| error.code), mismatches = drill.mismatches.len(), "drill failed; retention skipped");
            return RunOutcome::DrillFailed;
        }
        tracing::info!(dir = %run_name, tables = drill.tables_checked, rows = drill.rows_checked, "drill ok");
    }
    if config.offsite.is_some() {
        copy_off_site(config, cancellation);
        if !crate::copies::copied(&config.backup_dir, &run_name) {
            tracing::error!(dir = %run_name, "off-site copy failed; retention skipped (the local backup is ok)");
            return RunOutcome::OffsiteFailed;
        }
    }
    match crate::retention::apply(
        &config.backup_dir,
        UtcTime::now(),
        config.retention,
        &run_name,
    ) {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!(deleted = ?deleted, "retention removed expired backups")
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(error = %error, "retention failed; the backup itself is fine")
        }
    }
    if let Some(offsite) = &config.offsite {
        match crate::copies::apply_remote_retention(offsite, &run_name, cancellation) {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::info!(deleted = ?deleted, "remote retention removed expired backups")
            }
            Ok(_) => {}
            Err(code) => {
                tracing::error!(code = %code, "remote retention failed; the backups themselves are fine")
            }
        }
    }
    RunOutcome::Ok
}

/// The off-site pass of a run (see [`crate::copies::catch_up`]).
fn copy_off_site(config: &RunConfig, cancellation: &Cancellation) {
    let Some(offsite) = &config.offsite else {
        return;
    };
    match crate::copies::catch_up(&config.backup_dir, offsite, config.retention, cancellation) {
        Ok(attempts) => {
            if let Some(path) = &config.metrics_file {
                crate::metrics::record_offsite(path, &attempts);
            }
        }
        Err(error) => tracing::error!(error = %error, "cannot list backups for off-site copies"),
    }
}

/// Runs one step unless the run was already interrupted, and logs its outcome.
fn step(
    name: ArtifactName,
    source: Source,
    cancellation: &Cancellation,
    work: impl FnOnce() -> Result<manifest::Written, dump_runner::Error>,
) -> Artifact {
    if cancellation.is_cancelled() {
        tracing::warn!(step = %name, "skipped: the run was interrupted");
        return Artifact::failed(name, source, ErrorCode::Interrupted);
    }
    match work() {
        Ok(written) => {
            tracing::info!(
                step = %name,
                bytes = written.bytes,
                uncompressed_bytes = written.uncompressed_bytes,
                duration_ms = u64::try_from(written.duration.as_millis()).unwrap_or(u64::MAX),
                "step ok"
            );
            Artifact::ok(name, source, written)
        }
        Err(error) => {
            let detail = manifest::redact(&error_chain(&error));
            tracing::error!(step = %name, code = %error.code(), error = %detail, "step failed");
            if let dump_runner::Error::Failed { stderr, .. } = &error
                && !stderr.is_empty()
            {
                tracing::warn!(step = %name, stderr = %stderr, "pg_dump stderr");
            }
            Artifact::failed(name, source, error.code())
        }
    }
}

fn dump(
    config: &RunConfig,
    dsn: &dsn::Dsn,
    output: &Path,
    cancellation: &Cancellation,
) -> Result<manifest::Written, dump_runner::Error> {
    if !dsn.ignored_parameters().is_empty() {
        tracing::warn!(parameters = ?dsn.ignored_parameters(), "JDBC-only parameters ignored");
    }
    let dumped = dump_runner::dump(&DumpJob {
        program: &config.pg_dump,
        dsn,
        output,
        timeout: config.pg_timeout,
        compression: config.compression,
        recipients: config.recipients.as_ref(),
        cancellation,
        progress_interval: dump_runner::PROGRESS_INTERVAL,
    })?;
    if !dumped.stderr.is_empty() {
        tracing::warn!(stderr = %dumped.stderr, "pg_dump wrote to stderr");
    }
    Ok(dumped.written)
}

fn stored_file_name(config: &RunConfig, name: ArtifactName) -> String {
    let encryption = config
        .recipients
        .as_ref()
        .map(|_| manifest::Encryption::Age);
    name.stored_file_name(config.compression.codec, encryption)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
