//! The command line: a tiny hand-rolled parser, because clap would cost more to
//! compile than everything else xtask needs.

use anyhow::bail;

pub(crate) const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci              cargo fmt --check, clippy -D warnings, build the tests, run them, e2e
  e2e             the whole system on a throwaway PostgreSQL (release binaries)
  e2e --compose   the same scenario against compose.yaml, two worker replicas and
                  faults across containers (needs a Docker engine; images offline)
  images          only the offline images: debootstrap bases, imported, and the
                  variables deploy/compose.offline.yaml needs
  bench           backup and worker benchmarks against the usual alternatives
  bench --quick   a smoke run of the same, under a minute or two
  bench --only SECTION   one section: worker, latency, backup, formats or platform (with --quick too)
  chaos           workers and backups under injected faults, checked for lost,
                  duplicated or leaked work (options: --minutes N, default 10;
                  --seed S to repeat a fault schedule)
  chaos --quick   a short run of the same (part of ci)
  chaos --soak M  M minutes of the full mode with a steady worker and the backup
                  scheduler sampled for memory, files and connections at start and end
  consumer        lease and dsn used from a project of its own, as an outsider
                  would (part of ci)
  kubernetes      deploy/kubernetes against the API schemas, offline (part of ci)
  fuzz            every fuzz target in turn (cargo fuzz; options: --time SECONDS
                  per target, default 60; --target NAME for one)";

/// The sections of `cargo xtask bench`.
pub(crate) const BENCH_SECTIONS: [&str; 5] = ["worker", "latency", "backup", "formats", "platform"];

/// What to do.
pub(crate) enum Task {
    /// The whole CI pipeline.
    Ci,
    /// The end-to-end scenario; against compose.yaml when `compose`.
    E2e {
        /// `--compose`.
        compose: bool,
    },
    /// Benchmarks; a smoke run when `quick`.
    Bench {
        /// `--quick`.
        quick: bool,
        /// `--only SECTION`: one of [`BENCH_SECTIONS`].
        only: Option<String>,
    },
    /// Fault injection.
    Chaos(crate::chaos::Options),
    /// The library crates from a project of its own.
    Consumer,
    /// The offline base images.
    Images,
    /// The Kubernetes manifests against the API schemas.
    Kubernetes,
    /// The fuzz targets, each for `seconds`.
    Fuzz {
        /// Per target.
        seconds: u64,
        /// Only this target.
        target: Option<String>,
    },
    /// Print the usage.
    Help,
}

impl Task {
    pub(crate) fn from_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Task> {
        let task = match args.next().as_deref() {
            Some("ci") => Task::Ci,
            Some("e2e") => match args.next().as_deref() {
                None => Task::E2e { compose: false },
                Some("--compose") => Task::E2e { compose: true },
                Some(other) => bail!("unknown e2e flag `{other}`\n\n{USAGE}"),
            },
            Some("bench") => {
                let (mut quick, mut only) = (false, None);
                while let Some(flag) = args.next() {
                    match flag.as_str() {
                        "--quick" => quick = true,
                        "--only" => match args.next() {
                            Some(section) if BENCH_SECTIONS.contains(&section.as_str()) => {
                                only = Some(section)
                            }
                            _ => bail!(
                                "--only takes one of {}\n\n{USAGE}",
                                BENCH_SECTIONS.join(", ")
                            ),
                        },
                        other => bail!("unknown bench flag `{other}`\n\n{USAGE}"),
                    }
                }
                Task::Bench { quick, only }
            }
            Some("chaos") => return chaos_options(args).map(Task::Chaos),
            Some("consumer") => Task::Consumer,
            Some("images") => Task::Images,
            Some("kubernetes") => Task::Kubernetes,
            Some("fuzz") => {
                let (mut seconds, mut target) = (60, None);
                while let Some(flag) = args.next() {
                    match (flag.as_str(), args.next()) {
                        ("--time", Some(value)) => {
                            seconds = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                                anyhow::anyhow!("--time wants a positive number of seconds")
                            })?;
                        }
                        ("--target", Some(name)) => target = Some(name),
                        _ => bail!("unknown fuzz flag `{flag}` or a missing value\n\n{USAGE}"),
                    }
                }
                Task::Fuzz { seconds, target }
            }
            Some("help" | "--help" | "-h") | None => Task::Help,
            Some(other) => bail!("unknown task `{other}`\n\n{USAGE}"),
        };
        if let Some(extra) = args.next() {
            bail!("unexpected argument `{extra}`\n\n{USAGE}");
        }
        Ok(task)
    }
}

fn chaos_options(mut args: impl Iterator<Item = String>) -> anyhow::Result<crate::chaos::Options> {
    let mut options = crate::chaos::Options {
        quick: false,
        minutes: 10.0,
        seed: None,
        soak: false,
    };
    while let Some(flag) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "--quick" => options.quick = true,
            "--soak" => {
                let minutes = value("--soak")?;
                options.soak = true;
                options.minutes = minutes
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m > 0.0)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--soak wants a positive number of minutes, got `{minutes}`"
                        )
                    })?;
            }
            "--minutes" => {
                let minutes = value("--minutes")?;
                options.minutes = minutes
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m > 0.0)
                    .ok_or_else(|| {
                        anyhow::anyhow!("--minutes wants a positive number, got `{minutes}`")
                    })?;
            }
            "--seed" => {
                let seed = value("--seed")?;
                options.seed = Some(seed.parse().map_err(|_| {
                    anyhow::anyhow!("--seed wants an unsigned integer, got `{seed}`")
                })?);
            }
            other => bail!("unknown chaos flag `{other}`\n\n{USAGE}"),
        }
    }
    Ok(options)
}
