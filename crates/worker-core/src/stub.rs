//! The deterministic `stub` backend: instant by default, its output derived from
//! its input, with knobs for tests, demos and benchmarks:
//!
//! - `AI_STUB_DELAY_MS`: each call takes this long (ends early on cancellation);
//! - `AI_STUB_FAIL`: `phase:kind:n,…`, e.g. `vision:transient:2` fails vision
//!   transiently while the job's `retry_count` is below 2;
//! - `AI_STUB_CALL_LOG`: a file; each call appends `<phase> <submission_id> <job_id>`
//!   with one `O_APPEND` write, so concurrent processes can share it.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::adapter::{
    AdapterError, AdapterFuture, ErrorClass, FeedbackAdapter, FeedbackInput, FeedbackOutput,
    JobContext, VisionAdapter, VisionInput, VisionOutput,
};
use crate::analysis::{Analysis, CriterionResult, DEFAULT_MAX_SCORE};
use crate::vocabulary::Phase;

/// One `AI_STUB_FAIL` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StubFailure {
    /// Which step fails.
    pub phase: Phase,
    /// How.
    pub class: ErrorClass,
    /// It fails while the job's `retry_count` is below this.
    pub below_retry_count: i32,
}

/// An `AI_STUB_FAIL` entry that is not `phase:kind:n`; shows the entry (a test
/// knob, never secret).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected phase:kind:n (vision|feedback : transient|permanent : count), got {0:?}")]
pub struct InvalidStubFailure(String);

/// Parses `AI_STUB_FAIL` (`phase:kind:n`, comma-separated).
pub fn parse_stub_failures(text: &str) -> Result<Vec<StubFailure>, InvalidStubFailure> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let invalid = || InvalidStubFailure(item.to_owned());
            let mut parts = item.split(':');
            let phase = parts.next().and_then(Phase::parse).ok_or_else(invalid)?;
            let class = match parts.next() {
                Some("transient") => ErrorClass::Transient,
                Some("permanent") => ErrorClass::Permanent,
                _ => return Err(invalid()),
            };
            let below_retry_count = parts
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(invalid)?;
            if parts.next().is_some() {
                return Err(invalid());
            }
            Ok(StubFailure {
                phase,
                class,
                below_retry_count,
            })
        })
        .collect()
}

/// The stub backend; one value serves as both adapters.
#[derive(Clone, Debug)]
pub struct StubAdapter {
    /// `AI_STUB_DELAY_MS`.
    pub delay: Duration,
    /// `AI_STUB_FAIL`.
    pub failures: Vec<StubFailure>,
    /// `AI_STUB_CALL_LOG`.
    pub call_log: Option<PathBuf>,
}

impl StubAdapter {
    async fn call(
        &self,
        phase: Phase,
        job: &JobContext,
        cancel: &CancellationToken,
    ) -> Result<(), AdapterError> {
        if let Some(path) = &self.call_log {
            let line = format!("{} {} {}\n", phase.as_str(), job.submission_id, job.job_id);
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(line.as_bytes()));
            if let Err(error) = written {
                tracing::warn!(error = %error, "cannot append to AI_STUB_CALL_LOG");
            }
        }
        if !self.delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(self.delay) => {}
                () = cancel.cancelled() => return Err(AdapterError::transient("cancelled")),
            }
        }
        let failure = self
            .failures
            .iter()
            .find(|failure| failure.phase == phase && job.retry_count < failure.below_retry_count);
        match failure {
            Some(failure) => Err(AdapterError {
                class: failure.class,
                message: format!("stub {} failure", phase.as_str()),
                input: None,
            }),
            None => Ok(()),
        }
    }
}

impl VisionAdapter for StubAdapter {
    fn extract<'a>(
        &'a self,
        input: &'a VisionInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, VisionOutput> {
        Box::pin(async move {
            self.call(Phase::Vision, &input.job, cancel).await?;
            let text_md = format!(
                "# Stub OCR\n\nSubmission {} ({}, {} bytes, sha256 {}).",
                input.job.submission_id,
                input.mime_type.as_deref().unwrap_or("unknown type"),
                input.size_bytes.unwrap_or(0),
                input.sha256.as_deref().unwrap_or("unknown"),
            );
            Ok(VisionOutput {
                text_md,
                raw_metadata: json!({"adapter": "stub"}),
            })
        })
    }
}

impl FeedbackAdapter for StubAdapter {
    fn feedback<'a>(
        &'a self,
        input: &'a FeedbackInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, FeedbackOutput> {
        Box::pin(async move {
            self.call(Phase::Feedback, &input.job, cancel).await?;
            let words = input.text_md.split_whitespace().count();
            let results = input
                .criteria
                .iter()
                .enumerate()
                .map(|(index, criterion)| {
                    let score = i64::try_from((words + index) % 11).unwrap_or(0);
                    let explanation = format!("Stub assessment of criterion {}.", index + 1);
                    CriterionResult::new(criterion, score, DEFAULT_MAX_SCORE, &explanation)
                })
                .collect();
            Ok(FeedbackOutput {
                feedback_md: format!("Stub feedback on a text of {words} words."),
                analysis_json: Analysis::new(None, results).to_json(),
            })
        })
    }
}
