//! age encryption at rest, checked with the standard `age` tools (Debian's `age`
//! package): keys made by `age-keygen`, files opened by `age -d`, nothing
//! readable on disk, and verify/restore with and without the identity.

use std::path::{Path, PathBuf};

use crate::restore::{empty_target, fingerprint};
use crate::support::{World, files_below, read_manifest, text};

const AGE: &str = "/usr/bin/age";
const AGE_KEYGEN: &str = "/usr/bin/age-keygen";

/// An identity file made by `age-keygen` and its public key.
struct KeyPair {
    _dir: tempfile::TempDir,
    identity: PathBuf,
    recipient: String,
}

fn key_pair() -> KeyPair {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("key.txt");
    let made = fixtures::command(Path::new(AGE_KEYGEN))
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen runs (install the age package)");
    assert!(made.status.success(), "{made:?}");
    let public = fixtures::command(Path::new(AGE_KEYGEN))
        .arg("-y")
        .arg(&identity)
        .output()
        .unwrap();
    let recipient = String::from_utf8(public.stdout).unwrap().trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    KeyPair {
        _dir: dir,
        identity,
        recipient,
    }
}

/// `age -d -i identity file | decompressor`.
fn age_decrypt(identity: &Path, file: &Path, decompressor: &[&str]) -> Vec<u8> {
    let decrypted = fixtures::command(Path::new(AGE))
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    assert!(decrypted.status.success(), "age -d: {:?}", text(&decrypted));
    let mut child = fixtures::command(Path::new(decompressor[0]))
        .args(&decompressor[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        std::io::Write::write_all(&mut stdin, &decrypted.stdout).unwrap();
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(output.status.success(), "{decompressor:?}");
    output.stdout
}

fn backed_up(world: &World) -> PathBuf {
    let output = world.run(&["once"]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    world.run_dirs().pop().unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_backups_open_with_age_and_restore_with_the_identity() {
    let keys = key_pair();
    let mut world = World::new().await;
    world.set("BACKUP_AGE_RECIPIENTS", &keys.recipient);
    let dir = tokio::task::block_in_place(|| backed_up(&world));
    assert_eq!(
        files_below(&dir),
        [
            "manifest.json",
            "storage_buckets.tar.gz.age",
            "supabase_db.sql.gz.age"
        ]
    );
    let manifest = read_manifest(&dir);
    for artifact in manifest["artifacts"].as_array().unwrap() {
        assert_eq!(artifact["encryption"], "age", "{artifact}");
        let file = dir.join(artifact["file"].as_str().unwrap());
        let stored = std::fs::read(&file).unwrap();
        assert_eq!(
            artifact["bytes"],
            stored.len(),
            "bytes describe the stored file"
        );
        assert!(stored.starts_with(b"age-encryption.org/v1\n"));
        assert!(!contains(&stored, b"Seeded course title"));
        // The writer's whole header: its first three bytes alone turn up by chance
        // in a few megabytes of ciphertext about one run in ten.
        assert!(
            !contains(&stored, &dump_runner::GZIP_HEADER),
            "no gzip stream in the clear"
        );
    }
    assert!(
        !contains(&std::fs::read(dir.join("manifest.json")).unwrap(), b"age1"),
        "the manifest names no key"
    );

    // The standard tools open what we wrote.
    let sql = age_decrypt(
        &keys.identity,
        &dir.join("supabase_db.sql.gz.age"),
        &["/bin/gunzip", "-c"],
    );
    assert!(contains(&sql, b"Seeded course title"));
    assert_eq!(manifest["artifacts"][0]["uncompressed_bytes"], sql.len());
    let tar = age_decrypt(
        &keys.identity,
        &dir.join("storage_buckets.tar.gz.age"),
        &["/bin/gunzip", "-c"],
    );
    assert!(contains(&tar, b"materials/x.png"));

    // verify: the header and digest without the key, the whole stream with it.
    let without = world.run(&["verify"]);
    assert_eq!(without.status.code(), Some(0), "{:?}", text(&without));
    world.set("BACKUP_AGE_IDENTITY_FILE", keys.identity.to_str().unwrap());
    let with = world.run(&["verify"]);
    assert_eq!(with.status.code(), Some(0), "{:?}", text(&with));

    let (url, target) = empty_target(&world).await;
    world.set("RESTORE_DATABASE_URL", &url);
    let restored = tokio::task::block_in_place(|| world.run(&["restore"]));
    assert_eq!(restored.status.code(), Some(0), "{:?}", text(&restored));
    assert_eq!(
        fingerprint(&world, &target, "learning_submissions").await,
        fingerprint(&world, world.db.name(), "learning_submissions").await
    );
    let into = tempfile::tempdir().unwrap();
    let storage = into.path().join("storage");
    let unpacked = world.run(&[
        "restore",
        "--artifact",
        "storage",
        "--into",
        storage.to_str().unwrap(),
    ]);
    assert_eq!(unpacked.status.code(), Some(0), "{:?}", text(&unpacked));
    assert_eq!(
        std::fs::read(storage.join("materials/x.png")).unwrap(),
        fixtures::SAMPLE_PNG
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_right_identity_nothing_is_restored() {
    let keys = key_pair();
    let stranger = key_pair();
    let mut world = World::new().await;
    world.set("BACKUP_AGE_RECIPIENTS", &keys.recipient);
    tokio::task::block_in_place(|| backed_up(&world));
    let (url, target) = empty_target(&world).await;
    world.set("RESTORE_DATABASE_URL", &url);

    let no_identity = tokio::task::block_in_place(|| world.run(&["restore"]));
    assert_eq!(
        no_identity.status.code(),
        Some(1),
        "{:?}",
        text(&no_identity)
    );
    assert!(
        text(&no_identity).1.contains("decrypt_failed"),
        "{:?}",
        text(&no_identity)
    );
    world.set(
        "BACKUP_AGE_IDENTITY_FILE",
        stranger.identity.to_str().unwrap(),
    );
    let wrong = tokio::task::block_in_place(|| world.run(&["restore"]));
    assert_eq!(wrong.status.code(), Some(1), "{:?}", text(&wrong));
    assert!(
        text(&wrong).1.contains("decrypt_failed"),
        "{:?}",
        text(&wrong)
    );
    let verify = world.run(&["verify"]);
    assert_eq!(verify.status.code(), Some(1), "{:?}", text(&verify));
    assert!(
        text(&verify)
            .0
            .contains("no configured identity can decrypt"),
        "{:?}",
        text(&verify)
    );
    assert_eq!(
        crate::restore::user_relations(&world, &target).await,
        "0",
        "nothing was written into the target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_encrypted_file_fails_verify_with_and_without_the_key() {
    let keys = key_pair();
    let mut world = World::new().await;
    world.set("BACKUP_AGE_RECIPIENTS", &keys.recipient);
    let dir = tokio::task::block_in_place(|| backed_up(&world));
    let file = dir.join("supabase_db.sql.gz.age");
    let mut stored = std::fs::read(&file).unwrap();
    let last = stored.len() - 20;
    stored[last] ^= 0x40;
    std::fs::write(&file, &stored).unwrap();
    let without = world.run(&["verify"]);
    assert_eq!(without.status.code(), Some(1));
    assert!(
        text(&without).0.contains("sha256 differs"),
        "{:?}",
        text(&without)
    );
    world.set("BACKUP_AGE_IDENTITY_FILE", keys.identity.to_str().unwrap());
    let with = world.run(&["verify"]);
    assert_eq!(with.status.code(), Some(1));
    assert!(
        text(&with).0.contains("corrupt or truncated"),
        "{:?}",
        text(&with)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_age_stack_and_open_with_the_standard_tools() {
    let keys = key_pair();
    let recipients = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        recipients.path(),
        format!("# the backup key\n{}\n", keys.recipient),
    )
    .unwrap();
    let mut world = World::new().await;
    world.set("BACKUP_COMPRESSION", "zstd").set(
        "BACKUP_AGE_RECIPIENTS_FILE",
        recipients.path().to_str().unwrap(),
    );
    let dir = tokio::task::block_in_place(|| backed_up(&world));
    assert!(dir.join("supabase_db.sql.zst.age").is_file());
    let sql = age_decrypt(
        &keys.identity,
        &dir.join("supabase_db.sql.zst.age"),
        &["/usr/bin/zstd", "-dc"],
    );
    assert!(contains(&sql, b"Seeded course title"));
    world.set("BACKUP_AGE_IDENTITY_FILE", keys.identity.to_str().unwrap());
    let verify = world.run(&["verify"]);
    assert_eq!(verify.status.code(), Some(0), "{:?}", text(&verify));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_plaintext_reaches_the_partial_file() {
    let keys = key_pair();
    let fake = fixtures::FakePgDump::writing_then_hanging(4_000_000, "PLAINTEXT-MARKER").unwrap();
    let mut world = World::new().await;
    world
        .set("BACKUP_AGE_RECIPIENTS", &keys.recipient)
        .set("PG_DUMP", fake.path().to_str().unwrap());
    world.env.remove("SUPABASE_STORAGE_ROOT");
    let mut child = world.command(&["once"]).spawn().unwrap();
    let partial_of = || {
        if !world.backup_dir().is_dir() {
            return None;
        }
        world
            .run_dirs()
            .pop()
            .map(|dir| dir.join("supabase_db.sql.gz.age.partial"))
    };
    fixtures::wait_for(
        "a megabyte of the dump in its .partial file",
        std::time::Duration::from_secs(60),
        || {
            partial_of()
                .and_then(|path| std::fs::metadata(path).ok())
                .is_some_and(|metadata| metadata.len() > 1_000_000)
        },
    );
    let partial = partial_of().unwrap();
    let stored = std::fs::read(&partial).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    assert!(!contains(&stored, b"PLAINTEXT-MARKER"));
    assert!(
        !contains(&stored, &dump_runner::GZIP_HEADER),
        "no gzip stream in the clear"
    );
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let dir = world.run_dirs().pop().unwrap();
    assert_eq!(files_below(&dir), ["manifest.json"], "no .partial left");
    assert!(
        fake.survivors(std::time::Duration::from_secs(10))
            .is_empty()
    );
}

#[test]
fn a_bad_recipient_is_a_configuration_error_naming_the_variable() {
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().join("backups");
    let output = crate::support::backup_cron()
        .arg("once")
        .env("BACKUP_DIR", &dir)
        .env("DATABASE_URL", "postgres://backup:secret@127.0.0.1:9/app")
        .env("BACKUP_AGE_RECIPIENTS", "age1notarealkey")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("BACKUP_AGE_RECIPIENTS: entry 1"),
        "{stderr}"
    );
    assert!(!stderr.contains("age1notarealkey"), "{stderr}");
    assert!(!dir.exists(), "nothing created");
}
