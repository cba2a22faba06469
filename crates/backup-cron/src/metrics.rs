//! `BACKUP_METRICS_FILE`: the Prometheus text format, for node_exporter's textfile
//! collector (or any agent that reads such a file), rewritten atomically after
//! every run and every drill.
//!
//! A run is a process that ends, so what must outlive it (the counters, the last
//! success) is read back from the previous file and carried on; a file that cannot
//! be read back starts the counters afresh with a warning rather than failing a
//! backup. The file holds no secret and is world-readable (0644): the collector
//! usually runs as another user. Label values come from closed sets (artifact
//! names, run statuses), so nothing needs escaping; the output is checked by
//! `promtool check metrics` in the tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use manifest::{Drill, Manifest, Status};

/// What the file says, as far as the next write needs it.
#[derive(Debug, Default, PartialEq)]
struct Carried {
    runs_ok: u64,
    runs_failed: u64,
    last_run: Option<f64>,
    last_run_success: Option<bool>,
    last_success: Option<f64>,
    duration: Option<f64>,
    artifact_bytes: BTreeMap<String, u64>,
    drill_last_run: Option<f64>,
    drill_last_success: Option<f64>,
    offsite_last_run: Option<f64>,
    offsite_last_success: Option<f64>,
}

/// Records a finished run (its manifest) in the file at `path`.
pub fn record_run(path: &Path, manifest: &Manifest) {
    let mut carried = read(path);
    let finished = Some(manifest.finished_at.0.unix_seconds() as f64);
    carried.last_run = finished;
    carried.duration = Some(manifest.duration_ms as f64 / 1000.0);
    carried.artifact_bytes = manifest
        .artifacts
        .iter()
        .filter_map(|artifact| Some((artifact.name.as_str().to_owned(), artifact.bytes?)))
        .collect();
    let ok = manifest.status == Status::Ok;
    carried.last_run_success = Some(ok);
    if ok {
        carried.runs_ok += 1;
        carried.last_success = finished;
    } else {
        carried.runs_failed += 1;
    }
    write(path, &carried);
}

/// Records a finished drill in the file at `path`.
pub fn record_drill(path: &Path, drill: &Drill) {
    let mut carried = read(path);
    let finished = Some(drill.finished_at.0.unix_seconds() as f64);
    carried.drill_last_run = finished;
    if drill.status == Status::Ok {
        carried.drill_last_success = finished;
    }
    write(path, &carried);
}

/// Records a run's off-site uploads (none when nothing was pending).
pub fn record_offsite(path: &Path, attempts: &[crate::copies::Attempt]) {
    let Some(last) = attempts.last() else {
        return;
    };
    let mut carried = read(path);
    carried.offsite_last_run = Some(last.record.finished_at.0.unix_seconds() as f64);
    if let Some(ok) = attempts.iter().rev().find(|attempt| attempt.is_ok()) {
        carried.offsite_last_success = Some(ok.record.finished_at.0.unix_seconds() as f64);
    }
    write(path, &carried);
}

fn read(path: &Path) -> Carried {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).unwrap_or_else(|line| {
            tracing::warn!(path = %path.display(), line, "BACKUP_METRICS_FILE cannot be read back; counters start afresh");
            Carried::default()
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Carried::default(),
        Err(error) => {
            tracing::warn!(path = %path.display(), error = %error, "BACKUP_METRICS_FILE cannot be read; counters start afresh");
            Carried::default()
        }
    }
}

/// Reads back what [`render`] wrote; `Err` names the first line it does not know.
fn parse(text: &str) -> Result<Carried, String> {
    let mut carried = Carried::default();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| line.to_owned())?;
        let number: f64 = value.parse().map_err(|_| line.to_owned())?;
        let whole = || -> Result<u64, String> {
            (number >= 0.0 && number.fract() == 0.0 && number < 1e15)
                .then_some(number as u64)
                .ok_or_else(|| line.to_owned())
        };
        match series {
            "backup_runs_total{status=\"ok\"}" => carried.runs_ok = whole()?,
            "backup_runs_total{status=\"failed\"}" => carried.runs_failed = whole()?,
            "backup_last_run_timestamp_seconds" => carried.last_run = Some(number),
            "backup_last_run_success" => carried.last_run_success = Some(number == 1.0),
            "backup_last_success_timestamp_seconds" => carried.last_success = Some(number),
            "backup_duration_seconds" => carried.duration = Some(number),
            "backup_drill_last_run_timestamp_seconds" => carried.drill_last_run = Some(number),
            "backup_drill_last_success_timestamp_seconds" => {
                carried.drill_last_success = Some(number)
            }
            "backup_offsite_last_run_timestamp_seconds" => carried.offsite_last_run = Some(number),
            "backup_offsite_last_success_timestamp_seconds" => {
                carried.offsite_last_success = Some(number)
            }
            _ => {
                let artifact = series
                    .strip_prefix("backup_artifact_bytes{artifact=\"")
                    .and_then(|rest| rest.strip_suffix("\"}"))
                    .filter(|name| {
                        name.bytes()
                            .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
                    })
                    .ok_or_else(|| line.to_owned())?;
                carried.artifact_bytes.insert(artifact.to_owned(), whole()?);
            }
        }
    }
    Ok(carried)
}

fn render(carried: &Carried) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    };
    gauge(
        "backup_last_run_timestamp_seconds",
        "When the last backup run ended (Unix time).",
        carried.last_run,
    );
    gauge(
        "backup_last_success_timestamp_seconds",
        "When the last fully successful backup run ended (Unix time).",
        carried.last_success,
    );
    gauge(
        "backup_last_run_success",
        "1 if the last backup run succeeded, else 0.",
        carried
            .last_run_success
            .map(|ok| if ok { 1.0 } else { 0.0 }),
    );
    gauge(
        "backup_duration_seconds",
        "How long the last backup run took.",
        carried.duration,
    );
    gauge(
        "backup_drill_last_run_timestamp_seconds",
        "When the last restore drill ended (Unix time).",
        carried.drill_last_run,
    );
    gauge(
        "backup_drill_last_success_timestamp_seconds",
        "When the last successful restore drill ended (Unix time).",
        carried.drill_last_success,
    );
    gauge(
        "backup_offsite_last_run_timestamp_seconds",
        "When the last off-site upload attempt ended (Unix time).",
        carried.offsite_last_run,
    );
    gauge(
        "backup_offsite_last_success_timestamp_seconds",
        "When the last successful off-site copy ended (Unix time).",
        carried.offsite_last_success,
    );
    if !carried.artifact_bytes.is_empty() {
        let _ = writeln!(
            out,
            "# HELP backup_artifact_bytes Size of each artifact of the last run.\n# TYPE backup_artifact_bytes gauge"
        );
        for (artifact, bytes) in &carried.artifact_bytes {
            let _ = writeln!(
                out,
                "backup_artifact_bytes{{artifact=\"{artifact}\"}} {bytes}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP backup_runs_total Backup runs since this file was first written, by outcome.\n# TYPE backup_runs_total counter\nbackup_runs_total{{status=\"ok\"}} {}\nbackup_runs_total{{status=\"failed\"}} {}",
        carried.runs_ok, carried.runs_failed
    );
    out
}

/// Writes atomically: a temporary file in the same directory, then a rename, so a
/// collector never reads half a file.
fn write(path: &Path, carried: &Carried) {
    let result = (|| -> std::io::Result<()> {
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut file = tempfile::Builder::new()
            .prefix(".backup-metrics-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(dir)?;
        file.write_all(render(carried).as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|error| error.error)?;
        Ok(())
    })();
    if let Err(error) = result {
        tracing::error!(path = %path.display(), error = %error, "cannot write BACKUP_METRICS_FILE");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let carried = Carried {
            runs_ok: 41,
            runs_failed: 2,
            last_run: Some(1_796_000_000.0),
            last_run_success: Some(false),
            last_success: Some(1_795_990_000.0),
            duration: Some(7.5),
            artifact_bytes: BTreeMap::from([("supabase_db".to_owned(), 1_048_576)]),
            drill_last_run: Some(1_796_000_100.0),
            drill_last_success: Some(1_795_000_000.0),
            offsite_last_run: Some(1_796_000_200.0),
            offsite_last_success: Some(1_795_900_000.0),
        };
        assert_eq!(parse(&render(&carried)), Ok(carried));
        assert_eq!(parse(&render(&Carried::default())), Ok(Carried::default()));
    }

    #[test]
    fn a_foreign_file_is_not_read_as_ours() {
        assert!(parse("node_load1 0.5\n").is_err());
        assert!(parse("backup_runs_total{status=\"ok\"} -3\n").is_err());
        assert!(parse("backup_artifact_bytes{artifact=\"x\\\"}\"} 1\n").is_err());
    }
}
