//! The on-disk format of a backup: `manifest.json`, the directory layout around it
//! (stamp directories, the run lock, the scheduler's start record) and `verify`,
//! which reads it back, plus the UTC time arithmetic of stamps and RFC 3339.
//! What a run *does* with the directory (when to run, what to delete) is
//! `backup-cron`'s: its schedule and retention modules.
//!
//! A backup run writes one directory `BACKUP_DIR/<stamp>/` (UTC
//! `YYYY-MM-DD_HHMMSS`, `-2`, `-3`… on collision) holding its artifacts and, written
//! last and atomically, `manifest.json`. A directory without a manifest is an
//! interrupted run. The manifest says what happened in a closed vocabulary: artifact
//! names, kinds and sources are enums, failures are [`ErrorCode`]s, and there is no
//! free-text field at all, so no host, database, user, path or stderr excerpt can
//! end up in it by construction. Free text goes to logs, through [`redact`].
//!
//! # Example
//!
//! ```
//! use manifest::{Artifact, ArtifactName, ErrorCode, Manifest, Source, UtcTime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let started = UtcTime::from_unix_seconds(1_795_917_600);
//! let artifacts = vec![
//!     Artifact::failed(ArtifactName::KeycloakDb, Source::KcDbUrl, ErrorCode::PgDumpTimeout),
//! ];
//! let manifest = Manifest::new("backup-cron 0.1.0", started, started, artifacts);
//! assert_eq!(manifest.error.as_ref().map(|error| error.code), Some(ErrorCode::PgDumpTimeout));
//! manifest.write_atomic(dir.path())?;
//! assert_eq!(Manifest::read(dir.path())?, manifest);
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//!
//! Artifacts and the manifest are written as a temporary name, fsynced, renamed into
//! place, and the directory fsynced ([`persist`]): after a crash a name either does
//! not exist or refers to complete contents.

mod code;
mod drill;
mod error;
mod layout;
mod offsite;
pub mod private;
mod redact;
mod stored;
#[cfg(test)]
mod tests;
mod time;
mod verify;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use code::{ErrorCode, RestoreCode};
pub use drill::{DRILL_FILE, DRILL_SCHEMA, Drill, DrillError, Mismatch};
pub use error::Error;
pub use layout::{BackupDir, LOCK_FILE, RunLock, SCHEDULER_FILE, StampDir};
pub use offsite::{
    OFFSITE_FILE, OFFSITE_SCHEMA, Offsite, OffsiteCode, OffsiteError, OffsiteObject,
};
pub use redact::redact;
pub use stored::{Encryption, OpenError, plain_reader};
pub use time::UtcTime;
pub use verify::{ArtifactCheck, Problem, Verification, check_digest, verify, verify_with};

/// The file name of the manifest inside a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The value of the `schema` field.
pub const SCHEMA: &str = "backup-manifest/v1";
/// Suffix of an artifact while it is being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// `ok` when every artifact is ok.
    pub status: Status,
    /// When the manifest was written (equals `finished_at`).
    pub timestamp: Timestamp,
    /// When the run started.
    pub started_at: Timestamp,
    /// When the run finished.
    pub finished_at: Timestamp,
    /// `finished_at - started_at`, in milliseconds.
    pub duration_ms: u64,
    /// The program and version that wrote it, e.g. `backup-cron 0.1.0`.
    pub tool: String,
    /// One entry per step, in the order the steps ran.
    pub artifacts: Vec<Artifact>,
    /// The first failure, or `null`.
    pub error: Option<RunError>,
}

impl Manifest {
    /// A manifest for a run with these artifacts; status and error follow from them.
    pub fn new(
        tool: &str,
        started_at: UtcTime,
        finished_at: UtcTime,
        artifacts: Vec<Artifact>,
    ) -> Manifest {
        let error = artifacts.iter().find_map(|artifact| {
            let code = artifact.error.as_ref()?.code;
            Some(RunError {
                code,
                step: artifact.name,
            })
        });
        let duration_seconds = finished_at
            .unix_seconds()
            .saturating_sub(started_at.unix_seconds());
        Manifest {
            schema: SCHEMA.to_owned(),
            status: if error.is_none() {
                Status::Ok
            } else {
                Status::Failed
            },
            timestamp: Timestamp(finished_at),
            started_at: Timestamp(started_at),
            finished_at: Timestamp(finished_at),
            duration_ms: u64::try_from(duration_seconds).unwrap_or(0) * 1000,
            tool: tool.to_owned(),
            artifacts,
            error,
        }
    }

    /// Overrides `duration_ms` with a measured, millisecond-precise duration.
    pub fn with_duration(mut self, duration: std::time::Duration) -> Manifest {
        self.duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Writes `dir/manifest.json` atomically: temp file, fsync, rename, fsync dir.
    pub fn write_atomic(&self, dir: &Path) -> Result<(), Error> {
        write_record_atomic(&dir.join(MANIFEST_FILE), self)
    }

    /// Reads and parses `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, Error> {
        read_record(&dir.join(MANIFEST_FILE))
    }

    /// Parses a manifest's bytes (one fetched from an object store, say), with the
    /// same strictness as [`Manifest::read`].
    pub fn from_slice(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Writes a JSON record (the manifest, `drill.json`, `offsite.json`) pretty-printed
/// with a final newline, atomically ([`write_file_atomic`]).
pub(crate) fn write_record_atomic<T: Serialize>(target: &Path, record: &T) -> Result<(), Error> {
    let mut json = serde_json::to_vec_pretty(record).expect("our records always serialise");
    json.push(b'\n');
    write_file_atomic(target, &json)
}

/// Reads and parses a JSON record, as strictly as its type says.
pub(crate) fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Writes `target` atomically and privately (0600): `target.partial`, fsync,
/// rename, fsync the directory. Nothing is left at either name on failure.
pub fn write_file_atomic(target: &Path, contents: &[u8]) -> Result<(), Error> {
    let mut temporary = target.as_os_str().to_owned();
    temporary.push(PARTIAL_SUFFIX);
    let temporary = std::path::PathBuf::from(temporary);
    let written = private::create_file(&temporary)
        .and_then(|mut file| file.write_all(contents).map(|()| file));
    match written {
        Ok(file) => persist(file, &temporary, target),
        Err(source) => {
            let _ = std::fs::remove_file(&temporary);
            Err(Error::Write {
                path: temporary,
                source,
            })
        }
    }
}

/// Makes a fully written temporary file durable under its final name: fsync the
/// file, rename it, fsync the directory. On failure the temporary file is removed.
pub fn persist(file: std::fs::File, temporary: &Path, target: &Path) -> Result<(), Error> {
    let result = file
        .sync_all()
        .and_then(|()| {
            drop(file);
            std::fs::rename(temporary, target)
        })
        .and_then(|()| sync_parent(target));
    result.map_err(|source| {
        let _ = std::fs::remove_file(temporary);
        Error::Write {
            path: target.to_owned(),
            source,
        }
    })
}

/// fsyncs the directory holding `path`, so that a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

/// `ok` or `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything succeeded.
    Ok,
    /// Something failed; see `error`.
    Failed,
}

/// A UTC time serialised as RFC 3339 (`2026-11-29T02:00:07Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub UtcTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        UtcTime::parse_rfc3339(&text).map(Timestamp).ok_or_else(|| {
            serde::de::Error::custom("expected a UTC time like 2026-11-29T02:00:07Z")
        })
    }
}

/// The first failure of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunError {
    /// What went wrong.
    pub code: ErrorCode,
    /// In which step.
    pub step: ArtifactName,
}

/// An artifact's failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactError {
    /// What went wrong.
    pub code: ErrorCode,
}

/// The steps of a run, each producing at most one artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactName {
    /// The platform database.
    SupabaseDb,
    /// The optional Keycloak database.
    KeycloakDb,
    /// The optional storage directory.
    Storage,
}

impl ArtifactName {
    /// The step name as written in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactName::SupabaseDb => "supabase_db",
            ArtifactName::KeycloakDb => "keycloak_db",
            ArtifactName::Storage => "storage",
        }
    }

    /// The artifact's file name inside the backup directory, gzip-compressed.
    pub fn file_name(self) -> &'static str {
        self.file_name_for(Codec::Gzip)
    }

    /// The artifact's file name when compressed with `codec`.
    pub fn file_name_for(self, codec: Codec) -> &'static str {
        match (self, codec) {
            (ArtifactName::SupabaseDb, Codec::Gzip) => "supabase_db.sql.gz",
            (ArtifactName::KeycloakDb, Codec::Gzip) => "keycloak_db.sql.gz",
            (ArtifactName::Storage, Codec::Gzip) => "storage_buckets.tar.gz",
            (ArtifactName::SupabaseDb, Codec::Zstd) => "supabase_db.sql.zst",
            (ArtifactName::KeycloakDb, Codec::Zstd) => "keycloak_db.sql.zst",
            (ArtifactName::Storage, Codec::Zstd) => "storage_buckets.tar.zst",
        }
    }

    /// The artifact's file name as stored: compressed with `codec`, then
    /// `.age` appended when encrypted.
    pub fn stored_file_name(self, codec: Codec, encryption: Option<Encryption>) -> String {
        let compressed = self.file_name_for(codec);
        match encryption {
            None => compressed.to_owned(),
            Some(Encryption::Age) => format!("{compressed}{}", encryption::SUFFIX),
        }
    }

    /// What produces it.
    pub fn kind(self) -> ArtifactKind {
        match self {
            ArtifactName::SupabaseDb | ArtifactName::KeycloakDb => ArtifactKind::PgDump,
            ArtifactName::Storage => ArtifactKind::Tar,
        }
    }
}

impl std::fmt::Display for ArtifactName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an artifact is compressed (`BACKUP_COMPRESSION`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// One standard gzip stream (`.gz`): the default.
    #[default]
    Gzip,
    /// One standard zstd stream (`.zst`).
    Zstd,
}

impl Codec {
    /// The name as configured and recorded, e.g. `zstd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// The codec of a file, by its extension (under `.age`, when encrypted);
    /// `None` for an uncompressed name.
    pub fn of_file(file: &str) -> Option<Codec> {
        let file = file.strip_suffix(encryption::SUFFIX).unwrap_or(file);
        if file.ends_with(".gz") {
            Some(Codec::Gzip)
        } else if file.ends_with(".zst") {
            Some(Codec::Zstd)
        } else {
            None
        }
    }

    /// A reader decompressing `inner`.
    pub fn decoder<'a, R: std::io::Read + Send + 'a>(
        self,
        inner: R,
    ) -> std::io::Result<Box<dyn std::io::Read + Send + 'a>> {
        Ok(match self {
            Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
            Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
        })
    }
}

/// What produced an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// `pg_dump --format=plain`, gzipped.
    PgDump,
    /// A tar.gz of a directory.
    Tar,
}

/// The configuration variable an artifact's input came from (its name, never its
/// value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// `SESSION_DATABASE_URL` (or its `_FILE`).
    #[serde(rename = "SESSION_DATABASE_URL")]
    SessionDatabaseUrl,
    /// `BACKUP_DATABASE_URL` (or its `_FILE`).
    #[serde(rename = "BACKUP_DATABASE_URL")]
    BackupDatabaseUrl,
    /// `DATABASE_URL` (or its `_FILE`).
    #[serde(rename = "DATABASE_URL")]
    DatabaseUrl,
    /// `KC_DB_URL` (or its `_FILE`).
    #[serde(rename = "KC_DB_URL")]
    KcDbUrl,
    /// `SUPABASE_STORAGE_ROOT`.
    #[serde(rename = "SUPABASE_STORAGE_ROOT")]
    SupabaseStorageRoot,
}

impl Source {
    /// The variable's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::SessionDatabaseUrl => "SESSION_DATABASE_URL",
            Source::BackupDatabaseUrl => "BACKUP_DATABASE_URL",
            Source::DatabaseUrl => "DATABASE_URL",
            Source::KcDbUrl => "KC_DB_URL",
            Source::SupabaseStorageRoot => "SUPABASE_STORAGE_ROOT",
        }
    }

    /// The source for a variable name, if it is one of ours.
    pub fn from_variable(name: &str) -> Option<Source> {
        [
            Source::SessionDatabaseUrl,
            Source::BackupDatabaseUrl,
            Source::DatabaseUrl,
            Source::KcDbUrl,
            Source::SupabaseStorageRoot,
        ]
        .into_iter()
        .find(|source| source.as_str() == name)
    }
}

/// One step's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Which step.
    pub name: ArtifactName,
    /// The file in the backup directory; `null` when the step failed.
    pub file: Option<String>,
    /// What produced it.
    pub kind: ArtifactKind,
    /// Where its input came from.
    pub source: Source,
    /// `ok` or `failed`.
    pub status: Status,
    /// Size of the file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Size of the dump before compression (pg_dump artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_bytes: Option<u64>,
    /// Hex sha256 of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How long the step took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `zstd` for zstd artifacts; absent means gzip, so that a default run's
    /// manifest stays exactly what it was before zstd existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Codec>,
    /// `age` when the file is encrypted; `bytes` and `sha256` then describe the
    /// encrypted file, `uncompressed_bytes` the plain dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Rows per table as the dump holds them (pg_dump artifacts): counted from its
    /// `COPY` sections while it streamed, keys as the dump writes the names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<BTreeMap<String, u64>>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ArtifactError>,
}

/// What a successful step measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Size before compression, where the step knows it.
    pub uncompressed_bytes: Option<u64>,
    /// Hex sha256 of the file.
    pub sha256: String,
    /// How long the step took.
    pub duration: std::time::Duration,
    /// Rows per table in the dump (pg_dump artifacts).
    pub row_counts: Option<BTreeMap<String, u64>>,
    /// How the file is compressed.
    pub codec: Codec,
    /// How it is encrypted, if it is.
    pub encryption: Option<Encryption>,
}

impl Artifact {
    /// A successful step.
    pub fn ok(name: ArtifactName, source: Source, written: Written) -> Artifact {
        Artifact {
            name,
            file: Some(name.stored_file_name(written.codec, written.encryption)),
            kind: name.kind(),
            source,
            status: Status::Ok,
            bytes: Some(written.bytes),
            uncompressed_bytes: written.uncompressed_bytes,
            sha256: Some(written.sha256),
            duration_ms: Some(u64::try_from(written.duration.as_millis()).unwrap_or(u64::MAX)),
            compression: (written.codec != Codec::Gzip).then_some(written.codec),
            encryption: written.encryption,
            row_counts: written.row_counts,
            error: None,
        }
    }

    /// A failed step: no file.
    pub fn failed(name: ArtifactName, source: Source, code: ErrorCode) -> Artifact {
        Artifact {
            name,
            file: None,
            kind: name.kind(),
            source,
            status: Status::Failed,
            bytes: None,
            uncompressed_bytes: None,
            sha256: None,
            duration_ms: None,
            compression: None,
            encryption: None,
            row_counts: None,
            error: Some(ArtifactError { code }),
        }
    }
}
