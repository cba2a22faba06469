//! A model's reply, any text: no panic; the analysis is always `criteria.v2` with a
//! score of 0–100 or null and criterion scores of 0–10 out of 10, and parsed
//! feedback is never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worker_core::ollama::feedback;

fuzz_target!(|reply: &str| {
    let output = feedback::parse(reply, "model");
    let analysis = &output.analysis_json;
    assert_eq!(analysis["schema"], "criteria.v2");
    match analysis["parse_status"].as_str() {
        Some("parsed") => assert!(!output.feedback_md.is_empty()),
        Some("model") => assert_eq!(output.feedback_md, reply.trim()),
        other => panic!("parse_status {other:?}"),
    }
    let score = &analysis["score"];
    assert!(score.is_null() || score.as_u64().is_some_and(|score| score <= 100));
    for result in analysis["criteria_results"].as_array().unwrap() {
        assert!(result["score"].as_u64().is_some_and(|score| score <= 10));
        assert_eq!(result["max_score"], 10);
        assert!(result["criterion"].is_string());
    }
});
