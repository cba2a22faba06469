//! A storage archive whose entries are anything a tar header can say (absolute
//! paths, `..`, symlinks out and entries below them, hard links, devices), unpacked
//! by `backup-cron restore --artifact storage`: whatever happens, nothing is
//! written outside the target directory, and a refused archive writes nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Entry {
    kind: u8,
    path: Vec<u8>,
    link: Vec<u8>,
    data: Vec<u8>,
}

/// The header types an archive may carry, hostile ones included.
const KINDS: [tar::EntryType; 6] = [
    tar::EntryType::Regular,
    tar::EntryType::Directory,
    tar::EntryType::Symlink,
    tar::EntryType::Link,
    tar::EntryType::Char,
    tar::EntryType::Fifo,
];

fuzz_target!(|entries: Vec<Entry>| {
    let scratch = tempfile::tempdir().unwrap();
    let outside = scratch.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let archive = scratch.path().join("storage.tar.gz");
    let gzip = flate2::write::GzEncoder::new(
        std::fs::File::create(&archive).unwrap(),
        flate2::Compression::fast(),
    );
    let mut builder = tar::Builder::new(gzip);
    for entry in entries.iter().take(16) {
        let mut header = tar::Header::new_gnu();
        // Raw bytes, so that names `set_path` would refuse reach the archive.
        let old = header.as_old_mut();
        let path_length = entry.path.len().min(old.name.len());
        old.name[..path_length].copy_from_slice(&entry.path[..path_length]);
        let link_length = entry.link.len().min(old.linkname.len());
        old.linkname[..link_length].copy_from_slice(&entry.link[..link_length]);
        header.set_entry_type(KINDS[usize::from(entry.kind) % KINDS.len()]);
        header.set_mode(0o644);
        header.set_size(entry.data.len() as u64);
        header.set_cksum();
        builder.append(&header, entry.data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();

    let into = scratch.path().join("into");
    let unpacked = dump_runner::unpack(&archive, &into, None);
    if let Err(dump_runner::RestoreError::Unsafe { .. }) = unpacked {
        assert!(!into.exists(), "a refused archive wrote: {entries:?}");
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "written outside the target: {entries:?}"
    );
    let mut siblings: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    siblings.sort();
    let mut expected = vec!["into", "outside", "storage.tar.gz"];
    if unpacked.is_err() && !into.exists() {
        expected.remove(0);
    }
    assert_eq!(siblings, expected, "{entries:?}");
});
