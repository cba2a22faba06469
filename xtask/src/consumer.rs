//! `cargo xtask consumer`: the library crates as an outsider sees them. A project
//! of its own in a temp directory depends on `lease` and `dsn` by path, is built
//! with their public API only, and leases and completes the jobs of a throwaway
//! cluster. A `pub` item that only works through `crate::`, a feature the crates
//! forgot to declare, or a dependency only the workspace happens to provide fails
//! here, not in a user's build.

use anyhow::ensure;
use fixtures::seed;
use xshell::{Shell, cmd};

use crate::db::{Db, secret_file};
use crate::project_root;

const JOBS: u32 = 5;

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let cluster = fixtures::TestCluster::start()?;
    let db = Db {
        sh,
        cluster: &cluster,
        name: "consumer",
    };
    db.admin("postgres", "create database consumer")?;
    db.apply_schema()?;
    let password = fixtures::random_token(24);
    db.stdin_sql(&format!(
        "alter role gustav_worker login password '{password}';\n{}{}",
        seed::tasks_sql(1, 1),
        seed::submissions(JOBS).sql()
    ))?;

    let project = tempfile::Builder::new().prefix("consumer-").tempdir()?;
    let root = project_root();
    std::fs::create_dir(project.path().join("src"))?;
    std::fs::write(
        project.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"consumer\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\n\
             dsn = {{ package = \"pg-dsn\", path = \"{dsn}\", features = [\"tokio-postgres\"] }}\n\
             lease = {{ package = \"pg-lease\", path = \"{lease}\" }}\n\
             deadpool-postgres = {{ version = \"0.14\", default-features = false, features = [\"rt_tokio_1\"] }}\n\
             tokio = {{ version = \"1\", default-features = false, features = [\"macros\", \"rt\"] }}\n\
             tokio-postgres = {{ version = \"0.7\", default-features = false, features = [\"runtime\"] }}\n\n\
             [workspace]\n",
            dsn = root.join("crates/dsn").display(),
            lease = root.join("crates/lease").display(),
        ),
    )?;
    std::fs::write(
        project.path().join("src/main.rs"),
        include_str!("consumer_main.rs.in"),
    )?;
    // The workspace's versions, so the build reuses what is downloaded and tested.
    std::fs::copy(root.join("Cargo.lock"), project.path().join("Cargo.lock"))?;
    let dsn = format!(
        "postgresql://gustav_worker:{password}@{}:{}/consumer",
        fixtures::HOST,
        cluster.port()
    );
    let dsn_file = secret_file(project.path(), "dsn", &dsn)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = project.path().join("Cargo.toml");
    let output = cmd!(sh, "{cargo} run --quiet --manifest-path {manifest}")
        .env("CARGO_TARGET_DIR", root.join("target/consumer"))
        .env("CONSUMER_DATABASE_URL_FILE", &dsn_file)
        .read()?;
    eprintln!("xtask consumer: {output}");
    ensure!(
        output.starts_with(&format!(
            "completed {JOBS} jobs as postgresql://gustav_worker:***@"
        )),
        "the consumer did not complete the {JOBS} jobs: {output}"
    );
    ensure!(
        !output.contains(&password),
        "the consumer printed the password"
    );
    let left = db.query("select count(*) from learning_submission_jobs")?;
    ensure!(
        left.trim() == "0",
        "{left} jobs left after the consumer ran"
    );
    Ok(())
}
