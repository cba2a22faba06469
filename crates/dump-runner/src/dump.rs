//! `pg_dump` as a child process with a hard wall-clock timeout.
//!
//! Threads of one dump:
//!
//! ```text
//!   pg_dump (own process group) ──stdout──► pump thread ──► ParallelGzip ──► NAME.partial
//!                                           (CopyCounter: rows per table, same pass)
//!                               ──stderr──► drain thread (keeps the last 64 KiB)
//!                               ──exit────► wait thread
//!   control loop (caller's thread): waits for those three events, the deadline,
//!   cancellation and the progress tick; on timeout or cancel: SIGTERM to the
//!   group, SIGKILL 5 s later.
//! ```
//!
//! Because every blocking read happens on a thread of its own, the deadline does
//! not depend on the child's output: a `pg_dump` that hangs, floods stderr or
//! writes nothing is killed on time all the same. The password reaches `pg_dump`
//! only through the private pgpass file, which is removed when the step ends.

use std::fs::File;
use std::io::{Read, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use dsn::{Dsn, PgpassFile};
use manifest::Written;

use crate::cancel::Cancellation;
use crate::copy_count::CopyCounter;
use crate::error::Error;
use crate::gzip::{Finished, ParallelGzip};
use crate::{classify, partial_path};

/// After SIGTERM, how long the group has before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often a running dump logs its progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(30);
/// How much of stderr is kept (the end of it).
pub const STDERR_TAIL: usize = 64 * 1024;

/// One `pg_dump` of one database into one gzip file.
pub struct DumpJob<'a> {
    /// `PG_DUMP`: a path, or a name looked up on `PATH`.
    pub program: &'a Path,
    /// The database.
    pub dsn: &'a Dsn,
    /// The final artifact path (`…/supabase_db.sql.gz`); written as `.partial` first.
    pub output: &'a Path,
    /// Hard wall-clock limit for `pg_dump`.
    pub timeout: Duration,
    /// gzip level 1–9.
    pub compression_level: u32,
    /// Ends the dump early (SIGTERM/SIGINT).
    pub cancellation: &'a Cancellation,
    /// How often to log progress; [`PROGRESS_INTERVAL`] in production.
    pub progress_interval: Duration,
}

/// A successful dump.
#[derive(Debug)]
pub struct Dumped {
    /// Sizes, digest and duration for the manifest.
    pub written: Written,
    /// `pg_dump`'s stderr (warnings), redacted; usually empty.
    pub stderr: String,
}

type RowCounts = std::collections::BTreeMap<String, u64>;

/// Runs the dump; on failure no artifact (and no `.partial`) is left behind.
pub fn dump(job: &DumpJob<'_>) -> Result<Dumped, Error> {
    let started = Instant::now();
    let program = resolve_program(job.program)?;
    let pgpass = job.dsn.write_pgpass().map_err(Error::Pgpass)?;
    let partial = partial_path(job.output);
    let file = manifest::private::create_file(&partial).map_err(|source| Error::Write {
        path: partial.clone(),
        source,
    })?;
    let result = run(job, &program, pgpass.as_ref(), file, started);
    // The password file goes as soon as pg_dump is done, whatever the outcome.
    drop(pgpass);
    match result {
        Ok(((finished, row_counts), stderr)) => {
            manifest::persist(finished.sink, &partial, job.output).map_err(
                |error| match error {
                    manifest::Error::Write { path, source } => Error::Write { path, source },
                    other => Error::Write {
                        path: job.output.to_owned(),
                        source: std::io::Error::other(other),
                    },
                },
            )?;
            let written = Written {
                bytes: finished.bytes,
                uncompressed_bytes: Some(finished.uncompressed_bytes),
                sha256: finished.sha256,
                duration: started.elapsed(),
                row_counts: Some(row_counts),
            };
            Ok(Dumped { written, stderr })
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// `PG_DUMP` as given when it contains a `/`, else the first match on `PATH`.
fn resolve_program(program: &Path) -> Result<PathBuf, Error> {
    let not_found = || Error::NotFound {
        program: program.to_owned(),
    };
    if program.as_os_str().is_empty() {
        return Err(not_found());
    }
    if program.components().count() > 1 || program.is_absolute() {
        return if program.is_file() {
            Ok(program.to_owned())
        } else {
            Err(not_found())
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(not_found)
}

enum Event {
    Exited(std::io::Result<ExitStatus>),
    Output(Result<(Finished<File>, RowCounts), PipeError>),
    Stderr(Vec<u8>),
    Cancelled,
}

enum PipeError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Why the control loop ended the child early.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Timeout,
    Interrupted,
    OutputFailed,
}

fn run(
    job: &DumpJob<'_>,
    program: &Path,
    pgpass: Option<&PgpassFile>,
    file: File,
    started: Instant,
) -> Result<((Finished<File>, RowCounts), String), Error> {
    let mut command = pg_dump_command(program);
    command.envs(job.dsn.libpq_env());
    if let Some(pgpass) = pgpass {
        command.env("PGPASSFILE", pgpass.path());
    }
    let mut child = command.spawn().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            program: program.to_owned(),
        },
        _ => Error::Spawn(error),
    })?;
    let mut group = ProcessGroup::new(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let progress = Arc::new(AtomicU64::new(0));
    let (events, inbox) = mpsc::channel();
    spawn_named("pg_dump-stdout", {
        let events = events.clone();
        let gzip = ParallelGzip::new(file, job.compression_level);
        let progress = Arc::clone(&progress);
        move || {
            let _ = events.send(Event::Output(pump(stdout, gzip, &progress)));
        }
    });
    spawn_named("pg_dump-stderr", {
        let events = events.clone();
        move || {
            let _ = events.send(Event::Stderr(drain_tail(stderr)));
        }
    });
    spawn_named("pg_dump-wait", {
        let events = events.clone();
        move || {
            let _ = events.send(Event::Exited(child.wait()));
        }
    });
    let _subscription = job.cancellation.on_cancel(move || {
        let _ = events.send(Event::Cancelled);
    });

    let deadline = started + job.timeout;
    let mut next_progress = started + job.progress_interval;
    let mut kill_at: Option<Instant> = None;
    let mut give_up_at: Option<Instant> = None;
    let mut ending: Option<Ending> = None;
    let mut status = None;
    let mut output = None;
    let mut stderr_tail = None;
    while status.is_none() || output.is_none() || stderr_tail.is_none() {
        let mut wake = next_progress;
        if ending.is_none() {
            wake = wake.min(deadline);
        }
        for at in [kill_at, give_up_at].into_iter().flatten() {
            wake = wake.min(at);
        }
        match inbox.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Event::Exited(exit)) => {
                // The leader is gone; anything it left in its group goes too, so
                // no process outlives the step and the pipes close.
                group.leader_exited();
                status = Some(exit);
                give_up_at = Some(Instant::now() + KILL_GRACE);
            }
            Ok(Event::Output(result)) => {
                if result.is_err() {
                    end_early(Ending::OutputFailed, &mut ending, &mut kill_at, &group);
                }
                output = Some(result);
            }
            Ok(Event::Stderr(tail)) => stderr_tail = Some(tail),
            Ok(Event::Cancelled) => {
                end_early(Ending::Interrupted, &mut ending, &mut kill_at, &group)
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if ending.is_none() && now >= deadline {
                    end_early(Ending::Timeout, &mut ending, &mut kill_at, &group);
                }
                if kill_at.is_some_and(|at| now >= at) {
                    group.signal(libc::SIGKILL);
                    kill_at = None;
                }
                if give_up_at.is_some_and(|at| now >= at) {
                    break;
                }
                if now >= next_progress {
                    log_progress(progress.load(Ordering::Relaxed), started.elapsed());
                    next_progress += job.progress_interval;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }

    let stderr = manifest::redact(&String::from_utf8_lossy(&stderr_tail.unwrap_or_default()));
    match ending {
        Some(Ending::Interrupted) => return Err(Error::Interrupted),
        Some(Ending::Timeout) => return Err(Error::Timeout { after: job.timeout }),
        Some(Ending::OutputFailed) | None => {}
    }
    let (Some(status), Some(output)) = (status, output) else {
        return Err(Error::Abandoned);
    };
    let finished = match output {
        Ok(finished) => finished,
        Err(PipeError::Write(source)) => {
            return Err(Error::Write {
                path: partial_path(job.output),
                source,
            });
        }
        Err(PipeError::Read(source)) => return Err(Error::Read(source)),
    };
    let status = status.map_err(Error::Read)?;
    if !status.success() {
        return Err(Error::Failed {
            status,
            code: classify::classify_stderr(&stderr),
            stderr,
        });
    }
    Ok((finished, stderr))
}

#[expect(
    clippy::disallowed_methods,
    reason = "dump-runner is the one door through which pg_dump is started"
)]
fn pg_dump_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        // Nothing of our environment reaches pg_dump: no PGPASSWORD, no DSN variable.
        .env_clear()
        // English messages, which is what `classify` matches.
        .env("LC_MESSAGES", "C")
        // A missing password fails at once instead of waiting on a prompt.
        .args(["--format=plain", "--no-owner", "--no-password"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command
}

fn pump(
    mut stdout: ChildStdout,
    mut gzip: ParallelGzip<File>,
    progress: &AtomicU64,
) -> Result<(Finished<File>, RowCounts), PipeError> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut counter = CopyCounter::new();
    loop {
        let read = match stdout.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(PipeError::Read(error)),
        };
        counter.feed(&buffer[..read]);
        gzip.write_all(&buffer[..read]).map_err(PipeError::Write)?;
        progress.fetch_add(read as u64, Ordering::Relaxed);
    }
    Ok((gzip.finish().map_err(PipeError::Write)?, counter.finish()))
}

/// Reads stderr to its end, keeping only the last [`STDERR_TAIL`] bytes.
fn drain_tail(mut stderr: ChildStderr) -> Vec<u8> {
    let mut tail = Vec::with_capacity(2 * STDERR_TAIL);
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stderr.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                tail.extend_from_slice(&buffer[..read]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    tail
}

fn log_progress(bytes: u64, elapsed: Duration) {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let rate = mib / elapsed.as_secs_f64().max(0.001);
    tracing::info!(
        uncompressed_mib = format!("{mib:.1}"),
        mib_per_s = format!("{rate:.1}"),
        "pg_dump in progress"
    );
}

/// Starts ending the child (SIGTERM now, SIGKILL after the grace), once.
fn end_early(
    reason: Ending,
    ending: &mut Option<Ending>,
    kill_at: &mut Option<Instant>,
    group: &ProcessGroup,
) {
    if ending.is_none() {
        *ending = Some(reason);
        group.signal(libc::SIGTERM);
        *kill_at = Some(Instant::now() + KILL_GRACE);
    }
}

fn spawn_named(name: &str, work: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .expect("the OS can start a thread");
}

/// The child's process group; killed on drop unless its leader was seen to exit.
struct ProcessGroup {
    id: libc::pid_t,
    leader_running: bool,
}

impl ProcessGroup {
    fn new(leader: u32) -> ProcessGroup {
        ProcessGroup {
            id: libc::pid_t::try_from(leader).expect("pids fit pid_t"),
            leader_running: true,
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: killpg has no memory-safety preconditions; a group that is already
        // gone yields ESRCH, which is fine.
        unsafe {
            libc::killpg(self.id, signal);
        }
    }

    /// Kills what the leader left behind in its group, right after reaping it.
    fn leader_exited(&mut self) {
        self.leader_running = false;
        self.signal(libc::SIGKILL);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.leader_running {
            self.signal(libc::SIGKILL);
        }
    }
}
