//! One `POST /api/generate` with a timeout and cancellation, errors classified.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::adapter::AdapterError;

/// Bodies larger than this are not a model reply we can use.
const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

pub(super) async fn generate(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<String, AdapterError> {
    let call = async {
        let response = client.post(url).json(body).send().await.map_err(classify)?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(AdapterError::transient(format!(
                "model server answered HTTP {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(AdapterError::permanent(format!(
                "model server refused the request: HTTP {}",
                status.as_u16()
            )));
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
            Err(_) => Err(AdapterError::transient(format!("model did not answer within {} s", timeout.as_secs_f64()))),
        },
        () = cancel.cancelled() => Err(AdapterError::transient("cancelled")),
    }
}

fn classify(error: reqwest::Error) -> AdapterError {
    if error.is_timeout() {
        AdapterError::transient("model call timed out")
    } else if error.is_connect() {
        AdapterError::transient("cannot connect to the model server")
    } else if error.is_body() || error.is_decode() {
        AdapterError::transient("model reply was cut off")
    } else {
        AdapterError::transient("model call failed")
    }
}
