//! A model's reply, any text: no panic; the analysis is always the platform's
//! closed `criteria.v2` — an overall score of 0–5, one entry per criterion of the
//! task in its order with 0 ≤ score ≤ max_score and max_score ≥ 1 — and parsed
//! feedback is never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worker_core::ollama::feedback::{self, ParseStatus};

fuzz_target!(|reply: &str| {
    let criteria = ["Names photosynthesis".to_owned(), "Clear".to_owned()];
    let (output, status) = feedback::parse(reply, &criteria);
    let analysis = output.analysis_json.as_object().unwrap();
    assert_eq!(analysis["schema"], "criteria.v2");
    assert!(analysis.keys().all(|key| ["schema", "score", "criteria_results"].contains(&key.as_str())));
    match status {
        ParseStatus::Parsed => assert!(!output.feedback_md.is_empty()),
        ParseStatus::Prose => assert_eq!(output.feedback_md, reply.trim()),
    }
    assert!(analysis["score"].as_i64().is_some_and(|score| (0..=5).contains(&score)));
    let results = analysis["criteria_results"].as_array().unwrap();
    assert_eq!(results.len(), criteria.len());
    for (result, criterion) in results.iter().zip(&criteria) {
        let max = result["max_score"].as_i64().unwrap();
        assert!(max >= 1);
        assert!(result["score"].as_i64().is_some_and(|score| (0..=max).contains(&score)));
        assert_eq!(result["criterion"], criterion.as_str());
    }
});
