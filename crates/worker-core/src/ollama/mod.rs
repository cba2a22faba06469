//! The `local` backend: Ollama's HTTP API (`POST {OLLAMA_BASE_URL}/api/generate`,
//! `"stream": false`).
//!
//! - **Vision** reads the submission's file from `LEARNING_STORAGE_ROOT` through
//!   [`storage`] (no path escapes the root, 10 MiB at most, size and sha256 must
//!   match the row, the declared MIME type must match the magic bytes) and sends
//!   images to `AI_VISION_MODEL` as base64. PDFs go through [`pdf`]: page images
//!   the platform already rendered, else the PDF's own text layer (no model call),
//!   else pages rasterised with `pdftoppm`, else a permanent error.
//! - **Feedback** sends a prompt with the student's text verbatim, the instruction,
//!   hints and criteria to `AI_FEEDBACK_MODEL`, asks for JSON and parses the reply
//!   into `criteria.v2` ([`feedback`]); a reply that is not JSON still becomes
//!   feedback (`parse_status: "model"`), an empty one is a transient error.
//!
//! Errors (classified in the private `http` module): the server's trouble (timeouts, connection failures, HTTP 429
//! and 5xx) makes the backend *unavailable*; 401/403, a missing model, a base URL
//! that is not Ollama, a missing storage root or poppler tool make it
//! *misconfigured*; a 400/413/422 for this input and bad input files are the
//! submission's (*permanent*). Messages are short and never quote a prompt, a reply
//! or the student's text.
//!
//! **Probes** (the worker's circuit breaker and `learning-worker check`): `GET
//! /api/tags` answers and lists the configured model; and, once a job found the
//! storage root or a poppler tool missing, those are there again.

mod base_url;
pub mod feedback;
mod http;
pub mod pdf;
pub mod storage;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use base_url::{BaseUrl, BaseUrlError};

use crate::adapter::{
    AdapterError, AdapterFuture, ErrorClass, FeedbackAdapter, FeedbackInput, FeedbackOutput,
    ProbeFuture, VisionAdapter, VisionInput, VisionOutput,
};

/// How long a probe waits for `/api/tags`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the `local` backend.
#[derive(Clone, Debug)]
pub struct OllamaConfig {
    /// `OLLAMA_BASE_URL`, e.g. `http://ollama:11434`.
    pub base_url: BaseUrl,
    /// `AI_VISION_MODEL`.
    pub vision_model: String,
    /// `AI_FEEDBACK_MODEL`.
    pub feedback_model: String,
    /// `AI_TIMEOUT_VISION`, per call.
    pub vision_timeout: Duration,
    /// `AI_TIMEOUT_FEEDBACK`, per call.
    pub feedback_timeout: Duration,
    /// `LEARNING_STORAGE_ROOT`.
    pub storage_root: Option<PathBuf>,
    /// Where to look for `pdftotext` and `pdftoppm`; the process's `PATH` when `None`.
    pub pdf_tools_path: Option<std::ffi::OsString>,
}

/// The backend; one value serves as both adapters.
#[derive(Clone, Debug)]
pub struct OllamaAdapter {
    config: OllamaConfig,
    client: reqwest::Client,
    /// A job found the storage root or a poppler tool missing: probes check the
    /// host again until it is mended.
    host_problem: Arc<AtomicBool>,
}

impl OllamaAdapter {
    /// Builds the HTTP client (rustls on the ring provider).
    pub fn new(config: OllamaConfig) -> Result<OllamaAdapter, reqwest::Error> {
        // reqwest's rustls needs a process-wide crypto provider; ring builds in
        // seconds where aws-lc-rs needs cmake and minutes.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().build()?;
        Ok(OllamaAdapter {
            config,
            client,
            host_problem: Arc::default(),
        })
    }

    /// The model server answers and has `model`.
    async fn probe_model(&self, model: &str) -> Result<(), AdapterError> {
        let models = http::models(&self.client, self.config.base_url.api(), PROBE_TIMEOUT).await?;
        let wanted = with_tag(model);
        if models.iter().any(|name| with_tag(name) == wanted) {
            Ok(())
        } else {
            Err(AdapterError::misconfigured(format!(
                "model {model} is not on the model server; pull it there (ollama pull {model}) or set the AI_*_MODEL variable"
            )))
        }
    }

    /// The storage root and the poppler tools, once a job found one missing.
    fn probe_host(&self) -> Result<(), AdapterError> {
        if !self.host_problem.load(Ordering::Relaxed) {
            return Ok(());
        }
        match &self.config.storage_root {
            None => return Err(storage_root_unset()),
            Some(root) if !root.is_dir() => {
                return Err(AdapterError::misconfigured(
                    "LEARNING_STORAGE_ROOT is not accessible: mount the storage directory there",
                ));
            }
            Some(_) => {}
        }
        if let Some(tool) = pdf::missing_tools(self.config.pdf_tools_path.as_deref()).first() {
            return Err(AdapterError::misconfigured(format!(
                "{tool} is not installed on the worker's host; install poppler-utils"
            )));
        }
        self.host_problem.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn generate(
        &self,
        model: &str,
        prompt: &str,
        images: &[String],
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<String, AdapterError> {
        let mut body = json!({"model": model, "prompt": prompt, "stream": false});
        if !images.is_empty() {
            body["images"] = json!(images);
        }
        http::generate(
            &self.client,
            self.config.base_url.api(),
            &body,
            timeout,
            cancel,
        )
        .await
    }

    /// Reads the file and turns it into images (or text), noting host problems.
    async fn prepare(&self, input: &VisionInput) -> Result<Prepared, AdapterError> {
        let prepared = self.prepare_on_host(input).await;
        if let Err(error) = &prepared
            && error.class == ErrorClass::Misconfigured
        {
            self.host_problem.store(true, Ordering::Relaxed);
        }
        prepared
    }

    async fn prepare_on_host(&self, input: &VisionInput) -> Result<Prepared, AdapterError> {
        let root = self
            .config
            .storage_root
            .as_deref()
            .ok_or_else(storage_root_unset)?;
        let file = storage::read_submission_file(root, input).await?;
        Ok(match file.kind {
            storage::FileKind::Png | storage::FileKind::Jpeg => {
                Prepared::Images(vec![file.bytes], "image")
            }
            storage::FileKind::Pdf => {
                match pdf::prepare(root, &file, input, self.config.pdf_tools_path.as_deref())
                    .await?
                {
                    pdf::Prepared::TextLayer(text) => Prepared::Text(text),
                    pdf::Prepared::PageImages(pages) => Prepared::Images(pages, "pdf_page_images"),
                    pdf::Prepared::Rasterised(pages) => Prepared::Images(pages, "pdf_rasterised"),
                }
            }
        })
    }
}

/// What vision sends to the model, or the text it needs no model for.
enum Prepared {
    Images(Vec<Vec<u8>>, &'static str),
    Text(String),
}

fn storage_root_unset() -> AdapterError {
    AdapterError::misconfigured(
        "LEARNING_STORAGE_ROOT is not set, so image and PDF submissions cannot be read",
    )
}

/// Ollama's model names: `name` means `name:latest`.
fn with_tag(model: &str) -> String {
    if model.contains(':') {
        model.to_owned()
    } else {
        format!("{model}:latest")
    }
}

const VISION_PROMPT: &str = "Transcribe this student's handwritten or typed work into Markdown. \
Keep the student's wording and structure; render formulas in LaTeX. Output only the transcription.";

impl VisionAdapter for OllamaAdapter {
    fn probe(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            self.probe_host()?;
            self.probe_model(&self.config.vision_model).await
        })
    }

    fn extract<'a>(
        &'a self,
        input: &'a VisionInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, VisionOutput> {
        Box::pin(async move {
            let (images, source) = match self.prepare(input).await? {
                Prepared::Images(images, source) => (images, source),
                Prepared::Text(text) => {
                    return Ok(VisionOutput {
                        text_md: text,
                        raw_metadata: json!({"source": "pdf_text_layer"}),
                    });
                }
            };
            // One call per page: small vision models transcribe one image at a time best.
            let mut pages_md = Vec::with_capacity(images.len());
            for image in &images {
                let encoded = base64::engine::general_purpose::STANDARD.encode(image);
                let reply = self
                    .generate(
                        &self.config.vision_model,
                        VISION_PROMPT,
                        &[encoded],
                        self.config.vision_timeout,
                        cancel,
                    )
                    .await?;
                if reply.trim().is_empty() {
                    return Err(AdapterError::transient(
                        "vision model returned an empty transcription",
                    ));
                }
                pages_md.push(reply.trim().to_owned());
            }
            Ok(VisionOutput {
                text_md: pages_md.join("\n\n---\n\n"),
                raw_metadata: json!({"source": source, "pages": images.len(), "model": self.config.vision_model}),
            })
        })
    }
}

impl FeedbackAdapter for OllamaAdapter {
    fn probe(&self) -> ProbeFuture<'_> {
        Box::pin(self.probe_model(&self.config.feedback_model))
    }

    fn feedback<'a>(
        &'a self,
        input: &'a FeedbackInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, FeedbackOutput> {
        Box::pin(async move {
            let prompt = feedback::prompt(input);
            let reply = self
                .generate(
                    &self.config.feedback_model,
                    &prompt,
                    &[],
                    self.config.feedback_timeout,
                    cancel,
                )
                .await?;
            if reply.trim().is_empty() {
                return Err(AdapterError::transient(
                    "feedback model returned an empty reply",
                ));
            }
            let (output, parse_status) = feedback::parse(&reply, &input.criteria);
            tracing::info!(job_id = %input.job.job_id, parse_status = parse_status.as_str(), model = %self.config.feedback_model, "feedback reply read");
            Ok(output)
        })
    }
}
