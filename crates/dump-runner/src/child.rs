//! The one door for the PostgreSQL client programs (`pg_dump`, `psql`): a child in
//! its own process group, an empty environment plus the DSN's libpq variables and
//! `PGPASSFILE`, and a control loop that no blocking read or write can delay.
//!
//! ```text
//!   child (own process group) ◄─stdin── feed thread (optional: a restore's SQL)
//!                             ──stdout─► pump thread (the dump, or psql's answer)
//!                             ──stderr─► drain thread (keeps the last 64 KiB)
//!                             ──exit───► wait thread
//!   control loop (caller's thread): those events, the deadline, cancellation and
//!   the progress tick; on timeout or cancel: SIGTERM to the group, SIGKILL 5 s later.
//! ```

use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use dsn::Dsn;

use crate::cancel::Cancellation;

/// After SIGTERM, how long the group has before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How much of stderr is kept (the end of it).
pub const STDERR_TAIL: usize = 64 * 1024;

/// One run of a client program.
pub(crate) struct ChildJob<'a> {
    /// A path, or a name looked up on `PATH`.
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<OsString>,
    /// Whose libpq variables and password (through a pgpass file) the child gets.
    pub(crate) dsn: &'a Dsn,
    pub(crate) timeout: Duration,
    pub(crate) cancellation: &'a Cancellation,
    pub(crate) progress_interval: Duration,
    /// The log line for progress (bytes through the pump or the feed so far).
    pub(crate) progress_message: &'static str,
}

/// Why a child run failed, before the caller names it for its own step.
#[derive(Debug)]
pub(crate) enum ChildError {
    NotFound(PathBuf),
    Spawn(std::io::Error),
    Pgpass(dsn::Error),
    Timeout,
    Interrupted,
    Failed { status: ExitStatus, stderr: String },
    Read(std::io::Error),
    Write(std::io::Error),
    Abandoned,
}

/// What a pump or feed thread reports.
pub(crate) enum PipeError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// The stdin feed: gets the pipe and the progress counter.
pub(crate) type Feed = Box<dyn FnOnce(ChildStdin, &AtomicU64) -> Result<(), PipeError> + Send>;

enum Event<O> {
    Exited(std::io::Result<ExitStatus>),
    Output(Result<O, PipeError>),
    Fed(Result<(), PipeError>),
    Stderr(Vec<u8>),
    Cancelled,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Timeout,
    Interrupted,
    PipeFailed,
}

/// Runs the child to its end. `pump` consumes its stdout; `feed`, if any, writes
/// its stdin (else stdin is `/dev/null`). Returns the pump's result and the
/// redacted stderr tail; the pgpass file is gone when this returns.
pub(crate) fn supervise<O: Send + 'static>(
    job: &ChildJob<'_>,
    feed: Option<Feed>,
    pump: impl FnOnce(ChildStdout, &AtomicU64) -> Result<O, PipeError> + Send + 'static,
) -> Result<(O, String), ChildError> {
    let started = Instant::now();
    let program = resolve_program(job.program)?;
    let pgpass = job.dsn.write_pgpass().map_err(ChildError::Pgpass)?;
    let mut command = client_command(&program, feed.is_some());
    command.args(&job.args).envs(job.dsn.libpq_env());
    if let Some(pgpass) = &pgpass {
        command.env("PGPASSFILE", pgpass.path());
    }
    let mut child = command.spawn().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => ChildError::NotFound(program.clone()),
        _ => ChildError::Spawn(error),
    })?;
    let mut group = ProcessGroup::new(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    widen_pipe(&stdout);
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdin = child.stdin.take();
    let progress = Arc::new(AtomicU64::new(0));
    let (events, inbox) = mpsc::channel();
    spawn_named("child-stdout", {
        let events = events.clone();
        let progress = Arc::clone(&progress);
        move || {
            let _ = events.send(Event::Output(pump(stdout, &progress)));
        }
    });
    let mut fed = Some(Ok(()));
    if let (Some(feed), Some(stdin)) = (feed, stdin) {
        fed = None;
        let events = events.clone();
        let progress = Arc::clone(&progress);
        spawn_named("child-stdin", move || {
            let _ = events.send(Event::Fed(feed(stdin, &progress)));
        });
    }
    spawn_named("child-stderr", {
        let events = events.clone();
        move || {
            let _ = events.send(Event::Stderr(drain_tail(stderr)));
        }
    });
    spawn_named("child-wait", {
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
    while status.is_none() || output.is_none() || stderr_tail.is_none() || fed.is_none() {
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
                    end_early(Ending::PipeFailed, &mut ending, &mut kill_at, &group);
                }
                output = Some(result);
            }
            Ok(Event::Fed(result)) => {
                if result.is_err() {
                    end_early(Ending::PipeFailed, &mut ending, &mut kill_at, &group);
                }
                fed = Some(result);
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
                    log_progress(
                        job.progress_message,
                        progress.load(Ordering::Relaxed),
                        started.elapsed(),
                    );
                    next_progress += job.progress_interval;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // The password file goes as soon as the child is done, whatever the outcome.
    drop(pgpass);

    let stderr = manifest::redact(&String::from_utf8_lossy(&stderr_tail.unwrap_or_default()));
    match ending {
        Some(Ending::Interrupted) => return Err(ChildError::Interrupted),
        Some(Ending::Timeout) => return Err(ChildError::Timeout),
        Some(Ending::PipeFailed) | None => {}
    }
    let (Some(status), Some(output)) = (status, output) else {
        return Err(ChildError::Abandoned);
    };
    let status = status.map_err(ChildError::Read)?;
    let fed = fed.unwrap_or(Ok(()));
    // Our side failing (disk full, an unreadable artifact) is the cause of the
    // child's end, unless it is a broken pipe: then the child stopped reading, and
    // its exit status and stderr say why.
    let ours = |error: &PipeError| !matches!(error, PipeError::Write(source) if source.kind() == std::io::ErrorKind::BrokenPipe);
    match (output, fed) {
        (Err(error), _) if ours(&error) => Err(pipe_error(error)),
        (_, Err(error)) if ours(&error) => Err(pipe_error(error)),
        _ if !status.success() => Err(ChildError::Failed { status, stderr }),
        (Err(error), _) | (_, Err(error)) => Err(pipe_error(error)),
        (Ok(output), Ok(())) => Ok((output, stderr)),
    }
}

fn pipe_error(error: PipeError) -> ChildError {
    match error {
        PipeError::Read(source) => ChildError::Read(source),
        PipeError::Write(source) => ChildError::Write(source),
    }
}

/// The program as given when it contains a `/`, else the first match on `PATH`.
fn resolve_program(program: &Path) -> Result<PathBuf, ChildError> {
    let not_found = || ChildError::NotFound(program.to_owned());
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

#[expect(
    clippy::disallowed_methods,
    reason = "dump-runner is the one door through which the client programs are started"
)]
fn client_command(program: &Path, with_stdin: bool) -> Command {
    let mut command = Command::new(program);
    command
        // Nothing of our environment reaches the child: no PGPASSWORD, no DSN variable.
        .env_clear()
        // English messages, which is what `classify` matches.
        .env("LC_MESSAGES", "C")
        .stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command
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

fn log_progress(message: &'static str, bytes: u64, elapsed: Duration) {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let rate = mib / elapsed.as_secs_f64().max(0.001);
    tracing::info!(
        uncompressed_mib = format!("{mib:.1}"),
        mib_per_s = format!("{rate:.1}"),
        "{message}"
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

/// The capacity asked for the child's stdout pipe: a dump arrives at hundreds of
/// megabytes a second, and at the default 64 KiB the child and the reader wake each
/// other every few dozen `write`s, on the same two cores as the compressor.
const PIPE_CAPACITY: libc::c_int = 1024 * 1024;

/// Best effort: an unprivileged process may be capped below [`PIPE_CAPACITY`]
/// (`/proc/sys/fs/pipe-max-size`), and the default pipe works all the same.
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: F_SETPIPE_SZ on a pipe we own; a failure leaves it unchanged.
    unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_CAPACITY) };
}
