//! Reading a submission's file safely.
//!
//! The storage key comes from the database, written by the platform from user
//! uploads, so it is treated as hostile: absolute paths and `..` are refused, and
//! the resolved path (symlinks followed) must still lie inside the storage root.
//! The file must be at most 10 MiB, match the row's size and sha256, and its magic
//! bytes must match the declared MIME type. Every violation is a permanent error,
//! since retrying cannot make a wrong file right, and names the platform's code for
//! it: `input_too_large` over 10 MiB, `input_unsupported` for a type nothing here
//! reads, `input_corrupt` for a file that is not what its row says (or a key that
//! leaves the root). A file that is missing or unreadable fails as `vision_failed`:
//! that is the storage's fault, not the upload's. A storage root that is not there at
//! all is the host's problem, not the file's: a misconfigured error.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::adapter::{AdapterError, VisionInput};

/// The largest file vision accepts.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// What the magic bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `image/png`.
    Png,
    /// `image/jpeg`.
    Jpeg,
    /// `application/pdf`.
    Pdf,
}

impl FileKind {
    /// The MIME type.
    pub fn mime_type(self) -> &'static str {
        match self {
            FileKind::Png => "image/png",
            FileKind::Jpeg => "image/jpeg",
            FileKind::Pdf => "application/pdf",
        }
    }

    /// Recognises a file by its first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<FileKind> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(FileKind::Png)
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(FileKind::Jpeg)
        } else if bytes.starts_with(b"%PDF-") {
            Some(FileKind::Pdf)
        } else {
            None
        }
    }
}

/// A verified file.
#[derive(Clone, Debug)]
pub struct SubmissionFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its contents.
    pub bytes: Vec<u8>,
    /// What it is.
    pub kind: FileKind,
}

/// Resolves `key` below `root`, refusing anything that escapes it.
pub fn resolve(root: &Path, key: &str) -> Result<PathBuf, AdapterError> {
    let escapes = || AdapterError::input_corrupt("storage key escapes the storage root");
    let relative = Path::new(key);
    let plain = !key.is_empty()
        && relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if !plain {
        return Err(escapes());
    }
    let root = std::fs::canonicalize(root).map_err(|_| {
        AdapterError::misconfigured(
            "LEARNING_STORAGE_ROOT is not accessible: mount the storage directory there",
        )
    })?;
    let resolved =
        std::fs::canonicalize(root.join(relative)).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => AdapterError::permanent("submission file not found"),
            _ => AdapterError::permanent("submission file is not readable"),
        })?;
    if !resolved.starts_with(&root) {
        return Err(escapes());
    }
    Ok(resolved)
}

/// Reads and verifies one stored file (`expected_kind`: what the file must be).
pub async fn read_verified(
    root: &Path,
    key: &str,
    size_bytes: Option<i32>,
    sha256: Option<&str>,
    declared_mime: Option<&str>,
) -> Result<SubmissionFile, AdapterError> {
    let path = resolve(root, key)?;
    let metadata = tokio::fs::metadata(&path)
        .await
        .map_err(|_| AdapterError::permanent("submission file is not readable"))?;
    if !metadata.is_file() {
        return Err(AdapterError::input_corrupt(
            "submission file is not a regular file",
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(AdapterError::input_too_large(
            "submission file is larger than 10 MiB",
        ));
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| AdapterError::permanent("submission file is not readable"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(AdapterError::input_too_large(
            "submission file is larger than 10 MiB",
        ));
    }
    if let Some(expected) = size_bytes
        && u64::try_from(expected).ok() != Some(bytes.len() as u64)
    {
        return Err(AdapterError::input_corrupt(
            "submission file size differs from the recorded size",
        ));
    }
    if let Some(expected) = sha256 {
        let actual: String = Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(AdapterError::input_corrupt(
                "submission file sha256 differs from the recorded one",
            ));
        }
    }
    let kind = FileKind::sniff(&bytes)
        .ok_or_else(|| AdapterError::input_unsupported("unsupported file type"))?;
    if let Some(declared) = declared_mime
        && !declared.eq_ignore_ascii_case(kind.mime_type())
    {
        let supported = ["image/png", "image/jpeg", "application/pdf"];
        if !supported
            .iter()
            .any(|mime| declared.eq_ignore_ascii_case(mime))
        {
            return Err(AdapterError::input_unsupported("unsupported MIME type"));
        }
        return Err(AdapterError::input_corrupt(format!(
            "declared {declared} but the file is {}",
            kind.mime_type()
        )));
    }
    Ok(SubmissionFile { path, bytes, kind })
}

/// Reads and verifies the file of a submission.
pub async fn read_submission_file(
    root: &Path,
    input: &VisionInput,
) -> Result<SubmissionFile, AdapterError> {
    let key = input
        .storage_key
        .as_deref()
        .ok_or_else(|| AdapterError::input_corrupt("submission has no storage key"))?;
    read_verified(
        root,
        key,
        input.size_bytes,
        input.sha256.as_deref(),
        input.mime_type.as_deref(),
    )
    .await
}
