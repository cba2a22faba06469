//! `cargo xtask ci`: the only CI entry point, so a local run and CI behave alike:
//! fmt, clippy, the docs with warnings as errors (broken links, missing docs),
//! build the tests (timed on its own), run them, package every library and binary
//! crate as crates.io would receive it (and build each package alone), then the
//! out-of-tree consumer, `e2e` and `chaos --quick`.

use std::time::Instant;

use xshell::{Shell, cmd};

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // insta treats CI=1 as "never write snapshots": a mismatch fails instead.
    let _ci = sh.push_env("CI", "1");
    step("fmt", || cmd!(sh, "{cargo} fmt --all --check").run())?;
    step("clippy", || {
        cmd!(
            sh,
            "{cargo} clippy --workspace --all-targets --locked -- -D warnings"
        )
        .run()
    })?;
    step("doc", || {
        let _deny = sh.push_env("RUSTDOCFLAGS", "-D warnings");
        cmd!(sh, "{cargo} doc --workspace --no-deps --locked").run()
    })?;
    step("build tests", || {
        cmd!(sh, "{cargo} test --workspace --locked --no-run").run()
    })?;
    step("test", || {
        cmd!(sh, "{cargo} test --workspace --locked").run()
    })?;
    step("package", || {
        // `--allow-dirty`: a local run packages the tree as it is, which is what CI's
        // clean checkout packages too.
        cmd!(
            sh,
            "{cargo} package --workspace --locked --allow-dirty --exclude fixtures --exclude e2e-tests --exclude xtask"
        )
        .run()
    })?;
    step("consumer", || crate::consumer::run(sh))?;
    step("e2e", || crate::e2e::run(sh))?;
    // The compose scenario needs a Docker engine: CI's machines have one and must
    // run it (CI=true); elsewhere it is skipped with one line when none answers.
    if crate::compose::engine(sh).is_some()
        || std::env::var("CI").is_ok_and(|value| value == "true")
    {
        step("e2e --compose", || crate::compose::run(sh))?;
    } else {
        eprintln!(
            "xtask ci: e2e --compose skipped: no Docker engine answers (`docker info` failed)"
        );
    }
    step("chaos --quick", || {
        crate::chaos::run(
            sh,
            &crate::chaos::Options {
                quick: true,
                minutes: 0.0,
                seed: None,
            },
        )
    })?;
    Ok(())
}

fn step<E>(name: &str, action: impl FnOnce() -> Result<(), E>) -> anyhow::Result<()>
where
    anyhow::Error: From<E>,
{
    eprintln!("xtask ci: {name}");
    let started = Instant::now();
    action()?;
    eprintln!(
        "xtask ci: {name} done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
