//! A backup world: a database with a password-protected backup role, a storage
//! directory, a backup directory, and the binary configured against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fixtures::TestDb;

/// Contains every character that needs escaping somewhere.
pub(crate) const PASSWORD: &str = "p:a@s%s\\ word";

pub(crate) struct World {
    pub(crate) db: TestDb,
    pub(crate) role: String,
    pub(crate) env: BTreeMap<String, String>,
    /// Holds BACKUP_DIR (a directory below it, created by the binary).
    _backups: tempfile::TempDir,
    pub(crate) storage: tempfile::TempDir,
}

impl World {
    /// A seeded database, storage files, and an environment that backs both up.
    pub(crate) async fn new() -> World {
        World::on(TestDb::new().await.unwrap()).await
    }

    /// The same world on a database of the caller's (a TLS server's, say).
    pub(crate) async fn on(db: TestDb) -> World {
        let role = db.create_backup_role(PASSWORD).await.unwrap();
        let client = db.connect().await.unwrap();
        let course = fixtures::course()
            .title("Seeded course title")
            .insert(&client)
            .await
            .unwrap();
        let task = fixtures::task()
            .course(&course)
            .insert(&client)
            .await
            .unwrap();
        for student in ["alice", "bob"] {
            fixtures::submission()
                .task(&task)
                .student(student)
                .insert_with_job(&client)
                .await
                .unwrap();
        }
        let storage = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(storage.path().join("materials")).unwrap();
        std::fs::write(storage.path().join("materials/x.png"), fixtures::SAMPLE_PNG).unwrap();
        let backups = tempfile::tempdir().unwrap();
        let pg_dump = db
            .server()
            .cluster()
            .expect("the fixtures cluster")
            .bin_dir()
            .join("pg_dump");
        let mut env = BTreeMap::new();
        env.insert(
            "BACKUP_DIR".to_owned(),
            backups.path().join("backups").display().to_string(),
        );
        env.insert(
            "SESSION_DATABASE_URL".to_owned(),
            db.url_as(&role, PASSWORD),
        );
        env.insert(
            "SUPABASE_STORAGE_ROOT".to_owned(),
            storage.path().display().to_string(),
        );
        env.insert("PG_DUMP".to_owned(), pg_dump.display().to_string());
        env.insert("RUST_LOG".to_owned(), "debug".to_owned());
        World {
            db,
            role,
            env,
            _backups: backups,
            storage,
        }
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) -> &mut World {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    pub(crate) fn backup_dir(&self) -> PathBuf {
        PathBuf::from(&self.env["BACKUP_DIR"])
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = backup_cron();
        command.args(args).envs(&self.env);
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Backup directories (stamp names), oldest first.
    pub(crate) fn run_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.backup_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                manifest::UtcTime::parse_stamp(&path.file_name().unwrap().to_string_lossy())
                    .is_some()
            })
            .filter(|path| path.symlink_metadata().unwrap().is_dir())
            .collect();
        dirs.sort();
        dirs
    }

    pub(crate) fn newest_manifest(&self) -> serde_json::Value {
        let dir = self.run_dirs().pop().expect("a backup directory");
        read_manifest(&dir)
    }
}

pub(crate) fn backup_cron() -> Command {
    fixtures::command(Path::new(env!("CARGO_BIN_EXE_backup-cron")))
}

/// The directories directly inside `dir` (the runs of a scratch BACKUP_DIR).
pub(crate) fn dirs_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect()
}

pub(crate) fn read_manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

pub(crate) fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every file below `dir`, relative, sorted.
pub(crate) fn files_below(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            files.push(path.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    files.sort();
    files
}
