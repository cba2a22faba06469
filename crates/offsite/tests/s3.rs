//! Uploads against a real S3 server (`s3s-fs` on loopback, signatures checked),
//! and every way the store can fail: wrong keys, no bucket, no server, a server
//! that never answers, a connection cut mid-object, a local file that rotted.

use std::path::Path;
use std::time::{Duration, Instant};

use fixtures::{FaultProxy, ProxyMode, S3_BUCKET, S3Server, SilentServer};
use manifest::{Artifact, ArtifactName, Manifest, OffsiteCode, Source, Status, UtcTime, Written};
use offsite::{Credentials, Deadline, Remote, Settings};

const STAMP: &str = "2026-12-02_020000";

fn settings(endpoint: &str, bucket: &str, access_key: &str, secret_key: &str) -> Settings {
    Settings {
        location: format!("s3://{bucket}/school/nightly").parse().unwrap(),
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".to_owned(),
        credentials: Credentials {
            access_key_id: dsn::Secret::new(access_key.to_owned()),
            secret_access_key: dsn::Secret::new(secret_key.to_owned()),
            session_token: None,
        },
    }
}

fn remote_for(server: &S3Server) -> Remote {
    Remote::new(
        &settings(
            &server.endpoint(),
            S3_BUCKET,
            server.access_key(),
            server.secret_key(),
        ),
        Duration::from_secs(30),
    )
    .unwrap()
}

fn never() -> bool {
    false
}

/// A backup directory whose manifest records one dump of `size` bytes.
fn backup(size: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // Text-like but not constant, so nothing could pass by accident.
    let data: Vec<u8> = (0..size)
        .map(|index| b"abcdefghij\n"[index % 11] ^ ((index / 4096) as u8 & 1))
        .collect();
    std::fs::write(dir.path().join("supabase_db.sql.gz"), &data).unwrap();
    use sha2::Digest as _;
    let sha256 = sha2::Sha256::digest(&data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let written = Written {
        bytes: size as u64,
        uncompressed_bytes: Some(size as u64 * 5),
        sha256,
        duration: Duration::from_millis(5),
        row_counts: None,
        codec: manifest::Codec::Gzip,
        encryption: None,
    };
    let now = UtcTime::now();
    Manifest::new(
        "backup-cron test",
        now,
        now,
        vec![Artifact::ok(
            ArtifactName::SupabaseDb,
            Source::DatabaseUrl,
            written,
        )],
    )
    .write_atomic(dir.path())
    .unwrap();
    dir
}

fn upload(remote: &Remote, dir: &Path, limit: Duration) -> manifest::Offsite {
    remote.upload(dir, STAMP, Deadline::after(limit), &never)
}

#[test]
fn a_backup_lands_with_its_manifest_last_and_checks_out() {
    let server = S3Server::start().unwrap();
    let remote = remote_for(&server);
    // Three and a half parts: the multipart path, with a short last part.
    let dir = backup(offsite::PART_SIZE * 3 + offsite::PART_SIZE / 2);
    let record = upload(&remote, dir.path(), Duration::from_secs(120));
    assert_eq!(record.status, Status::Ok, "{record:?}");
    let files: Vec<&str> = record
        .objects
        .iter()
        .map(|object| object.file.as_str())
        .collect();
    assert_eq!(
        files,
        ["supabase_db.sql.gz", "manifest.json"],
        "the manifest goes last"
    );
    assert_eq!(
        server.keys(S3_BUCKET),
        [
            format!("school/nightly/{STAMP}/manifest.json"),
            format!("school/nightly/{STAMP}/supabase_db.sql.gz"),
        ]
    );
    let stored = server
        .bucket_dir(S3_BUCKET)
        .join(format!("school/nightly/{STAMP}/supabase_db.sql.gz"));
    assert_eq!(
        std::fs::read(stored).unwrap(),
        std::fs::read(dir.path().join("supabase_db.sql.gz")).unwrap()
    );
    let listed = remote
        .list(Deadline::after(Duration::from_secs(30)), &never)
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].status),
        (STAMP, Some(Status::Ok))
    );

    let into = tempfile::tempdir().unwrap();
    remote
        .download(
            STAMP,
            into.path(),
            Deadline::after(Duration::from_secs(60)),
            &never,
        )
        .unwrap();
    let downloaded = Manifest::read(into.path()).unwrap();
    for artifact in &downloaded.artifacts {
        manifest::check_digest(into.path(), artifact).expect("size and sha256 as recorded");
    }
}

#[test]
fn wrong_keys_are_s3_auth_failed_and_nothing_lands() {
    let server = S3Server::start().unwrap();
    let wrong = Remote::new(
        &settings(
            &server.endpoint(),
            S3_BUCKET,
            server.access_key(),
            "not-the-secret",
        ),
        Duration::from_secs(30),
    )
    .unwrap();
    let record = upload(&wrong, backup(1000).path(), Duration::from_secs(60));
    assert_eq!(
        record.error.as_ref().map(|error| error.code),
        Some(OffsiteCode::S3AuthFailed)
    );
    assert!(server.keys(S3_BUCKET).is_empty());
    let json = serde_json::to_string(&record).unwrap();
    assert!(!json.contains("not-the-secret") && !json.contains(server.access_key()));
}

#[test]
fn a_missing_bucket_is_s3_bucket_not_found() {
    let server = S3Server::start().unwrap();
    let remote = Remote::new(
        &settings(
            &server.endpoint(),
            "no-such-bucket",
            server.access_key(),
            server.secret_key(),
        ),
        Duration::from_secs(30),
    )
    .unwrap();
    let record = upload(&remote, backup(1000).path(), Duration::from_secs(60));
    assert_eq!(
        record.error.as_ref().map(|error| error.code),
        Some(OffsiteCode::S3BucketNotFound)
    );
}

#[test]
fn a_server_that_is_down_is_s3_unreachable() {
    let mut server = S3Server::start().unwrap();
    let remote = remote_for(&server);
    server.stop();
    let record = upload(&remote, backup(1000).path(), Duration::from_secs(60));
    assert_eq!(
        record.error.as_ref().map(|error| error.code),
        Some(OffsiteCode::S3Unreachable)
    );
}

#[test]
fn a_server_that_never_answers_is_s3_timeout_within_the_limit() {
    let silent = SilentServer::start().unwrap();
    let remote = Remote::new(
        &settings(&silent.endpoint(), S3_BUCKET, "AKIAEXAMPLE", "secret"),
        Duration::from_secs(600),
    )
    .unwrap();
    let started = Instant::now();
    let record = upload(&remote, backup(1000).path(), Duration::from_secs(2));
    assert_eq!(
        record.error.as_ref().map(|error| error.code),
        Some(OffsiteCode::S3Timeout)
    );
    // The limit holds whatever the request timeout: the whole upload is bounded.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_cut_mid_object_leaves_no_remote_manifest_and_a_retry_completes() {
    let server = S3Server::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let remote = Remote::new(
        &settings(
            &format!("http://{}", proxy.addr()),
            S3_BUCKET,
            server.access_key(),
            server.secret_key(),
        ),
        Duration::from_secs(30),
    )
    .unwrap();
    let dir = backup(offsite::PART_SIZE * 6);
    proxy.set(ProxyMode::Delay(Duration::from_millis(20)));
    let record = std::thread::scope(|scope| {
        let uploading = scope.spawn(|| upload(&remote, dir.path(), Duration::from_secs(120)));
        // The multipart upload has started and parts are on the wire.
        fixtures::wait_for(
            "two connections through the proxy",
            Duration::from_secs(60),
            || proxy.connections() >= 2,
        );
        proxy.set(ProxyMode::Drop);
        uploading.join().unwrap()
    });
    assert_eq!(record.status, Status::Failed, "{record:?}");
    assert!(
        !server
            .keys(S3_BUCKET)
            .iter()
            .any(|key| key.ends_with("manifest.json")),
        "{:?}",
        server.keys(S3_BUCKET)
    );
    assert!(
        remote
            .list(Deadline::after(Duration::from_secs(10)), &never)
            .is_err(),
        "the store is still cut off"
    );
    proxy.set(ProxyMode::Pass);
    let retried = upload(&remote, dir.path(), Duration::from_secs(120));
    assert_eq!(retried.status, Status::Ok, "{retried:?}");
    assert!(
        server
            .keys(S3_BUCKET)
            .iter()
            .any(|key| key.ends_with(&format!("{STAMP}/manifest.json")))
    );
}

#[test]
fn a_local_file_that_rotted_is_s3_verify_failed_and_no_manifest_is_sent() {
    let server = S3Server::start().unwrap();
    let remote = remote_for(&server);
    let dir = backup(5000);
    let file = dir.path().join("supabase_db.sql.gz");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let record = upload(&remote, dir.path(), Duration::from_secs(60));
    assert_eq!(
        record.error.as_ref().map(|error| error.code),
        Some(OffsiteCode::S3VerifyFailed)
    );
    assert!(
        !server
            .keys(S3_BUCKET)
            .iter()
            .any(|key| key.ends_with("manifest.json"))
    );
}

#[test]
fn delete_touches_only_its_stamp_prefix() {
    let server = S3Server::start().unwrap();
    let remote = remote_for(&server);
    assert_eq!(
        upload(&remote, backup(100).path(), Duration::from_secs(60)).status,
        Status::Ok
    );
    let other = "2026-12-01_020000";
    assert_eq!(
        remote
            .upload(
                backup(100).path(),
                other,
                Deadline::after(Duration::from_secs(60)),
                &never
            )
            .status,
        Status::Ok
    );
    let foreign = server.bucket_dir(S3_BUCKET).join("school/nightly/notes");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("readme.txt"), "keep me").unwrap();
    let deleted = remote
        .delete(other, Deadline::after(Duration::from_secs(30)), &never)
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(
        server.keys(S3_BUCKET),
        [
            format!("school/nightly/{STAMP}/manifest.json"),
            format!("school/nightly/{STAMP}/supabase_db.sql.gz"),
            "school/nightly/notes/readme.txt".to_owned(),
        ]
    );
    assert!(
        remote
            .delete("notes", Deadline::after(Duration::from_secs(5)), &never)
            .is_err()
    );
    let listed: Vec<String> = remote
        .list(Deadline::after(Duration::from_secs(30)), &never)
        .unwrap()
        .into_iter()
        .map(|backup| backup.name)
        .collect();
    assert_eq!(listed, [STAMP], "only stamp prefixes are backups");
}
