//! Benchmark helper for `cargo xtask bench`: drains a pre-filled job table with
//! no-op jobs through `lease` alone and prints jobs per second.
//!
//! Usage: `noop_drain <slots>` with the DSN in `BENCH_DATABASE_URL` (key=value form).
//! The loop is the worker's: lease as many jobs as there are free slots in one
//! statement, complete each through the fence.
#![expect(
    clippy::print_stdout,
    reason = "the helper reports its measurement on stdout"
)]

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // `slots` workers, each holding one job at a time: the same concurrency as a
    // worker with that many slots.
    let tasks: Vec<_> = (0..slots)
        .map(|_| {
            let (queue, done) = (queue.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                loop {
                    let jobs = queue
                        .lease(1, Duration::from_secs(60), None)
                        .await
                        .expect("lease");
                    let Some(job) = jobs.into_iter().next() else {
                        return;
                    };
                    let mut client = queue.pool().get().await.expect("a connection");
                    let fence = queue
                        .fence(&mut client, &job)
                        .await
                        .expect("fence")
                        .expect("held");
                    fence.complete().await.expect("complete");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a leaser");
    }
    let seconds = started.elapsed().as_secs_f64();
    let jobs = done.load(Ordering::Relaxed);
    println!("{jobs} {seconds:.3}");
}
