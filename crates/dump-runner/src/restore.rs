//! The way back: a dump artifact into a database through `psql`, queries for the
//! checks around it, and the storage archive into a directory.
//!
//! `psql` runs through the same door as `pg_dump` ([`crate::child`]): own process
//! group, pgpass only, hard timeout, cancellation. The dump is decompressed as it
//! streams into `psql --single-transaction -v ON_ERROR_STOP=1`, so the target ends
//! with all of it or none of it. [`unpack`] checks every entry of a storage archive
//! before it writes the first one.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::process::ChildStdout;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dsn::Dsn;

use crate::cancel::Cancellation;
use crate::child::{self, ChildError, ChildJob, PipeError};

/// Why a restore step failed; [`RestoreError::code`] names it with the closed set
/// of restore error codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The `psql` program does not exist.
    #[error("psql program {} not found", program.display())]
    NotFound {
        /// What was looked for.
        program: PathBuf,
    },
    /// `psql` could not be started, or its pipes failed.
    #[error("cannot run psql")]
    Io(#[source] std::io::Error),
    /// The private pgpass file could not be written.
    #[error("cannot prepare the password file")]
    Pgpass(#[source] dsn::Error),
    /// `psql` ran past its limit; its process group was killed.
    #[error("psql did not finish within {} s; its process group was killed", after.as_secs())]
    Timeout {
        /// The limit.
        after: Duration,
    },
    /// Cancelled (SIGTERM/SIGINT).
    #[error("interrupted")]
    Interrupted,
    /// `psql` exited unsuccessfully.
    #[error("psql exited with {status} ({code})")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The classification of its stderr.
        code: RestoreCode,
        /// The last 64 KiB of its stderr, passwords redacted. For the log only.
        stderr: String,
    },
    /// The artifact could not be read or decompressed.
    #[error("cannot read the artifact {}", path.display())]
    Artifact {
        /// The artifact.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The artifact is encrypted and could not be opened: no identity configured,
    /// or none that matches, or a damaged age header.
    #[error("cannot decrypt the artifact {}: {source}", path.display())]
    Decrypt {
        /// The artifact.
        path: PathBuf,
        /// Why.
        #[source]
        source: manifest::OpenError,
    },
    /// The storage archive holds an entry that could escape the target.
    #[error("unsafe archive entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's path as stored.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The target (a database, a directory) already holds something.
    #[error("the restore target {target} is not empty")]
    TargetNotEmpty {
        /// The database or directory, as the operator named it (no password).
        target: String,
    },
    /// Writing an unpacked file failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

pub use manifest::RestoreCode;

impl RestoreError {
    /// The restore error code for this failure.
    pub fn code(&self) -> RestoreCode {
        match self {
            RestoreError::NotFound { .. }
            | RestoreError::Io(_)
            | RestoreError::Pgpass(_)
            | RestoreError::Write { .. } => RestoreCode::RestoreFailed,
            RestoreError::Timeout { .. } => RestoreCode::RestoreTimeout,
            RestoreError::Interrupted => RestoreCode::Interrupted,
            RestoreError::Failed { code, .. } => *code,
            RestoreError::Artifact { .. } => RestoreCode::ArtifactCorrupt,
            RestoreError::Decrypt { .. } => RestoreCode::DecryptFailed,
            RestoreError::Unsafe { .. } => RestoreCode::ArchiveUnsafe,
            RestoreError::TargetNotEmpty { .. } => RestoreCode::RestoreTargetNotEmpty,
        }
    }
}

/// How psql is run.
#[derive(Clone, Copy)]
pub struct Psql<'a> {
    /// `PSQL`: a path, or a name looked up on `PATH`.
    pub program: &'a Path,
    /// Hard limit for each run.
    pub timeout: Duration,
    /// Ends the run early (SIGTERM/SIGINT).
    pub cancellation: &'a Cancellation,
    /// How often a long run logs progress.
    pub progress_interval: Duration,
}

impl Psql<'_> {
    fn job<'b>(&'b self, dsn: &'b Dsn, args: Vec<OsString>, message: &'static str) -> ChildJob<'b> {
        let mut all: Vec<OsString> = [
            "--no-psqlrc",
            "--no-password",
            "--quiet",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        .map(Into::into)
        .to_vec();
        all.extend(args);
        ChildJob {
            program: self.program,
            args: all,
            dsn,
            timeout: self.timeout,
            cancellation: self.cancellation,
            progress_interval: self.progress_interval,
            progress_message: message,
        }
    }

    fn error(&self, error: ChildError) -> RestoreError {
        match error {
            ChildError::NotFound(program) => RestoreError::NotFound { program },
            ChildError::Spawn(source) | ChildError::Read(source) | ChildError::Write(source) => {
                RestoreError::Io(source)
            }
            ChildError::Pgpass(source) => RestoreError::Pgpass(source),
            ChildError::Timeout => RestoreError::Timeout {
                after: self.timeout,
            },
            ChildError::Interrupted => RestoreError::Interrupted,
            ChildError::Failed { status, stderr } => RestoreError::Failed {
                status,
                code: classify(&stderr),
                stderr,
            },
            ChildError::Abandoned => RestoreError::Io(std::io::Error::other(
                "psql's output stayed open after it exited",
            )),
        }
    }

    /// Runs one SQL text (statements separated by `;`) and returns its rows: one
    /// per line, fields separated by the unit separator (0x1f).
    pub fn query(&self, dsn: &Dsn, sql: &str) -> Result<Vec<Vec<String>>, RestoreError> {
        self.query_each(dsn, &[sql])
    }

    /// Counts every table's rows in `dsn`'s database (see [`TABLE_COUNTS_SQL`]), in
    /// a way row-level security cannot hide. A restored table with *forced*
    /// row-level security (the platform's `course_memberships`) hides its rows even
    /// from its owner, the restoring role, unless that role bypasses RLS: a count
    /// would read 0 while the rows are there. So the count runs in a transaction
    /// that lifts FORCE on the tables the counting role owns and is rolled back:
    /// nothing of the restored database changes.
    pub fn table_counts(&self, dsn: &Dsn) -> Result<BTreeMap<String, u64>, RestoreError> {
        table_counts(&self.query_each(
            dsn,
            &[
                "begin",
                UNFORCE_OWN_TABLES_SQL,
                TABLE_COUNTS_SQL,
                "rollback",
            ],
        )?)
    }

    /// Runs `statements` in order in one `psql` session; the rows of all of them.
    fn query_each(&self, dsn: &Dsn, statements: &[&str]) -> Result<Vec<Vec<String>>, RestoreError> {
        let mut args: Vec<OsString> = [
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--field-separator=\u{1f}",
        ]
        .map(OsString::from)
        .into();
        for statement in statements {
            args.push(OsString::from("--command"));
            args.push(OsString::from(statement));
        }
        let (output, _stderr) = child::supervise(
            &self.job(dsn, args, "psql in progress"),
            None,
            |stdout, _| read_bounded(stdout, 16 * 1024 * 1024),
        )
        .map_err(|error| self.error(error))?;
        Ok(String::from_utf8_lossy(&output)
            .lines()
            .map(|line| line.split('\u{1f}').map(str::to_owned).collect())
            .collect())
    }

    /// Applies a compressed (gzip or zstd, by its name) plain dump in one
    /// transaction: all of it or none. An encrypted (`.age`) dump is decrypted
    /// with `identities` as it streams; its header is opened before `psql` starts.
    ///
    /// A dump made by another role than the restoring one carries lines such as
    /// `ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA storage GRANT …`, which
    /// only a member of that role may apply; one such line would roll the whole
    /// restore back. Those lines, for roles the restoring role is not a member of,
    /// are left out and named in the answer: they only set grants for tables created
    /// later, and every grant on the restored tables is its own line.
    pub fn apply_dump(
        &self,
        dsn: &Dsn,
        artifact: &Path,
        identities: Option<&encryption::Identities>,
    ) -> Result<Applied, RestoreError> {
        let plain = plain_artifact(artifact, identities)?;
        let member_of: std::collections::HashSet<String> = self
            .query(dsn, MEMBER_OF_SQL)?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect();
        let args = vec![OsString::from("--single-transaction")];
        let applied = std::sync::Arc::new(AtomicU64::new(0));
        let skipped = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let fed = std::sync::Arc::clone(&applied);
        let left_out = std::sync::Arc::clone(&skipped);
        let feed: child::Feed = Box::new(move |mut stdin, progress: &AtomicU64| {
            let mut plain = BufReader::with_capacity(256 * 1024, plain);
            let mut line = Vec::with_capacity(64 * 1024);
            loop {
                line.clear();
                let read = match std::io::BufRead::read_until(&mut plain, b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(PipeError::Read(error)),
                };
                match default_privileges_role(&line) {
                    Some(role) if !member_of.contains(&role) => {
                        left_out.lock().expect("skipped lines").push(role);
                        stdin.write_all(b"\n").map_err(PipeError::Write)?;
                    }
                    _ => stdin.write_all(&line).map_err(PipeError::Write)?,
                }
                progress.fetch_add(read as u64, Ordering::Relaxed);
                fed.fetch_add(read as u64, Ordering::Relaxed);
            }
            Ok(())
        });
        // The dump's own `SELECT set_config(…)` lines answer on stdout; dropped.
        let result = child::supervise(
            &self.job(dsn, args, "restore in progress"),
            Some(feed),
            |stdout, _| read_bounded(stdout, 0).map(drop),
        );
        match result {
            Ok(((), _)) => Ok(Applied {
                bytes: applied.load(Ordering::Relaxed),
                default_privileges_left_out: std::mem::take(
                    &mut *skipped.lock().expect("skipped lines"),
                ),
            }),
            Err(ChildError::Read(source)) => Err(RestoreError::Artifact {
                path: artifact.to_owned(),
                source,
            }),
            Err(error) => Err(self.error(error)),
        }
    }
}

/// What [`Psql::apply_dump`] applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Uncompressed bytes of the dump.
    pub bytes: u64,
    /// For each `ALTER DEFAULT PRIVILEGES FOR ROLE …` line left out because the
    /// restoring role is not a member of that role: the role it named.
    pub default_privileges_left_out: Vec<String>,
}

/// The roles the connected role is a member of (itself included).
const MEMBER_OF_SQL: &str =
    "select rolname from pg_roles where pg_has_role(current_user, oid, 'member')";

/// The role an `ALTER DEFAULT PRIVILEGES FOR ROLE <role> …` line names, as pg_dump
/// writes it (the name double-quoted when it must be).
fn default_privileges_role(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"ALTER DEFAULT PRIVILEGES FOR ROLE ")?;
    let rest = std::str::from_utf8(rest).ok()?;
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.clone().next() == Some('"') {
                    chars.next();
                    name.push('"');
                } else {
                    return Some(name);
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        rest.split_whitespace().next().map(str::to_owned)
    }
}

/// Reads a child's stdout to its end, keeping at most `limit` bytes.
fn read_bounded(mut stdout: ChildStdout, limit: usize) -> Result<Vec<u8>, PipeError> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stdout.read(&mut buffer) {
            Ok(0) => return Ok(kept),
            Ok(read) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(PipeError::Read(error)),
        }
    }
}

/// psql's stderr, named: libpq's connection messages as for `pg_dump`, the rest
/// `restore_failed`.
fn classify(stderr: &str) -> RestoreCode {
    match crate::classify::classify_stderr(stderr) {
        manifest::ErrorCode::DbAuthFailed => RestoreCode::DbAuthFailed,
        manifest::ErrorCode::DbUnreachable => RestoreCode::DbUnreachable,
        manifest::ErrorCode::DbPermissionDenied if !stderr.contains("ERROR:") => {
            RestoreCode::DbPermissionDenied
        }
        _ if stderr.contains("permission denied") && !stderr.contains("ERROR:") => {
            RestoreCode::DbPermissionDenied
        }
        _ => RestoreCode::RestoreFailed,
    }
}

/// SQL giving every user table of the connected database with its row count,
/// named as `pg_dump` names them (`%I.%I`), one row each: `name`, `count`.
pub const TABLE_COUNTS_SQL: &str = "select format('%I.%I', n.nspname, c.relname), \
     (xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %I.%I', n.nspname, c.relname), false, true, '')))[1]::text \
     from pg_class c join pg_namespace n on n.oid = c.relnamespace \
     where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') \
     and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%' order by 1";

/// Lifts FORCE ROW LEVEL SECURITY from the tables the current role owns; run only
/// inside a transaction that is rolled back ([`Psql::table_counts`]).
const UNFORCE_OWN_TABLES_SQL: &str = "do $$ declare forced record; begin \
     for forced in select c.oid::regclass as name from pg_class c \
       where c.relkind = 'r' and c.relforcerowsecurity and pg_has_role(current_user, c.relowner, 'usage') \
     loop execute format('alter table %s no force row level security', forced.name); end loop; end $$";

/// SQL counting the relations outside the system schemas: 0 means an empty target.
pub const USER_RELATIONS_SQL: &str = "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
     where n.nspname not in ('pg_catalog', 'information_schema') \
     and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'";

/// Parses [`TABLE_COUNTS_SQL`]'s rows.
pub fn table_counts(rows: &[Vec<String>]) -> Result<BTreeMap<String, u64>, RestoreError> {
    rows.iter()
        .map(|row| match &row[..] {
            [name, count] => count
                .parse()
                .map(|count| (name.clone(), count))
                .map_err(|_| {
                    RestoreError::Io(std::io::Error::other(format!("not a count: {count:?}")))
                }),
            _ => Err(RestoreError::Io(std::io::Error::other(format!(
                "unexpected row {row:?}"
            )))),
        })
        .collect()
}

/// The plain stream of an artifact file: decrypted if it is `.age`, decompressed
/// by its codec.
fn plain_artifact(
    artifact: &Path,
    identities: Option<&encryption::Identities>,
) -> Result<Box<dyn Read + Send>, RestoreError> {
    let artifact_error = |source| RestoreError::Artifact {
        path: artifact.to_owned(),
        source,
    };
    let name = artifact
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let file = File::open(artifact).map_err(artifact_error)?;
    manifest::plain_reader(name, BufReader::new(file), identities).map_err(|error| match error {
        manifest::OpenError::Decompress(source) => artifact_error(source),
        manifest::OpenError::UnknownCodec => {
            artifact_error(std::io::Error::other("neither .gz nor .zst"))
        }
        source => RestoreError::Decrypt {
            path: artifact.to_owned(),
            source,
        },
    })
}

/// What [`unpack`] wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Unpacks a storage archive (tar.gz or tar.zst, decrypted with `identities` when
/// it is `.age`) into `into`, which must not exist or be empty. Every entry is
/// checked first (absolute paths, `..`, entries below a symlink of the archive,
/// hard links, devices, FIFOs are refused), so a refused archive writes nothing.
pub fn unpack(
    archive: &Path,
    into: &Path,
    identities: Option<&encryption::Identities>,
) -> Result<Unpacked, RestoreError> {
    let open = || -> Result<tar::Archive<Box<dyn Read + Send>>, RestoreError> {
        Ok(tar::Archive::new(plain_artifact(archive, identities)?))
    };
    let corrupt = |source: std::io::Error| RestoreError::Artifact {
        path: archive.to_owned(),
        source,
    };
    let mut symlinks: Vec<PathBuf> = Vec::new();
    let mut checked = open()?;
    for entry in checked.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_entry = |reason| RestoreError::Unsafe {
            entry: raw.clone(),
            reason,
        };
        let path = entry.path().map_err(corrupt)?.into_owned();
        if path.is_absolute() || raw.starts_with('/') {
            return Err(unsafe_entry("absolute path"));
        }
        if path
            .components()
            .any(|component| !matches!(component, Component::Normal(_) | Component::CurDir))
        {
            return Err(unsafe_entry("`..` or a root in the path"));
        }
        if symlinks
            .iter()
            .any(|link| path.starts_with(link) && path != *link)
        {
            return Err(unsafe_entry("below a symlink of the archive"));
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            tar::EntryType::Symlink => symlinks.push(path),
            tar::EntryType::Link => return Err(unsafe_entry("a hard link")),
            _ => return Err(unsafe_entry("not a file, directory or symlink")),
        }
    }
    if into.exists() {
        let mut entries = std::fs::read_dir(into).map_err(|source| RestoreError::Write {
            path: into.to_owned(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(RestoreError::TargetNotEmpty {
                target: into.display().to_string(),
            });
        }
    }
    manifest::private::create_dir_all(into).map_err(|source| RestoreError::Write {
        path: into.to_owned(),
        source,
    })?;
    let mut unpacked = Unpacked { files: 0, bytes: 0 };
    let mut archive = open()?;
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if entry.header().entry_type() == tar::EntryType::Regular {
            unpacked.files += 1;
            unpacked.bytes += entry.size();
        }
        entry
            .unpack_in(into)
            .map_err(|source| RestoreError::Write {
                path: into.to_owned(),
                source,
            })?;
    }
    Ok(unpacked)
}

#[cfg(test)]
mod default_privileges_tests {
    use super::default_privileges_role;

    #[test]
    fn names_the_role_of_a_default_privileges_line_as_pg_dump_writes_it() {
        let line = b"ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA storage GRANT SELECT ON TABLES  TO gustav_limited;\n";
        assert_eq!(default_privileges_role(line).as_deref(), Some("postgres"));
        let quoted =
            b"ALTER DEFAULT PRIVILEGES FOR ROLE \"Odd \"\"one\"\"\" GRANT ALL ON TABLES TO x;\n";
        assert_eq!(
            default_privileges_role(quoted).as_deref(),
            Some("Odd \"one\"")
        );
        assert_eq!(
            default_privileges_role(b"GRANT SELECT ON TABLE t TO x;\n"),
            None
        );
        assert_eq!(
            default_privileges_role(b"-- ALTER DEFAULT PRIVILEGES FOR ROLE postgres\n"),
            None
        );
    }
}
