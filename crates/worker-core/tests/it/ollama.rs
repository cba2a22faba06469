//! The `local` backend against a fake Ollama: each way the model server can answer
//! ends the submission in the right state, and the requests it sees are right.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use fixtures::fake_ollama::{Answer, FEEDBACK_MODEL, FakeOllama, VISION_MODEL};
use fixtures::{SubmissionKind, SubmissionRow, TestDb};
use worker_core::metrics::Processed;
use worker_core::ollama::{BaseUrl, OllamaAdapter, OllamaConfig};

use crate::harness::Setup;

/// (analysis_status, error_code, job status or "none", job retry_count)
type State = (String, Option<String>, String, i32);

struct World {
    db: TestDb,
    client: tokio_postgres::Client,
    ollama: FakeOllama,
    storage: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let db = TestDb::new().await.unwrap();
        let client = db.connect().await.unwrap();
        World {
            db,
            client,
            ollama: FakeOllama::start().await,
            storage: tempfile::tempdir().unwrap(),
        }
    }

    fn adapter(&self, pdf_tools_path: Option<&str>) -> Arc<OllamaAdapter> {
        Arc::new(
            OllamaAdapter::new(OllamaConfig {
                base_url: BaseUrl::parse(&self.ollama.base_url()).unwrap(),
                vision_model: VISION_MODEL.to_owned(),
                feedback_model: FEEDBACK_MODEL.to_owned(),
                vision_timeout: Duration::from_secs(5),
                feedback_timeout: Duration::from_secs(1),
                storage_root: Some(self.storage.path().to_owned()),
                pdf_tools_path: pdf_tools_path.map(Into::into),
            })
            .unwrap(),
        )
    }

    async fn submit(&self, new: fixtures::NewSubmission) -> SubmissionRow {
        let submission = new.insert(&self.client).await.unwrap();
        submission.write_file(self.storage.path()).unwrap();
        fixtures::job()
            .submission(&submission)
            .insert(&self.client)
            .await
            .unwrap();
        submission
    }

    /// A worker set-up whose both adapters are the Ollama backend.
    fn setup(&self, pdf_tools_path: Option<&str>) -> Setup {
        let adapter = self.adapter(pdf_tools_path);
        let mut setup = Setup::new();
        setup.vision = Some(adapter.clone());
        setup.feedback = Some(adapter);
        setup
    }

    async fn drain(&self, pdf_tools_path: Option<&str>) {
        self.setup(pdf_tools_path).drain(&self.db).await;
    }

    /// (analysis_status, error_code, job status or "none", job retry_count)
    async fn state(&self, submission: &SubmissionRow) -> State {
        let row = self
            .client
            .query_one(
                "select s.analysis_status, s.error_code, coalesce(j.status, 'none'), coalesce(j.retry_count, -1) \
                 from learning_submissions s left join learning_submission_jobs j on j.submission_id = s.id \
                 where s.id = $1",
                &[&submission.id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2), row.get(3))
    }

    async fn analysis(&self, submission: &SubmissionRow) -> (String, String, serde_json::Value) {
        let row = self
            .client
            .query_one("select text_body, feedback_md, analysis_json from learning_submissions where id = $1", &[&submission.id])
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }
}

fn completed() -> State {
    ("completed".to_owned(), None, "none".to_owned(), -1)
}

fn retried(code: &str) -> State {
    (
        "pending".to_owned(),
        Some(code.to_owned()),
        "queued".to_owned(),
        1,
    )
}

fn failed(code: &str) -> State {
    (
        "failed".to_owned(),
        Some(code.to_owned()),
        "failed".to_owned(),
        0,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_transcribed_and_gets_parsed_feedback() {
    let world = World::new().await;
    let submission = world.submit(fixtures::submission().image()).await;

    world.drain(None).await;

    assert_eq!(world.state(&submission).await, completed());
    let vision = world.ollama.requests(VISION_MODEL);
    assert_eq!(vision.len(), 1);
    assert_eq!(vision[0]["stream"], false);
    let image = base64::engine::general_purpose::STANDARD.encode(fixtures::SAMPLE_PNG);
    assert_eq!(
        vision[0]["images"],
        serde_json::json!([image]),
        "standard padded base64 of the file"
    );
    let feedback = world.ollama.requests(FEEDBACK_MODEL);
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0]["stream"], false);
    assert!(
        feedback[0]["prompt"]
            .as_str()
            .unwrap()
            .contains("Plants use light to make sugar."),
        "the OCR text goes to feedback"
    );
    let (text, feedback_md, analysis) = world.analysis(&submission).await;
    assert_eq!(
        text,
        "# Transcribed page\n\nPlants use light to make sugar."
    );
    assert_eq!(feedback_md, "Good explanation; mention chlorophyll.");
    assert_eq!(
        analysis,
        serde_json::json!({
            "schema": "criteria.v2",
            "score": 4,
            "criteria_results": [
                {"criterion": "Names photosynthesis", "score": 8, "max_score": 10, "explanation_md": "Named."},
                {"criterion": "Mentions chlorophyll", "score": 4, "max_score": 10, "explanation_md": "Missing."},
            ],
        }),
        "the platform's closed criteria.v2, nothing else"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_is_sent_verbatim_without_vision() {
    let world = World::new().await;
    let text = "Line one: ça marche!\n  indented \"quoted\" {braces} and ```fences```";
    let submission = world.submit(fixtures::submission().text(text)).await;

    world.drain(None).await;

    assert_eq!(world.state(&submission).await, completed());
    assert!(world.ollama.requests(VISION_MODEL).is_empty());
    let prompt = world.ollama.requests(FEEDBACK_MODEL)[0]["prompt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(prompt.contains(text), "verbatim: {prompt}");
    assert!(
        prompt.contains("Explain how plants turn light into sugar."),
        "the instruction"
    );
    assert!(prompt.contains("- Names photosynthesis"), "the criteria");
    assert!(
        prompt.contains("Think about where the energy comes from."),
        "the hints"
    );
}

/// The job as it waits in the queue, untouched: what a backend failure leaves.
fn returned_unspent() -> State {
    ("pending".to_owned(), None, "queued".to_owned(), 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn server_trouble_costs_the_submission_nothing_and_refusals_fail_it() {
    // (case, answer, expected end, feedback requests)
    let cases: [(&str, Answer, State, usize); 6] = [
        ("slow", Answer::Slow(Duration::from_secs(3)), completed(), 2),
        ("429", Answer::Status(429), completed(), 2),
        ("500", Answer::Status(500), completed(), 2),
        ("dropped", Answer::Drop, completed(), 2),
        (
            "empty",
            Answer::Reply("   ".to_owned()),
            retried("feedback_retrying"),
            1,
        ),
        ("400", Answer::Status(400), failed("feedback_failed"), 1),
    ];
    for (name, answer, expected, requests) in cases {
        let world = World::new().await;
        world.ollama.script(FEEDBACK_MODEL, &[answer]);
        let submission = world.submit(fixtures::submission()).await;

        world.drain(None).await;

        assert_eq!(world.state(&submission).await, expected, "{name}");
        assert_eq!(
            world.ollama.requests(FEEDBACK_MODEL).len(),
            requests,
            "{name}"
        );
        let row = world
            .client
            .query_one(
                "select coalesce(feedback_last_error, '') from learning_submissions where id = $1",
                &[&submission.id],
            )
            .await
            .unwrap();
        let message: String = row.get(0);
        assert!(
            message.len() < 100 && !message.contains("scripted"),
            "{name}: short, no reply text: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_that_always_breaks_a_healthy_server_pays_after_three_strikes() {
    let world = World::new().await;
    world
        .ollama
        .script(FEEDBACK_MODEL, &vec![Answer::Status(500); 5]);
    let submission = world.submit(fixtures::submission()).await;

    world.drain(None).await;

    // Three returns with the server probing healthy, then the fourth failure is
    // charged as a transient one (retry in 10 s, which drain does not wait for).
    assert_eq!(world.state(&submission).await, retried("feedback_retrying"));
    assert_eq!(world.ollama.requests(FEEDBACK_MODEL).len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_server_away_for_most_of_a_drain_fails_no_submission() {
    let world = World::new().await;
    let mut submissions = Vec::new();
    for index in 0..200 {
        let new = if index % 4 == 0 {
            fixtures::submission().image()
        } else {
            fixtures::submission()
        };
        submissions.push(world.submit(new).await);
    }
    let setup = world.setup(None);
    let observers = worker_core::worker::Observers::default();
    let readiness = std::sync::Arc::clone(&observers.readiness);
    world.ollama.stop();

    let drain = setup.try_drain(&world.db, observers);
    let outage = async {
        // Down until the breaker has opened and probed with backoff a few times.
        fixtures::wait_until("the breaker opens", Duration::from_secs(60), async || {
            readiness.backend().is_some()
        })
        .await;
        let cause = readiness.backend().unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        world.ollama.resume().await;
        cause
    };
    let ((observers, drained), cause) = tokio::join!(drain, outage);

    drained.unwrap();
    assert_eq!(
        cause.class,
        worker_core::adapter::ErrorClass::Unavailable,
        "{cause:?}"
    );
    assert!(readiness.backend().is_none(), "the breaker closed again");
    let states = world
        .client
        .query_one(
            "select count(*) filter (where analysis_status = 'completed'), \
                    count(*) filter (where analysis_status = 'failed'), \
                    count(*) filter (where vision_last_error is not null or feedback_last_error is not null) \
             from learning_submissions",
            &[],
        )
        .await
        .unwrap();
    let (completed, failed, charged): (i64, i64, i64) =
        (states.get(0), states.get(1), states.get(2));
    assert_eq!((completed, failed, charged), (200, 0, 0));
    assert_eq!(observers.metrics.processed_count(Processed::Completed), 200);
    assert_eq!(observers.metrics.processed_count(Processed::Retried), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_model_stops_the_drain_and_returns_the_job_unspent() {
    let world = World::new().await;
    world.ollama.set_models(&[VISION_MODEL]);
    let submission = world.submit(fixtures::submission()).await;
    let setup = world.setup(None);

    let (observers, drained) = setup.try_drain(&world.db, Default::default()).await;

    let error = drained.unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "model {FEEDBACK_MODEL} is not on the model server"
        )),
        "{error}"
    );
    assert_eq!(world.state(&submission).await, returned_unspent());
    let reason = observers.readiness.not_ready().unwrap();
    assert!(reason.starts_with("backend_misconfigured: "), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_that_is_not_json_is_still_feedback() {
    let world = World::new().await;
    world.ollama.script(
        FEEDBACK_MODEL,
        &[Answer::Reply(
            "Nice work, but explain the role of light.".to_owned(),
        )],
    );
    let submission = world.submit(fixtures::submission()).await;

    world.drain(None).await;

    assert_eq!(world.state(&submission).await, completed());
    let (_, feedback_md, analysis) = world.analysis(&submission).await;
    assert_eq!(feedback_md, "Nice work, but explain the role of light.");
    let unscored = |criterion: &str| {
        serde_json::json!({"criterion": criterion, "score": 0, "max_score": 10,
                           "explanation_md": "Keine Begründung erhalten."})
    };
    assert_eq!(
        analysis,
        serde_json::json!({
            "schema": "criteria.v2",
            "score": 0,
            "criteria_results": [unscored("Names photosynthesis"), unscored("Mentions chlorophyll")],
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_or_wrong_files_fail_permanently_without_a_model_call() {
    let world = World::new().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.png"), fixtures::SAMPLE_PNG).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.png"),
        world.storage.path().join("link.png"),
    )
    .unwrap();
    // Hostile keys: inserted with their jobs, but no file is written for them.
    let mut hostile = Vec::new();
    for key in ["../../etc/passwd", "/etc/passwd", "link.png"] {
        let submission = fixtures::submission()
            .image()
            .storage_key(key)
            .insert_with_job(&world.client)
            .await
            .unwrap();
        hostile.push(submission);
    }
    let [traversal, absolute, symlink_out] = <[SubmissionRow; 3]>::try_from(hostile).unwrap();
    let png_as_jpeg = world
        .submit(fixtures::submission().file_content(
            SubmissionKind::Image,
            fixtures::SAMPLE_PNG,
            "image/jpeg",
            "jpg",
        ))
        .await;
    // The platform's CHECK keeps the row's size at 10 MiB at most; the file on
    // disk is what may be larger.
    let huge: Vec<u8> = fixtures::SAMPLE_PNG
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0, 11 * 1024 * 1024))
        .collect();
    let too_big = world.submit(fixtures::submission().image()).await;
    std::fs::write(
        world
            .storage
            .path()
            .join(too_big.storage_key.as_ref().unwrap()),
        &huge,
    )
    .unwrap();
    let tampered = world.submit(fixtures::submission().image()).await;
    std::fs::write(
        world
            .storage
            .path()
            .join(tampered.storage_key.as_ref().unwrap()),
        b"\x89PNG\r\n\x1a\nchanged",
    )
    .unwrap();

    world.drain(None).await;

    for (name, submission, code) in [
        ("traversal", &traversal, "input_corrupt"),
        ("absolute", &absolute, "input_corrupt"),
        ("symlink out of the root", &symlink_out, "input_corrupt"),
        ("png declared as jpeg", &png_as_jpeg, "input_corrupt"),
        ("larger than 10 MiB", &too_big, "input_too_large"),
        ("size and sha256 differ", &tampered, "input_corrupt"),
    ] {
        assert_eq!(world.state(submission).await, failed(code), "{name}");
    }
    assert!(
        world.ollama.requests(VISION_MODEL).is_empty(),
        "no file was sent anywhere"
    );
    for submission in [&traversal, &absolute, &symlink_out] {
        let message: String = world
            .client
            .query_one(
                "select vision_last_error from learning_submissions where id = $1",
                &[&submission.id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            message, "storage key escapes the storage root",
            "{:?}",
            submission.storage_key
        );
    }
    let message: String = world
        .client
        .query_one(
            "select vision_last_error from learning_submissions where id = $1",
            &[&png_as_jpeg.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(message, "declared image/jpeg but the file is image/png");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pdf_with_a_text_layer_needs_no_model_for_vision() {
    let world = World::new().await;
    let submission = world.submit(fixtures::submission().pdf()).await;

    world.drain(None).await;

    assert_eq!(world.state(&submission).await, completed());
    assert!(
        world.ollama.requests(VISION_MODEL).is_empty(),
        "no vision call"
    );
    let (text, _, _) = world.analysis(&submission).await;
    assert!(text.contains("Plants turn light into sugar."), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pdf_without_text_is_rasterised() {
    let world = World::new().await;
    let scan = || {
        fixtures::submission().file_content(
            SubmissionKind::File,
            fixtures::SAMPLE_PDF_WITHOUT_TEXT,
            "application/pdf",
            "pdf",
        )
    };
    let rasterised = world.submit(scan()).await;

    world.drain(None).await;

    assert_eq!(
        world.state(&rasterised).await,
        completed(),
        "pdftoppm is installed where the tests run"
    );
    let vision = world.ollama.requests(VISION_MODEL);
    assert_eq!(vision.len(), 1, "one image per page");
    let page = base64::engine::general_purpose::STANDARD
        .decode(vision[0]["images"][0].as_str().unwrap())
        .unwrap();
    assert!(page.starts_with(b"\x89PNG"), "the page went as a PNG");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_pdf_tool_is_the_host_s_problem_not_the_student_s() {
    let world = World::new().await;
    let with_text = world.submit(fixtures::submission().pdf()).await;
    let setup = world.setup(Some("/nonexistent"));

    let (_, drained) = setup.try_drain(&world.db, Default::default()).await;

    let error = drained.unwrap_err().to_string();
    assert!(
        error.contains("pdftotext is not installed on the worker's host"),
        "{error}"
    );
    assert_eq!(world.state(&with_text).await, returned_unspent());
    assert!(world.ollama.requests(VISION_MODEL).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rendered_page_images_are_sent_one_per_call() {
    let world = World::new().await;
    std::fs::create_dir_all(world.storage.path().join("pages")).unwrap();
    for page in ["p1.png", "p2.png"] {
        std::fs::write(
            world.storage.path().join("pages").join(page),
            fixtures::SAMPLE_PNG,
        )
        .unwrap();
    }
    let metadata = serde_json::json!({"page_keys": ["pages/p1.png", "pages/p2.png"]});
    let submission = world
        .submit(fixtures::submission().pdf().internal_metadata(metadata))
        .await;

    world.drain(None).await;

    assert_eq!(world.state(&submission).await, completed());
    assert_eq!(world.ollama.requests(VISION_MODEL).len(), 2);
    let (text, _, _) = world.analysis(&submission).await;
    assert_eq!(text.matches("# Transcribed page").count(), 2);
}
