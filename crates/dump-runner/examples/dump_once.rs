//! One `pg_dump` of `DATABASE_URL` (or `DATABASE_URL_FILE`) into a gzip file, with a
//! hard timeout, the password only in a private pgpass file, and the failure named
//! as a manifest error code:
//! `DATABASE_URL=postgres://backup@db/app cargo run -p dump-runner --example dump_once -- out.sql.gz`
#![expect(clippy::print_stdout, reason = "an example reports on stdout")]

use std::path::{Path, PathBuf};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let output = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .ok_or("usage: dump_once <file.sql.gz>")?,
    );
    let env = dsn::Environment::from_process();
    let Some(resolved) = dsn::resolve(&env, &["DATABASE_URL"])? else {
        return Err("set DATABASE_URL or DATABASE_URL_FILE".into());
    };
    let job = dump_runner::DumpJob {
        program: Path::new("pg_dump"),
        dsn: &resolved.dsn,
        output: &output,
        timeout: Duration::from_secs(300),
        compression: dump_runner::Compression::gzip(6),
        recipients: None,
        cancellation: &dump_runner::Cancellation::new(),
        progress_interval: dump_runner::PROGRESS_INTERVAL,
    };
    match dump_runner::dump(&job) {
        Ok(dumped) => println!(
            "{}: {} bytes, sha256 {}",
            output.display(),
            dumped.written.bytes,
            dumped.written.sha256
        ),
        Err(error) => println!("failed ({}): {error}", error.code()),
    }
    Ok(())
}
