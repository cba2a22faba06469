//! Running the pipeline and the worker in-process against a test database, as the
//! `gustav_worker` role, with the stub adapters.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fixtures::TestDb;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use worker_core::adapter::{FeedbackAdapter, VisionAdapter};
use worker_core::pipeline::Pipeline;
use worker_core::stub::{StubAdapter, parse_stub_failures};
use worker_core::worker::{self, Mode, Observers, WorkerConfig};

pub(crate) struct Setup {
    pub(crate) lease: Duration,
    pub(crate) concurrency: usize,
    pub(crate) max_retries: i32,
    pub(crate) backoff: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) stub: StubAdapter,
    pub(crate) vision: Option<Arc<dyn VisionAdapter>>,
    pub(crate) feedback: Option<Arc<dyn FeedbackAdapter>>,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        Setup {
            lease: Duration::from_secs(30),
            concurrency: 4,
            max_retries: 3,
            backoff: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(30),
            stub: StubAdapter {
                delay: Duration::ZERO,
                failures: Vec::new(),
                call_log: None,
            },
            vision: None,
            feedback: None,
        }
    }

    pub(crate) fn failures(mut self, spec: &str) -> Setup {
        self.stub.failures = parse_stub_failures(spec).unwrap();
        self
    }

    pub(crate) fn delay(mut self, delay: Duration) -> Setup {
        self.stub.delay = delay;
        self
    }

    pub(crate) fn call_log(mut self, path: PathBuf) -> Setup {
        self.stub.call_log = Some(path);
        self
    }

    pub(crate) fn pipeline(&self, db: &TestDb) -> Arc<Pipeline> {
        self.pipeline_on(db.worker_config())
    }

    /// The pipeline the binary builds: bounded statements, a hardened pool.
    fn pipeline_on(&self, mut database: tokio_postgres::Config) -> Arc<Pipeline> {
        worker_core::connection::harden(&mut database, self.lease);
        let pool = worker_core::connection::pool(database, NoTls, 4, self.lease).unwrap();
        let stub = Arc::new(self.stub.clone());
        Arc::new(Pipeline::new(
            worker_core::connection::queue(pool, self.lease),
            self.vision.clone().unwrap_or_else(|| stub.clone()),
            self.feedback.clone().unwrap_or(stub),
            self.max_retries,
            self.backoff,
        ))
    }

    pub(crate) fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency,
            lease: self.lease,
            poll_interval: self.poll_interval,
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// Runs a worker in drain mode to the end; returns its metrics.
    pub(crate) async fn drain(&self, db: &TestDb) -> Arc<worker_core::metrics::Metrics> {
        let (observers, result) = self.try_drain(db, Observers::default()).await;
        result.unwrap();
        observers.metrics
    }

    /// Runs a worker in drain mode, reporting to `observers`, until it ends.
    pub(crate) async fn try_drain(
        &self,
        db: &TestDb,
        observers: Observers,
    ) -> (Observers, Result<(), worker_core::Error>) {
        let run = worker::run(
            self.pipeline(db),
            self.worker_config(),
            listener(db.worker_config()),
            observers.clone(),
            Mode::Drain,
            CancellationToken::new(),
        );
        let result = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("drain finishes");
        (observers, result)
    }

    /// Starts a long-running worker; cancel the token to stop it.
    pub(crate) fn spawn(&self, db: &TestDb) -> Running {
        self.spawn_on(db.worker_config())
    }

    /// Starts a long-running worker that connects with `database` (e.g. through a
    /// fault proxy).
    pub(crate) fn spawn_on(&self, database: tokio_postgres::Config) -> Running {
        let observers = Observers::default();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(worker::run(
            self.pipeline_on(database.clone()),
            self.worker_config(),
            listener(database),
            observers.clone(),
            Mode::Run,
            shutdown.clone(),
        ));
        Running {
            metrics: observers.metrics,
            readiness: observers.readiness,
            shutdown,
            handle,
        }
    }
}

pub(crate) struct Running {
    pub(crate) metrics: Arc<worker_core::metrics::Metrics>,
    pub(crate) readiness: Arc<worker_core::readiness::Readiness>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) handle: tokio::task::JoinHandle<Result<(), worker_core::Error>>,
}

impl Running {
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(120), self.handle)
            .await
            .expect("worker stops")
            .unwrap()
            .unwrap();
    }
}

/// The worker's LISTEN connection, as the binary opens it (without TLS here).
fn listener(database: tokio_postgres::Config) -> lease::Listener {
    lease::Listener::spawn(database, NoTls, worker_core::schema::JOB_CHANNEL).unwrap()
}
