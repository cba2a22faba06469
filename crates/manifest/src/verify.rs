//! `backup-cron verify`: does a backup directory hold what its manifest says?
//!
//! Each artifact file is read once: its bytes are hashed and counted while a gzip
//! or zstd decoder (by the file's extension) consumes the same bytes to the end, so
//! a flipped byte (sha256, the stream's checksum) and a truncated file (size, the
//! stream's end) are both caught. An encrypted (`.age`) artifact is decrypted on
//! the way when an identity is given ([`verify_with`]); without one, its age
//! header is checked and its bytes hashed, which is all a host holding only the
//! public key can prove.

use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::{MANIFEST_FILE, Manifest, PARTIAL_SUFFIX, Status};

/// The verdict on one backup directory.
#[derive(Debug)]
pub struct Verification {
    /// The manifest as read.
    pub manifest: Manifest,
    /// One check per artifact with a file.
    pub artifacts: Vec<ArtifactCheck>,
    /// `*.partial` files left in the directory.
    pub leftovers: Vec<String>,
}

impl Verification {
    /// True when the manifest says `ok`, every artifact checks out and nothing is
    /// left over.
    pub fn is_good(&self) -> bool {
        self.manifest.status == Status::Ok
            && self.leftovers.is_empty()
            && self.artifacts.iter().all(|check| check.problem.is_none())
    }
}

/// One artifact's verdict.
#[derive(Debug)]
pub struct ArtifactCheck {
    /// The file name.
    pub file: String,
    /// What is wrong with it, if anything.
    pub problem: Option<Problem>,
}

/// What can be wrong with an artifact file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The file is not there.
    #[error("missing")]
    Missing,
    /// The file could not be read.
    #[error("unreadable: {0}")]
    Unreadable(std::io::Error),
    /// Its size differs from the manifest's.
    #[error("size {actual} bytes, manifest says {expected}")]
    Size {
        /// From the manifest.
        expected: u64,
        /// On disk.
        actual: u64,
    },
    /// Its sha256 differs from the manifest's.
    #[error("sha256 differs from the manifest")]
    Sha256,
    /// It does not decompress to the end.
    #[error("compressed stream (gzip or zstd) is corrupt or truncated: {0}")]
    Compressed(std::io::Error),
    /// An encrypted file does not decrypt (and decompress) to the end: a chunk's
    /// authentication tag failed, or it ends early.
    #[error("encrypted stream (age) is corrupt or truncated: {0}")]
    Encrypted(std::io::Error),
    /// Its age header is damaged, or no configured identity opens it.
    #[error("{0}")]
    Decrypt(encryption::Error),
    /// It decompresses to a different size than the manifest's `uncompressed_bytes`.
    #[error("decompresses to {actual} bytes, manifest says {expected}")]
    UncompressedSize {
        /// From the manifest.
        expected: u64,
        /// Decompressed.
        actual: u64,
    },
    /// The manifest lists a file name that is not a plain name in the directory.
    #[error("file name is not a plain name")]
    BadName,
}

/// Verifies the backup in `dir`. An error means the manifest itself is missing or
/// unreadable (an interrupted run, or not a backup at all).
pub fn verify(dir: &Path) -> Result<Verification, Error> {
    verify_with(dir, None)
}

/// [`verify`], decrypting encrypted artifacts with `identities` when given.
pub fn verify_with(
    dir: &Path,
    identities: Option<&encryption::Identities>,
) -> Result<Verification, Error> {
    let manifest = Manifest::read(dir)?;
    let artifacts = manifest
        .artifacts
        .iter()
        .filter_map(|artifact| {
            let file = artifact.file.clone()?;
            let problem = check(dir, &file, artifact, Some(identities)).err();
            Some(ArtifactCheck { file, problem })
        })
        .collect();
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut leftovers: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            name.ends_with(PARTIAL_SUFFIX) || name == &format!("{MANIFEST_FILE}{PARTIAL_SUFFIX}")
        })
        .collect();
    leftovers.sort();
    Ok(Verification {
        manifest,
        artifacts,
        leftovers,
    })
}

/// Checks one artifact's size and sha256 against its manifest entry, without
/// decompressing it: what a restore needs before it writes anything (the stream is
/// decoded while it is applied anyway).
pub fn check_digest(dir: &Path, artifact: &crate::Artifact) -> Result<(), Problem> {
    let file = artifact.file.as_deref().ok_or(Problem::Missing)?;
    check(dir, file, artifact, None)
}

/// `decode`: `None` checks size and sha256 only; `Some(identities)` also reads the
/// stream to its end, decrypting with the identities if there are any.
fn check(
    dir: &Path,
    file: &str,
    artifact: &crate::Artifact,
    decode: Option<Option<&encryption::Identities>>,
) -> Result<(), Problem> {
    let is_plain_name = !file.is_empty() && !file.contains('/') && file != "." && file != "..";
    if !is_plain_name {
        return Err(Problem::BadName);
    }
    let path = dir.join(file);
    let opened = std::fs::File::open(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => Problem::Missing,
        _ => Problem::Unreadable(error),
    })?;
    let mut counted = CountingReader {
        inner: opened,
        bytes: 0,
        hasher: Sha256::new(),
    };
    let encrypted = crate::Encryption::of_file(file).is_some();
    let decompressed = match decode {
        Some(None) if encrypted => {
            encryption::check_header(&mut counted).map_err(Problem::Decrypt)?;
            None
        }
        Some(identities) if crate::Codec::of_file(file).is_some() => {
            let mut plain = crate::plain_reader(file, &mut counted, identities).map_err(
                |error| match error {
                    crate::OpenError::Decrypt(error) => Problem::Decrypt(error),
                    crate::OpenError::Decompress(error) => Problem::Compressed(error),
                    other => Problem::Compressed(std::io::Error::other(other)),
                },
            )?;
            let damaged = if encrypted {
                Problem::Encrypted
            } else {
                Problem::Compressed
            };
            Some(std::io::copy(&mut plain, &mut std::io::sink()).map_err(damaged)?)
        }
        _ => None,
    };
    std::io::copy(&mut counted, &mut std::io::sink()).map_err(Problem::Unreadable)?;
    if let Some(expected) = artifact.bytes
        && expected != counted.bytes
    {
        return Err(Problem::Size {
            expected,
            actual: counted.bytes,
        });
    }
    let digest: String = counted
        .hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if artifact.sha256.as_deref() != Some(digest.as_str()) {
        return Err(Problem::Sha256);
    }
    if let (Some(expected), Some(actual)) = (artifact.uncompressed_bytes, decompressed)
        && expected != actual
    {
        return Err(Problem::UncompressedSize { expected, actual });
    }
    Ok(())
}

/// Hashes and counts every byte read through it.
struct CountingReader<R> {
    inner: R,
    bytes: u64,
    hasher: Sha256,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.bytes += read as u64;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}
