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
//! Errors: timeouts, connection failures, HTTP 429 and 5xx are transient; other 4xx
//! and bad input files are permanent. Messages are short and never quote a prompt,
//! a reply or the student's text.

pub mod feedback;
mod http;
pub mod pdf;
pub mod storage;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::adapter::{
    AdapterError, AdapterFuture, FeedbackAdapter, FeedbackInput, FeedbackOutput, VisionAdapter,
    VisionInput, VisionOutput,
};

/// Settings of the `local` backend.
#[derive(Clone, Debug)]
pub struct OllamaConfig {
    /// `OLLAMA_BASE_URL`, e.g. `http://ollama:11434`.
    pub base_url: String,
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
}

impl OllamaAdapter {
    /// Builds the HTTP client (rustls on the ring provider).
    pub fn new(config: OllamaConfig) -> Result<OllamaAdapter, reqwest::Error> {
        // reqwest's rustls needs a process-wide crypto provider; ring builds in
        // seconds where aws-lc-rs needs cmake and minutes.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().build()?;
        Ok(OllamaAdapter { config, client })
    }

    async fn generate(
        &self,
        model: &str,
        prompt: &str,
        images: &[String],
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<String, AdapterError> {
        let url = format!(
            "{}/api/generate",
            self.config.base_url.trim_end_matches('/')
        );
        let mut body = json!({"model": model, "prompt": prompt, "stream": false});
        if !images.is_empty() {
            body["images"] = json!(images);
        }
        http::generate(&self.client, &url, &body, timeout, cancel).await
    }
}

const VISION_PROMPT: &str = "Transcribe this student's handwritten or typed work into Markdown. \
Keep the student's wording and structure; render formulas in LaTeX. Output only the transcription.";

impl VisionAdapter for OllamaAdapter {
    fn extract<'a>(
        &'a self,
        input: &'a VisionInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, VisionOutput> {
        Box::pin(async move {
            let root = self.config.storage_root.as_deref().ok_or_else(|| {
                AdapterError::permanent("LEARNING_STORAGE_ROOT is not configured")
            })?;
            let file = storage::read_submission_file(root, input).await?;
            let (images, source) = match file.kind {
                storage::FileKind::Png | storage::FileKind::Jpeg => (vec![file.bytes], "image"),
                storage::FileKind::Pdf => {
                    match pdf::prepare(root, &file, input, self.config.pdf_tools_path.as_deref())
                        .await?
                    {
                        pdf::Prepared::TextLayer(text) => {
                            return Ok(VisionOutput {
                                text_md: text,
                                raw_metadata: json!({"source": "pdf_text_layer"}),
                            });
                        }
                        pdf::Prepared::PageImages(pages) => (pages, "pdf_page_images"),
                        pdf::Prepared::Rasterised(pages) => (pages, "pdf_rasterised"),
                    }
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
            Ok(feedback::parse(&reply, &self.config.feedback_model))
        })
    }
}
