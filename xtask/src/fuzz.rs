//! `cargo xtask fuzz`: every target of `fuzz/` in turn under libFuzzer (`cargo
//! fuzz`), each for a fixed time, then one table of what they did. The committed
//! seed corpus (`fuzz/corpus/<target>`) is read, never written: what libFuzzer adds
//! goes to `target/fuzz/corpus/<target>`, and crashes to `fuzz/artifacts/<target>`.
//!
//! cargo fuzz wants a nightly compiler for its instrumentation flags; this machine
//! has one stable toolchain, so the build sets `RUSTC_BOOTSTRAP=1`, the documented
//! way to let a stable rustc take `-Z` flags. No sanitizer (`--sanitizer none`): the
//! code under test is safe Rust, and the build stays within a 2-core budget; the
//! coverage guidance is the same.

use std::path::Path;

use xshell::{Shell, cmd};

use crate::project_root;

/// The targets, as `fuzz/Cargo.toml` names them.
const TARGETS: [&str; 7] = [
    "dsn",
    "schedule",
    "manifest_json",
    "copy_counter",
    "tar_entries",
    "feedback_reply",
    "storage_key",
];

const CARGO_FUZZ: &str = "0.13.2";

/// What one target's run reported.
struct Outcome {
    target: &'static str,
    executions: String,
    per_second: String,
    coverage: String,
    features: String,
    corpus: String,
    crashed: bool,
}

#[expect(clippy::print_stdout, reason = "the table is xtask's output")]
pub(crate) fn run(sh: &Shell, seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    if let Some(only) = only {
        anyhow::ensure!(
            TARGETS.contains(&only),
            "no fuzz target `{only}`; the targets are {}",
            TARGETS.join(", ")
        );
    }
    if cmd!(sh, "cargo fuzz --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        eprintln!("xtask fuzz: installing cargo-fuzz {CARGO_FUZZ}");
        cmd!(
            sh,
            "cargo install cargo-fuzz --version {CARGO_FUZZ} --locked"
        )
        .run()?;
    }
    let root = project_root();
    let build_dir = root.join("target/fuzz");
    let mut outcomes = Vec::new();
    for target in TARGETS
        .into_iter()
        .filter(|target| only.is_none_or(|only| only == *target))
    {
        let work = build_dir.join("corpus").join(target);
        std::fs::create_dir_all(&work)?;
        let seeds = root.join("fuzz/corpus").join(target);
        let max_time = format!("-max_total_time={seconds}");
        let output = cmd!(
            sh,
            "cargo fuzz run --fuzz-dir {root}/fuzz --sanitizer none --release
                --target-dir {build_dir}/build {target} {work} {seeds}
                -- {max_time} -print_final_stats=1 -timeout=10 -rss_limit_mb=2048"
        )
        .env("RUSTC_BOOTSTRAP", "1")
        .ignore_status()
        .output()?;
        let log = String::from_utf8_lossy(&output.stderr);
        std::fs::write(build_dir.join(format!("{target}.log")), log.as_bytes())?;
        let outcome = outcome(target, &log, !output.status.success());
        if outcome.crashed {
            eprintln!("xtask fuzz: {target} crashed; its log: target/fuzz/{target}.log");
        }
        outcomes.push(outcome);
    }
    println!("{}", table(seconds, &outcomes));
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|outcome| outcome.crashed)
        .map(|outcome| outcome.target)
        .collect();
    anyhow::ensure!(
        crashed.is_empty(),
        "crashed: {} (inputs in {})",
        crashed.join(", "),
        Path::new("fuzz/artifacts").display()
    );
    Ok(())
}

fn outcome(target: &'static str, log: &str, crashed: bool) -> Outcome {
    let stat = |name: &str| {
        log.lines()
            .find_map(|line| line.strip_prefix(&format!("stat::{name}:")))
            .map_or_else(|| "?".to_owned(), |value| value.trim().to_owned())
    };
    // The last status line: `#N DONE cov: C ft: F corp: U/Sb …`.
    let status = log
        .lines()
        .rev()
        .find(|line| line.starts_with('#') && line.contains(" cov: "))
        .unwrap_or_default();
    let field = |name: &str| {
        status
            .split_whitespace()
            .skip_while(|word| *word != name)
            .nth(1)
            .unwrap_or("?")
            .to_owned()
    };
    Outcome {
        target,
        executions: stat("number_of_executed_units"),
        per_second: stat("average_exec_per_sec"),
        coverage: field("cov:"),
        features: field("ft:"),
        corpus: field("corp:"),
        crashed,
    }
}

fn table(seconds: u64, outcomes: &[Outcome]) -> String {
    let mut table = String::from(
        "| target | seconds | executions | exec/s | coverage (edges) | features | corpus (units/bytes) | crashed |\n|---|---|---|---|---|---|---|---|\n",
    );
    for outcome in outcomes {
        table.push_str(&format!(
            "| `{}` | {seconds} | {} | {} | {} | {} | {} | {} |\n",
            outcome.target,
            outcome.executions,
            outcome.per_second,
            outcome.coverage,
            outcome.features,
            outcome.corpus,
            if outcome.crashed { "yes" } else { "no" }
        ));
    }
    table
}
