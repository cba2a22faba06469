//! The two AI steps as traits, so the pipeline does not care whether a stub or a
//! model answers.
//!
//! Every error is classified: **transient** (worth retrying later: timeouts,
//! overload, connection failures) or **permanent** (retrying cannot help: a bad
//! input file, a refused request). The message is short and never contains the
//! submission's text, a prompt or a model reply, because it is stored in the
//! database and logged.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Transient or permanent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry later with backoff.
    Transient,
    /// Fail the submission now.
    Permanent,
}

/// An adapter's failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{class:?}: {message}")]
pub struct AdapterError {
    /// Whether a retry can help.
    pub class: ErrorClass,
    /// Short, content-free description, e.g. `model timed out after 30 s`.
    pub message: String,
}

impl AdapterError {
    /// A transient error.
    pub fn transient(message: impl Into<String>) -> AdapterError {
        AdapterError {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> AdapterError {
        AdapterError {
            class: ErrorClass::Permanent,
            message: message.into(),
        }
    }
}

/// Which job an adapter call belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobContext {
    /// The job.
    pub job_id: Uuid,
    /// The submission.
    pub submission_id: Uuid,
    /// Transient failures so far.
    pub retry_count: i32,
}

/// What vision gets: the stored file's coordinates, not its bytes.
#[derive(Clone, Debug)]
pub struct VisionInput {
    /// The job.
    pub job: JobContext,
    /// `image` or `file`.
    pub kind: String,
    /// Path below `LEARNING_STORAGE_ROOT`.
    pub storage_key: Option<String>,
    /// Declared MIME type.
    pub mime_type: Option<String>,
    /// Declared size.
    pub size_bytes: Option<i32>,
    /// Declared sha256 (hex).
    pub sha256: Option<String>,
    /// `internal_metadata` (e.g. `page_keys` of pre-rendered PDF pages).
    pub internal_metadata: Option<Value>,
}

/// What vision returns.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionOutput {
    /// The submission as Markdown; becomes its `text_body`.
    pub text_md: String,
    /// Adapter-specific details (model, pages), cached with the text.
    pub raw_metadata: Value,
}

/// What feedback gets.
#[derive(Clone, Debug)]
pub struct FeedbackInput {
    /// The job.
    pub job: JobContext,
    /// The student's text (verbatim for text submissions, else the OCR Markdown).
    pub text_md: String,
    /// The task's criteria.
    pub criteria: Value,
    /// The task's instruction.
    pub instruction_md: Option<String>,
    /// Hints for the model.
    pub hints_md: Option<String>,
}

/// What feedback returns.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackOutput {
    /// Feedback for the student.
    pub feedback_md: String,
    /// `{"schema": "criteria.v2", "parse_status": …, …}`.
    pub analysis_json: Value,
}

/// A boxed adapter future (object-safe traits).
pub type AdapterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// Turns a stored image or PDF into Markdown.
pub trait VisionAdapter: Send + Sync {
    /// Extracts text; should stop early when `cancel` fires (the pipeline also
    /// drops the future then).
    fn extract<'a>(
        &'a self,
        input: &'a VisionInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, VisionOutput>;
}

/// Writes feedback on a text.
pub trait FeedbackAdapter: Send + Sync {
    /// Produces feedback; should stop early when `cancel` fires.
    fn feedback<'a>(
        &'a self,
        input: &'a FeedbackInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, FeedbackOutput>;
}
