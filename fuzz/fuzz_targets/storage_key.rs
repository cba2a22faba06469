//! A submission's storage key, any text, against a storage root that holds a file, a
//! directory, a symlink inside and symlinks pointing out: what resolves is always
//! below the root, symlinks followed.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use worker_core::ollama::storage;

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("storage");
        std::fs::create_dir_all(root.join("submissions/alice")).unwrap();
        std::fs::write(root.join("submissions/alice/page.png"), b"png").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"outside").unwrap();
        let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        link(&dir.path().join("secret.txt"), "out-file");
        link(dir.path(), "out-dir");
        link(Path::new("/etc"), "etc");
        link(Path::new("submissions/alice"), "in-dir");
        World { root: std::fs::canonicalize(&root).unwrap(), _dir: dir }
    })
}

fuzz_target!(|key: &str| {
    let world = world();
    if let Ok(path) = storage::resolve(&world.root, key) {
        assert!(path.starts_with(&world.root), "{key:?} resolved to {}", path.display());
        let real = std::fs::canonicalize(&path).unwrap();
        assert!(real.starts_with(&world.root), "{key:?} is really {}", real.display());
    }
});
