//! Integration tests of `worker-core` against a real PostgreSQL (the fixtures cluster).

mod harness;
mod ollama;
mod pipeline;
mod schema;
mod worker;
