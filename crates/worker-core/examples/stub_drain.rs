//! Drains the job queue of `DATABASE_URL` (or `DATABASE_URL_FILE`) with the
//! deterministic stub backend: the whole worker (leases, heartbeats, fenced
//! completion) without a model server, e.g. against a database seeded for a demo:
//! `DATABASE_URL=postgres://gustav_worker@localhost/app cargo run -p worker-core --example stub_drain`
#![expect(clippy::print_stdout, reason = "an example reports on stdout")]

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, Pool};
use worker_core::metrics::Processed;
use worker_core::pipeline::Pipeline;
use worker_core::stub::StubAdapter;
use worker_core::worker::{self, Mode, Observers, WorkerConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = dsn::Environment::from_process();
    let Some(resolved) = dsn::resolve(&env, &["DATABASE_URL"])? else {
        return Err("set DATABASE_URL or DATABASE_URL_FILE".into());
    };
    let database = resolved.dsn.to_tokio_postgres()?;
    let tls = pg_tls::MakeTls::for_dsn(&resolved.dsn)?;
    let pool = Pool::builder(Manager::new(database.clone(), tls.clone()))
        .max_size(6)
        .build()?;
    let stub = Arc::new(StubAdapter {
        delay: Duration::ZERO,
        failures: vec![],
        call_log: None,
    });
    let queue = lease::Queue::new(pool, &worker_core::schema::queue_config());
    let pipeline = Arc::new(Pipeline::new(
        queue,
        stub.clone(),
        stub,
        3,
        Duration::from_secs(10),
    ));
    let settings = WorkerConfig {
        concurrency: 4,
        lease: Duration::from_secs(45),
        poll_interval: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(30),
    };
    let listener = lease::Listener::spawn(database, tls, worker_core::schema::JOB_CHANNEL)?;
    let observers = Observers::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    worker::run(
        pipeline,
        settings,
        listener,
        observers.clone(),
        Mode::Drain,
        shutdown,
    )
    .await?;
    for status in Processed::ALL {
        println!(
            "{}: {}",
            status.as_str(),
            observers.metrics.processed_count(status)
        );
    }
    Ok(())
}
