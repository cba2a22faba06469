//! The feedback prompt, and the model's reply turned into the platform's
//! `criteria.v2` (see [`crate::analysis`]).

use serde_json::Value;

use crate::adapter::{FeedbackInput, FeedbackOutput};
use crate::analysis::{Analysis, CriterionResult, DEFAULT_MAX_SCORE};

/// A criterion's explanation when the model gave none.
const NO_EXPLANATION: &str = "Keine Begründung erhalten.";

/// How a reply was read: logged, never stored (the platform's schema has no place
/// for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseStatus {
    /// The reply was the JSON asked for.
    Parsed,
    /// The reply was prose: it became the feedback, every criterion scored 0.
    Prose,
}

impl ParseStatus {
    /// The word in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseStatus::Parsed => "parsed",
            ParseStatus::Prose => "prose",
        }
    }
}

/// The prompt: instructions, then the task, then the student's text verbatim.
pub fn prompt(input: &FeedbackInput) -> String {
    let criteria_list = if input.criteria.is_empty() {
        "(none given)".to_owned()
    } else {
        input
            .criteria
            .iter()
            .map(|criterion| format!("- {criterion}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "You are a teacher giving formative feedback on a student's answer.\n\
         Answer with a single JSON object and nothing else, of this shape:\n\
         {{\"feedback_md\": \"feedback for the student in Markdown\", \"score\": 0-5, \
         \"criteria_results\": [{{\"criterion\": \"...\", \"score\": 0-10, \"explanation_md\": \"...\"}}]}}\n\
         with one entry in criteria_results per criterion below, in that order.\n\n\
         ## Task\n{}\n\n## Hints for the teacher\n{}\n\n## Criteria\n{criteria_list}\n\n\
         ## Student's answer (verbatim)\n{}\n",
        input
            .instruction_md
            .as_deref()
            .unwrap_or("(no instruction given)"),
        input.hints_md.as_deref().unwrap_or("(none)"),
        input.text_md,
    )
}

/// Turns a reply into feedback for `criteria` (the task's, in order). A reply
/// without usable JSON is still feedback: its text becomes `feedback_md`, and the
/// analysis scores every criterion 0 with an overall 0, as the platform's own
/// fallback does.
pub fn parse(reply: &str, criteria: &[String]) -> (FeedbackOutput, ParseStatus) {
    let parsed = json_object(reply).and_then(|object| {
        let feedback_md = object
            .get("feedback_md")
            .and_then(Value::as_str)?
            .trim()
            .to_owned();
        (!feedback_md.is_empty()).then_some((object, feedback_md))
    });
    let Some((object, feedback_md)) = parsed else {
        let results = criteria
            .iter()
            .map(|criterion| CriterionResult::new(criterion, 0, DEFAULT_MAX_SCORE, NO_EXPLANATION))
            .collect();
        let output = FeedbackOutput {
            feedback_md: reply.trim().to_owned(),
            analysis_json: Analysis::new(Some(0), results).to_json(),
        };
        return (output, ParseStatus::Prose);
    };
    let replied: Vec<&Value> = object
        .get("criteria_results")
        .and_then(Value::as_array)
        .map(|results| results.iter().collect())
        .unwrap_or_default();
    let results = criteria
        .iter()
        .enumerate()
        .map(|(position, criterion)| {
            let entry = replied
                .iter()
                .find(|entry| names(entry, criterion))
                .or_else(|| {
                    replied
                        .get(position)
                        .filter(|entry| !names_another(entry, criteria))
                })
                .copied();
            let score = entry.and_then(|entry| whole_number(entry.get("score")));
            let max_score = entry
                .and_then(|entry| whole_number(entry.get("max_score")))
                .filter(|max| *max >= 1)
                .unwrap_or(DEFAULT_MAX_SCORE);
            let explanation = entry
                .and_then(|entry| entry.get("explanation_md"))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .unwrap_or(NO_EXPLANATION);
            CriterionResult::new(criterion, score.unwrap_or(0), max_score, explanation)
        })
        .collect();
    let overall = whole_number(object.get("score"));
    let output = FeedbackOutput {
        feedback_md,
        analysis_json: Analysis::new(overall, results).to_json(),
    };
    (output, ParseStatus::Parsed)
}

/// Whether a reply's entry is about `criterion` (models change case and spacing).
fn names(entry: &Value, criterion: &str) -> bool {
    entry
        .get("criterion")
        .and_then(Value::as_str)
        .is_some_and(|name| name.trim().eq_ignore_ascii_case(criterion.trim()))
}

/// Whether a reply's entry names a criterion of the task (so it is not taken by
/// position for another).
fn names_another(entry: &Value, criteria: &[String]) -> bool {
    criteria.iter().any(|criterion| names(entry, criterion))
}

/// A number as a whole number, rounded; `None` for anything else.
fn whole_number(value: Option<&Value>) -> Option<i64> {
    let number = value?.as_f64()?;
    number.is_finite().then(|| number.round() as i64)
}

/// The first JSON object in a reply; models like to wrap JSON in prose or fences.
fn json_object(reply: &str) -> Option<serde_json::Map<String, Value>> {
    let start = reply.find('{')?;
    let end = reply.rfind('}')?;
    match serde_json::from_str(reply.get(start..=end)?) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}
