//! `cargo xtask e2e --compose`: the e2e scenario against `compose.yaml`.
//!
//! It needs a Docker engine. Where none is reachable it says so in one line and
//! fails without trying anything else, so a green run always means the scenario ran.

use anyhow::{bail, ensure};
use xshell::{Shell, cmd};

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let format = "{{.ServerVersion}}";
    let engine = cmd!(sh, "docker info --format {format}")
        .quiet()
        .ignore_stderr()
        .read();
    let Ok(version) = engine else {
        bail!(
            "no Docker engine is reachable (`docker info` failed); `cargo xtask e2e --compose` needs one"
        );
    };
    eprintln!("xtask e2e --compose: Docker engine {version}");
    let secrets = crate::project_root().join("secrets");
    ensure!(
        secrets.join("postgres_password").exists(),
        "secrets/ is missing; create it as docs/operations.md \"Deploying with compose\" describes"
    );
    cmd!(sh, "docker compose up --build --detach --wait").run()?;
    let scenario = (|| -> anyhow::Result<()> {
        cmd!(
            sh,
            "docker compose exec -T learning-worker learning-worker check"
        )
        .run()?;
        cmd!(sh, "docker compose exec -T backup-cron backup-cron once").run()?;
        cmd!(sh, "docker compose exec -T backup-cron backup-cron verify").run()?;
        cmd!(sh, "docker compose exec -T backup-cron backup-cron status").run()?;
        Ok(())
    })();
    cmd!(sh, "docker compose down --volumes").run()?;
    scenario
}
