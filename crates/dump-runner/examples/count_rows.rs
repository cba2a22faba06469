//! Counts the rows of a plain-format dump the way a backup does, and times it.
//!
//! `cargo run --release -p dump-runner --example count_rows -- dump.sql` prints each
//! table's rows, then the seconds the counting alone took (the file is read into
//! memory first), for `cargo xtask bench`.
#![expect(clippy::print_stdout, reason = "the example reports on stdout")]

use std::time::Instant;

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: count_rows <plain dump .sql>");
    let sql = std::fs::read(path)?;
    let started = Instant::now();
    let mut counter = dump_runner::CopyCounter::new();
    // The chunk size of the pump that feeds it in a backup.
    for chunk in sql.chunks(256 * 1024) {
        counter.feed(chunk);
    }
    let counts = counter.finish();
    let seconds = started.elapsed().as_secs_f64();
    for (table, rows) in &counts {
        println!("{table} {rows}");
    }
    println!("seconds {seconds:.6}");
    Ok(())
}
