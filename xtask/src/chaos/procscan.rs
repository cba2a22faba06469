//! Samples every process's argv (`/proc/<pid>/cmdline`) and environment
//! (`/proc/<pid>/environ`) over and over while the scenarios run, looking for the
//! passwords the chaos run created. The programs that handle passwords
//! (`pg_dump`, `backup-cron`, `learning-worker`) run as the harness's user, so
//! their environments are readable; the report says how many of each were read,
//! and a program never read at all is a violation (the scan would prove nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The programs that handle passwords (as `comm`, which is cut to 15 bytes).
const OURS: [&str; 3] = ["pg_dump", "backup-cron", "learning-worker"];

/// The running sampler.
pub(crate) struct ProcScan {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Report>,
}

/// What the sampler saw.
#[derive(Default)]
pub(crate) struct Report {
    scans: u64,
    processes: BTreeSet<u32>,
    /// Per program of [`OURS`], the processes whose environment was read.
    environments_read: BTreeMap<String, BTreeSet<u32>>,
    leaks: BTreeSet<String>,
}

impl ProcScan {
    pub(crate) fn start(secrets: Vec<String>) -> ProcScan {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut report = Report::default();
            let own = std::process::id();
            while !stopped.load(Ordering::Relaxed) {
                report.scan(&secrets, own);
                std::thread::sleep(Duration::from_millis(5));
            }
            report
        });
        ProcScan { stop, handle }
    }

    pub(crate) fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

impl Report {
    fn scan(&mut self, secrets: &[String], own: u32) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        self.scans += 1;
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // The harness holds the passwords in memory, never in its argv or
            // environment; its children are what is checked.
            if pid == own {
                continue;
            }
            let dir = entry.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let comm = comm.trim();
            self.processes.insert(pid);
            for (what, file) in [("argv", "cmdline"), ("environment", "environ")] {
                // Kernel threads, other users' processes (without
                // CAP_SYS_PTRACE) and processes exiting right now cannot be read.
                let Ok(bytes) = std::fs::read(dir.join(file)) else {
                    continue;
                };
                if file == "environ" && OURS.contains(&comm) {
                    self.environments_read
                        .entry(comm.to_owned())
                        .or_default()
                        .insert(pid);
                }
                if secrets
                    .iter()
                    .any(|secret| contains(&bytes, secret.as_bytes()))
                {
                    self.leaks
                        .insert(format!("{comm} (pid {pid}): a password in its {what}"));
                }
            }
        }
    }

    pub(crate) fn violations(&self) -> Vec<String> {
        let mut violations: Vec<String> = self.leaks.iter().cloned().collect();
        for ours in OURS {
            if !self.environments_read.contains_key(ours) {
                violations.push(format!(
                    "the process scan never read the environment of a running {ours}"
                ));
            }
        }
        violations
    }

    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        let read: Vec<String> = self
            .environments_read
            .iter()
            .map(|(comm, pids)| format!("{comm} {}", pids.len()))
            .collect();
        vec![
            (
                "scans of /proc (argv + environment)".to_owned(),
                self.scans.to_string(),
            ),
            (
                "distinct processes seen".to_owned(),
                self.processes.len().to_string(),
            ),
            ("environments read, by program".to_owned(), read.join(", ")),
            ("passwords found".to_owned(), self.leaks.len().to_string()),
        ]
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}
