//! `cargo xtask ci`: the only CI entry point, so a local run and CI behave alike:
//! fmt, clippy (the fuzz targets' too), the docs with warnings as errors (broken
//! links, missing docs), build the tests (timed on its own), run them, package every
//! library and binary crate as crates.io would receive it (and build each package
//! alone), then the out-of-tree consumer, the fencing demo, the Kubernetes manifests
//! against the API schemas, `e2e`, `e2e --compose` (when a Docker engine answers;
//! its base images are made on a thread of their own from the start, since
//! debootstrap waits on the mirror while the Rust steps compile) and `chaos --quick`.

use std::time::Instant;

use xshell::{Shell, cmd};

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // insta treats CI=1 as "never write snapshots": a mismatch fails instead.
    let _ci = sh.push_env("CI", "1");
    let compose = crate::compose::engine(sh).is_some()
        || std::env::var("CI").is_ok_and(|value| value == "true");
    let bases = compose.then(|| std::thread::spawn(crate::compose::bases_ahead));
    step("fmt", || cmd!(sh, "{cargo} fmt --all --check").run())?;
    step("clippy", || {
        cmd!(
            sh,
            "{cargo} clippy --workspace --all-targets --locked -- -D warnings"
        )
        .run()
    })?;
    // The fuzz targets are a project of their own (libFuzzer's flags must not reach
    // the workspace's builds), so nothing else would notice an API change breaking
    // them; fuzzing itself is `cargo xtask fuzz`, outside CI's time budget.
    step("fuzz targets (clippy)", || {
        cmd!(
            sh,
            "{cargo} clippy --manifest-path fuzz/Cargo.toml --target-dir target --locked -- -D warnings"
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
    forget_unpacked_packages()?;
    step("package", || {
        // `--allow-dirty`: a local run packages the tree as it is, which is what CI's
        // clean checkout packages too. A package is built as a project of its own,
        // without the workspace's profile: with the dependencies' `debug = false`
        // given here too, they are the ones the test build already compiled (about
        // 90 units instead of 500, three minutes less on 2 cores).
        cmd!(
            sh,
            "{cargo} package --workspace --locked --allow-dirty --exclude fixtures --exclude e2e-tests --exclude xtask"
        )
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .run()
    })?;
    step("consumer", || crate::consumer::run(sh))?;
    step("fencing demo", || -> anyhow::Result<()> {
        let timeline = cmd!(
            sh,
            "{cargo} run --quiet --locked -p pg-lease --example fencing_demo"
        )
        .read()?;
        // The demo's point, checked: the stale write is refused with the key and
        // lands without it.
        anyhow::ensure!(
            timeline.contains("and lease_key = k1`: 0 rows") && timeline.contains("matches 1 row"),
            "the fencing demo did not show what it is for:\n{timeline}"
        );
        Ok(())
    })?;
    step("kubernetes manifests", || crate::kubernetes::validate(sh))?;
    step("e2e", || crate::e2e::run(sh))?;
    // The compose scenario needs a Docker engine: CI's machines have one and must
    // run it (CI=true); elsewhere it is skipped with one line when none answers.
    if let Some(bases) = bases {
        if let Err(error) = bases.join().expect("the base image thread does not panic") {
            eprintln!(
                "xtask ci: making the base images ahead failed ({error:#}); the compose step tries again"
            );
        }
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
                soak: false,
            },
        )
    })?;
    Ok(())
}

/// `cargo package --workspace` verifies each package against the others through a
/// local registry, and cargo unpacks such a package once per registry path and
/// version into `$CARGO_HOME/registry/src/-<hash>/NAME-VERSION`, never again. The
/// version only changes on a release, so a second run would verify against the
/// first run's sources. Removing those directories makes every run verify the tree
/// as it is.
fn forget_unpacked_packages() -> anyhow::Result<()> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo")))
        .ok_or_else(|| anyhow::anyhow!("neither CARGO_HOME nor HOME is set"))?;
    let Ok(registries) = std::fs::read_dir(home.join("registry/src")) else {
        return Ok(());
    };
    let version = env!("CARGO_PKG_VERSION");
    let packages: Vec<String> = std::fs::read_dir(crate::project_root().join("crates"))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("Cargo.toml")).ok())
        .filter_map(|manifest| {
            manifest
                .lines()
                .find_map(|line| line.strip_prefix("name = \""))
                .and_then(|rest| rest.strip_suffix('"'))
                .map(|name| format!("{name}-{version}"))
        })
        .collect();
    for registry in registries.filter_map(|entry| entry.ok()) {
        // Local registries are named `-<hash>`; crates.io's sources are left alone.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for package in &packages {
            let unpacked = registry.path().join(package);
            if unpacked.exists() {
                std::fs::remove_dir_all(&unpacked)?;
            }
        }
    }
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
