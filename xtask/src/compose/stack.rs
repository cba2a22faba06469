//! The compose stack under test: `compose.yaml` plus the offline and e2e override
//! files, under a project name of its own, driven through whichever compose tool
//! the machine has (`docker compose`, else `docker-compose`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use xshell::{Cmd, Shell, cmd};

/// The project name: its own volumes and network, apart from an operator's stack.
pub(super) const PROJECT: &str = "lpe2e";

pub(super) struct Stack<'a> {
    pub(super) sh: &'a Shell,
    pub(super) spec: Spec,
}

/// What names the stack, apart from the shell that drives it: `Send`, so another
/// thread can drive the same stack through a shell of its own.
#[derive(Clone)]
pub(super) struct Spec {
    program: Vec<String>,
    files: Vec<PathBuf>,
    env: Vec<(&'static str, String)>,
}

impl Spec {
    pub(super) fn on(self, sh: &Shell) -> Stack<'_> {
        Stack { sh, spec: self }
    }
}

impl<'a> Stack<'a> {
    pub(super) fn new(
        sh: &'a Shell,
        env: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Stack<'a>> {
        let program = if cmd!(sh, "docker compose version")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
        {
            vec!["docker".to_owned(), "compose".to_owned()]
        } else if cmd!(sh, "docker-compose version")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
        {
            vec!["docker-compose".to_owned()]
        } else {
            bail!("neither `docker compose` nor `docker-compose` is installed");
        };
        let root = crate::project_root();
        Ok(Stack {
            sh,
            spec: Spec {
                program,
                files: vec![
                    root.join("compose.yaml"),
                    root.join("deploy/compose.offline.yaml"),
                    root.join("deploy/compose.e2e.yaml"),
                ],
                env,
            },
        })
    }

    /// The compose tool as the report names it.
    pub(super) fn tool(&self) -> String {
        self.spec.program.join(" ")
    }

    /// `<compose> -p PROJECT -f … <args>` with the stack's variables.
    pub(super) fn compose(&self, args: &[&str]) -> Cmd<'a> {
        let sh = self.sh;
        let (program, leading) = self.spec.program.split_first().expect("a program");
        let files: Vec<String> = self
            .spec
            .files
            .iter()
            .flat_map(|file| ["-f".to_owned(), file.display().to_string()])
            .collect();
        let mut command = cmd!(
            sh,
            "{program} {leading...} -p {PROJECT} {files...} {args...}"
        );
        for (name, value) in &self.spec.env {
            command = command.env(name, value);
        }
        command
    }

    /// The container ids of `service`, in a stable order.
    pub(super) fn ids(&self, service: &str) -> anyhow::Result<Vec<String>> {
        self.ps(&["ps", "-q", service])
    }

    /// Every container id of the stack.
    pub(super) fn all_ids(&self) -> anyhow::Result<Vec<String>> {
        self.ps(&["ps", "-q"])
    }

    fn ps(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let text = self.compose(args).quiet().read()?;
        let mut ids: Vec<String> = text.lines().map(str::to_owned).collect();
        ids.sort();
        Ok(ids)
    }

    /// The one container of `service`.
    pub(super) fn id(&self, service: &str) -> anyhow::Result<String> {
        self.ids(service)?
            .into_iter()
            .next()
            .with_context(|| format!("no {service} container"))
    }

    /// SQL through stdin to psql in the postgres container, as the superuser over
    /// the unix socket (peer authentication: no password anywhere); tuples only.
    pub(super) fn sql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        Ok(self
            .compose(&[
                "exec",
                "-T",
                "postgres",
                "psql",
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .stdin(sql)
            .quiet()
            .read()?)
    }

    /// Waits until every container of the stack reports healthy (or, without a
    /// health check, running).
    pub(super) fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let format = "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}";
        loop {
            let ids = self.all_ids()?;
            let sh = self.sh;
            let states = cmd!(sh, "docker inspect --format {format} {ids...}")
                .quiet()
                .read()?;
            let waiting: Vec<&str> = states
                .lines()
                .filter(|line| !line.ends_with(" healthy") && !line.ends_with(" running"))
                .collect();
            if !states.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("containers not healthy after {timeout:?}: {waiting:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Everything a container printed (both streams).
    pub(super) fn logs(&self, id: &str) -> anyhow::Result<String> {
        let sh = self.sh;
        let output = cmd!(sh, "docker logs {id}").quiet().output()?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// The stack's network.
    pub(super) fn network(&self) -> String {
        format!("{PROJECT}_default")
    }

    /// `down --volumes`: containers, network and every volume, best effort.
    pub(super) fn down(&self) {
        if let Err(error) = self
            .compose(&["down", "--volumes", "--remove-orphans", "--timeout", "5"])
            .quiet()
            .ignore_stderr()
            .run()
        {
            eprintln!("xtask e2e --compose: compose down failed: {error}");
        }
    }
}
