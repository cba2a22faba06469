//! Bad configuration, tried as an operator would type it: every variable the worker
//! reads, with the mistakes its kind of value invites.

use std::path::Path;

use fixtures::bad_config::{Kind, try_each};

/// What a variable needs beside it to be read at all.
#[derive(Clone, Copy)]
enum Needs {
    Nothing,
    /// `AI_BACKEND=local`: the Ollama settings are read.
    Ollama,
}

/// Each mistake is refused with exit 2 and one line that names the variable and
/// hides the value; the snapshot is the matrix an operator can read.
/// `WORKER_CONCURRENCY` is not here: the contract makes it lenient (see
/// `an_invalid_concurrency_falls_back_to_one_without_showing_it`).
#[test]
fn every_variable_refuses_every_mistake_without_showing_it() {
    const DSN: Kind = Kind::Word("postgres://worker:pw@db/app");
    const ROWS: &[(&str, Kind, Needs)] = &[
        ("LEARNING_DATABASE_URL", DSN, Needs::Nothing),
        ("LEARNING_DB_URL", DSN, Needs::Nothing),
        ("DATABASE_URL", DSN, Needs::Nothing),
        ("LEARNING_DATABASE_URL_FILE", Kind::File, Needs::Nothing),
        ("LEARNING_DB_URL_FILE", Kind::File, Needs::Nothing),
        ("DATABASE_URL_FILE", Kind::File, Needs::Nothing),
        ("WORKER_CONCURRENCY_CAP", Kind::Number, Needs::Nothing),
        ("WORKER_LEASE_SECONDS", Kind::Seconds, Needs::Nothing),
        ("WORKER_MAX_RETRIES", Kind::Number, Needs::Nothing),
        ("WORKER_BACKOFF_SECONDS", Kind::Seconds, Needs::Nothing),
        ("WORKER_POLL_INTERVAL", Kind::Seconds, Needs::Nothing),
        (
            "WORKER_SHUTDOWN_GRACE_SECONDS",
            Kind::Seconds,
            Needs::Nothing,
        ),
        (
            "WORKER_HEALTH_ADDR",
            Kind::Word("127.0.0.1:9464"),
            Needs::Nothing,
        ),
        ("AI_BACKEND", Kind::Word("stub"), Needs::Nothing),
        ("LOG_FORMAT", Kind::Word("json"), Needs::Nothing),
        ("AI_STUB_DELAY_MS", Kind::Number, Needs::Nothing),
        (
            "OLLAMA_BASE_URL",
            Kind::Word("http://ollama:11434"),
            Needs::Ollama,
        ),
        ("AI_VISION_MODEL", Kind::Text, Needs::Ollama),
        ("AI_FEEDBACK_MODEL", Kind::Text, Needs::Ollama),
        ("AI_TIMEOUT_VISION", Kind::Seconds, Needs::Ollama),
        ("AI_TIMEOUT_FEEDBACK", Kind::Seconds, Needs::Ollama),
        ("LEARNING_STORAGE_ROOT", Kind::Text, Needs::Ollama),
    ];
    let dsn_variables = learning_worker::config::DATABASE_URLS;
    let mut matrix = String::new();
    for &(variable, kind, needs) in ROWS {
        try_each(&mut matrix, variable, kind, |_| {
            let mut command = fixtures::command(Path::new(env!("CARGO_BIN_EXE_learning-worker")));
            command.arg("drain");
            // Port 1: nothing listens, and nothing gets that far.
            if !dsn_variables.contains(&variable.trim_end_matches("_FILE")) {
                command.env(
                    "LEARNING_DATABASE_URL",
                    "postgres://worker:pw@127.0.0.1:1/app",
                );
            }
            if let Needs::Ollama = needs {
                command.env("AI_BACKEND", "local");
            }
            command
        });
    }
    insta::assert_snapshot!(matrix);
}
