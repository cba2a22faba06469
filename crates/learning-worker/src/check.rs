//! `learning-worker check`: one line per check, and for each kind of failure the
//! fix, so that an operator who set the worker up wrongly learns what to do
//! without reading code. A warning (`WARN`, e.g. the platform's result helpers
//! open to every role) prints its fix too but does not fail the check. Exit 0 when
//! everything the worker needs holds, else 1.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::ExitCode;

use deadpool_postgres::Pool;
use worker_core::adapter::{AdapterError, FeedbackAdapter, VisionAdapter};
use worker_core::database::DatabaseProblem;

use crate::config::{Backend, Config};

pub(crate) async fn run(
    pool: &Pool,
    config: &Config,
    vision: &dyn VisionAdapter,
    feedback: &dyn FeedbackAdapter,
) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut problems = BTreeSet::new();
    let mut warnings = BTreeSet::new();
    let mut failed = false;
    match pool.get().await {
        Err(error) => {
            let problem = DatabaseProblem::of_pool(&error);
            let _ = writeln!(out, "FAIL  connect via {}: {problem}", config.variable);
            problems.insert(problem);
        }
        Ok(client) => {
            let _ = writeln!(out, "ok    connect via {}", config.variable);
            match worker_core::schema::check(&client).await {
                Ok(checks) => {
                    for check in checks {
                        if check.ok {
                            let _ = writeln!(out, "ok    {}", check.name);
                        } else if check.problem.is_warning() {
                            let _ =
                                writeln!(out, "WARN  {} ({})", check.name, check.problem.code());
                            warnings.insert(check.problem);
                        } else {
                            let _ =
                                writeln!(out, "FAIL  {} ({})", check.name, check.problem.code());
                            problems.insert(check.problem);
                        }
                    }
                }
                Err(error) => {
                    let problem = DatabaseProblem::of_postgres(&error);
                    let _ = writeln!(out, "FAIL  schema check: {problem}");
                    problems.insert(problem);
                }
            }
        }
    }
    for problem in problems.iter().chain(&warnings) {
        let _ = writeln!(out, "      fix ({}): {}", problem.code(), problem.fix());
    }
    failed |= !problems.is_empty();
    match &config.backend {
        Backend::Stub(_) => {
            let _ = writeln!(out, "ok    AI backend: stub (no model server)");
        }
        Backend::Local(ollama) => {
            let probes = [
                ("vision", ollama.vision_model.as_str(), vision.probe().await),
                (
                    "feedback",
                    ollama.feedback_model.as_str(),
                    feedback.probe().await,
                ),
            ];
            for (phase, model, probed) in probes {
                match probed {
                    Ok(()) => {
                        let _ = writeln!(out, "ok    {phase} model {model} on {}", ollama.base_url);
                    }
                    Err(AdapterError { class, message, .. }) => {
                        failed = true;
                        let _ = writeln!(
                            out,
                            "FAIL  {phase} model {model} on {} ({class:?}): {message}",
                            ollama.base_url
                        );
                    }
                }
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
