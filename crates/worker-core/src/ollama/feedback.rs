//! The feedback prompt and the parsing of the model's reply into `criteria.v2`.

use serde_json::{Value, json};

use crate::adapter::{FeedbackInput, FeedbackOutput};

/// The prompt: instructions, then the task, then the student's text verbatim.
pub fn prompt(input: &FeedbackInput) -> String {
    let criteria: Vec<String> = match &input.criteria {
        Value::Array(items) => items.iter().map(criterion_name).collect(),
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    };
    let criteria_list = if criteria.is_empty() {
        "(none given)".to_owned()
    } else {
        criteria
            .iter()
            .map(|criterion| format!("- {criterion}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "You are a teacher giving formative feedback on a student's answer.\n\
         Answer with a single JSON object and nothing else, of this shape:\n\
         {{\"feedback_md\": \"feedback for the student in Markdown\", \"score\": 0-100, \
         \"criteria_results\": [{{\"criterion\": \"...\", \"score\": 0-10, \"explanation_md\": \"...\"}}]}}\n\
         with one entry in criteria_results per criterion below.\n\n\
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

fn criterion_name(criterion: &Value) -> String {
    match criterion {
        Value::String(name) => name.clone(),
        Value::Object(fields) => ["title", "criterion", "name", "description"]
            .iter()
            .find_map(|key| fields.get(*key).and_then(Value::as_str))
            .map_or_else(|| criterion.to_string(), str::to_owned),
        other => other.to_string(),
    }
}

/// Turns a reply into feedback. A reply without usable JSON is still feedback:
/// its text becomes `feedback_md` with `parse_status: "model"`.
pub fn parse(reply: &str, model: &str) -> FeedbackOutput {
    let parsed = json_object(reply).and_then(|object| {
        let feedback_md = object
            .get("feedback_md")
            .and_then(Value::as_str)?
            .trim()
            .to_owned();
        (!feedback_md.is_empty()).then_some((object, feedback_md))
    });
    let Some((object, feedback_md)) = parsed else {
        return FeedbackOutput {
            feedback_md: reply.trim().to_owned(),
            analysis_json: json!({"schema": "criteria.v2", "parse_status": "model", "score": null,
                                  "criteria_results": [], "model": model}),
        };
    };
    let score = object
        .get("score")
        .and_then(Value::as_f64)
        .filter(|score| (0.0..=100.0).contains(score))
        .map(|score| score.round() as u64);
    let criteria_results: Vec<Value> = object
        .get("criteria_results")
        .and_then(Value::as_array)
        .map(|results| {
            results
                .iter()
                .filter_map(|result| {
                    let criterion = result.get("criterion").map(criterion_name)?;
                    let score = result.get("score").and_then(Value::as_f64).filter(|score| (0.0..=10.0).contains(score))?;
                    let explanation = result.get("explanation_md").and_then(Value::as_str).unwrap_or("");
                    Some(json!({"criterion": criterion, "score": score.round() as u64, "max_score": 10, "explanation_md": explanation}))
                })
                .collect()
        })
        .unwrap_or_default();
    FeedbackOutput {
        feedback_md,
        analysis_json: json!({"schema": "criteria.v2", "parse_status": "parsed", "score": score,
                              "criteria_results": criteria_results, "model": model}),
    }
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
