//! The checks over the whole compose run, from records the workers cannot fake:
//! the triggers of `chaos`'s instrumentation (every change of a job's lease and
//! every result written) and each adapter call's job and lease key, read from the
//! worker containers' logs (the debug event "adapter call starts").

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use e2e_tests::SUMMARY_SQL;

use super::{DB, World};

/// The audit tables and triggers (shared with `cargo xtask chaos`).
pub(super) const INSTRUMENTATION: &str = include_str!("../chaos/workers/instrumentation.sql");
const CALLS_IN_STATE: &str = include_str!("../chaos/workers/calls_in_state.sql");
const LEASES: &str = include_str!("../chaos/workers/leases.sql");

/// One "adapter call starts" event.
pub(super) struct Call {
    pub(super) at: SystemTime,
    timestamp: String,
    job: String,
    submission: String,
    lease_key: String,
    retry_count: i64,
    phase: String,
}

/// The adapter calls in a worker's JSON log lines.
pub(super) fn adapter_calls(logs: &str) -> Vec<Call> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["message"] == "adapter call starts")
        .filter_map(|event| {
            let field = |name: &str| event[name].as_str().map(str::to_owned);
            let timestamp = field("timestamp")?;
            Some(Call {
                at: parse_timestamp(&timestamp)?,
                timestamp,
                job: field("job_id")?,
                submission: field("submission_id")?,
                lease_key: field("lease_key")?,
                retry_count: event["retry_count"].as_i64().unwrap_or(-1),
                phase: field("phase")?,
            })
        })
        .collect()
}

/// `2026-12-02T02:05:20.123456Z`, as tracing writes it.
fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let seconds = manifest::UtcTime::parse_rfc3339(&format!("{whole}Z"))?.unix_seconds();
    let nanos: u32 = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    let seconds = u64::try_from(seconds).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// What the records show.
pub(super) struct Found {
    pub(super) rows: Vec<(&'static str, String)>,
    pub(super) violations: Vec<String>,
}

pub(super) fn run(world: &World<'_>) -> anyhow::Result<Found> {
    let mut violations = Vec::new();
    let mut inserts = Vec::new();
    let workers = world.stack.ids("learning-worker")?;
    for (instance, id) in workers.iter().enumerate() {
        for call in adapter_calls(&world.stack.logs(id)?) {
            inserts.push(format!(
                "({instance}, '{}', '{}', '{}', '{}', {}, '{}')",
                call.timestamp,
                call.job,
                call.submission,
                call.lease_key,
                call.retry_count,
                call.phase
            ));
        }
    }
    let calls = inserts.len();
    for chunk in inserts.chunks(500) {
        world.sql(&format!(
            "insert into chaos_calls (instance, at, job_id, submission_id, lease_key, retry_count, phase) values {};",
            chunk.join(", ")
        ))?;
    }
    let stub_calls = world.stub_calls()?.len();
    if stub_calls != calls {
        violations.push(format!(
            "the workers logged {calls} adapter calls but the stub recorded {stub_calls}"
        ));
    }

    let total = world.count("select count(*) from learning_submissions")?;
    if let Err(error) =
        e2e_tests::check_all_completed(&world.sql(SUMMARY_SQL)?, usize::try_from(total)?)
    {
        violations.push(format!("lost or unfinished work: {error}"));
    }
    let written_twice = world.count(
        "select count(*) from (select submission_id from chaos_submission_log \
         where status in ('completed', 'failed') group by submission_id having count(*) > 1) twice",
    )?;
    if written_twice > 0 {
        violations.push(format!(
            "{written_twice} submissions had their result written twice"
        ));
    }
    let numbers = world.sql(&format!(
        "with {CALLS_IN_STATE} select count(*) filter (where foreign_live) || ' ' || \
         count(*) filter (where not own_live) from calls_in_state"
    ))?;
    let (foreign_live, not_own_live) = numbers.trim().split_once(' ').context("two numbers")?;
    if foreign_live != "0" {
        violations.push(format!(
            "{foreign_live} adapter calls started while another worker held a live lease on the job"
        ));
    }
    let unleased_completions = world.count(
        "select count(*) from chaos_job_log d where d.op = 'delete' and coalesce((\
           select p.status from chaos_job_log p where p.job_id = d.job_id and p.seq < d.seq \
           order by p.seq desc limit 1), '') <> 'leased'",
    )?;
    if unleased_completions > 0 {
        violations.push(format!(
            "{unleased_completions} jobs were completed by a holder whose lease key was no longer the job's"
        ));
    }
    let leases = world.sql(&format!(
        "with {LEASES} select count(*) || ' ' || count(*) filter (where ending = 'lost') from leases"
    ))?;
    let (granted, lost) = leases.trim().split_once(' ').context("two numbers")?;
    let db = DB;
    Ok(Found {
        rows: vec![
            (
                "nothing lost",
                format!("{total} submissions in {db}, every one completed, no job left"),
            ),
            (
                "nothing completed twice",
                format!("{written_twice} results written twice (audit trigger on the submissions)"),
            ),
            (
                "no stale write",
                format!(
                    "{unleased_completions} completions without the job's current lease; {foreign_live} of {calls} adapter calls under another worker's live lease; {not_own_live} after the caller's own lease had expired"
                ),
            ),
            (
                "leases",
                format!(
                    "{granted} granted, {lost} ended without a result (taken over after a fault or returned), their jobs done by a later lease"
                ),
            ),
        ],
        violations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_calls_are_read_from_json_log_lines() {
        let logs = concat!(
            "not json\n",
            r#"{"timestamp":"2026-12-02T02:05:20.250Z","level":"DEBUG","message":"adapter call starts","job_id":"j","submission_id":"s","lease_key":"k","retry_count":1,"phase":"vision"}"#,
            "\n",
            r#"{"timestamp":"2026-12-02T02:05:21Z","level":"INFO","message":"job completed"}"#,
            "\n"
        );
        let calls = adapter_calls(logs);
        assert_eq!(calls.len(), 1);
        let call = &calls[0];
        assert_eq!(
            (call.job.as_str(), call.phase.as_str(), call.retry_count),
            ("j", "vision", 1)
        );
        let expected = manifest::UtcTime::parse_rfc3339("2026-12-02T02:05:20Z")
            .unwrap()
            .unix_seconds();
        assert_eq!(
            call.at.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::new(u64::try_from(expected).unwrap(), 250_000_000)
        );
    }
}
