//! End-to-end tests of the `backup-cron` binary, run as a process against the
//! fixtures cluster with the real `pg_dump` (and fakes for its failure modes).

mod config;
mod encryption;
mod inspect;
mod offsite;
mod once;
mod restore;
mod signals;
mod support;
