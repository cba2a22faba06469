//! The `analysis_json` the platform accepts: its API schema `AnalysisJsonCriteriaV2`.
//!
//! That schema is closed (no key beyond these), and clients validate against it:
//!
//! ```json
//! {"schema": "criteria.v2",
//!  "score": 3,
//!  "criteria_results": [{"criterion": "Names photosynthesis", "score": 7,
//!                        "max_score": 10, "explanation_md": "…"}]}
//! ```
//!
//! - `schema` is always `"criteria.v2"`;
//! - `score`, the overall mark, is an integer 0..=5, never null: present when there is
//!   something to base it on (the model gave one, or the task has criteria), absent
//!   otherwise;
//! - `criteria_results` has one entry per criterion of the task, in the task's order:
//!   `score` an integer 0..=`max_score`, `max_score` an integer ≥ 1 (10 unless the
//!   model said otherwise), and an explanation in Markdown. A task without criteria
//!   gets an empty list (the student's page then shows no criteria cards).
//!
//! Nothing else is stored: how a reply was parsed goes to the log, not the row.

use serde_json::{Value, json};

/// The value of `schema`.
pub const SCHEMA: &str = "criteria.v2";
/// The highest overall `score`.
pub const MAX_OVERALL: i64 = 5;
/// A criterion's `max_score` when the model names none.
pub const DEFAULT_MAX_SCORE: i64 = 10;

/// One entry of `criteria_results`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriterionResult {
    /// The criterion as the task states it.
    pub criterion: String,
    /// 0..=`max_score`.
    pub score: i64,
    /// ≥ 1.
    pub max_score: i64,
    /// Why, in Markdown.
    pub explanation_md: String,
}

impl CriterionResult {
    /// An entry with `score` clamped into 0..=`max_score`, and `max_score` at least 1.
    pub fn new(
        criterion: &str,
        score: i64,
        max_score: i64,
        explanation_md: &str,
    ) -> CriterionResult {
        let max_score = max_score.max(1);
        CriterionResult {
            criterion: criterion.to_owned(),
            score: score.clamp(0, max_score),
            max_score,
            explanation_md: explanation_md.to_owned(),
        }
    }
}

/// An analysis in the platform's format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    /// The overall mark, 0..=5, if there is one.
    pub score: Option<i64>,
    /// One entry per criterion of the task, in its order.
    pub criteria_results: Vec<CriterionResult>,
}

impl Analysis {
    /// An analysis whose overall mark is `overall` clamped into 0..=5 when given, else
    /// derived from the criteria (the mean share of each criterion's points, × 5,
    /// rounded), else absent.
    pub fn new(overall: Option<i64>, criteria_results: Vec<CriterionResult>) -> Analysis {
        let score = overall
            .map(|score| score.clamp(0, MAX_OVERALL))
            .or_else(|| derived_overall(&criteria_results));
        Analysis {
            score,
            criteria_results,
        }
    }

    /// The JSON stored in `analysis_json`.
    pub fn to_json(&self) -> Value {
        let results: Vec<Value> = self
            .criteria_results
            .iter()
            .map(|result| {
                json!({
                    "criterion": result.criterion,
                    "score": result.score,
                    "max_score": result.max_score,
                    "explanation_md": result.explanation_md,
                })
            })
            .collect();
        let mut analysis = json!({"schema": SCHEMA, "criteria_results": results});
        if let Some(score) = self.score {
            analysis["score"] = json!(score);
        }
        analysis
    }
}

fn derived_overall(results: &[CriterionResult]) -> Option<i64> {
    if results.is_empty() {
        return None;
    }
    let share: f64 = results
        .iter()
        .map(|result| result.score as f64 / result.max_score as f64)
        .sum::<f64>()
        / results.len() as f64;
    Some(((share * MAX_OVERALL as f64).round() as i64).clamp(0, MAX_OVERALL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_clamped_into_the_platforms_ranges() {
        let result = CriterionResult::new("a", 14, 0, "");
        assert_eq!((result.score, result.max_score), (1, 1));
        assert_eq!(CriterionResult::new("a", -3, 10, "").score, 0);
        assert_eq!(Analysis::new(Some(80), Vec::new()).score, Some(5));
        assert_eq!(Analysis::new(Some(-1), Vec::new()).score, Some(0));
    }

    #[test]
    fn the_overall_mark_follows_the_criteria_when_the_model_gives_none() {
        let results = vec![
            CriterionResult::new("a", 10, 10, ""),
            CriterionResult::new("b", 2, 4, ""),
        ];
        // Mean share 0.75, × 5 = 3.75 → 4.
        assert_eq!(Analysis::new(None, results).score, Some(4));
    }

    #[test]
    fn a_task_without_criteria_gets_no_cards_and_no_invented_mark() {
        let analysis = Analysis::new(None, Vec::new()).to_json();
        assert_eq!(
            analysis,
            json!({"schema": "criteria.v2", "criteria_results": []})
        );
    }
}
