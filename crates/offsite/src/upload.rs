//! One backup directory to the object store: artifacts streamed and hashed, each
//! remote size checked, the manifest last.

use std::path::Path;
use std::time::Instant;

use futures_util::StreamExt as _;
use manifest::{Manifest, Offsite, OffsiteCode, OffsiteObject, Status};
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutPayload, WriteMultipart};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use crate::classify::upload_error;
use crate::{Deadline, PART_SIZE, PARTS_IN_FLIGHT, Remote};

/// What one upload sent.
struct Sent {
    bytes: u64,
    sha256: String,
}

impl Remote {
    /// Uploads the backup in `dir` as the remote backup `stamp` and returns the
    /// record to write as its `offsite.json`. Only a backup whose manifest is `ok`
    /// is uploaded (anything else is `s3_verify_failed`: there is nothing to copy).
    pub fn upload(
        &self,
        dir: &Path,
        stamp: &str,
        deadline: Deadline,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Offsite {
        let started = Instant::now();
        let mut objects = Vec::new();
        let result = match Manifest::read(dir) {
            Ok(manifest) if manifest.status == Status::Ok => self.block_on(
                deadline,
                cancelled,
                self.send_backup(dir, stamp, &manifest, &mut objects),
            ),
            _ => Err(OffsiteCode::S3VerifyFailed),
        };
        let error = result.err();
        if let Some(code) = error {
            tracing::warn!(backup = stamp, code = %code, "off-site copy failed");
        }
        Offsite::new(manifest::UtcTime::now(), started.elapsed(), objects, error)
    }

    async fn send_backup(
        &self,
        dir: &Path,
        stamp: &str,
        manifest: &Manifest,
        objects: &mut Vec<OffsiteObject>,
    ) -> Result<(), OffsiteCode> {
        // One cheap listing first: a missing bucket, wrong keys or an unreachable
        // store show here, before any data is read (some S3-compatible servers
        // create a bucket's directory on a PUT instead of refusing it).
        let stamp_prefix = self.stamp_path(stamp);
        if let Some(Err(error)) = self.store.list(Some(&stamp_prefix)).next().await {
            return Err(logged(&error, "(bucket)"));
        }
        for artifact in &manifest.artifacts {
            let (Status::Ok, Some(file)) = (artifact.status, &artifact.file) else {
                continue;
            };
            let sent = self.send_file(&dir.join(file), stamp, file).await?;
            let as_recorded = artifact.sha256.as_deref() == Some(sent.sha256.as_str())
                && artifact.bytes == Some(sent.bytes);
            if !as_recorded {
                tracing::error!(backup = stamp, file = %file, "the local file no longer matches its manifest");
                return Err(OffsiteCode::S3VerifyFailed);
            }
            objects.push(OffsiteObject {
                file: file.clone(),
                bytes: sent.bytes,
                sha256: sent.sha256,
            });
        }
        let sent = self
            .send_file(
                &dir.join(manifest::MANIFEST_FILE),
                stamp,
                manifest::MANIFEST_FILE,
            )
            .await?;
        objects.push(OffsiteObject {
            file: manifest::MANIFEST_FILE.to_owned(),
            bytes: sent.bytes,
            sha256: sent.sha256,
        });
        Ok(())
    }

    /// Streams one file, hashing what is sent, then checks the remote size.
    async fn send_file(&self, path: &Path, stamp: &str, file: &str) -> Result<Sent, OffsiteCode> {
        let key = self.key(stamp, file);
        let unreadable = |error: std::io::Error| {
            tracing::error!(file = %file, error = %error, "cannot read the file to upload");
            OffsiteCode::S3VerifyFailed
        };
        let mut source = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let length = source.metadata().await.map_err(unreadable)?.len();
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        if length <= PART_SIZE as u64 {
            let mut whole = Vec::with_capacity(usize::try_from(length).unwrap_or(PART_SIZE));
            source.read_to_end(&mut whole).await.map_err(unreadable)?;
            hasher.update(&whole);
            bytes = whole.len() as u64;
            self.store
                .put(&key, PutPayload::from(whole))
                .await
                .map_err(|error| logged(&error, file))?;
        } else {
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|error| logged(&error, file))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut buffer = vec![0u8; 1024 * 1024];
            let streamed: Result<(), OffsiteCode> = async {
                loop {
                    writer
                        .wait_for_capacity(PARTS_IN_FLIGHT)
                        .await
                        .map_err(|error| logged(&error, file))?;
                    let read = source.read(&mut buffer).await.map_err(unreadable)?;
                    if read == 0 {
                        return Ok(());
                    }
                    hasher.update(&buffer[..read]);
                    bytes += read as u64;
                    writer.write(&buffer[..read]);
                }
            }
            .await;
            match streamed {
                Ok(()) => {
                    writer
                        .finish()
                        .await
                        .map_err(|error| logged(&error, file))?;
                }
                Err(code) => {
                    // Best effort: parts left behind cost storage until the
                    // bucket's lifecycle rule for incomplete uploads removes them.
                    let _ = writer.abort().await;
                    return Err(code);
                }
            }
        }
        let remote = self
            .store
            .head(&key)
            .await
            .map_err(|error| logged(&error, file))?;
        if remote.size != bytes {
            tracing::error!(file = %file, sent = bytes, remote = remote.size, "remote size differs from what was sent");
            return Err(OffsiteCode::S3VerifyFailed);
        }
        Ok(Sent {
            bytes,
            sha256: hex(&hasher.finalize()),
        })
    }
}

/// Logs a failed request by its kind (the provider's message can name the bucket
/// and key; the log gets the code and our file name) and returns its code.
pub(crate) fn logged(error: &object_store::Error, file: &str) -> OffsiteCode {
    let code = upload_error(error);
    tracing::warn!(file = %file, code = %code, "object store request failed");
    code
}

pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
