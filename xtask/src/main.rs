//! Project automation, in Rust so that it runs the same everywhere:
//! `cargo xtask ci` is the one command CI and developers run.
//!
//! Repository rules (module docs, no `Command::new`, no raw `INSERT` in tests, …) are
//! `#[test]`s in `tidy.rs`, so `cargo test` enforces them like any other test.

mod bench;
mod chaos;
mod ci;
mod compose;
mod consumer;
mod db;
mod e2e;
mod flags;
mod fuzz;
mod kubernetes;
mod python;
#[cfg(test)]
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use xshell::Shell;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let task = flags::Task::from_args(std::env::args().skip(1))?;
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match task {
        flags::Task::Ci => ci::run(&sh),
        flags::Task::E2e { compose: false } => e2e::run(&sh),
        flags::Task::E2e { compose: true } => compose::run(&sh),
        flags::Task::Bench { quick, only } => bench::run(&sh, quick, only.as_deref()),
        flags::Task::Chaos(options) => chaos::run(&sh, &options),
        flags::Task::Consumer => consumer::run(&sh),
        flags::Task::Images => compose::images_only(&sh),
        flags::Task::Kubernetes => kubernetes::validate(&sh),
        flags::Task::Fuzz { seconds, target } => fuzz::run(&sh, seconds, target.as_deref()),
        flags::Task::Help => {
            eprintln!("{}", flags::USAGE);
            Ok(())
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives inside the workspace")
        .to_owned()
}
