//! The command line. Settings are flags and environment variables; the database
//! DSN is environment-only (or `NAME_FILE`), so no password reaches a process list.

use clap::{Args, Parser, Subcommand};

const ENVIRONMENT_HELP: &str = "\
Database (environment only, never a flag; each also accepts NAME_FILE, a file holding
the value, as with Docker secrets):
  LEARNING_DATABASE_URL, LEARNING_DB_URL, DATABASE_URL
      The worker's DSN; the first set and non-empty wins. Connect as gustav_worker:
      the worker refuses postgres, service_role, supabase_admin and any superuser or
      BYPASSRLS role unless ALLOW_SERVICE_DSN_FOR_TESTING=true. TLS as with libpq:
      sslmode (disable, prefer [default], require, verify-ca, verify-full) and
      sslrootcert (a PEM file of CA certificates; verify-full without it uses the
      system roots).

Ollama backend (AI_BACKEND=local):
  OLLAMA_BASE_URL     default http://ollama:11434
  AI_VISION_MODEL     default qwen2.5vl:3b (images and PDF pages)
  AI_FEEDBACK_MODEL   default gpt-oss:latest
  AI_TIMEOUT_VISION   seconds per call, default 30
  AI_TIMEOUT_FEEDBACK seconds per call, default 15

Stub backend knobs (AI_BACKEND=stub):
  AI_STUB_DELAY_MS    each adapter call takes this long
  AI_STUB_FAIL        phase:kind:n,... e.g. vision:transient:2 (fails while retry_count < 2)
  AI_STUB_CALL_LOG    file; one line per call: <phase> <submission_id> <job_id>

Logging: RUST_LOG or LOG_LEVEL sets the level (default info); tokio_postgres is capped
at info because its debug output contains statement parameters.

Exit status: 0 ok (also when some submissions ended failed); 1 check failed or fatal
error; 2 configuration error, including a refused privileged role.";

/// Leases submission-analysis jobs from PostgreSQL, runs OCR and AI feedback, and
/// writes each result exactly once.
#[derive(Parser, Debug)]
#[command(name = "learning-worker", version, after_help = ENVIRONMENT_HELP, disable_help_subcommand = true)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// The commands.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Long-running worker (the default).
    Run,
    /// Process jobs until none is visible, then exit 0.
    ///
    /// Jobs waiting for a retry backoff are not waited for.
    Drain,
    /// Check the connection, schema objects and privileges; one line per check.
    Check,
}

/// Settings: flag, else environment variable, else default.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// Jobs processed at once [default: 1], capped at WORKER_CONCURRENCY_CAP.
    #[arg(
        long,
        global = true,
        value_name = "N",
        env = "WORKER_CONCURRENCY",
        hide_env_values = true
    )]
    pub concurrency: Option<String>,
    /// Upper bound for WORKER_CONCURRENCY [default: 4].
    #[arg(
        long,
        global = true,
        value_name = "N",
        env = "WORKER_CONCURRENCY_CAP",
        hide_env_values = true
    )]
    pub concurrency_cap: Option<String>,
    /// Lease length in seconds; heartbeats extend it every third [default: 45].
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        env = "WORKER_LEASE_SECONDS",
        hide_env_values = true
    )]
    pub lease_seconds: Option<String>,
    /// Transient failures retried this many times [default: 3].
    #[arg(
        long,
        global = true,
        value_name = "N",
        env = "WORKER_MAX_RETRIES",
        hide_env_values = true
    )]
    pub max_retries: Option<String>,
    /// Retry delay base: backoff × 2^retry_count + 0–10 % jitter [default: 10].
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        env = "WORKER_BACKOFF_SECONDS",
        hide_env_values = true
    )]
    pub backoff_seconds: Option<String>,
    /// Fallback poll when no notification arrives, in seconds [default: 0.5].
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        env = "WORKER_POLL_INTERVAL",
        hide_env_values = true
    )]
    pub poll_interval: Option<String>,
    /// On SIGTERM, how long in-flight jobs may finish [default: 30].
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        env = "WORKER_SHUTDOWN_GRACE_SECONDS",
        hide_env_values = true
    )]
    pub shutdown_grace_seconds: Option<String>,
    /// Serve /healthz, /readyz and /metrics here, e.g. 127.0.0.1:9464 [default: off].
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        env = "WORKER_HEALTH_ADDR",
        hide_env_values = true
    )]
    pub health_addr: Option<String>,
    /// AI backend: stub or local [default: stub].
    #[arg(
        long,
        global = true,
        value_name = "BACKEND",
        env = "AI_BACKEND",
        hide_env_values = true
    )]
    pub ai_backend: Option<String>,
    /// Directory where storage_key paths of image/file submissions resolve.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "LEARNING_STORAGE_ROOT",
        hide_env_values = true
    )]
    pub storage_root: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        env = "LOG_FORMAT",
        hide_env_values = true
    )]
    pub log_format: Option<String>,
}
