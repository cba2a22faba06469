//! The job model: each job's outcome is set by its starting `retry_count` against
//! one global `AI_STUB_FAIL`, so what a fault-free run does with it follows from
//! the spec's retry rules ([`expected`]); [`seed()`] enqueues a mix of such jobs.

use std::fmt::Write as _;

use fixtures::SubmissionKind;
use fixtures::seed::{self, Kinds};
use worker_core::adapter::ErrorClass;
use worker_core::stub::StubFailure;
use worker_core::vocabulary::Phase;

use crate::db::Db;

pub(super) const MAX_RETRIES: i32 = 3;
/// Vision fails permanently at retry count 0 and transiently below 5 (so, with
/// 3 retries, images starting at 2 or 3 exhaust them); feedback fails
/// permanently at 0 and transiently below 3 (texts starting at 1 succeed on
/// their third try).
pub(super) const STUB_FAIL: &str =
    "vision:permanent:1,feedback:permanent:1,feedback:transient:3,vision:transient:5";

/// A kind of job: its submission kind, starting retry count, and share of the mix.
pub(super) struct Class {
    kind: SubmissionKind,
    retry_count: i32,
    weight: usize,
}

pub(super) const CLASSES: [Class; 7] = [
    Class {
        kind: SubmissionKind::Text,
        retry_count: 3,
        weight: 8,
    },
    Class {
        kind: SubmissionKind::Image,
        retry_count: 5,
        weight: 5,
    },
    Class {
        kind: SubmissionKind::Text,
        retry_count: 1,
        weight: 2,
    },
    Class {
        kind: SubmissionKind::Image,
        retry_count: 2,
        weight: 2,
    },
    Class {
        kind: SubmissionKind::Text,
        retry_count: 0,
        weight: 1,
    },
    Class {
        kind: SubmissionKind::Image,
        retry_count: 0,
        weight: 1,
    },
    Class {
        kind: SubmissionKind::Image,
        retry_count: 3,
        weight: 1,
    },
];

/// What a fault-free run does with a job.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) status: &'static str,
    pub(crate) error_code: Option<&'static str>,
    pub(crate) vision_calls: u32,
    pub(crate) feedback_calls: u32,
}

/// The spec's rules ("A job's life", step 8, and the stub's `AI_STUB_FAIL`)
/// replayed for one job.
pub(crate) fn expected(
    kind: SubmissionKind,
    mut retry_count: i32,
    failures: &[StubFailure],
    max_retries: i32,
) -> Expected {
    let failure = |phase: Phase, retry_count: i32| {
        failures
            .iter()
            .find(|f| f.phase == phase && retry_count < f.below_retry_count)
            .map(|f| f.class)
    };
    let (mut vision_calls, mut feedback_calls, mut cached) = (0, 0, false);
    let end = |status, error_code, vision_calls, feedback_calls| Expected {
        status,
        error_code,
        vision_calls,
        feedback_calls,
    };
    loop {
        if kind != SubmissionKind::Text && !cached {
            vision_calls += 1;
            match failure(Phase::Vision, retry_count) {
                None => cached = true,
                Some(ErrorClass::Transient) if retry_count < max_retries => {
                    retry_count += 1;
                    continue;
                }
                Some(_) => {
                    return end(
                        "failed",
                        Some("vision_failed"),
                        vision_calls,
                        feedback_calls,
                    );
                }
            }
        }
        feedback_calls += 1;
        match failure(Phase::Feedback, retry_count) {
            None => return end("completed", None, vision_calls, feedback_calls),
            Some(ErrorClass::Transient) if retry_count < max_retries => retry_count += 1,
            Some(_) => {
                return end(
                    "failed",
                    Some("feedback_failed"),
                    vision_calls,
                    feedback_calls,
                );
            }
        }
    }
}

/// Enqueues `count` jobs across [`CLASSES`] by weight, each with its expected end.
pub(super) fn seed(db: &Db<'_>, count: usize, failures: &[StubFailure]) -> anyhow::Result<()> {
    let total_weight: usize = CLASSES.iter().map(|class| class.weight).sum();
    let mut sql = String::new();
    for class in &CLASSES {
        let n = u32::try_from(count * class.weight / total_weight)?;
        let end = expected(class.kind, class.retry_count, failures, MAX_RETRIES);
        let submissions = seed::submissions(n)
            .kinds(Kinds::Only(class.kind))
            .students(97)
            .retry_count(class.retry_count);
        writeln!(
            sql,
            "{} insert into chaos_expected
             select submission_id, '{}', {}, '{}', {}, {}, {} from j;",
            submissions.cte(),
            class.kind,
            class.retry_count,
            end.status,
            end.error_code
                .map_or("null".to_owned(), |code| format!("'{code}'")),
            end.vision_calls,
            end.feedback_calls,
        )?;
    }
    db.stdin_sql(&sql)
}

#[cfg(test)]
mod tests {
    use worker_core::stub::parse_stub_failures;

    use super::*;

    #[test]
    fn the_job_classes_cover_every_ending_the_spec_describes() {
        let failures = parse_stub_failures(STUB_FAIL).unwrap();
        let ends: Vec<Expected> = CLASSES
            .iter()
            .map(|class| expected(class.kind, class.retry_count, &failures, MAX_RETRIES))
            .collect();
        let end = |status, error_code, vision_calls, feedback_calls| Expected {
            status,
            error_code,
            vision_calls,
            feedback_calls,
        };
        assert_eq!(
            ends,
            [
                end("completed", None, 0, 1),
                end("completed", None, 1, 1),
                // Two transient feedback failures, then success on the third try.
                end("completed", None, 0, 3),
                // A transient vision failure, retried, then retries exhausted.
                end("failed", Some("vision_failed"), 2, 0),
                end("failed", Some("feedback_failed"), 0, 1),
                end("failed", Some("vision_failed"), 1, 0),
                // Transient, but no retries left.
                end("failed", Some("vision_failed"), 1, 0),
            ]
        );
    }
}
