//! `pg_dump` as a child process with a hard wall-clock timeout.
//!
//! It runs through [`crate::child`], the crate's one door for client programs: its
//! own process group, an empty environment plus the DSN's libpq variables, the
//! password only through a private pgpass file, and a deadline no blocking read
//! can delay (a `pg_dump` that hangs, floods stderr or writes nothing is killed on
//! time all the same). Its stdout streams through [`CopyCounter`] (rows per
//! table) into [`ParallelGzip`] and `NAME.partial`, in one pass.

use std::fs::File;
use std::io::{Read, Write as _};
use std::path::Path;
use std::process::ChildStdout;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dsn::Dsn;
use manifest::Written;

use crate::cancel::Cancellation;
use crate::child::{self, ChildError, ChildJob, PipeError};
use crate::compress::{Compression, Compressor};
use crate::copy_count::CopyCounter;
use crate::error::Error;
use crate::gzip::Finished;
use crate::{classify, partial_path};

pub use crate::child::{KILL_GRACE, STDERR_TAIL};

/// How often a running dump logs its progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(30);

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
    /// The codec and its level.
    pub compression: Compression,
    /// `BACKUP_AGE_RECIPIENTS`: encrypt the compressed stream to these keys.
    pub recipients: Option<&'a encryption::Recipients>,
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
    let partial = partial_path(job.output);
    let file = manifest::private::create_file(&partial).map_err(|source| Error::Write {
        path: partial.clone(),
        source,
    })?;
    let result = run(job, file);
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
                codec: job.compression.codec,
                encryption: job.recipients.map(|_| manifest::Encryption::Age),
            };
            Ok(Dumped { written, stderr })
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

fn run(job: &DumpJob<'_>, file: File) -> Result<((Finished<File>, RowCounts), String), Error> {
    let child = ChildJob {
        program: job.program,
        // A missing password fails at once instead of waiting on a prompt.
        args: ["--format=plain", "--no-owner", "--no-password"]
            .map(Into::into)
            .to_vec(),
        dsn: job.dsn,
        timeout: job.timeout,
        cancellation: job.cancellation,
        progress_interval: job.progress_interval,
        progress_message: "pg_dump in progress",
    };
    let compressor =
        Compressor::new(file, job.compression, job.recipients).map_err(|source| Error::Write {
            path: partial_path(job.output),
            source,
        })?;
    child::supervise(&child, None, move |stdout, progress| {
        pump(stdout, compressor, progress)
    })
    .map_err(|error| match error {
        ChildError::NotFound(program) => Error::NotFound { program },
        ChildError::Spawn(source) => Error::Spawn(source),
        ChildError::Pgpass(source) => Error::Pgpass(source),
        ChildError::Timeout => Error::Timeout { after: job.timeout },
        ChildError::Interrupted => Error::Interrupted,
        ChildError::Failed { status, stderr } => Error::Failed {
            status,
            code: classify::classify_stderr(&stderr),
            stderr,
        },
        ChildError::Read(source) => Error::Read(source),
        ChildError::Write(source) => Error::Write {
            path: partial_path(job.output),
            source,
        },
        ChildError::Abandoned => Error::Abandoned,
    })
}

fn pump(
    mut stdout: ChildStdout,
    mut compressor: Compressor,
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
        compressor
            .write_all(&buffer[..read])
            .map_err(PipeError::Write)?;
        progress.fetch_add(read as u64, Ordering::Relaxed);
    }
    Ok((
        compressor.finish().map_err(PipeError::Write)?,
        counter.finish(),
    ))
}
