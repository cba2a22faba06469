//! The job's payload, as the platform's backend writes it, read into types.
//!
//! When a student submits, the backend writes the submission and its job in one
//! transaction, and the job's payload is a snapshot of the task as it was then:
//!
//! ```json
//! {"submission_id": "…", "course_id": "…", "task_id": "…", "student_sub": "…",
//!  "kind": "text", "attempt_nr": 1,
//!  "criteria": ["Names photosynthesis", "Mentions chlorophyll"],
//!  "instruction_md": "Explain …", "hints_md": null}
//! ```
//!
//! The worker takes the task from here, never from `unit_tasks`: a teacher's later
//! edit must not change feedback on an earlier answer, and under the platform's
//! row-level security the worker may not even see a task whose section was hidden
//! since. The worker adds `cached_text_md` (and `cached_raw_metadata`) after vision,
//! so a retry can skip it.
//!
//! Decoding is strict where the worker depends on a value and lenient where the
//! platform is: `criteria` may be missing or null (no criteria), its entries are
//! trimmed and blank ones dropped, as the backend does; `instruction_md` and
//! `hints_md` may be missing or null. A value of the wrong type is a
//! [`PayloadError`], which ends the job and its submission (`input_corrupt`), never
//! a panic and never a guess.

use serde_json::{Map, Value};

/// The task as the student saw it when submitting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// The rubric, in the task's order; empty when the task has none.
    pub criteria: Vec<String>,
    /// The task's instruction, if the backend could read it.
    pub instruction_md: Option<String>,
    /// Hints meant for the model, if any.
    pub hints_md: Option<String>,
}

/// What the worker uses of a job's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobPayload {
    /// Whose submission it is: the worker reads the row as this student (RLS).
    pub student_sub: String,
    /// The task.
    pub task: TaskSnapshot,
    /// The OCR text an earlier attempt cached, if any.
    pub cached_text_md: Option<String>,
}

/// Why a payload cannot be used. Names the key, never its value (a payload holds a
/// student's id and text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is a string, an array, a number…
    #[error("the job payload is not a JSON object")]
    NotAnObject,
    /// A key the worker needs is missing, null or empty.
    #[error("the job payload has no {key}")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A key holds a value of another type than the platform writes.
    #[error("the job payload's {key} is not {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What it should be.
        expected: &'static str,
    },
}

impl JobPayload {
    /// Reads a payload as the platform's backend writes it.
    pub fn decode(payload: &Value) -> Result<JobPayload, PayloadError> {
        let object = payload.as_object().ok_or(PayloadError::NotAnObject)?;
        let student_sub = optional_text(object, "student_sub")?
            .filter(|sub| !sub.is_empty())
            .ok_or(PayloadError::Missing { key: "student_sub" })?;
        Ok(JobPayload {
            student_sub,
            task: TaskSnapshot {
                criteria: criteria(object)?,
                instruction_md: optional_text(object, "instruction_md")?,
                hints_md: optional_text(object, "hints_md")?,
            },
            cached_text_md: optional_text(object, "cached_text_md")?,
        })
    }
}

fn optional_text(
    object: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, PayloadError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(PayloadError::WrongType {
            key,
            expected: "a string",
        }),
    }
}

fn criteria(object: &Map<String, Value>) -> Result<Vec<String>, PayloadError> {
    let wrong = PayloadError::WrongType {
        key: "criteria",
        expected: "a list of strings",
    };
    match object.get("criteria") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(text) => {
                    let text = text.trim();
                    (!text.is_empty()).then(|| Ok(text.to_owned()))
                }
                _ => Some(Err(wrong.clone())),
            })
            .collect(),
        Some(_) => Err(wrong),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_backends_nine_keys() {
        let payload = json!({
            "submission_id": "00000000-0000-0000-0000-000000000001",
            "course_id": "00000000-0000-0000-0000-000000000002",
            "task_id": "00000000-0000-0000-0000-000000000003",
            "student_sub": "alice", "kind": "text", "attempt_nr": 2,
            "criteria": [" Names photosynthesis ", "", "Clear"],
            "instruction_md": "Explain.", "hints_md": null,
        });
        assert_eq!(
            JobPayload::decode(&payload),
            Ok(JobPayload {
                student_sub: "alice".to_owned(),
                task: TaskSnapshot {
                    criteria: vec!["Names photosynthesis".to_owned(), "Clear".to_owned()],
                    instruction_md: Some("Explain.".to_owned()),
                    hints_md: None,
                },
                cached_text_md: None,
            })
        );
    }

    #[test]
    fn missing_criteria_are_no_criteria() {
        let decoded = JobPayload::decode(&json!({"student_sub": "alice"})).unwrap();
        assert!(decoded.task.criteria.is_empty());
    }

    #[test]
    fn refuses_what_the_worker_cannot_use_and_names_only_the_key() {
        let cases = [
            (json!("alice"), PayloadError::NotAnObject),
            (json!(["alice"]), PayloadError::NotAnObject),
            (json!({}), PayloadError::Missing { key: "student_sub" }),
            (
                json!({"student_sub": ""}),
                PayloadError::Missing { key: "student_sub" },
            ),
            (
                json!({"student_sub": 7}),
                PayloadError::WrongType {
                    key: "student_sub",
                    expected: "a string",
                },
            ),
            (
                json!({"student_sub": "alice", "criteria": "secret rubric"}),
                PayloadError::WrongType {
                    key: "criteria",
                    expected: "a list of strings",
                },
            ),
            (
                json!({"student_sub": "alice", "criteria": [{"title": "x"}]}),
                PayloadError::WrongType {
                    key: "criteria",
                    expected: "a list of strings",
                },
            ),
            (
                json!({"student_sub": "alice", "cached_text_md": {"text": "x"}}),
                PayloadError::WrongType {
                    key: "cached_text_md",
                    expected: "a string",
                },
            ),
        ];
        for (payload, expected) in cases {
            let error = JobPayload::decode(&payload).unwrap_err();
            assert_eq!(error, expected, "{payload}");
            assert!(!error.to_string().contains("alice"));
            assert!(!error.to_string().contains("secret"));
        }
    }
}
