//! The closed sets of words the database and the worker share: submission kinds,
//! analysis statuses, the submission's error codes, job statuses, adapter phases.
//!
//! Each mirrors a `check (… in (…))` constraint of `schema.sql`; a test reads the
//! constraints from a real database and compares them with [`SubmissionKind::ALL`]
//! and its siblings, so neither side can gain a word the other does not know.
//! Rows are read straight into these types (`FromSql`): an unknown word is a
//! conversion error, handled like any database error (the job goes back to the
//! queue), never silently treated as some default.

use tokio_postgres::types::{FromSql, Type};

macro_rules! closed_set {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every word, in the schema's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The word as the database stores it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value for a word the database stored, if it is one of ours.
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|value| value.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(
                ty: &Type,
                raw: &'a [u8],
            ) -> Result<$name, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as FromSql>::from_sql(ty, raw)?;
                $name::parse(text).ok_or_else(|| {
                    format!(concat!("{:?} is not a ", stringify!($name), " this worker knows; is the schema newer?"), text).into()
                })
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    };
}

closed_set! {
    /// `learning_submissions.kind`.
    pub enum SubmissionKind {
        /// The student typed an answer: no vision step.
        Text = "text",
        /// A photo or scan (PNG, JPEG).
        Image = "image",
        /// An uploaded file (PDF).
        File = "file",
    }
}

closed_set! {
    /// `learning_submissions.analysis_status`.
    pub enum AnalysisStatus {
        /// Waiting for the worker.
        Pending = "pending",
        /// Text extracted, feedback to come.
        Extracted = "extracted",
        /// Feedback written: final.
        Completed = "completed",
        /// Given up: final.
        Failed = "failed",
    }
}

impl AnalysisStatus {
    /// Whether the worker may still write a result (not already handled).
    pub fn is_open(self) -> bool {
        matches!(self, AnalysisStatus::Pending | AnalysisStatus::Extracted)
    }
}

closed_set! {
    /// `learning_submissions.error_code`.
    pub enum SubmissionErrorCode {
        /// Vision failed transiently; a retry is scheduled.
        VisionRetrying = "vision_retrying",
        /// Feedback failed transiently; a retry is scheduled.
        FeedbackRetrying = "feedback_retrying",
        /// Vision failed for good.
        VisionFailed = "vision_failed",
        /// Feedback failed for good.
        FeedbackFailed = "feedback_failed",
        /// The upload cannot be used as it is: unreadable, damaged, or not what the
        /// row says it is (size, checksum, type).
        InputCorrupt = "input_corrupt",
        /// The upload is of a kind no backend can read (a MIME type, a PDF without
        /// pages), or the job asks for something this worker does not do.
        InputUnsupported = "input_unsupported",
        /// The upload is larger than the platform's 10 MiB.
        InputTooLarge = "input_too_large",
    }
}

closed_set! {
    /// `learning_submission_jobs.status`.
    pub enum JobStatus {
        /// Waiting to be leased (maybe not yet visible).
        Queued = "queued",
        /// Held by a worker until `leased_until`.
        Leased = "leased",
        /// Given up (an invalid payload).
        Failed = "failed",
    }
}

closed_set! {
    /// Which adapter step: what `learning_worker_mark_retry` takes as `p_phase`.
    pub enum Phase {
        /// OCR.
        Vision = "vision",
        /// AI feedback.
        Feedback = "feedback",
    }
}

impl Phase {
    /// The submission's error code when this step fails for good.
    pub fn failed_code(self) -> SubmissionErrorCode {
        match self {
            Phase::Vision => SubmissionErrorCode::VisionFailed,
            Phase::Feedback => SubmissionErrorCode::FeedbackFailed,
        }
    }

    /// The submission's error code while this step waits for a retry.
    pub fn retrying_code(self) -> SubmissionErrorCode {
        match self {
            Phase::Vision => SubmissionErrorCode::VisionRetrying,
            Phase::Feedback => SubmissionErrorCode::FeedbackRetrying,
        }
    }
}
