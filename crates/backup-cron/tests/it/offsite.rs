//! Off-site copies end to end: the binary, the real `pg_dump`, a real S3 server
//! (`s3s-fs`, signatures checked). Copies land with their manifest last, an outage
//! heals by itself, `status` turns red while copies fail, remote retention touches
//! only stamp prefixes, memory stays flat for a 1 GB artifact, and no credential
//! reaches a log, a record, the manifest, `pg_dump`'s argv or its environment.

use std::path::Path;

use fixtures::{S3_BUCKET, S3Server};

use crate::support::{World, files_below, read_manifest, text};

const PREFIX: &str = "school/nightly";

fn point_at(world: &mut World, server: &S3Server) {
    world
        .set("BACKUP_S3_URL", &format!("s3://{S3_BUCKET}/{PREFIX}"))
        .set("AWS_ENDPOINT_URL", &server.endpoint())
        .set("AWS_ACCESS_KEY_ID", server.access_key())
        .set("AWS_SECRET_ACCESS_KEY", server.secret_key())
        .set("BACKUP_S3_TIMEOUT_SECONDS", "60");
}

fn offsite_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("offsite.json")).unwrap()).unwrap()
}

fn stamp_of(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_goes_off_site_manifest_last_and_verifies_from_the_bucket() {
    let server = S3Server::start().unwrap();
    let mut world = World::new().await;
    point_at(&mut world, &server);
    let once = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(once.status.code(), Some(0), "{:?}", text(&once));
    let dir = world.run_dirs().pop().unwrap();
    let stamp = stamp_of(&dir);
    assert_eq!(
        files_below(&dir),
        [
            "manifest.json",
            "offsite.json",
            "storage_buckets.tar.gz",
            "supabase_db.sql.gz"
        ]
    );
    let record = offsite_json(&dir);
    insta::assert_json_snapshot!("offsite_json", record, {
        ".finished_at" => "[time]",
        ".duration_ms" => "[ms]",
        ".objects[].bytes" => "[bytes]",
        ".objects[].sha256" => "[sha256]",
    });
    let files: Vec<&str> = record["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| object["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "supabase_db.sql.gz",
            "storage_buckets.tar.gz",
            "manifest.json"
        ],
        "artifacts in manifest order, the manifest last"
    );
    let manifest = read_manifest(&dir);
    assert_eq!(
        record["objects"][0]["sha256"], manifest["artifacts"][0]["sha256"],
        "what was sent is what the manifest recorded"
    );
    assert_eq!(
        server.keys(S3_BUCKET),
        [
            format!("{PREFIX}/{stamp}/manifest.json"),
            format!("{PREFIX}/{stamp}/storage_buckets.tar.gz"),
            format!("{PREFIX}/{stamp}/supabase_db.sql.gz"),
        ]
    );
    let status = world.run(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{:?}", text(&status));
    assert!(
        text(&status)
            .0
            .contains(&format!("newest off-site copy: {stamp} ok")),
        "{:?}",
        text(&status)
    );
    let verify = tokio::task::block_in_place(|| world.run(&["verify", "--remote"]));
    assert_eq!(verify.status.code(), Some(0), "{:?}", text(&verify));
    assert!(
        text(&verify).0.starts_with(&format!("remote {stamp}:")),
        "{:?}",
        text(&verify)
    );
    assert!(
        !std::fs::read_dir(world.backup_dir())
            .unwrap()
            .any(|entry| entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".remote-verify")),
        "the download is removed"
    );
    // A remote object that rotted in the bucket is caught by verify --remote.
    let stored = server
        .bucket_dir(S3_BUCKET)
        .join(format!("{PREFIX}/{stamp}/supabase_db.sql.gz"));
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&stored, bytes).unwrap();
    let rotted = tokio::task::block_in_place(|| world.run(&["verify", "--remote", &stamp]));
    assert_eq!(rotted.status.code(), Some(1), "{:?}", text(&rotted));
    assert!(
        text(&rotted).0.contains("FAILED  supabase_db.sql.gz"),
        "{:?}",
        text(&rotted)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_turns_status_red_and_the_next_run_catches_up() {
    let mut server = S3Server::start().unwrap();
    let mut world = World::new().await;
    point_at(&mut world, &server);
    server.stop();
    let first = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(first.status.code(), Some(1), "{:?}", text(&first));
    let first_dir = world.run_dirs().pop().unwrap();
    assert_eq!(
        read_manifest(&first_dir)["status"],
        "ok",
        "the local backup stays ok"
    );
    let record = offsite_json(&first_dir);
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "s3_unreachable");
    let red = world.run(&["status"]);
    assert_eq!(red.status.code(), Some(1), "{:?}", text(&red));
    assert!(
        text(&red).0.contains("failed (s3_unreachable)"),
        "{:?}",
        text(&red)
    );

    server.resume().unwrap();
    // Within the same second the run directory gets a `-2` suffix: its own all the same.
    let second = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(second.status.code(), Some(0), "{:?}", text(&second));
    let dirs = world.run_dirs();
    assert_eq!(dirs.len(), 2);
    for dir in &dirs {
        assert_eq!(offsite_json(dir)["status"], "ok", "{}", dir.display());
        assert!(
            server
                .keys(S3_BUCKET)
                .contains(&format!("{PREFIX}/{}/manifest.json", stamp_of(dir))),
            "{:?}",
            server.keys(S3_BUCKET)
        );
    }
    let green = world.run(&["status"]);
    assert_eq!(green.status.code(), Some(0), "{:?}", text(&green));
    let sync = world.run(&["sync"]);
    assert_eq!(sync.status.code(), Some(0), "{:?}", text(&sync));
    assert!(
        text(&sync).0.contains("nothing to copy"),
        "{:?}",
        text(&sync)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_copies_what_an_outage_left_behind() {
    let mut server = S3Server::start().unwrap();
    let mut world = World::new().await;
    point_at(&mut world, &server);
    server.stop();
    let failed = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(failed.status.code(), Some(1));
    server.resume().unwrap();
    let sync = tokio::task::block_in_place(|| world.run(&["sync"]));
    assert_eq!(sync.status.code(), Some(0), "{:?}", text(&sync));
    let dir = world.run_dirs().pop().unwrap();
    assert!(
        text(&sync)
            .0
            .starts_with(&format!("ok      {}", stamp_of(&dir)))
    );
    assert_eq!(offsite_json(&dir)["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_keys_fail_the_copy_and_no_credential_leaks_anywhere() {
    let server = S3Server::start().unwrap();
    let mut world = World::new().await;
    let wrapper = fixtures::FakePgDump::wrapping(Path::new(&world.env["PG_DUMP"])).unwrap();
    point_at(&mut world, &server);
    let wrong_secret = "wrong-secret-0123456789abcdef";
    world
        .set("AWS_SECRET_ACCESS_KEY", wrong_secret)
        .set("PG_DUMP", wrapper.path().to_str().unwrap())
        .set("RUST_LOG", "trace")
        .set("LOG_FORMAT", "json");
    let once = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(once.status.code(), Some(1), "{:?}", text(&once));
    let dir = world.run_dirs().pop().unwrap();
    assert_eq!(offsite_json(&dir)["error"]["code"], "s3_auth_failed");
    assert!(server.keys(S3_BUCKET).is_empty(), "nothing landed");
    let (stdout, stderr) = text(&once);
    let seen = [
        ("stdout", stdout),
        ("stderr (trace logs)", stderr),
        (
            "offsite.json",
            std::fs::read_to_string(dir.join("offsite.json")).unwrap(),
        ),
        (
            "manifest.json",
            std::fs::read_to_string(dir.join("manifest.json")).unwrap(),
        ),
        ("pg_dump argv", wrapper.recorded("argv")),
        ("pg_dump environment", wrapper.recorded("env")),
    ];
    for (place, content) in &seen {
        for secret in [wrong_secret, server.access_key(), server.secret_key()] {
            assert!(!content.contains(secret), "{place} holds a credential");
        }
        assert!(!content.contains("AWS_"), "{place} names an AWS variable");
        if place.ends_with(".json") {
            assert!(
                !content.contains(S3_BUCKET) && !content.contains("127.0.0.1"),
                "{place}: {content}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_retention_deletes_only_expired_stamp_prefixes() {
    let server = S3Server::start().unwrap();
    let mut world = World::new().await;
    point_at(&mut world, &server);
    world.set("RETENTION_DAYS", "7").set("BACKUP_KEEP_MIN", "1");
    let first = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(first.status.code(), Some(0), "{:?}", text(&first));
    let current = stamp_of(&world.run_dirs().pop().unwrap());
    // Old remote backups, as an earlier host left them, and things that are not
    // backups at all.
    let bucket = server.bucket_dir(S3_BUCKET);
    let manifest = std::fs::read(bucket.join(format!("{PREFIX}/{current}/manifest.json"))).unwrap();
    for (path, contents) in [
        (
            format!("{PREFIX}/2020-01-01_020000/manifest.json"),
            manifest.clone(),
        ),
        (
            format!("{PREFIX}/2020-01-01_020000/supabase_db.sql.gz"),
            b"old".to_vec(),
        ),
        (
            format!("{PREFIX}/2020-01-02_020000/supabase_db.sql.gz"),
            b"incomplete".to_vec(),
        ),
        (format!("{PREFIX}/notes/readme.txt"), b"keep me".to_vec()),
        (
            format!("{PREFIX}/2020-01-01-copy/supabase_db.sql.gz"),
            b"not a stamp".to_vec(),
        ),
        (
            "elsewhere/2020-01-01_020000/manifest.json".to_owned(),
            manifest.clone(),
        ),
    ] {
        let file = bucket.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }
    let second = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(second.status.code(), Some(0), "{:?}", text(&second));
    let newest = stamp_of(&world.run_dirs().pop().unwrap());
    let keys = server.keys(S3_BUCKET);
    assert!(
        !keys
            .iter()
            .any(|key| key.contains("2020-01-01_020000") && key.starts_with(PREFIX)),
        "an expired backup goes: {keys:?}"
    );
    assert!(
        !keys.iter().any(|key| key.contains("2020-01-02_020000")),
        "an expired incomplete upload goes: {keys:?}"
    );
    for kept in [
        format!("{PREFIX}/notes/readme.txt"),
        format!("{PREFIX}/2020-01-01-copy/supabase_db.sql.gz"),
        "elsewhere/2020-01-01_020000/manifest.json".to_owned(),
        format!("{PREFIX}/{current}/manifest.json"),
        format!("{PREFIX}/{newest}/manifest.json"),
    ] {
        assert!(keys.contains(&kept), "{kept} stays: {keys:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_copies_hold_no_plaintext_and_verify_with_the_key() {
    let server = S3Server::start().unwrap();
    let mut world = World::new().await;
    point_at(&mut world, &server);
    let identity = age::x25519::Identity::generate();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    {
        use age::secrecy::ExposeSecret as _;
        std::fs::write(key_file.path(), identity.to_string().expose_secret()).unwrap();
    }
    world.set("BACKUP_AGE_RECIPIENTS", &identity.to_public().to_string());
    let once = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(once.status.code(), Some(0), "{:?}", text(&once));
    for key in server.keys(S3_BUCKET) {
        let stored = std::fs::read(server.bucket_dir(S3_BUCKET).join(&key)).unwrap();
        if key.ends_with(".age") {
            assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{key}");
        }
        assert!(
            !stored
                .windows(b"Seeded course title".len())
                .any(|window| window == b"Seeded course title"),
            "{key} holds plaintext"
        );
    }
    let without = tokio::task::block_in_place(|| world.run(&["verify", "--remote"]));
    assert_eq!(without.status.code(), Some(0), "{:?}", text(&without));
    world.set(
        "BACKUP_AGE_IDENTITY_FILE",
        key_file.path().to_str().unwrap(),
    );
    let with = tokio::task::block_in_place(|| world.run(&["verify", "--remote"]));
    assert_eq!(with.status.code(), Some(0), "{:?}", text(&with));
}

/// A 1 GB artifact (incompressible, written straight into a backup directory with
/// its manifest) copied by `sync`: the peak RSS of the process stays under 64 MiB.
#[test]
fn a_gigabyte_goes_off_site_in_flat_memory() {
    const SIZE: usize = 1 << 30;
    let server = S3Server::start().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let stamp = manifest::UtcTime::now().stamp();
    let dir = backups.path().join(&stamp);
    std::fs::create_dir(&dir).unwrap();
    let sha256 = write_noise(&dir.join("supabase_db.sql.gz"), SIZE);
    let written = manifest::Written {
        bytes: SIZE as u64,
        uncompressed_bytes: Some(SIZE as u64),
        sha256,
        duration: std::time::Duration::from_secs(1),
        row_counts: None,
        codec: manifest::Codec::Gzip,
        encryption: None,
    };
    let now = manifest::UtcTime::now();
    manifest::Manifest::new(
        "backup-cron test",
        now,
        now,
        vec![manifest::Artifact::ok(
            manifest::ArtifactName::SupabaseDb,
            manifest::Source::DatabaseUrl,
            written,
        )],
    )
    .write_atomic(&dir)
    .unwrap();
    let mut child = crate::support::backup_cron()
        .arg("sync")
        .env("BACKUP_DIR", backups.path())
        .env("BACKUP_S3_URL", format!("s3://{S3_BUCKET}/{PREFIX}"))
        .env("AWS_ENDPOINT_URL", server.endpoint())
        .env("AWS_ACCESS_KEY_ID", server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.secret_key())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // VmHWM, the child's own high-water mark, sampled until it exits: the
    // `ru_maxrss` that `wait4` reports would also hold this test process's peak,
    // which a spawned child inherits until its `exec`. Being a high-water mark, a
    // sample misses at most what the last few milliseconds before exit added.
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak_kib = peak_kib.max(fixtures::memory_kib(child.id(), "VmHWM").unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(status.success(), "sync failed: {status}");
    let peak_mib = peak_kib / 1024;
    assert!(peak_mib > 0, "no sample of the child's memory");
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB for a 1 GiB upload");
    let stored = server
        .bucket_dir(S3_BUCKET)
        .join(format!("{PREFIX}/{stamp}/supabase_db.sql.gz"));
    assert_eq!(std::fs::metadata(stored).unwrap().len(), SIZE as u64);
    assert_eq!(offsite_json(&dir)["status"], "ok");
}

/// Writes `size` bytes of cheap pseudo-random noise and returns their sha256.
fn write_noise(path: &Path, size: usize) -> String {
    use sha2::Digest as _;
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = sha2::Sha256::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for word in block.chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    // Each megabyte differs from the others in its first bytes: no two parts alike.
    for index in 0..size / block.len() {
        block[..8].copy_from_slice(&(index as u64).to_le_bytes());
        hasher.update(&block);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
