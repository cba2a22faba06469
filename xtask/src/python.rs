//! Python tools from PyPI the project measures against or validates with (peer
//! queues, the aws CLI, the Kubernetes schemas), each in a venv of its own below
//! `target/`, never installed on the machine itself.

use std::path::PathBuf;

use xshell::{Shell, cmd};

use crate::project_root;

/// `target/python/venv-<name>` with `packages` (pinned), created on first use.
pub(crate) fn venv(sh: &Shell, name: &str, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let venv = project_root().join(format!("target/python/venv-{name}"));
    let ready = venv.join(".installed");
    let wanted = packages.join("\n");
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(wanted.as_str()) {
        eprintln!(
            "xtask: installing {} into {}",
            packages.join(" "),
            venv.display()
        );
        cmd!(sh, "python3 -m venv --clear {venv}").run()?;
        let pip = venv.join("bin/pip");
        cmd!(
            sh,
            "{pip} install --quiet --disable-pip-version-check {packages...}"
        )
        .run()?;
        std::fs::write(&ready, wanted)?;
    }
    Ok(venv)
}
