//! `archive`: relative paths, symlinks stored not followed, and each failure's code.

use std::io::Read as _;
use std::path::Path;

use dump_runner::{ArchiveJob, Cancellation, archive};
use manifest::ErrorCode;

fn run(root: &Path, out: &Path) -> Result<manifest::Written, dump_runner::Error> {
    let cancellation = Cancellation::new();
    archive(&ArchiveJob {
        root,
        output: &out.join("storage_buckets.tar.gz"),
        compression: dump_runner::Compression::gzip(6),
        recipients: None,
        cancellation: &cancellation,
    })
}

/// (path, kind, link target) of every entry.
fn entries(archive: &Path) -> Vec<(String, String, String)> {
    let decoder = flate2::read::GzDecoder::new(std::fs::File::open(archive).unwrap());
    let mut tar = tar::Archive::new(decoder);
    tar.entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let kind = format!("{:?}", entry.header().entry_type());
            let target = entry
                .link_name()
                .unwrap()
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            let mut content = String::new();
            if kind == "Regular" {
                entry.read_to_string(&mut content).unwrap();
            }
            (path, kind, if target.is_empty() { content } else { target })
        })
        .collect()
}

#[test]
fn archives_relative_paths_and_keeps_symlinks_as_links() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("materials/week1")).unwrap();
    std::fs::write(root.path().join("materials/x.png"), b"png bytes").unwrap();
    std::fs::write(root.path().join("materials/week1/notes.md"), b"# Notes").unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"outside the root").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        root.path().join("materials/link"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("elsewhere")).unwrap();

    let written = run(root.path(), out.path()).unwrap();

    let archive = out.path().join("storage_buckets.tar.gz");
    assert_eq!(written.bytes, std::fs::metadata(&archive).unwrap().len());
    let outside_file = outside.path().join("secret.txt").display().to_string();
    let outside_dir = outside.path().display().to_string();
    assert_eq!(
        entries(&archive),
        vec![
            ("elsewhere".to_owned(), "Symlink".to_owned(), outside_dir),
            (
                "materials".to_owned(),
                "Directory".to_owned(),
                String::new()
            ),
            (
                "materials/link".to_owned(),
                "Symlink".to_owned(),
                outside_file
            ),
            (
                "materials/week1".to_owned(),
                "Directory".to_owned(),
                String::new()
            ),
            (
                "materials/x.png".to_owned(),
                "Regular".to_owned(),
                "png bytes".to_owned()
            ),
            (
                "materials/week1/notes.md".to_owned(),
                "Regular".to_owned(),
                "# Notes".to_owned()
            ),
        ]
    );
}

#[test]
fn missing_root_and_file_root_get_their_codes() {
    let out = tempfile::tempdir().unwrap();
    let missing = out.path().join("missing");
    assert_eq!(
        run(&missing, out.path()).unwrap_err().code(),
        ErrorCode::StorageMissing
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(
        run(file.path(), out.path()).unwrap_err().code(),
        ErrorCode::StorageNotDir
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn unreadable_file_gives_storage_read_failed_and_no_partial() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"fine").unwrap();
    std::fs::write(root.path().join("b.txt"), b"locked").unwrap();
    std::fs::set_permissions(
        root.path().join("b.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o777)).unwrap();

    // Root reads anything; checking file access as `nobody` on this thread only
    // makes the locked file unreadable for real (setfsuid is per thread).
    let error = std::thread::spawn({
        let (root, out) = (root.path().to_owned(), out.path().to_owned());
        move || {
            // SAFETY: setfsuid only changes this thread's file-access identity.
            unsafe { libc::setfsuid(65534) };
            run(&root, &out)
        }
    })
    .join()
    .unwrap()
    .unwrap_err();

    assert_eq!(error.code(), ErrorCode::StorageReadFailed, "{error}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
