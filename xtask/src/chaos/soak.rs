//! `--soak`: the figures of a long run. A process that leaks shows it only over
//! time, and only if it lives that long: so a soak run keeps one worker (the
//! *steady* one) and the backup scheduler (`backup-cron run`) alive from start to
//! end, under the faults that do not kill them, and compares their resident
//! memory, open file descriptors and database connections at the start (after a
//! warm-up) and at the end against stated bounds.

use std::time::Duration;

/// How long a process runs before its first sample: pools filled, caches warm.
pub(crate) const WARM_UP: Duration = Duration::from_secs(30);
/// The most a process's resident memory may grow between the samples.
const RSS_GROWTH_KIB: u64 = 16 * 1024;
/// The most its open file descriptors other than its database connections may
/// grow (a connection is a socket: a pool that fills up to its bound under load
/// adds one descriptor per connection, which the connection bound covers).
const FD_GROWTH: usize = 16;

/// What one process holds at one moment.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    rss_kib: u64,
    fds: usize,
    /// Its sessions in `pg_stat_activity`, where they can be told apart.
    connections: Option<u64>,
}

impl Sample {
    /// Reads `/proc/<pid>`; `None` when the process is gone.
    pub(crate) fn of(pid: u32, connections: Option<u64>) -> Option<Sample> {
        let rss_kib = fixtures::memory_kib(pid, "VmRSS")?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        Some(Sample {
            rss_kib,
            fds,
            connections,
        })
    }
}

/// One long-lived process's start and end, as report rows; a growth beyond the
/// bounds (or more connections than `max_connections`) is a violation.
pub(crate) fn compare(
    name: &str,
    start: Option<Sample>,
    end: Option<Sample>,
    max_connections: u64,
    violations: &mut Vec<String>,
) -> Vec<(String, String)> {
    let (Some(start), Some(end)) = (start, end) else {
        violations.push(format!(
            "soak: {name} could not be sampled at start and end"
        ));
        return Vec::new();
    };
    if end.rss_kib > start.rss_kib + RSS_GROWTH_KIB {
        violations.push(format!(
            "soak: {name} grew from {} to {} KiB resident (bound +{RSS_GROWTH_KIB})",
            start.rss_kib, end.rss_kib
        ));
    }
    let other_files = |sample: Sample| {
        sample
            .fds
            .saturating_sub(usize::try_from(sample.connections.unwrap_or(0)).unwrap_or(0))
    };
    if other_files(end) > other_files(start) + FD_GROWTH {
        violations.push(format!(
            "soak: {name} went from {} to {} open files besides its connections (bound +{FD_GROWTH})",
            other_files(start),
            other_files(end)
        ));
    }
    if end
        .connections
        .is_some_and(|connections| connections > max_connections)
    {
        violations.push(format!(
            "soak: {name} holds {:?} connections (bound {max_connections})",
            end.connections
        ));
    }
    let connections = |sample: Sample| {
        sample
            .connections
            .map_or_else(|| "–".to_owned(), |connections| connections.to_string())
    };
    vec![
        (
            format!("soak: {name} resident memory, start → end"),
            format!(
                "{:.1} → {:.1} MiB (bound +{} MiB)",
                start.rss_kib as f64 / 1024.0,
                end.rss_kib as f64 / 1024.0,
                RSS_GROWTH_KIB / 1024
            ),
        ),
        (
            format!("soak: {name} open files, start → end"),
            format!(
                "{} → {} ({} → {} besides its connections; bound +{FD_GROWTH})",
                start.fds,
                end.fds,
                other_files(start),
                other_files(end)
            ),
        ),
        (
            format!("soak: {name} database connections, start → end"),
            format!(
                "{} → {} (bound {max_connections})",
                connections(start),
                connections(end)
            ),
        ),
    ]
}
