//! The two AI steps as traits, so the pipeline does not care whether a stub or a
//! model answers.
//!
//! Every error is classified, and the class decides who pays for it:
//!
//! - **transient** and **permanent** failures belong to the submission (an empty
//!   reply for this input; a refused request, an unreadable file): they spend the
//!   job's retries, and a permanent one, or the last retry, fails the submission;
//! - **unavailable** and **misconfigured** failures belong to the backend (the model
//!   server is down, timing out or overloaded; a model, a key or a host tool is
//!   missing): the job is returned to the queue unspent and the worker's circuit
//!   breaker opens (see [`crate::readiness`]). No outage may fail a student's work.
//!
//! The message is short and never contains the submission's text, a prompt or a
//! model reply, because it is stored in the database and logged.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::vocabulary::{SubmissionErrorCode, SubmissionKind};

/// Who a failure belongs to, and so what it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// This submission's, and it may pass: retry later with backoff.
    Transient,
    /// This submission's, and it will not pass: fail the submission now.
    Permanent,
    /// The backend's, and it may pass by itself (unreachable, timeouts, 5xx, 429):
    /// return the job unspent and wait for the backend.
    Unavailable,
    /// The backend's, and only the operator can cure it (a missing model, 401/403,
    /// a wrong base URL, a missing host tool): return the job unspent.
    Misconfigured,
}

impl ErrorClass {
    /// Whether the failure is the backend's rather than the submission's.
    pub fn is_backend(self) -> bool {
        matches!(self, ErrorClass::Unavailable | ErrorClass::Misconfigured)
    }
}

/// An adapter's failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{class:?}: {message}")]
pub struct AdapterError {
    /// Whether a retry can help.
    pub class: ErrorClass,
    /// Short, content-free description, e.g. `model timed out after 30 s`.
    pub message: String,
    /// For a permanent failure caused by the upload itself, the code the submission
    /// fails with (`input_*`) instead of the phase's own `vision_failed`.
    pub input: Option<SubmissionErrorCode>,
}

impl AdapterError {
    /// A transient error.
    pub fn transient(message: impl Into<String>) -> AdapterError {
        AdapterError {
            class: ErrorClass::Transient,
            message: message.into(),
            input: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> AdapterError {
        AdapterError {
            class: ErrorClass::Permanent,
            message: message.into(),
            input: None,
        }
    }

    /// The upload cannot be used: damaged, or not what its row says (`input_corrupt`).
    pub fn input_corrupt(message: impl Into<String>) -> AdapterError {
        AdapterError::of_input(SubmissionErrorCode::InputCorrupt, message)
    }

    /// The upload is of a kind nothing here reads (`input_unsupported`).
    pub fn input_unsupported(message: impl Into<String>) -> AdapterError {
        AdapterError::of_input(SubmissionErrorCode::InputUnsupported, message)
    }

    /// The upload is over the platform's size limit (`input_too_large`).
    pub fn input_too_large(message: impl Into<String>) -> AdapterError {
        AdapterError::of_input(SubmissionErrorCode::InputTooLarge, message)
    }

    fn of_input(code: SubmissionErrorCode, message: impl Into<String>) -> AdapterError {
        AdapterError {
            class: ErrorClass::Permanent,
            message: message.into(),
            input: Some(code),
        }
    }

    /// The backend cannot answer now.
    pub fn unavailable(message: impl Into<String>) -> AdapterError {
        AdapterError {
            class: ErrorClass::Unavailable,
            message: message.into(),
            input: None,
        }
    }

    /// The backend is set up wrongly; the message says what to fix.
    pub fn misconfigured(message: impl Into<String>) -> AdapterError {
        AdapterError {
            class: ErrorClass::Misconfigured,
            message: message.into(),
            input: None,
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
    pub kind: SubmissionKind,
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
    /// The task's criteria, in its order (the payload's snapshot; may be empty).
    pub criteria: Vec<String>,
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
    /// In the platform's format (see [`crate::analysis`]).
    pub analysis_json: Value,
}

/// A boxed adapter future (object-safe traits).
pub type AdapterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// A probe's future: `Ok` when the backend can serve, else an unavailable or
/// misconfigured error saying why.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AdapterError>> + Send + 'a>>;

/// Turns a stored image or PDF into Markdown.
pub trait VisionAdapter: Send + Sync {
    /// Whether vision could run now: the circuit breaker's probe and
    /// `learning-worker check`. Backends without outside parts are always ready.
    fn probe(&self) -> ProbeFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }

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
    /// Whether feedback could run now (see [`VisionAdapter::probe`]).
    fn probe(&self) -> ProbeFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Produces feedback; should stop early when `cancel` fires.
    fn feedback<'a>(
        &'a self,
        input: &'a FeedbackInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, FeedbackOutput>;
}
