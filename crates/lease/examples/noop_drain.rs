//! Benchmark helper for `cargo xtask bench`: drains a pre-filled job table with
//! no-op jobs through `lease` alone and prints jobs per second.
//!
//! Usage: `noop_drain <slots>` with the DSN in `BENCH_DATABASE_URL` (key=value form).
//! The loop is the worker's, batched: lease as many jobs as there are free slots in
//! one statement, ack them all in one statement (`Queue::complete_many`) while the
//! next batch is leased, on a second connection.
#![expect(
    clippy::print_stdout,
    reason = "the helper reports its measurement on stdout"
)]

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, Pool};
use lease::{Queue, QueueConfig};
use tokio_postgres::NoTls;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let slots: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("usage: noop_drain <slots>");
    let dsn = std::env::var("BENCH_DATABASE_URL").expect("BENCH_DATABASE_URL");
    let config = tokio_postgres::Config::from_str(&dsn).expect("a valid DSN");
    let pool = Pool::builder(Manager::new(config, NoTls))
        .max_size(slots + 1)
        .build()
        .expect("a pool");
    let queue = Queue::new(
        pool,
        &QueueConfig::new("public.learning_submission_jobs", "submission_id").expect("names"),
    );
    let mut done = 0u64;
    let started = Instant::now();
    // The worker's loop with no-op jobs: lease every free slot in one statement,
    // and ack the whole batch in one statement while the next batch is leased.
    let mut acking: Option<tokio::task::JoinHandle<usize>> = None;
    loop {
        let jobs = queue
            .lease(slots, Duration::from_secs(60), None)
            .await
            .expect("lease");
        if let Some(acked) = acking.take() {
            done += acked.await.expect("ack task") as u64;
        }
        if jobs.is_empty() {
            break;
        }
        let queue = queue.clone();
        acking = Some(tokio::spawn(async move {
            let completed = queue.complete_many(&jobs).await.expect("complete");
            assert_eq!(
                completed.len(),
                jobs.len(),
                "no lease is lost in this benchmark"
            );
            completed.len()
        }));
    }
    let seconds = started.elapsed().as_secs_f64();
    let jobs = done;
    println!("{jobs} {seconds:.3}");
}
