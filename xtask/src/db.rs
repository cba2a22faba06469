//! SQL against the throwaway cluster, through `psql` as the superuser over the
//! unix socket (trust): no password on any command line. Shared by `e2e`,
//! `chaos` and `bench`.

use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

/// One database of the cluster.
pub(crate) struct Db<'a> {
    pub(crate) sh: &'a Shell,
    pub(crate) cluster: &'a fixtures::TestCluster,
    pub(crate) name: &'a str,
}

impl Db<'_> {
    fn psql(&self, dbname: &str) -> xshell::Cmd<'_> {
        let psql = self.cluster.bin_dir().join("psql");
        let socket = self.cluster.socket_dir();
        let port = self.cluster.port().to_string();
        let sh = self.sh;
        cmd!(
            sh,
            "{psql} -X -q -v ON_ERROR_STOP=1 -h {socket} -p {port} -U postgres -d {dbname}"
        )
        .env("PGOPTIONS", "-c client_min_messages=warning")
    }

    /// One statement in another database (`create database …`).
    pub(crate) fn admin(&self, dbname: &str, sql: &str) -> anyhow::Result<()> {
        Ok(self.psql(dbname).arg("-c").arg(sql).run()?)
    }

    /// The platform's schema as the tests build it (`fixtures::platform::SQL`), in
    /// one transaction.
    pub(crate) fn apply_schema(&self) -> anyhow::Result<()> {
        Ok(self
            .psql(self.name)
            .arg("-1")
            .stdin(fixtures::platform::SQL)
            .quiet()
            .ignore_stdout()
            .run()?)
    }

    /// SQL through stdin: what must not appear in a process list (passwords)
    /// goes this way.
    pub(crate) fn stdin_sql(&self, sql: &str) -> anyhow::Result<()> {
        self.stdin_bytes(sql.as_bytes().to_vec())
    }

    /// Bytes (a dump) through stdin.
    pub(crate) fn stdin_bytes(&self, bytes: Vec<u8>) -> anyhow::Result<()> {
        Ok(self
            .psql(self.name)
            .stdin(bytes)
            .quiet()
            .ignore_stdout()
            .run()?)
    }

    /// Unaligned, tuples-only output of one query.
    pub(crate) fn query(&self, sql: &str) -> anyhow::Result<String> {
        Ok(self.psql(self.name).args(["-At", "-c", sql]).read()?)
    }

    /// A script through stdin; its unaligned, tuples-only output.
    pub(crate) fn script(&self, sql: &str) -> anyhow::Result<String> {
        Ok(self.psql(self.name).arg("-At").stdin(sql).read()?)
    }

    /// [`query`](Self::query) without echoing the command: for polling loops.
    pub(crate) fn poll(&self, sql: &str) -> anyhow::Result<String> {
        Ok(self
            .psql(self.name)
            .args(["-At", "-c", sql])
            .quiet()
            .ignore_stderr()
            .read()?)
    }
}

/// A `*_FILE` secret (a DSN with a password), private to this user.
pub(crate) fn secret_file(dir: &Path, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(file, "{contents}")?;
    Ok(path)
}
