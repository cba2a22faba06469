//! The command line: a tiny hand-rolled parser, because clap would cost more to
//! compile than everything else xtask needs.

use anyhow::bail;

pub(crate) const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci    cargo fmt --check, clippy -D warnings, build the tests, run them";

/// What to do.
pub(crate) enum Task {
    /// The whole CI pipeline.
    Ci,
    /// Print the usage.
    Help,
}

impl Task {
    pub(crate) fn from_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Task> {
        let task = match args.next().as_deref() {
            Some("ci") => Task::Ci,
            Some("help" | "--help" | "-h") | None => Task::Help,
            Some(other) => bail!("unknown task `{other}`\n\n{USAGE}"),
        };
        if let Some(extra) = args.next() {
            bail!("unexpected argument `{extra}`\n\n{USAGE}");
        }
        Ok(task)
    }
}
