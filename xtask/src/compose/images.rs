//! Images without a registry: a Debian base per image made with `debootstrap`,
//! imported with `docker import` and reused while its inputs are unchanged, then
//! the stack's images built from `deploy/*.Dockerfile` with the build arguments of
//! `deploy/compose.offline.yaml`.
//!
//! A base is named by a hash of what went into it (suite, variant, mirror, package
//! list, and [`RECIPE`] for the clean-up below): `learning-platform-base/<role>:<hash>`.
//! An image of that name in the engine is used as it is; else the root filesystem's
//! tarball under `target/compose/` is imported again; else debootstrap runs (about a
//! minute each, the three in parallel). The mirror is the host's, read from
//! `/etc/apt/sources.list*`, so nothing about the network is written into the tree.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};
use xshell::{Shell, cmd};

const SUITE: &str = "bookworm";
/// Bumped when the clean-up of a root filesystem changes.
const RECIPE: &str = "1";
/// Files a container never needs: package caches, docs, translations, and the
/// cluster Debian's postinst creates (the image initialises its own PGDATA).
const REMOVED: [&str; 8] = [
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
    "var/lib/postgresql/15",
    "etc/postgresql/15",
];

/// One base image: which image uses it and the packages it carries.
pub(super) struct Role {
    pub(super) name: &'static str,
    packages: &'static [&'static str],
    /// The build-argument variable of deploy/compose.offline.yaml.
    pub(super) variable: &'static str,
}

pub(super) const ROLES: [Role; 3] = [
    Role {
        name: "postgres",
        packages: &["postgresql-15"],
        variable: "OFFLINE_POSTGRES_BASE",
    },
    Role {
        name: "backup",
        packages: &["postgresql-client-15", "ca-certificates"],
        variable: "OFFLINE_BACKUP_BASE",
    },
    Role {
        name: "worker",
        packages: &["poppler-utils", "ca-certificates"],
        variable: "OFFLINE_WORKER_BASE",
    },
];

/// A base image that is ready in the engine, and whether it had to be made.
pub(super) struct Base {
    pub(super) role: &'static Role,
    pub(super) tag: String,
    pub(super) made: &'static str,
}

/// Every base, made or imported as needed.
pub(super) fn bases() -> anyhow::Result<Vec<Base>> {
    let mirror = debian_mirror()?;
    let cache = crate::project_root().join("target/compose");
    std::fs::create_dir_all(&cache)?;
    std::thread::scope(|scope| {
        let handles: Vec<_> = ROLES
            .iter()
            .map(|role| {
                let (mirror, cache) = (&mirror, &cache);
                scope.spawn(move || base(role, mirror, cache))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a base thread does not panic"))
            .collect()
    })
}

fn base(role: &'static Role, mirror: &str, cache: &Path) -> anyhow::Result<Base> {
    let sh = Shell::new()?;
    let mut hasher = Sha256::new();
    for part in [SUITE, "minbase", mirror, RECIPE] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for package in role.packages {
        hasher.update(package.as_bytes());
        hasher.update([0]);
    }
    let hash: String = hasher.finalize()[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let tag = format!("learning-platform-base/{}:{hash}", role.name);
    if cmd!(sh, "docker image inspect {tag}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
    {
        return Ok(Base {
            role,
            tag,
            made: "cached image",
        });
    }
    let tarball = cache.join(format!("base-{}-{hash}.tar", role.name));
    let made = if tarball.exists() {
        "imported cached root filesystem"
    } else {
        debootstrap(&sh, role, mirror, cache, &tarball)?;
        "debootstrap"
    };
    let path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    cmd!(sh, "docker import --change {path} {tarball} {tag}")
        .quiet()
        .ignore_stdout()
        .run()?;
    Ok(Base { role, tag, made })
}

fn debootstrap(
    sh: &Shell,
    role: &Role,
    mirror: &str,
    cache: &Path,
    tarball: &Path,
) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("debootstrap needs root to make the base images (CI runs as root)");
    }
    let rootfs = cache.join(format!("rootfs-{}", role.name));
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)?;
    }
    let include = format!("--include={}", role.packages.join(","));
    let log = cache.join(format!("debootstrap-{}.log", role.name));
    eprintln!(
        "xtask images: debootstrap {SUITE} minbase + {} (log: {})",
        role.packages.join(" "),
        log.display()
    );
    let output = cmd!(
        sh,
        "debootstrap --variant=minbase {include} {SUITE} {rootfs} {mirror}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    std::fs::write(&log, [output.stdout, output.stderr].concat())?;
    if !output.status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "debootstrap for {} failed ({}):\n{}",
            role.name,
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    for path in REMOVED {
        let path = rootfs.join(path);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
    }
    let partial = tarball.with_extension("tar.partial");
    cmd!(sh, "tar --numeric-owner -C {rootfs} -cf {partial} .")
        .quiet()
        .run()?;
    std::fs::rename(&partial, tarball)?;
    std::fs::remove_dir_all(&rootfs)?;
    Ok(())
}

/// The host's Debian mirror for [`SUITE`], from `/etc/apt/sources.list` (one-line
/// format) or `/etc/apt/sources.list.d/*.sources` (deb822).
fn debian_mirror() -> anyhow::Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "list" || extension == "sources")
            })
            .collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(mirror) = mirror_in(&text) {
            return Ok(mirror);
        }
    }
    bail!("no Debian {SUITE} mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/")
}

fn mirror_in(text: &str) -> Option<String> {
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let ["deb", uri, suite, ..] = fields[..]
            && suite == SUITE
            && !uri.contains("security")
        {
            return Some(uri.to_owned());
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let (Some(types), Some(uris), Some(suites)) =
            (field("Types"), field("URIs"), field("Suites"))
        else {
            continue;
        };
        let uri = uris.split_whitespace().next()?;
        if types.split_whitespace().any(|kind| kind == "deb")
            && suites.split_whitespace().any(|suite| suite == SUITE)
            && !uri.contains("security")
        {
            return Some(uri.to_owned());
        }
    }
    None
}

/// What `docker image inspect` says of an image: its user and size.
pub(super) struct ImageFacts {
    pub(super) user: String,
    pub(super) bytes: u64,
}

pub(super) fn inspect(sh: &Shell, image: &str) -> anyhow::Result<ImageFacts> {
    let format = "{{.Config.User}}|{{.Size}}";
    let text = cmd!(sh, "docker image inspect --format {format} {image}")
        .quiet()
        .read()?;
    let (user, bytes) = text
        .split_once('|')
        .with_context(|| format!("unexpected inspect output {text:?}"))?;
    Ok(ImageFacts {
        user: user.to_owned(),
        bytes: bytes.trim().parse()?,
    })
}

#[cfg(test)]
mod tests {
    use super::mirror_in;

    #[test]
    fn the_mirror_is_read_from_either_sources_format() {
        let deb822 = "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one_line = "deb http://security.debian.org/debian-security bookworm-security main\ndeb http://mirror.example/debian bookworm main contrib\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_in("deb http://x/debian bullseye main"), None);
    }
}
