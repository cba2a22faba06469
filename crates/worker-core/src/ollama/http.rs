//! Ollama's HTTP calls, with a timeout and cancellation, and every failure
//! classified by who it belongs to (see [`crate::adapter`]): the server's trouble
//! (unreachable, timing out, 5xx, 429, a reply cut off) is *unavailable*; a
//! refusal of our credentials, a missing model or a base URL that is not Ollama is
//! *misconfigured*; only a 400/413/422 for this input, or a reply that cannot be
//! used, is the submission's.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::adapter::AdapterError;

/// Bodies larger than this are not a model reply we can use.
const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;
/// A model list larger than this is not Ollama's.
const MAX_TAGS_BYTES: usize = 1024 * 1024;

/// `POST {base}/api/generate`; the reply's `response` text.
pub(super) async fn generate(
    client: &reqwest::Client,
    base_url: &str,
    body: &Value,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<String, AdapterError> {
    let model = body["model"].as_str().unwrap_or_default();
    let call = async {
        let response = client
            .post(format!("{base_url}/api/generate"))
            .json(body)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        if status != 200 {
            let reply = response.bytes().await.unwrap_or_default();
            return Err(refusal(status, model, &reply));
        }
        let bytes = response.bytes().await.map_err(classify)?;
        if bytes.len() > MAX_REPLY_BYTES {
            return Err(AdapterError::transient("model reply too large"));
        }
        let reply: Value = serde_json::from_slice(&bytes)
            .map_err(|_| AdapterError::transient("model server sent an unreadable reply"))?;
        reply
            .get("response")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::transient("model reply has no response field"))
    };
    tokio::select! {
        result = tokio::time::timeout(timeout, call) => match result {
            Ok(result) => result,
            Err(_) => Err(AdapterError::unavailable(format!("model did not answer within {} s", timeout.as_secs_f64()))),
        },
        () = cancel.cancelled() => Err(AdapterError::transient("cancelled")),
    }
}

/// `GET {base}/api/tags`: the names of the models the server has.
pub(super) async fn models(
    client: &reqwest::Client,
    base_url: &str,
    timeout: Duration,
) -> Result<Vec<String>, AdapterError> {
    let call = async {
        let response = client
            .get(format!("{base_url}/api/tags"))
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(refusal(status, "", b""));
        }
        let bytes = response.bytes().await.map_err(classify)?;
        let not_ollama = || {
            AdapterError::misconfigured(
                "OLLAMA_BASE_URL answers /api/tags with something that is not Ollama's model list",
            )
        };
        if bytes.len() > MAX_TAGS_BYTES {
            return Err(not_ollama());
        }
        let tags: Value = serde_json::from_slice(&bytes).map_err(|_| not_ollama())?;
        let models = tags
            .get("models")
            .and_then(Value::as_array)
            .ok_or_else(not_ollama)?;
        Ok(models
            .iter()
            .filter_map(|model| model.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect())
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(AdapterError::unavailable(format!(
                "model server did not list its models within {} s",
                timeout.as_secs_f64()
            )))
        })
}

/// A non-200 answer, classified.
fn refusal(status: u16, model: &str, reply: &[u8]) -> AdapterError {
    match status {
        429 | 500..=599 => {
            AdapterError::unavailable(format!("model server answered HTTP {status}"))
        }
        401 | 403 => AdapterError::misconfigured(format!(
            "model server refused our credentials: HTTP {status}; check OLLAMA_BASE_URL and the proxy in front of Ollama"
        )),
        404 if model_not_found(reply) => AdapterError::misconfigured(format!(
            "model {model} is not on the model server; pull it there (ollama pull {model}) or set the AI_*_MODEL variable"
        )),
        404 => AdapterError::misconfigured(
            "model server answered HTTP 404: OLLAMA_BASE_URL does not point at Ollama's API",
        ),
        _ => AdapterError::permanent(format!("model server refused the request: HTTP {status}")),
    }
}

/// Ollama's 404 for a model it lacks: `{"error": "model \"x\" not found, try pulling it first"}`.
fn model_not_found(reply: &[u8]) -> bool {
    serde_json::from_slice::<Value>(reply)
        .ok()
        .and_then(|reply| reply.get("error")?.as_str().map(str::to_owned))
        .is_some_and(|error| error.contains("not found"))
}

fn classify(error: reqwest::Error) -> AdapterError {
    if error.is_timeout() {
        AdapterError::unavailable("model call timed out")
    } else if error.is_connect() {
        AdapterError::unavailable("cannot connect to the model server")
    } else if error.is_body() || error.is_decode() {
        AdapterError::unavailable("model reply was cut off")
    } else {
        AdapterError::unavailable("model call failed")
    }
}
