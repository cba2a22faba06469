//! PDFs, cheapest way first: page images the platform already rendered
//! (`internal_metadata.page_keys`), else the PDF's own text layer (`pdftotext`, no
//! model call at all), else pages rasterised with `pdftoppm`, both from
//! poppler-utils.
//!
//! A tool missing from the host is the operator's problem, not the student's: it is
//! a *misconfigured* error, so the job goes back to the queue unspent and the
//! worker's breaker opens until the tool is there ([`missing_tools`] is the probe).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::adapter::{AdapterError, VisionInput};
use crate::ollama::storage::{self, FileKind, SubmissionFile};

/// At most this many pages are sent to the model.
pub const MAX_PAGES: usize = 20;
/// A text layer with fewer letters than this is taken as absent (scans often carry
/// a few stray characters).
const MIN_TEXT_LETTERS: usize = 20;
/// poppler tools get this long.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do with a PDF.
#[derive(Debug)]
pub enum Prepared {
    /// The platform's page images (PNG bytes).
    PageImages(Vec<Vec<u8>>),
    /// The PDF's text: use it directly.
    TextLayer(String),
    /// Pages rasterised here (PNG bytes).
    Rasterised(Vec<Vec<u8>>),
}

/// Decides how a verified PDF is read.
pub async fn prepare(
    root: &Path,
    file: &SubmissionFile,
    input: &VisionInput,
    tools_path: Option<&std::ffi::OsStr>,
) -> Result<Prepared, AdapterError> {
    let page_keys: Vec<&str> = input
        .internal_metadata
        .as_ref()
        .and_then(|metadata| metadata.get("page_keys"))
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !page_keys.is_empty() {
        let mut pages = Vec::new();
        for key in page_keys.iter().take(MAX_PAGES) {
            let page = storage::read_verified(root, key, None, None, Some("image/png")).await?;
            if page.kind != FileKind::Png {
                return Err(AdapterError::permanent("a rendered page is not a PNG"));
            }
            pages.push(page.bytes);
        }
        return Ok(Prepared::PageImages(pages));
    }
    if let Some(text) = text_layer(&file.path, tools_path).await? {
        return Ok(Prepared::TextLayer(text));
    }
    let pages = rasterise(&file.path, tools_path).await?;
    if pages.is_empty() {
        return Err(AdapterError::input_unsupported("the PDF has no pages"));
    }
    Ok(Prepared::Rasterised(pages))
}

/// The poppler tools that are not installed where the worker looks for them.
pub fn missing_tools(tools_path: Option<&std::ffi::OsStr>) -> Vec<&'static str> {
    TOOLS
        .into_iter()
        .filter(|tool| find_tool(tool, tools_path).is_none())
        .collect()
}

const TOOLS: [&str; 2] = ["pdftotext", "pdftoppm"];

fn required_tool(
    program: &'static str,
    tools_path: Option<&std::ffi::OsStr>,
) -> Result<std::path::PathBuf, AdapterError> {
    find_tool(program, tools_path).ok_or_else(|| {
        AdapterError::misconfigured(format!(
            "{program} is not installed on the worker's host; install poppler-utils"
        ))
    })
}

/// The text layer, if the PDF has one.
async fn text_layer(
    path: &Path,
    tools_path: Option<&std::ffi::OsStr>,
) -> Result<Option<String>, AdapterError> {
    let pdftotext = required_tool("pdftotext", tools_path)?;
    let output = run(&pdftotext, |command| {
        command
            .args(["-q", "-layout", "-l"])
            .arg(MAX_PAGES.to_string())
            .arg(path)
            .arg("-");
    })
    .await?;
    if !output.status.success() {
        return Err(AdapterError::input_corrupt("pdftotext cannot read the PDF"));
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    Ok((letters >= MIN_TEXT_LETTERS).then_some(text))
}

/// The pages as PNG images.
async fn rasterise(
    path: &Path,
    tools_path: Option<&std::ffi::OsStr>,
) -> Result<Vec<Vec<u8>>, AdapterError> {
    let pdftoppm = required_tool("pdftoppm", tools_path)?;
    let dir = tempfile::tempdir()
        .map_err(|_| AdapterError::unavailable("cannot create a temporary directory"))?;
    let prefix = dir.path().join("page");
    let output = run(&pdftoppm, |command| {
        command
            .args(["-png", "-r", "150", "-l"])
            .arg(MAX_PAGES.to_string())
            .arg(path)
            .arg(&prefix);
    })
    .await?;
    if !output.status.success() {
        return Err(AdapterError::input_corrupt(
            "pdftoppm cannot render the PDF",
        ));
    }
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .map_err(|_| AdapterError::transient("cannot read rendered pages"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    names.sort();
    let mut pages = Vec::with_capacity(names.len());
    for name in names {
        pages.push(
            std::fs::read(name)
                .map_err(|_| AdapterError::transient("cannot read rendered pages"))?,
        );
    }
    Ok(pages)
}

/// Runs a poppler tool with a timeout; the child is killed if we stop waiting.
#[expect(
    clippy::disallowed_methods,
    reason = "the one door for poppler-utils, the worker's only child processes"
)]
async fn run(
    program: &Path,
    configure: impl FnOnce(&mut tokio::process::Command),
) -> Result<std::process::Output, AdapterError> {
    let mut command = tokio::process::Command::new(program);
    command
        .env_clear()
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    configure(&mut command);
    match tokio::time::timeout(TOOL_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(_)) => Err(AdapterError::misconfigured(format!(
            "cannot run {}",
            program.display()
        ))),
        Err(_) => Err(AdapterError::permanent("a PDF tool took longer than 60 s")),
    }
}

fn find_tool(program: &str, tools_path: Option<&std::ffi::OsStr>) -> Option<std::path::PathBuf> {
    let path = match tools_path {
        Some(path) => path.to_owned(),
        None => std::env::var_os("PATH")?,
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
