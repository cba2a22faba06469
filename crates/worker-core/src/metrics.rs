//! Prometheus counters, a gauge and a histogram, rendered as text for `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the job duration histogram.
const DURATION_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The worker's metrics; cheap to update from many tasks.
#[derive(Default)]
pub struct Metrics {
    inflight: AtomicI64,
    processed: Mutex<BTreeMap<&'static str, u64>>,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
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

    /// A job ended with `status` (`completed`, `failed`, `retried`, `skipped`).
    pub fn processed(&self, status: &'static str, duration: Duration) {
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
    pub fn retried(&self, phase: &'static str) {
        *self
            .retries
            .lock()
            .expect("metrics lock")
            .entry(phase)
            .or_default() += 1;
    }

    /// A submission failed with `error_code`.
    pub fn failed(&self, error_code: &str) {
        *self
            .failures
            .lock()
            .expect("metrics lock")
            .entry(error_code.to_owned())
            .or_default() += 1;
    }

    /// A lease was lost while its job ran.
    pub fn lease_lost(&self) {
        self.lease_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// How many jobs ended with `status`.
    pub fn processed_count(&self, status: &str) -> u64 {
        self.processed
            .lock()
            .expect("metrics lock")
            .get(status)
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# TYPE analysis_jobs_inflight gauge\n");
        out.push_str(&format!("analysis_jobs_inflight {}\n", self.inflight()));
        out.push_str("# TYPE ai_worker_processed_total counter\n");
        for status in ["completed", "failed", "retried", "skipped"] {
            out.push_str(&format!(
                "ai_worker_processed_total{{status=\"{status}\"}} {}\n",
                self.processed_count(status)
            ));
        }
        out.push_str("# TYPE ai_worker_retry_total counter\n");
        let retries = self.retries.lock().expect("metrics lock").clone();
        for phase in ["vision", "feedback"] {
            out.push_str(&format!(
                "ai_worker_retry_total{{phase=\"{phase}\"}} {}\n",
                retries.get(phase).copied().unwrap_or(0)
            ));
        }
        out.push_str("# TYPE ai_worker_failed_total counter\n");
        for (code, count) in self.failures.lock().expect("metrics lock").iter() {
            out.push_str(&format!(
                "ai_worker_failed_total{{error_code=\"{code}\"}} {count}\n"
            ));
        }
        out.push_str("# TYPE ai_worker_lease_lost_total counter\n");
        out.push_str(&format!(
            "ai_worker_lease_lost_total {}\n",
            self.lease_lost.load(Ordering::Relaxed)
        ));
        let histogram = self.durations.lock().expect("metrics lock");
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
