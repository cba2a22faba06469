//! Backups hold student data, so everything `backup-cron` creates is private to its
//! owner: directories 0700, files 0600, whatever the process's umask.
//!
//! The mode is set twice: at creation (so the file is never visible to others, not
//! even for an instant) and once more explicitly afterwards, because the creation
//! mode only ever loses bits to the umask, and a umask such as 0277 would otherwise
//! leave an owner unable to write.

use std::fs::{File, Permissions};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// The mode of every directory `backup-cron` creates.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file `backup-cron` creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates one directory, 0700. Fails if it exists.
pub fn create_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(DIR_MODE).create(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
}

/// Creates a directory and its missing parents, each new one 0700. Directories
/// that already exist keep their mode: an operator's mount point is theirs.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        create_dir_all(parent)?;
    }
    match create_dir(path) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

/// Creates (or truncates) a file for writing, 0600.
pub fn create_file(path: &Path) -> std::io::Result<File> {
    private_file(path, true)
}

/// Opens a file for writing without truncating it, creating it 0600 if missing
/// (the run lock).
pub fn open_file(path: &Path) -> std::io::Result<File> {
    private_file(path, false)
}

fn private_file(path: &Path, truncate: bool) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}
