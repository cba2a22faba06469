//! Repository rules, checked as tests (rust-analyzer's `tidy.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::project_root;

#[test]
fn every_rust_file_starts_with_module_docs() {
    let offenders: Vec<_> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "files without a leading `//!` module doc: {offenders:#?}"
    );
}

#[test]
fn libraries_do_not_use_anyhow() {
    let offenders: Vec<_> = member_manifests()
        .into_iter()
        .filter(|manifest| {
            let dir = manifest.parent().unwrap();
            let is_library = dir.join("src/lib.rs").exists() && !dir.join("src/main.rs").exists();
            is_library && dependencies_section(manifest).contains("anyhow")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "library crates depending on anyhow: {offenders:#?}"
    );
}

#[test]
fn internal_dependencies_are_pinned_to_the_workspace_version() {
    let manifest = fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("[workspace.package] names a version");
    let pin = format!("version = \"={version}\"");
    let test_only = ["fixtures = ", "e2e-tests = "];
    let offenders: Vec<_> = manifest
        .lines()
        .filter(|line| line.contains("path = "))
        .filter(|line| {
            if test_only.iter().any(|name| line.starts_with(name)) {
                line.contains("version")
            } else {
                !line.contains(&pin)
            }
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "internal dependencies must carry `{pin}` (test-only crates no version): {offenders:#?}"
    );
    for member in member_manifests() {
        let text = fs::read_to_string(&member).unwrap();
        assert!(
            !text
                .lines()
                .any(|line| line.contains("path = \"") && !line.starts_with("path")),
            "{} names a path dependency itself; use `.workspace = true`",
            member.display()
        );
        assert!(
            text.contains("version.workspace = true"),
            "{} has a version of its own; use `version.workspace = true`",
            member.display()
        );
    }
}

#[test]
fn child_processes_only_through_one_door() {
    let needle = ["Command", "::new("].concat();
    let offenders: Vec<_> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap();
            text.lines().enumerate().any(|(index, line)| {
                line.contains(&needle) && !is_expected_above(&text, index, "disallowed_methods")
            })
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "`Command::new` without `#[expect(clippy::disallowed_methods, reason = …)]`: {offenders:#?}"
    );
}

#[test]
fn tests_insert_rows_only_through_fixtures() {
    let needle = ["insert", " into"].concat();
    let offenders: Vec<_> = rust_files()
        .into_iter()
        .filter(|path| is_test_file(path) && !path.starts_with(project_root().join("fixtures")))
        .filter(|path| {
            fs::read_to_string(path)
                .unwrap()
                .to_lowercase()
                .contains(&needle)
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "tests writing raw INSERTs; use a fixtures factory: {offenders:#?}"
    );
}

#[test]
fn only_fixtures_writes_the_platform_tables() {
    // The job payload and the columns of a seeded row are a contract with the
    // worker: one writer, so a schema change touches one crate.
    let offenders: Vec<_> = rust_files()
        .into_iter()
        .filter(|path| !path.starts_with(project_root().join("fixtures/src")))
        .filter(|path| writes_a_platform_table(&fs::read_to_string(path).unwrap()))
        .collect();
    assert!(
        offenders.is_empty(),
        "rows of the platform's tables written outside fixtures (use fixtures::seed or a factory): {offenders:#?}"
    );
}

#[test]
fn the_platform_table_rule_sees_through_layout() {
    let insert = ["insert", " into"].concat();
    assert!(writes_a_platform_table(&format!(
        "{insert} learning_submissions\n  (id)"
    )));
    assert!(writes_a_platform_table(&format!(
        "{} PUBLIC.courses(title)",
        insert.to_uppercase()
    )));
    assert!(!writes_a_platform_table(&format!(
        "{insert} chaos_expected select"
    )));
    assert!(!writes_a_platform_table(&format!(
        "{insert} learning_submissions_log values"
    )));
}

/// Whether `text` has an INSERT into one of the worker's tables, however spaced.
fn writes_a_platform_table(text: &str) -> bool {
    const TABLES: [&str; 4] = [
        "courses",
        "unit_tasks",
        "learning_submissions",
        "learning_submission_jobs",
    ];
    let text = text.to_lowercase();
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|word| !word.is_empty())
        .collect();
    words.windows(3).any(|window| {
        window[0] == "insert"
            && window[1] == "into"
            && TABLES.contains(&window[2].strip_prefix("public.").unwrap_or(window[2]))
    })
}

#[test]
fn no_ignored_or_should_panic_tests() {
    let needles = [["#[", "ignore"].concat(), ["#[", "should_panic"].concat()];
    let offenders: Vec<_> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap();
            needles.iter().any(|needle| text.contains(needle.as_str()))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "ignored or should_panic tests: {offenders:#?}"
    );
}

fn is_expected_above(text: &str, line_index: usize, lint: &str) -> bool {
    let lines: Vec<_> = text.lines().collect();
    lines[line_index.saturating_sub(12)..=line_index]
        .iter()
        .any(|line| line.contains(lint))
}

fn is_test_file(path: &Path) -> bool {
    path.components().any(|part| part.as_os_str() == "tests")
        || path.file_name().is_some_and(|name| name == "tests.rs")
}

fn dependencies_section(manifest: &Path) -> String {
    fs::read_to_string(manifest)
        .unwrap()
        .split("\n[")
        .filter(|section| section.starts_with("dependencies"))
        .collect()
}

fn member_manifests() -> Vec<PathBuf> {
    let root = project_root();
    let mut manifests: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("Cargo.toml"))
        .collect();
    manifests.extend(["fixtures", "xtask", "tests"].map(|dir| root.join(dir).join("Cargo.toml")));
    manifests.retain(|path| path.exists());
    manifests
}

fn rust_files() -> Vec<PathBuf> {
    let root = project_root();
    let mut files = Vec::new();
    for top in ["crates", "fixtures", "xtask", "tests", "fuzz/fuzz_targets"] {
        collect_rust_files(&root.join(top), &mut files);
    }
    files
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn deployment_files_carry_no_credentials() {
    let root = project_root();
    let mut files = vec![
        root.join("compose.yaml"),
        root.join("README.md"),
        root.join(".dockerignore"),
    ];
    for dir in ["deploy", "docs"] {
        collect_all_files(&root.join(dir), &mut files);
    }
    let offenders: Vec<String> = files
        .iter()
        .filter(|path| path.exists())
        .flat_map(|path| {
            let text = fs::read_to_string(path).unwrap();
            text.lines()
                .filter(|line| looks_like_a_credential(line))
                .map(|line| format!("{}: {line}", path.display()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "credentials in tracked deployment files: {offenders:#?}"
    );
}

/// A URL with a literal password, or a password variable set to a literal value.
fn looks_like_a_credential(line: &str) -> bool {
    let url_with_password = line.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', ' ', '\'', '"']).next().unwrap_or("");
        authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
            userinfo
                .split_once(':')
                .is_some_and(|(_, password)| !password.is_empty() && !password.starts_with('%'))
        })
    });
    let upper = line.to_ascii_uppercase();
    let literal_password_setting = ["PASSWORD=", "PASSWORD: "].iter().any(|key| {
        upper.match_indices(key).any(|(at, _)| {
            let value = line[at + key.len()..].trim_start_matches(['"', '\'']);
            !upper[..at].ends_with("_FILE")
                && !value.is_empty()
                && !value.starts_with(['$', '/', '*'])
        })
    });
    url_with_password || literal_password_setting
}

#[test]
fn the_credential_check_catches_credentials() {
    for line in [
        "DATABASE_URL: postgresql://app:s3cret@db:5432/app",
        "POSTGRES_PASSWORD: example",
        "      POSTGRES_PASSWORD=changeme",
    ] {
        assert!(looks_like_a_credential(line), "{line}");
    }
    for line in [
        "POSTGRES_PASSWORD_FILE: /run/secrets/postgres_password",
        "printf 'postgresql://gustav_worker:%s@postgres:5432/postgres'",
        "psql -h HOST -U OWNER -d restored",
    ] {
        assert!(!looks_like_a_credential(line), "{line}");
    }
}

fn collect_all_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_all_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

#[test]
fn docs_link_only_inside_the_repository() {
    let root = project_root();
    let mut files = ["README.md", "BENCHMARKS.md", "compose.yaml", "Cargo.toml"]
        .map(|file| root.join(file))
        .to_vec();
    collect_all_files(&root.join("docs"), &mut files);
    for dir in ["crates", "fixtures", "tests", "xtask"] {
        collect_all_files(&root.join(dir), &mut files);
    }
    collect_all_files(&root.join("deploy"), &mut files);
    let outside = ["../", "shared/"].concat();
    let team_spec = ["shared", "/spec"].concat();
    let mut offenders = Vec::new();
    for path in files.iter().filter(|path| {
        path.extension().is_some_and(|extension| {
            ["md", "rs", "sql", "yaml", "toml", "sh", "py"]
                .contains(&extension.to_str().unwrap_or(""))
        })
    }) {
        let text = fs::read_to_string(path).unwrap();
        let base = path.parent().unwrap();
        if text.contains(&team_spec) || text.contains(&format!("../{outside}")) {
            offenders.push(format!("{}: points at the team folder", path.display()));
        }
        if path.extension().is_some_and(|extension| extension == "md") {
            for target in markdown_links(&text) {
                if !base.join(&target).exists() {
                    offenders.push(format!("{}: link to missing {target}", path.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "links that leave the repository or lead nowhere: {offenders:#?}"
    );
}

/// The relative targets of `[text](target)` links (no URLs, no anchors only).
fn markdown_links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or("").trim();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            targets.push(target.to_owned());
        }
        rest = &rest[end..];
    }
    targets
}

#[test]
fn the_link_check_sees_links() {
    assert_eq!(
        markdown_links("see [ops](docs/operations.md#restoring) and [x](https://a.b) [y](#top)"),
        ["docs/operations.md"]
    );
}

#[test]
fn binaries_are_wiring() {
    // Logic lives in the libraries, where it is tested in-process; a `main.rs` only
    // parses, starts logging and maps exit codes.
    let offenders: Vec<String> = member_manifests()
        .into_iter()
        .map(|manifest| manifest.parent().unwrap().join("src/main.rs"))
        .filter(|main| main.exists() && !main.starts_with(project_root().join("xtask")))
        .filter_map(|main| {
            let lines = fs::read_to_string(&main).unwrap().lines().count();
            (lines > 100).then(|| format!("{}: {lines} lines", main.display()))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "binaries with more than 100 lines in main.rs: {offenders:#?}"
    );
}

#[test]
fn reference_names_everything() {
    let root = project_root();
    let reference = fs::read_to_string(root.join("docs/reference/backup-cron.md")).unwrap();
    let source = |path: &str| fs::read_to_string(root.join(path)).unwrap();
    let mut names = Vec::new();
    // Every variable: each all-capitals string literal of the command line and the
    // configuration (flags' `env = "…"`, the environment-only secrets, DSN lists).
    for path in [
        "crates/backup-cron/src/cli.rs",
        "crates/backup-cron/src/config.rs",
    ] {
        names.extend(variables_in(&source(path)));
    }
    // Every code written into manifest.json, drill.json, offsite.json.
    for path in [
        "crates/manifest/src/code.rs",
        "crates/manifest/src/offsite.rs",
    ] {
        names.extend(
            quoted_after(&source(path), "=> \"")
                .into_iter()
                .filter(|code| {
                    code.bytes().all(|byte| {
                        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_'
                    })
                }),
        );
    }
    // Every metric.
    names.extend(
        quoted_after(&source("crates/backup-cron/src/metrics.rs"), "\"backup_")
            .into_iter()
            .map(|rest| {
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(rest.len());
                format!("backup_{}", &rest[..end])
            })
            .filter(|name| name.len() > "backup_".len()),
    );
    assert_reference_names(
        &reference,
        "docs/reference/backup-cron.md",
        &names,
        &[
            "BACKUP_S3_URL",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "KC_DB_URL",
            "SESSION_DATABASE_URL",
            "s3_timeout",
            "pg_dump_timeout",
            "backup_runs_total",
        ],
    );

    let reference = fs::read_to_string(root.join("docs/reference/learning-worker.md")).unwrap();
    let mut names = Vec::new();
    for path in [
        "crates/learning-worker/src/cli.rs",
        "crates/learning-worker/src/config.rs",
        "crates/worker-core/src/stub.rs",
    ] {
        names.extend(
            variables_in(&source(path))
                .into_iter()
                .filter(|name| name != "PATH"),
        );
    }
    for path in [
        "crates/worker-core/src/database.rs",
        "crates/worker-core/src/readiness.rs",
    ] {
        names.extend(
            quoted_after(&source(path), "\"")
                .into_iter()
                .filter(|literal| {
                    (literal.starts_with("db_") || literal.starts_with("backend_"))
                        && literal
                            .bytes()
                            .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
                }),
        );
    }
    names.extend(
        quoted_after(&source("crates/worker-core/src/metrics.rs"), "\"")
            .into_iter()
            .filter(|literal| literal.starts_with("ai_worker_") || literal.starts_with("analysis_"))
            .map(|literal| {
                let end = literal
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(literal.len());
                literal[..end]
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum")
                    .to_owned()
            }),
    );
    assert_reference_names(
        &reference,
        "docs/reference/learning-worker.md",
        &names,
        &[
            "LEARNING_DATABASE_URL",
            "WORKER_LEASE_SECONDS",
            "AI_STUB_FAIL",
            "db_helpers_open_to_public",
            "backend_unavailable",
            "ai_worker_lease_lost_total",
        ],
    );
}

/// The scan found each of `expected` (so it still sees what it should), and the
/// reference names every name it found.
/// The platform reference names every table, column, index, function, trigger and
/// role that the test copy of the platform's schema (`fixtures/sql/platform.sql`)
/// creates, so the page cannot fall behind the SQL.
#[test]
fn platform_reference_names_every_object() {
    let root = project_root();
    let reference = fs::read_to_string(root.join("docs/reference/platform.md")).unwrap();
    let sql = fs::read_to_string(root.join("fixtures/sql/platform.sql")).unwrap();
    let mut names = Vec::new();
    let mut in_table = false;
    let word = |rest: &str| {
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len());
        rest[..end].to_owned()
    };
    for line in sql.lines() {
        if let Some(rest) = line.strip_prefix("create table public.") {
            names.push(word(rest));
            in_table = true;
        } else if line.starts_with(");") {
            in_table = false;
        } else if in_table && let Some(column) = line.strip_prefix("    ") {
            // A column line; constraints and continuations are not columns.
            let name = word(column);
            let keyword = ["constraint", "unique", "primary", "check"].contains(&name.as_str());
            if !name.is_empty() && !keyword && !column.starts_with(' ') {
                names.push(name);
            }
        }
        for prefix in [
            "create function public.",
            "create index ",
            "create trigger ",
        ] {
            if let Some(rest) = line.trim_start().strip_prefix(prefix) {
                names.push(word(rest));
            }
        }
        // The roles: ('name', 'attributes'),
        if let Some(rest) = line.trim_start().strip_prefix("('") {
            names.push(word(rest));
        }
    }
    assert_reference_names(
        &reference,
        "docs/reference/platform.md",
        &names,
        &[
            "learning_submission_jobs",
            "lease_key",
            "vision_last_attempt_at",
            "learning_worker_mark_retry",
            "learning_submission_jobs_visible_idx",
            "trg_notify_learning_submission_change",
            "gustav_worker",
        ],
    );
}

fn assert_reference_names(reference: &str, file: &str, names: &[String], expected: &[&str]) {
    for expected in expected {
        assert!(
            names.iter().any(|name| name == expected),
            "the scan misses {expected}: {names:?}"
        );
    }
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !reference.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "{file} does not name: {missing:?}");
}

/// The all-capitals string literals of a source file (`"BACKUP_DIR"`), which are
/// variable names, except a flag's placeholder (`value_name = "DIR"`).
fn variables_in(text: &str) -> Vec<String> {
    let placeholders = quoted_after(text, "value_name = \"");
    quoted_after(text, "\"")
        .into_iter()
        .filter(|literal| {
            !placeholders.contains(literal)
                && literal.len() > 3
                && literal.starts_with(|c: char| c.is_ascii_uppercase())
                && literal
                    .bytes()
                    .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
        })
        .collect()
}

/// The text up to the next `"` after each occurrence of `opener`.
fn quoted_after(text: &str, opener: &str) -> Vec<String> {
    text.match_indices(opener)
        .filter_map(|(index, _)| {
            let rest = &text[index + opener.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .filter(|name| !name.is_empty())
        .collect()
}
