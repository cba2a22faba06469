//! `WORKER_HEALTH_ADDR`: a tiny HTTP/1.x endpoint for orchestrators.
//!
//! - `GET /healthz`: 200 while the process runs;
//! - `GET /readyz`: 200 when the database answers, the schema checks pass and the
//!   model backend's breaker is closed; else 503 with a reason code and a sentence
//!   (`not ready: db_auth_failed: …`, `backend_unavailable: …`, see
//!   [`crate::database`] and [`crate::readiness`]);
//! - `GET /metrics`: the Prometheus text exposition.
//!
//! Hand-written (request line in, one response out, connection closed): three
//! fixed routes do not justify an HTTP stack in the dependency tree. What a client
//! receives is read in `learning-worker`'s process test by `httparse` (hyper's
//! parser), including requests split across writes, 9 KB of garbage, a POST and a
//! client that closes after the request line; a client that never finishes its
//! headers is dropped after 10 s.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::database::DatabaseProblem;
use crate::worker::Observers;

/// What the endpoints report on.
#[derive(Clone)]
pub struct HealthState {
    /// The worker loop's metrics and readiness.
    pub observers: Observers,
    /// For `/readyz`.
    pub pool: deadpool_postgres::Pool,
}

/// Serves until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: HealthState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &state)).await;
                    });
                }
                Err(error) => tracing::warn!(error = %error, "health endpoint accept failed"),
            },
            () = shutdown.cancelled() => return,
        }
    }
}

async fn answer(mut stream: TcpStream, state: &HealthState) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    // The request line is all we need; stop at the end of the headers or 8 KiB.
    while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 8192 {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") => match ready(state).await {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_owned()),
            Err(reason) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {reason}\n"),
            ),
        },
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            state.observers.metrics.render(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn ready(state: &HealthState) -> Result<(), String> {
    let down = |problem: DatabaseProblem| format!("{}: {}", problem.code(), problem.describe());
    let client = state
        .pool
        .get()
        .await
        .map_err(|error| down(DatabaseProblem::of_pool(&error)))?;
    let checks = crate::schema::check(&client)
        .await
        .map_err(|error| down(DatabaseProblem::of_postgres(&error)))?;
    if let Some(failed) = checks.iter().find(|check| check.blocks_work()) {
        return Err(format!("{}: {}", failed.problem.code(), failed.name));
    }
    match state.observers.readiness.not_ready() {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}
