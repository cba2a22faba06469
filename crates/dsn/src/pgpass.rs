//! The one way a password leaves this crate: a private pgpass file.
//!
//! libpq reads the file named by `PGPASSFILE` and ignores it unless it is private
//! (mode 0600 or stricter). We write it inside a fresh 0700 directory, create it
//! with mode 0600 from the start (never wider, not even for an instant), and remove
//! the directory when the [`PgpassFile`] is dropped, also on error paths and panics.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::Dsn;
use crate::error::Error;

/// A pgpass file holding one line for one connection; removed on drop.
#[derive(Debug)]
pub struct PgpassFile {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgpassFile {
    /// The file to name in `PGPASSFILE`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Dsn {
    /// Writes the password to a private pgpass file, in a new directory under the
    /// system temp directory. `Ok(None)` when the DSN has no password.
    pub fn write_pgpass(&self) -> Result<Option<PgpassFile>, Error> {
        let Some(line) = self.pgpass_line() else {
            return Ok(None);
        };
        // A pgpass line cannot escape a line break: one in a credential filled in
        // after parsing (`fill_credentials`) would start a second line.
        let fields = line.strip_suffix('\n').unwrap_or(&line);
        if fields.contains(char::is_control) {
            return Err(Error::PgpassControlCharacter);
        }
        let dir = tempfile::Builder::new()
            .prefix("pgpass-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(Error::Pgpass)?;
        let path = dir.path().join("pgpass");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::Pgpass)?;
        file.write_all(line.as_bytes()).map_err(Error::Pgpass)?;
        Ok(Some(PgpassFile { path, _dir: dir }))
    }

    /// `host:port:database:user:password\n` with `\` and `:` escaped.
    ///
    /// A field the DSN leaves open is `*`, and so is a unix-socket host: libpq
    /// compares its default socket directory as `localhost` but other directories
    /// literally, and the file serves this one connection only, so a wildcard is
    /// exact enough and never wrong.
    pub(crate) fn pgpass_line(&self) -> Option<String> {
        let password = self.password.as_ref()?;
        let host = self
            .host
            .as_deref()
            .filter(|host| !host.starts_with('/') && !host.starts_with('@'));
        let port = self.port.map(|port| port.to_string());
        let fields = [
            host,
            port.as_deref(),
            self.dbname.as_deref(),
            self.user.as_deref(),
        ];
        let mut line = String::new();
        for field in fields {
            line.push_str(&field.map_or_else(|| "*".to_owned(), escape));
            line.push(':');
        }
        line.push_str(&escape(password.expose()));
        line.push('\n');
        Some(line)
    }
}

fn escape(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}
