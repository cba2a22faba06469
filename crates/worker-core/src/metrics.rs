//! Prometheus counters, a gauge and a histogram, rendered as text for `/metrics`.
//!
//! Hand-written rather than `prometheus-client`: six families whose label values
//! all come from closed sets ([`Processed`], [`Phase`], [`SubmissionErrorCode`]),
//! so nothing ever needs escaping, and the text format's rules that matter here
//! (`# HELP`/`# TYPE` before a family's samples, cumulative buckets ending in
//! `+Inf` equal to `_count`) are checked by a unit test of the output, which also
//! hands it to Prometheus's own `promtool check metrics` (parser and naming lint).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::vocabulary::{Phase, SubmissionErrorCode};

/// Upper bounds (seconds) of the job duration histogram.
const DURATION_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// How a job ended, as `ai_worker_processed_total{status}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Processed {
    /// Result written.
    Completed,
    /// Failed for good.
    Failed,
    /// Requeued for a retry.
    Retried,
    /// Nothing to do (submission gone or handled, unusable payload).
    Skipped,
}

impl Processed {
    /// Every status, in the exposition's order.
    pub const ALL: [Processed; 4] = [
        Processed::Completed,
        Processed::Failed,
        Processed::Retried,
        Processed::Skipped,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Processed::Completed => "completed",
            Processed::Failed => "failed",
            Processed::Retried => "retried",
            Processed::Skipped => "skipped",
        }
    }
}

/// The worker's metrics; cheap to update from many tasks.
#[derive(Default)]
pub struct Metrics {
    inflight: AtomicI64,
    processed: Mutex<BTreeMap<Processed, u64>>,
    retries: Mutex<BTreeMap<Phase, u64>>,
    failures: Mutex<BTreeMap<SubmissionErrorCode, u64>>,
    lease_lost: AtomicU64,
    durations: Mutex<Histogram>,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// A job started (`+1`) or ended (`-1`).
    pub fn add_inflight(&self, delta: i64) {
        self.inflight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Jobs in flight now.
    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// A job ended with `status`.
    pub fn processed(&self, status: Processed, duration: Duration) {
        *self
            .processed
            .lock()
            .expect("metrics lock")
            .entry(status)
            .or_default() += 1;
        let seconds = duration.as_secs_f64();
        let mut histogram = self.durations.lock().expect("metrics lock");
        for (bucket, bound) in histogram.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// A transient failure in `phase` was scheduled for retry.
    pub fn retried(&self, phase: Phase) {
        *self
            .retries
            .lock()
            .expect("metrics lock")
            .entry(phase)
            .or_default() += 1;
    }

    /// A submission failed with `error_code`.
    pub fn failed(&self, error_code: SubmissionErrorCode) {
        *self
            .failures
            .lock()
            .expect("metrics lock")
            .entry(error_code)
            .or_default() += 1;
    }

    /// A lease was lost while its job ran.
    pub fn lease_lost(&self) {
        self.lease_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// How many jobs ended with `status`.
    pub fn processed_count(&self, status: Processed) -> u64 {
        self.processed
            .lock()
            .expect("metrics lock")
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP analysis_jobs_inflight Jobs being processed now.\n");
        out.push_str("# TYPE analysis_jobs_inflight gauge\n");
        out.push_str(&format!("analysis_jobs_inflight {}\n", self.inflight()));
        out.push_str("# HELP ai_worker_processed_total Jobs ended, by how.\n");
        out.push_str("# TYPE ai_worker_processed_total counter\n");
        for status in Processed::ALL {
            out.push_str(&format!(
                "ai_worker_processed_total{{status=\"{}\"}} {}\n",
                status.as_str(),
                self.processed_count(status)
            ));
        }
        out.push_str("# HELP ai_worker_retry_total Transient failures requeued, by phase.\n");
        out.push_str("# TYPE ai_worker_retry_total counter\n");
        let retries = self.retries.lock().expect("metrics lock").clone();
        for phase in Phase::ALL {
            out.push_str(&format!(
                "ai_worker_retry_total{{phase=\"{phase}\"}} {}\n",
                retries.get(phase).copied().unwrap_or(0)
            ));
        }
        out.push_str("# HELP ai_worker_failed_total Submissions failed for good, by error code.\n");
        out.push_str("# TYPE ai_worker_failed_total counter\n");
        for (code, count) in self.failures.lock().expect("metrics lock").iter() {
            out.push_str(&format!(
                "ai_worker_failed_total{{error_code=\"{code}\"}} {count}\n"
            ));
        }
        out.push_str("# HELP ai_worker_lease_lost_total Leases lost while their job ran.\n");
        out.push_str("# TYPE ai_worker_lease_lost_total counter\n");
        out.push_str(&format!(
            "ai_worker_lease_lost_total {}\n",
            self.lease_lost.load(Ordering::Relaxed)
        ));
        let histogram = self.durations.lock().expect("metrics lock");
        out.push_str("# HELP ai_worker_job_duration_seconds How long jobs took, from the start of processing to their end.\n");
        out.push_str("# TYPE ai_worker_job_duration_seconds histogram\n");
        for (bound, count) in DURATION_BUCKETS.iter().zip(histogram.buckets) {
            out.push_str(&format!(
                "ai_worker_job_duration_seconds_bucket{{le=\"{bound}\"}} {count}\n"
            ));
        }
        out.push_str(&format!(
            "ai_worker_job_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
            histogram.count
        ));
        out.push_str(&format!(
            "ai_worker_job_duration_seconds_sum {}\n",
            histogram.sum
        ));
        out.push_str(&format!(
            "ai_worker_job_duration_seconds_count {}\n",
            histogram.count
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Metrics, Processed};
    use crate::vocabulary::{Phase, SubmissionErrorCode};

    /// The text format's rules, checked line by line: each family announced by
    /// `# HELP` and `# TYPE` before its samples, which follow without interruption;
    /// every value a number; histogram buckets cumulative up to `+Inf` = `_count`.
    fn check_exposition(text: &str) {
        let mut announced: Vec<String> = Vec::new();
        let mut current: Option<String> = None;
        let mut buckets: Vec<f64> = Vec::new();
        let mut histogram_count = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(!announced.contains(&name), "{name} announced twice");
                announced.push(name.clone());
                current = Some(name);
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                assert_eq!(
                    parts.next(),
                    current.as_deref(),
                    "TYPE right after HELP: {line}"
                );
                assert!(
                    matches!(parts.next(), Some("counter" | "gauge" | "histogram")),
                    "{line}"
                );
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}"));
            let name = series.split('{').next().unwrap();
            let family = current.as_deref().expect("a sample after its HELP");
            assert!(
                name == family
                    || name
                        .strip_prefix(family)
                        .is_some_and(|suffix| ["_bucket", "_sum", "_count"].contains(&suffix)),
                "{name} outside its family {family}"
            );
            if name.ends_with("_bucket") {
                assert!(
                    buckets.last().is_none_or(|last| *last <= value),
                    "buckets are cumulative: {line}"
                );
                buckets.push(value);
            }
            if name.ends_with("_count") {
                histogram_count = Some(value);
            }
        }
        assert_eq!(
            buckets.last().copied(),
            histogram_count,
            "+Inf equals _count"
        );
        assert!(text.contains("le=\"+Inf\""));
    }

    #[test]
    fn the_exposition_follows_the_text_format_and_closed_label_sets() {
        let metrics = Metrics::default();
        check_exposition(&metrics.render());
        metrics.add_inflight(2);
        for (status, seconds) in [
            (Processed::Completed, 0.2),
            (Processed::Failed, 7.0),
            (Processed::Retried, 400.0),
        ] {
            metrics.processed(status, Duration::from_secs_f64(seconds));
        }
        metrics.retried(Phase::Vision);
        metrics.failed(SubmissionErrorCode::FeedbackFailed);
        metrics.lease_lost();
        let text = metrics.render();
        check_exposition(&text);
        fixtures::reference::promtool_check_metrics(&text).unwrap();
        for line in [
            "analysis_jobs_inflight 2",
            "ai_worker_processed_total{status=\"completed\"} 1",
            "ai_worker_processed_total{status=\"skipped\"} 0",
            "ai_worker_retry_total{phase=\"vision\"} 1",
            "ai_worker_retry_total{phase=\"feedback\"} 0",
            "ai_worker_failed_total{error_code=\"feedback_failed\"} 1",
            "ai_worker_lease_lost_total 1",
            "ai_worker_job_duration_seconds_bucket{le=\"0.5\"} 1",
            "ai_worker_job_duration_seconds_bucket{le=\"10\"} 2",
            "ai_worker_job_duration_seconds_bucket{le=\"300\"} 2",
            "ai_worker_job_duration_seconds_bucket{le=\"+Inf\"} 3",
            "ai_worker_job_duration_seconds_count 3",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "{line} in:\n{text}"
            );
        }
    }
}
