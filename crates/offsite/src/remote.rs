//! Reading the remote side: which backups are there (and complete), deleting one
//! stamp prefix, downloading one for `verify --remote`.

use std::io::Write as _;
use std::path::Path;

use futures_util::StreamExt as _;
use manifest::{Manifest, OffsiteCode, Status, UtcTime};
use object_store::{ObjectStore as _, ObjectStoreExt as _};

use crate::upload::logged;
use crate::{Deadline, Remote};

/// A stamp prefix in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteBackup {
    /// The stamp, e.g. `2026-11-29_020000` (prefixes not named like one are never
    /// listed, so never touched).
    pub name: String,
    /// The time in its name.
    pub time: UtcTime,
    /// The `-N` suffix (1 without one).
    pub sequence: u32,
    /// The remote manifest's status; `None` without one (an incomplete upload).
    pub status: Option<Status>,
}

impl Remote {
    fn prefix_path(&self) -> Option<object_store::path::Path> {
        (!self.prefix.is_empty()).then(|| object_store::path::Path::from(self.prefix.as_str()))
    }

    /// Every remote backup under the prefix, oldest first.
    pub fn list(
        &self,
        deadline: Deadline,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<RemoteBackup>, OffsiteCode> {
        self.block_on(deadline, cancelled, async {
            let listing = self
                .store
                .list_with_delimiter(self.prefix_path().as_ref())
                .await
                .map_err(|error| logged(&error, "(listing)"))?;
            let mut backups = Vec::new();
            for prefix in listing.common_prefixes {
                let Some(name) = prefix.filename().map(str::to_owned) else {
                    continue;
                };
                let Some((time, sequence)) = UtcTime::parse_stamp(&name) else {
                    continue;
                };
                let status = match self
                    .store
                    .get(&self.key(&name, manifest::MANIFEST_FILE))
                    .await
                {
                    Ok(result) => {
                        let body = result
                            .bytes()
                            .await
                            .map_err(|error| logged(&error, manifest::MANIFEST_FILE))?;
                        serde_json_status(&body)
                    }
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(error) => return Err(logged(&error, manifest::MANIFEST_FILE)),
                };
                backups.push(RemoteBackup {
                    name,
                    time,
                    sequence,
                    status,
                });
            }
            backups
                .sort_by(|a, b| (a.time, a.sequence, &a.name).cmp(&(b.time, b.sequence, &b.name)));
            Ok(backups)
        })
    }

    /// Deletes every object below the stamp prefix `name` (and nothing else).
    pub fn delete(
        &self,
        name: &str,
        deadline: Deadline,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<u64, OffsiteCode> {
        if UtcTime::parse_stamp(name).is_none() {
            return Err(OffsiteCode::S3VerifyFailed);
        }
        self.block_on(deadline, cancelled, async {
            let below = self.stamp_path(name);
            let mut listing = self.store.list(Some(&below));
            let mut deleted = 0;
            while let Some(object) = listing.next().await {
                let object = object.map_err(|error| logged(&error, "(listing)"))?;
                self.store
                    .delete(&object.location)
                    .await
                    .map_err(|error| logged(&error, "(delete)"))?;
                deleted += 1;
            }
            Ok(deleted)
        })
    }

    /// Downloads the remote backup `name` into the empty directory `into`: its
    /// manifest, then every artifact the manifest lists as `ok`, streamed to disk.
    pub fn download(
        &self,
        name: &str,
        into: &Path,
        deadline: Deadline,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), OffsiteCode> {
        self.block_on(deadline, cancelled, async {
            self.fetch(name, manifest::MANIFEST_FILE, into).await?;
            let manifest = Manifest::read(into).map_err(|_| OffsiteCode::S3VerifyFailed)?;
            for artifact in &manifest.artifacts {
                if let (Status::Ok, Some(file)) = (artifact.status, &artifact.file) {
                    let is_plain_name = !file.contains('/') && file != "." && file != "..";
                    if !is_plain_name {
                        return Err(OffsiteCode::S3VerifyFailed);
                    }
                    self.fetch(name, file, into).await?;
                }
            }
            Ok(())
        })
    }

    async fn fetch(&self, name: &str, file: &str, into: &Path) -> Result<(), OffsiteCode> {
        let result = self
            .store
            .get(&self.key(name, file))
            .await
            .map_err(|error| match error {
                object_store::Error::NotFound { .. } => OffsiteCode::S3VerifyFailed,
                other => logged(&other, file),
            })?;
        let path = into.join(file);
        let write_failed = |error: std::io::Error| {
            tracing::error!(file = %file, error = %error, "cannot write the downloaded file");
            OffsiteCode::S3UploadFailed
        };
        let mut out = manifest::private::create_file(&path).map_err(write_failed)?;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| logged(&error, file))?;
            out.write_all(&chunk).map_err(write_failed)?;
        }
        out.sync_all().map_err(write_failed)
    }
}

/// A remote manifest's status; `None` if it does not parse (never taken for a
/// backup).
fn serde_json_status(body: &[u8]) -> Option<Status> {
    Manifest::from_slice(body)
        .ok()
        .map(|manifest| manifest.status)
}
