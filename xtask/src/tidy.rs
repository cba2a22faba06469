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
fn internal_dependencies_have_no_version() {
    let manifest = fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
    let offenders: Vec<_> = manifest
        .lines()
        .filter(|line| line.contains("path = ") && line.contains("version"))
        .collect();
    assert!(
        offenders.is_empty(),
        "internal dependencies with a version: {offenders:#?}"
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
    for top in ["crates", "fixtures", "xtask", "tests"] {
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
