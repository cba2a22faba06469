//! Integration tests of `worker-core` against a real PostgreSQL (the fixtures cluster).

mod schema;
