//! Integration tests: real `pg_dump` against the fixtures cluster, fakes for the
//! failure modes, and the storage archive.

mod cancel;
mod dump;
mod gzip;
mod row_counts;
mod storage;
mod unpack;
