//! The storage directory as `storage_buckets.tar.gz`.
//!
//! Entries are stored relative to the root (`materials/x.png`), in sorted order:
//! directories, regular files, and symlinks *as symlinks* — a link is never
//! followed, so a link pointing outside the root cannot pull foreign files into the
//! backup. Other file types (sockets, FIFOs, devices) are skipped with a warning.
//! The archive streams through the same parallel gzip as the dumps.

use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use manifest::Written;

use crate::cancel::Cancellation;
use crate::compress::{Compression, Compressor};
use crate::error::Error;
use crate::partial_path;

/// One archive of one directory.
pub struct ArchiveJob<'a> {
    /// `SUPABASE_STORAGE_ROOT`.
    pub root: &'a Path,
    /// The final artifact path; written as `.partial` first.
    pub output: &'a Path,
    /// The codec and its level.
    pub compression: Compression,
    /// `BACKUP_AGE_RECIPIENTS`: encrypt the compressed stream to these keys.
    pub recipients: Option<&'a encryption::Recipients>,
    /// Checked between entries.
    pub cancellation: &'a Cancellation,
}

/// Archives the directory; on failure no artifact (and no `.partial`) is left.
pub fn archive(job: &ArchiveJob<'_>) -> Result<Written, Error> {
    let started = Instant::now();
    let metadata = std::fs::metadata(job.root).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::StorageMissing {
            path: job.root.to_owned(),
        },
        _ => Error::StorageRead {
            path: job.root.to_owned(),
            source,
        },
    })?;
    if !metadata.is_dir() {
        return Err(Error::StorageNotDir {
            path: job.root.to_owned(),
        });
    }
    let partial = partial_path(job.output);
    let result = write_archive(job, &partial);
    match result {
        Ok(finished) => {
            manifest::persist(finished.sink, &partial, job.output).map_err(
                |error| match error {
                    manifest::Error::Write { path, source } => Error::Write { path, source },
                    other => Error::Write {
                        path: job.output.to_owned(),
                        source: io::Error::other(other),
                    },
                },
            )?;
            Ok(Written {
                bytes: finished.bytes,
                uncompressed_bytes: None,
                sha256: finished.sha256,
                duration: started.elapsed(),
                row_counts: None,
                codec: job.compression.codec,
                encryption: job.recipients.map(|_| manifest::Encryption::Age),
            })
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

fn write_archive(
    job: &ArchiveJob<'_>,
    partial: &Path,
) -> Result<crate::gzip::Finished<File>, Error> {
    let write_error = |source| Error::Write {
        path: partial.to_owned(),
        source,
    };
    let file = manifest::private::create_file(partial).map_err(write_error)?;
    let sink = RecordingWriter {
        inner: Compressor::new(file, job.compression, job.recipients).map_err(write_error)?,
        error: Arc::default(),
    };
    let recorded = Arc::clone(&sink.error);
    let mut builder = tar::Builder::new(sink);
    builder.follow_symlinks(false);
    // An append failure is ours to report as a write error if the sink failed,
    // otherwise it was reading the source.
    let classify =
        |path: &Path, source: io::Error| match recorded.lock().expect("recorder lock").take() {
            Some(write) => Error::Write {
                path: partial.to_owned(),
                source: write,
            },
            None => Error::StorageRead {
                path: path.to_owned(),
                source,
            },
        };
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        if job.cancellation.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let absolute = job.root.join(&relative);
        let children = read_sorted(&absolute)?;
        for (name, metadata) in &children {
            let child_relative = relative.join(name);
            let child_absolute = job.root.join(&child_relative);
            let file_type = metadata.file_type();
            if file_type.is_symlink() {
                let target =
                    std::fs::read_link(&child_absolute).map_err(|source| Error::StorageRead {
                        path: child_absolute.clone(),
                        source,
                    })?;
                let mut header = tar::Header::new_gnu();
                header.set_metadata_in_mode(metadata, tar::HeaderMode::Complete);
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, &child_relative, &target)
                    .map_err(|source| classify(&child_absolute, source))?;
            } else if file_type.is_dir() {
                builder
                    .append_dir(&child_relative, &child_absolute)
                    .map_err(|source| classify(&child_absolute, source))?;
            } else if file_type.is_file() {
                let mut file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&child_absolute)
                    .map_err(|source| Error::StorageRead {
                        path: child_absolute.clone(),
                        source,
                    })?;
                builder
                    .append_file(&child_relative, &mut file)
                    .map_err(|source| classify(&child_absolute, source))?;
            } else {
                tracing::warn!(path = %child_absolute.display(), "skipping a special file in the storage root");
            }
        }
        // A stack: pushed in reverse so that subdirectories come out in name order.
        pending.extend(
            children
                .iter()
                .rev()
                .filter(|(_, metadata)| metadata.file_type().is_dir())
                .map(|(name, _)| relative.join(name)),
        );
    }
    let sink = builder
        .into_inner()
        .map_err(|source| classify(job.root, source))?;
    sink.inner.finish().map_err(write_error)
}

/// A directory's entries with their (not followed) metadata, sorted by name.
fn read_sorted(dir: &Path) -> Result<Vec<(std::ffi::OsString, Metadata)>, Error> {
    let read_error = |source| Error::StorageRead {
        path: dir.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let metadata =
            std::fs::symlink_metadata(entry.path()).map_err(|source| Error::StorageRead {
                path: entry.path(),
                source,
            })?;
        entries.push((entry.file_name(), metadata));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Passes writes through and remembers the first error, so that a failed append
/// can be told apart: our disk, or the source file.
struct RecordingWriter {
    inner: Compressor,
    error: Arc<Mutex<Option<io::Error>>>,
}

impl Write for RecordingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner
            .write(data)
            .inspect_err(|error| self.record(error))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|error| self.record(error))
    }
}

impl RecordingWriter {
    fn record(&self, error: &io::Error) {
        let mut slot = self.error.lock().expect("recorder lock");
        if slot.is_none() {
            *slot = Some(match error.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(error.kind(), error.to_string()),
            });
        }
    }
}
