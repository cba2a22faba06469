//! The checks, SQL over the records the workers cannot fake, and the report they
//! fill in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context as _, ensure};

use super::World;
use crate::chaos::epoch_seconds;

/// Every adapter call with the state of its job at the call's start (see the file).
const CALLS_IN_STATE: &str = include_str!("calls_in_state.sql");
/// Every lease a job ever had and how it ended (see the file).
const LEASES: &str = include_str!("leases.sql");

/// The scenario's numbers and what went wrong.
#[derive(Default)]
pub(crate) struct Report {
    pub(super) seconds: f64,
    faults: BTreeMap<&'static str, usize>,
    pub(super) processes: usize,
    jobs: u64,
    completed: u64,
    failed: u64,
    not_as_configured: u64,
    calls: u64,
    expected_calls: u64,
    duplicates: BTreeMap<String, u64>,
    wasted_without_duplicate: u64,
    foreign_lease_calls: u64,
    expired_own_lease_calls: u64,
    written_twice: u64,
    lost: u64,
    stuck: u64,
    /// `--soak`: the steady worker's resources, start and end.
    pub(super) soak: Vec<(String, String)>,
    pub(crate) violations: Vec<String>,
}

impl Report {
    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let duplicates: u64 = self.duplicates.values().sum();
        let by_cause: Vec<String> = self
            .duplicates
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        vec![
            (
                "faults injected".into(),
                format!(
                    "{} ({})",
                    self.faults.values().sum::<usize>(),
                    faults.join(", ")
                ),
            ),
            (
                "worker processes started".into(),
                self.processes.to_string(),
            ),
            (
                "jobs".into(),
                format!(
                    "{} ({} completed, {} failed; {} not as configured)",
                    self.jobs, self.completed, self.failed, self.not_as_configured
                ),
            ),
            (
                "adapter calls".into(),
                format!(
                    "{} (a fault-free run makes {})",
                    self.calls, self.expected_calls
                ),
            ),
            (
                "duplicate calls".into(),
                format!(
                    "{duplicates} ({})",
                    if by_cause.is_empty() {
                        "none".to_owned()
                    } else {
                        by_cause.join(", ")
                    }
                ),
            ),
            (
                "calls under a lost lease, result kept (OCR cache)".into(),
                self.wasted_without_duplicate.to_string(),
            ),
            (
                "calls while another worker held a live lease".into(),
                self.foreign_lease_calls.to_string(),
            ),
            (
                "calls after the caller's own lease ended".into(),
                self.expired_own_lease_calls.to_string(),
            ),
            (
                "results written twice".into(),
                self.written_twice.to_string(),
            ),
            ("lost (pending without a job)".into(), self.lost.to_string()),
            (
                "stuck (queued or leased at the end)".into(),
                self.stuck.to_string(),
            ),
            ("scenario time".into(), format!("{:.1} s", self.seconds)),
        ]
        .into_iter()
        .chain(self.soak.iter().cloned())
        .collect()
    }

    pub(super) fn violation(&mut self, text: String) {
        self.violations.push(text);
    }
}

impl World<'_> {
    pub(super) fn check(&self, report: &mut Report) -> anyhow::Result<()> {
        for fault in &self.faults {
            *report.faults.entry(fault.kind).or_default() += 1;
        }
        self.load_records(report)?;
        let timeline = self.setup.scratch.join("faults.txt");
        let lines: Vec<String> = self
            .faults
            .iter()
            .map(|f| {
                format!(
                    "{:.3} {:.3} {} instance {:?}",
                    epoch_seconds(f.started),
                    epoch_seconds(f.ended),
                    f.kind,
                    f.instance
                )
            })
            .collect();
        std::fs::write(timeline, lines.join("\n"))?;
        let db = &self.db;

        let outcome = db.query(
            "select count(*), \
                    count(*) filter (where s.analysis_status = 'completed'), \
                    count(*) filter (where s.analysis_status = 'failed'), \
                    count(*) filter (where s.analysis_status is distinct from e.status \
                                        or s.error_code is distinct from e.error_code), \
                    count(*) filter (where s.analysis_status in ('pending', 'extracted') and j.id is null), \
                    count(*) filter (where (e.status = 'completed' and j.id is not null) \
                                        or (e.status = 'failed' and j.status is distinct from 'failed')) \
             from chaos_expected e \
             join learning_submissions s on s.id = e.submission_id \
             left join learning_submission_jobs j on j.submission_id = s.id",
        )?;
        let [jobs, completed, failed, mismatched, lost, wrong_job_state] = numbers(&outcome)?;
        (report.jobs, report.completed, report.failed, report.lost) =
            (jobs, completed, failed, lost);
        report.not_as_configured = mismatched;
        if mismatched > 0 {
            let examples = db.query(
                "select e.kind || ' starting at retry ' || e.initial_retry_count || ': expected ' || e.status \
                        || coalesce(' ' || e.error_code, '') || ', got ' || s.analysis_status || coalesce(' ' || s.error_code, '') \
                 from chaos_expected e join learning_submissions s on s.id = e.submission_id \
                 where s.analysis_status is distinct from e.status or s.error_code is distinct from e.error_code limit 3",
            )?;
            report.violation(format!(
                "{mismatched} submissions did not end as configured, e.g. {}",
                examples.replace('\n', "; ")
            ));
        }
        if lost > 0 {
            report.violation(format!("{lost} submissions are pending with no job: lost"));
        }
        if wrong_job_state > 0 {
            report.violation(format!(
                "{wrong_job_state} jobs do not match their submission's end state"
            ));
        }
        report.stuck = numbers::<1>(&db.query(
            "select count(*) from learning_submission_jobs where status in ('queued', 'leased')",
        )?)?[0];
        if report.stuck > 0 {
            report.violation(format!("{} jobs are still queued or leased", report.stuck));
        }
        report.written_twice = numbers::<1>(&db.query(
            "select count(*) from (select submission_id from chaos_submission_log \
             where status in ('completed', 'failed') group by submission_id having count(*) > 1) twice",
        )?)?[0];
        if report.written_twice > 0 {
            report.violation(format!(
                "{} submissions had their result written twice",
                report.written_twice
            ));
        }

        let leases = db.query(&format!(
            "with {CALLS_IN_STATE} \
             select count(*) filter (where foreign_live), count(*) filter (where not own_live) \
             from calls_in_state"
        ))?;
        [report.foreign_lease_calls, report.expired_own_lease_calls] = numbers(&leases)?;
        if report.foreign_lease_calls > 0 {
            let examples = db.query(&format!(
                "with {CALLS_IN_STATE} \
                 select phase || ' call on job ' || job_id || ' by instance ' || instance || ' at ' || at \
                 from calls_in_state where foreign_live limit 3"
            ))?;
            report.violation(format!(
                "{} adapter calls started while another worker held a live lease, e.g. {}",
                report.foreign_lease_calls,
                examples.replace('\n', "; ")
            ));
        }
        self.check_duplicates(report)
    }

    /// Duplicates: calls beyond a fault-free run, per submission and phase. Each
    /// must be matched by a call made under a lease that ended without a result
    /// (released or taken over), and that lease's holder must have been hit by a
    /// fault while it held the lease — or while the statement that granted it was
    /// in flight: a lease sent into a black hole is granted only when the cut
    /// heals, and its worker, counting from the moment it sent the statement,
    /// rightly gives it up early.
    fn check_duplicates(&self, report: &mut Report) -> anyhow::Result<()> {
        let db = &self.db;
        let counts = db.query(
            "select e.submission_id || '|' || p.phase || '|' || p.expected || '|' || count(c.at) \
             from chaos_expected e \
             cross join lateral (values ('vision', e.vision_calls), ('feedback', e.feedback_calls)) p(phase, expected) \
             left join chaos_calls c on c.submission_id = e.submission_id and c.phase = p.phase \
             group by e.submission_id, p.phase, p.expected",
        )?;
        let mut extra: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut too_few = 0;
        for line in counts.lines() {
            let fields: Vec<&str> = line.split('|').collect();
            ensure!(fields.len() == 4, "unexpected row {line:?}");
            let (expected, actual): (u64, u64) = (fields[2].parse()?, fields[3].parse()?);
            report.calls += actual;
            report.expected_calls += expected;
            if actual < expected {
                too_few += 1;
            } else if actual > expected {
                extra.insert(
                    (fields[0].to_owned(), fields[1].to_owned()),
                    actual - expected,
                );
            }
        }
        if too_few > 0 {
            report.violation(format!(
                "{too_few} submission phases had fewer adapter calls than a fault-free run"
            ));
        }
        let wasted = db.query(&format!(
            "with {LEASES} \
             select c.submission_id || '|' || c.phase || '|' || coalesce( \
                      (select f.kind from chaos_faults f \
                       where (f.instance is null or f.instance = c.instance) \
                         and f.started_at <= coalesce(l.ended_at, 'infinity') \
                         and f.ended_at >= l.granted_at - interval '1 second' \
                       order by f.started_at limit 1), 'none') \
                    || '|instance ' || c.instance || ', call at ' || c.at || ', lease ' || l.granted_at \
                    || ' to ' || coalesce(l.ended_at::text, 'open') || ' (' || l.ending_state || ')' \
             from chaos_calls c join leases l on l.lease_key = c.lease_key \
             where l.ending <> 'done' order by c.at"
        ))?;
        let mut unexplained = Vec::new();
        for line in wasted.lines() {
            let fields: Vec<&str> = line.split('|').collect();
            ensure!(fields.len() == 4, "unexpected row {line:?}");
            let key = (fields[0].to_owned(), fields[1].to_owned());
            if fields[2] == "none" {
                unexplained.push(fields[3].to_owned());
            }
            match extra.get_mut(&key) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    *report.duplicates.entry(fields[2].to_owned()).or_default() += 1;
                }
                _ => report.wasted_without_duplicate += 1,
            }
        }
        if !unexplained.is_empty() {
            report.violation(format!(
                "{} calls ran under a lease that was lost although no fault hit its worker, e.g. {}",
                unexplained.len(),
                unexplained[..unexplained.len().min(3)].join("; ")
            ));
        }
        let unmatched: u64 = extra.values().sum();
        if unmatched > 0 {
            report.violation(format!(
                "{unmatched} duplicate calls have no lost lease behind them"
            ));
        }
        Ok(())
    }

    /// Loads the workers' adapter-call events and the fault timeline, after
    /// checking the events against the stub's own call log.
    fn load_records(&self, report: &mut Report) -> anyhow::Result<()> {
        let mut csv = String::new();
        let mut from_events: BTreeMap<(String, String), u64> = BTreeMap::new();
        for instance in 1..=self.instances {
            let text = std::fs::read_to_string(self.logs.join(format!("{instance}.log")))?;
            for line in text.lines() {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if event["message"] != "adapter call starts" {
                    continue;
                }
                let field =
                    |name: &str| event[name].as_str().map(str::to_owned).unwrap_or_default();
                let (submission, phase) = (field("submission_id"), field("phase"));
                writeln!(
                    csv,
                    "{instance},{},{},{submission},{},{},{phase}",
                    field("timestamp"),
                    field("job_id"),
                    field("lease_key"),
                    event["retry_count"].as_i64().unwrap_or(-1),
                )?;
                *from_events.entry((submission, phase)).or_default() += 1;
            }
        }
        let mut from_stub: BTreeMap<(String, String), u64> = BTreeMap::new();
        for line in std::fs::read_to_string(&self.call_log)
            .unwrap_or_default()
            .lines()
        {
            let fields: Vec<&str> = line.split(' ').collect();
            if let [phase, submission, _job] = fields[..] {
                *from_stub
                    .entry((submission.to_owned(), phase.to_owned()))
                    .or_default() += 1;
            }
        }
        if from_events != from_stub {
            let differing = from_stub
                .iter()
                .filter(|(key, count)| from_events.get(*key) != Some(count))
                .count();
            report.violation(format!(
                "the workers' adapter-call events and the stub call log disagree for {differing} submission phases"
            ));
        }
        let calls_csv = self.setup.scratch.join("calls.csv");
        std::fs::write(&calls_csv, csv)?;
        self.db.query(&format!(
            "\\copy chaos_calls from '{}' with (format csv)",
            calls_csv.display()
        ))?;
        let mut faults =
            String::from("insert into chaos_faults (kind, instance, started_at, ended_at) values ");
        let rows: Vec<String> = self
            .faults
            .iter()
            .map(|fault| {
                format!(
                    "('{}', {}, to_timestamp({:.6}), to_timestamp({:.6}))",
                    fault.kind,
                    fault.instance.map_or("null".to_owned(), |i| i.to_string()),
                    epoch_seconds(fault.started),
                    epoch_seconds(fault.ended)
                )
            })
            .collect();
        if !rows.is_empty() {
            faults.push_str(&rows.join(", "));
            self.db.stdin_sql(&faults)?;
        }
        Ok(())
    }
}

/// Parses one row of `|`-separated numbers.
fn numbers<const N: usize>(row: &str) -> anyhow::Result<[u64; N]> {
    let values: Vec<u64> = row
        .trim()
        .split('|')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("expected {N} numbers, got {row:?}"))?;
    values
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected {N} numbers, got {row:?}"))
}
