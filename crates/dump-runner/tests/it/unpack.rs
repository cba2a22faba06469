//! `unpack`: an archive made by `archive` comes back byte for byte; a hostile one
//! is refused whole, before a single file is written.

use std::io::Write as _;
use std::path::Path;

use dump_runner::{ArchiveJob, Cancellation, RestoreCode, Unpacked, archive, unpack};

/// One raw entry: the name is written into the header as given, bypassing the
/// checks `tar::Builder` would apply, as a hostile archive would.
enum Raw<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Fifo(&'a str),
}

fn hostile_archive(path: &Path, entries: &[Raw<'_>]) {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    ));
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, kind, link, data): (&str, tar::EntryType, Option<&str>, &[u8]) = match entry {
            Raw::File(name, data) => (name, tar::EntryType::Regular, None, data),
            Raw::Dir(name) => (name, tar::EntryType::Directory, None, b""),
            Raw::Symlink(name, target) => (name, tar::EntryType::Symlink, Some(target), b""),
            Raw::HardLink(name, target) => (name, tar::EntryType::Link, Some(target), b""),
            Raw::Fifo(name) => (name, tar::EntryType::Fifo, None, b""),
        };
        let bytes = name.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        if let Some(link) = link {
            let bytes = link.as_bytes();
            header.as_old_mut().linkname[..bytes.len()].copy_from_slice(bytes);
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder
        .into_inner()
        .unwrap()
        .finish()
        .unwrap()
        .flush()
        .unwrap();
}

#[test]
fn an_archive_of_ours_unpacks_byte_for_byte() {
    for compression in [
        dump_runner::Compression::gzip(1),
        dump_runner::Compression::zstd(3),
    ] {
        round_trip(compression);
    }
}

fn round_trip(compression: dump_runner::Compression) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("bucket/deep")).unwrap();
    std::fs::write(root.path().join("bucket/deep/a.png"), fixtures::SAMPLE_PNG).unwrap();
    std::fs::write(root.path().join("top.pdf"), fixtures::SAMPLE_PDF).unwrap();
    std::os::unix::fs::symlink("deep/a.png", root.path().join("bucket/link.png")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let artifact = out
        .path()
        .join(manifest::ArtifactName::Storage.file_name_for(compression.codec));
    let cancellation = Cancellation::new();
    archive(&ArchiveJob {
        root: root.path(),
        output: &artifact,
        compression,
        recipients: None,
        cancellation: &cancellation,
    })
    .unwrap();

    let into = out.path().join("restored");
    let unpacked = unpack(&artifact, &into, None)
        .map_err(|error| format!("{error}: {:?}", std::error::Error::source(&error)))
        .unwrap();
    assert_eq!(
        unpacked,
        Unpacked {
            files: 2,
            bytes: (fixtures::SAMPLE_PNG.len() + fixtures::SAMPLE_PDF.len()) as u64
        }
    );
    assert_eq!(
        std::fs::read(into.join("bucket/deep/a.png")).unwrap(),
        fixtures::SAMPLE_PNG
    );
    assert_eq!(
        std::fs::read(into.join("top.pdf")).unwrap(),
        fixtures::SAMPLE_PDF
    );
    assert_eq!(
        std::fs::read_link(into.join("bucket/link.png")).unwrap(),
        Path::new("deep/a.png")
    );

    let again = unpack(&artifact, &into, None).unwrap_err();
    assert_eq!(again.code(), RestoreCode::RestoreTargetNotEmpty);
}

#[test]
fn hostile_entries_are_refused_and_nothing_is_written() {
    let cases: [(&str, Vec<Raw<'_>>); 6] = [
        (
            "parent",
            vec![Raw::File("ok.txt", b"fine"), Raw::File("../evil", b"x")],
        ),
        (
            "absolute",
            vec![Raw::File("ok.txt", b"fine"), Raw::File("/tmp/evil", b"x")],
        ),
        (
            "below a symlink",
            vec![Raw::Symlink("link", "/etc"), Raw::File("link/evil", b"x")],
        ),
        (
            "hard link",
            vec![
                Raw::File("ok.txt", b"fine"),
                Raw::HardLink("copy", "/etc/passwd"),
            ],
        ),
        ("fifo", vec![Raw::Dir("d"), Raw::Fifo("d/pipe")]),
        (
            "nested parent",
            vec![Raw::Dir("a"), Raw::File("a/../../evil", b"x")],
        ),
    ];
    for (name, entries) in cases {
        let out = tempfile::tempdir().unwrap();
        let artifact = out.path().join("storage_buckets.tar.gz");
        hostile_archive(&artifact, &entries);
        let into = out.path().join("restored");
        let error = unpack(&artifact, &into, None).unwrap_err();
        assert_eq!(error.code(), RestoreCode::ArchiveUnsafe, "{name}: {error}");
        assert!(!into.exists(), "{name}: nothing written");
        assert!(!out.path().join("evil").exists() && !Path::new("/tmp/evil").exists());
    }
}

#[test]
fn a_corrupt_archive_is_named_corrupt() {
    let out = tempfile::tempdir().unwrap();
    let artifact = out.path().join("storage_buckets.tar.gz");
    std::fs::write(&artifact, b"\x1f\x8b not really gzip").unwrap();
    let error = unpack(&artifact, &out.path().join("restored"), None).unwrap_err();
    assert_eq!(error.code(), RestoreCode::ArtifactCorrupt);
}
