//! Off-site copies of backup directories to S3-compatible object storage.
//!
//! A backup on the database's own disk dies with it. This crate copies a finished
//! backup directory to `s3://BUCKET/PREFIX/<stamp>/<file>` and proves the copy:
//!
//! 1. Every artifact the manifest lists as `ok` is **streamed** from disk: files up
//!    to [`PART_SIZE`] in one `PUT`, larger ones as a multipart upload of
//!    [`PART_SIZE`] parts with at most [`PARTS_IN_FLIGHT`] in flight, so memory is
//!    bounded by a few parts whatever the file's size.
//! 2. The bytes are **hashed as they are sent**; the digest and size must equal the
//!    manifest's, so a local file that rotted since it was written is caught before
//!    it becomes the off-site copy (`s3_verify_failed`).
//! 3. After each upload the object's **remote size** is read back (`HEAD`).
//! 4. `manifest.json` goes **last**: a remote stamp prefix without a manifest is an
//!    incomplete upload, never a backup ([`RemoteBackup::status`] is `None`).
//!
//! The result is a [`manifest::Offsite`] record (`offsite.json`) with a closed set of
//! codes ([`manifest::OffsiteCode`]) and nothing about where the copy went.
//! [`Remote`] also lists, deletes (retention) and downloads (`verify --remote`)
//! remote backups; which ones to delete is the caller's rule, not this crate's.
//!
//! The API is synchronous, like the rest of `backup-cron`: a [`Remote`] owns a
//! single-threaded tokio runtime and blocks on it. A [`Deadline`] bounds each backup's
//! upload as a whole, whatever the server does (refuses, answers slowly, accepts
//! and never answers), and a cancellation check ends it early.
//!
//! Why `object_store`: it is the Apache Arrow project's object-store client, used
//! in production by DataFusion, Delta Lake and others, speaks S3 (AWS and the
//! S3-compatible services, path-style) with SigV4 signing, streamed multipart
//! uploads, retries with backoff and request timeouts, and builds on the same
//! `reqwest` and `rustls` as the worker — where the AWS SDK would bring its own HTTP
//! stack and several times the dependency tree.
//!
//! Credentials are [`dsn::Secret`]s: `Debug` prints `***`, and the secret key leaves
//! them only into the request signer, never into a log, a record or an error.

mod classify;
mod location;
mod remote;
mod upload;

use std::time::{Duration, Instant};

pub use location::{InvalidLocation, Location};
pub use remote::RemoteBackup;

/// Parts of a multipart upload, and the largest file sent in one `PUT`.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Where and how to reach the object store (`BACKUP_S3_URL`, `AWS_*`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The bucket and prefix.
    pub location: Location,
    /// `AWS_ENDPOINT_URL`: an S3-compatible service, addressed path-style. `None`
    /// is AWS itself.
    pub endpoint: Option<String>,
    /// `AWS_REGION`.
    pub region: String,
    /// The keys.
    pub credentials: Credentials,
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The key id: not a secret on its own, but kept out of logs all the same.
    pub access_key_id: dsn::Secret,
    /// The secret key.
    pub secret_access_key: dsn::Secret,
    /// For temporary credentials.
    pub session_token: Option<dsn::Secret>,
}

/// The store could not be set up from the settings (a configuration error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `AWS_ENDPOINT_URL` is not an `http://` or `https://` URL.
    #[error("AWS_ENDPOINT_URL: expected an http:// or https:// URL")]
    Endpoint,
    /// The client could not be built.
    #[error("cannot set up the S3 client: {0}")]
    Client(String),
    /// The runtime could not start.
    #[error("cannot start the upload runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// A wall-clock limit: an instant by which the work must be done.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit)
    }

    fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A connection to one bucket and prefix.
pub struct Remote {
    store: object_store::aws::AmazonS3,
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Remote")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Sets up the client; nothing is sent yet. `request_timeout` bounds each
    /// request (a server that accepts and never answers); the caller's
    /// [`Deadline`]s bound whole operations.
    pub fn new(settings: &Settings, request_timeout: Duration) -> Result<Remote, Error> {
        // reqwest's rustls needs a process-wide crypto provider; ring builds
        // without a C toolchain step. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let options = object_store::ClientOptions::new()
            .with_timeout(request_timeout)
            .with_connect_timeout(request_timeout.min(Duration::from_secs(10)));
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: request_timeout,
        };
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(settings.location.bucket())
            .with_region(&settings.region)
            .with_access_key_id(settings.credentials.access_key_id.expose_secret())
            .with_secret_access_key(settings.credentials.secret_access_key.expose_secret())
            .with_client_options(options)
            .with_retry(retry);
        if let Some(token) = &settings.credentials.session_token {
            builder = builder.with_token(token.expose_secret());
        }
        if let Some(endpoint) = &settings.endpoint {
            let is_http = endpoint.starts_with("http://");
            if !is_http && !endpoint.starts_with("https://") {
                return Err(Error::Endpoint);
            }
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(is_http)
                .with_virtual_hosted_style_request(false);
        }
        // The builder's messages may quote the settings; only its kind is kept.
        let store = builder
            .build()
            .map_err(|error| Error::Client(classify::kind_of(&error).to_owned()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Remote {
            store,
            prefix: settings.location.prefix().to_owned(),
            runtime,
        })
    }

    /// The prefix of the remote backup `stamp`.
    fn stamp_path(&self, stamp: &str) -> object_store::path::Path {
        object_store::path::Path::from_iter(
            self.prefix
                .split('/')
                .filter(|part| !part.is_empty())
                .chain([stamp]),
        )
    }

    /// The object path of `file` in the remote backup `stamp`.
    fn key(&self, stamp: &str, file: &str) -> object_store::path::Path {
        self.stamp_path(stamp).join(file)
    }

    /// Runs `work` until it ends, `deadline` passes (`Err(S3Timeout)`) or
    /// `cancelled` says so (`Err(Interrupted)`), checked every 50 ms.
    fn block_on<T>(
        &self,
        deadline: Deadline,
        cancelled: &(dyn Fn() -> bool + Sync),
        work: impl std::future::Future<Output = Result<T, manifest::OffsiteCode>>,
    ) -> Result<T, manifest::OffsiteCode> {
        self.runtime.block_on(async {
            let watch_cancel = async {
                while !cancelled() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::select! {
                result = tokio::time::timeout(deadline.remaining(), work) => {
                    result.unwrap_or(Err(manifest::OffsiteCode::S3Timeout))
                }
                () = watch_cancel => Err(manifest::OffsiteCode::Interrupted),
            }
        })
    }
}

#[cfg(test)]
mod tests;
