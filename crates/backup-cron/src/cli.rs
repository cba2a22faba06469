//! The command line. Every setting is a flag and an environment variable, except
//! secrets: those are read from the environment (or `NAME_FILE`) only, so that no
//! password can ever appear in a process list.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Environment-only variables, listed in `--help`.
const RESTORE_HELP: &str = "\
Target (environment only, never a flag, so that no password reaches a process list;
also RESTORE_DATABASE_URL_FILE, a file holding the value):
  RESTORE_DATABASE_URL
      restore: the empty database to restore into. drill: the server, and the
      database to connect to while creating and dropping the scratch one.
      The password reaches psql only through a private 0600 pgpass file.

Exit status: 0 restored and checked; 1 failed (stderr names the code, e.g.
restore_target_not_empty, artifact_corrupt, restore_mismatch); 2 configuration error.";

const SECRETS_HELP: &str = "\
Databases (environment only, never flags, so that no password reaches a process list;
each also accepts NAME_FILE, a file holding the value, as with Docker secrets):
  SESSION_DATABASE_URL, BACKUP_DATABASE_URL, DATABASE_URL
      The platform database; the first one set and non-empty wins. postgres:// or
      postgresql:// URL, jdbc:postgresql:// URL, or libpq key=value string.
      Dumped as supabase_db.sql.gz. The role needs pg_read_all_data and BYPASSRLS.
  KC_DB_URL, KC_DB_USERNAME, KC_DB_PASSWORD
      Optional Keycloak database, dumped as keycloak_db.sql.gz. The username and
      password fill in what the URL lacks.

Off-site copies, with BACKUP_S3_URL: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN (environment only, also NAME_FILE), AWS_ENDPOINT_URL, AWS_REGION;
see `backup-cron sync --help`.

Schedule: BACKUP_SCHEDULE, for `run` only (see `backup-cron run --help`): a cron
expression in UTC, 5 fields or 6 with seconds first, default \"0 2 * * *\".

Logging: RUST_LOG sets the level (default info), e.g. RUST_LOG=debug.

Exit status: 0 ok; 1 backup failed (a manifest with status failed was written) or a
check failed; 2 configuration error (nothing was created); 3 another run holds the lock.";

const OFFSITE_HELP: &str = "\
Off-site copies (with BACKUP_S3_URL; environment only, never flags; the three keys
also as NAME_FILE):
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (optional)
      The object store's credentials. They reach only the request signer: never a
      log, offsite.json, the manifest or a child process.
  AWS_ENDPOINT_URL
      An S3-compatible service (MinIO, Garage, Ceph, ...), addressed path-style;
      http:// only when written so. Unset: AWS.
  AWS_REGION
      Default us-east-1.

Exit status: 0 every upload ok; 1 one failed (offsite.json names the code, e.g.
s3_auth_failed, s3_timeout); 2 configuration error; 3 another run holds the lock.";

/// Scheduled pg_dump backups into gzip, a storage archive and a manifest.json that
/// records what happened without leaking anything.
#[derive(Parser, Debug)]
#[command(
    name = "backup-cron",
    version,
    after_help = SECRETS_HELP,
    disable_help_subcommand = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Same as the `once` command.
    #[arg(long)]
    pub once: bool,
    /// Settings of `--once`.
    #[command(flatten)]
    pub common: Common,
    /// Settings of `--once`.
    #[command(flatten)]
    pub backup: BackupSettings,
    /// Settings of `--once`.
    #[command(flatten)]
    pub restore: RestoreSettings,
    /// Settings of `--once`.
    #[command(flatten)]
    pub offsite: OffsiteSettings,
}

/// The commands; each lists only the settings that apply to it.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run one backup now.
    ///
    /// Exit 0 ok, 1 failed (manifest written, or the off-site copy failed), 2
    /// configuration error, 3 locked. SIGTERM/SIGINT ends pg_dump, records
    /// `interrupted`, exits 1.
    #[command(after_help = SECRETS_HELP)]
    Once {
        /// Where and how.
        #[command(flatten)]
        common: Common,
        /// What to back up.
        #[command(flatten)]
        backup: BackupSettings,
        /// For BACKUP_DRILL.
        #[command(flatten)]
        restore: RestoreSettings,
        /// Off-site copies.
        #[command(flatten)]
        offsite: OffsiteSettings,
    },
    /// Stay in the foreground and run a backup at each tick of BACKUP_SCHEDULE.
    ///
    /// Runs never overlap; a failed run does not stop the scheduler. SIGTERM/SIGINT
    /// stops scheduling, ends a running pg_dump, records `interrupted`, exits 0.
    /// The start is recorded in BACKUP_DIR, so that `status` is healthy while the
    /// first scheduled run has not come yet.
    #[command(after_help = SECRETS_HELP)]
    Run {
        /// Where and how.
        #[command(flatten)]
        common: Common,
        /// What to back up.
        #[command(flatten)]
        backup: BackupSettings,
        /// When.
        #[command(flatten)]
        scheduling: Scheduling,
        /// For BACKUP_DRILL.
        #[command(flatten)]
        restore: RestoreSettings,
        /// Off-site copies.
        #[command(flatten)]
        offsite: OffsiteSettings,
    },
    /// Restore a backup: a database artifact into RESTORE_DATABASE_URL, or the
    /// storage archive into --into.
    ///
    /// The artifact is verified (size, sha256) before anything is written. A database
    /// target must be empty; the dump is applied in one transaction (all or nothing)
    /// and every table's row count is then compared with the manifest's. A storage
    /// target must be absent or empty, and every archive entry is checked first
    /// (absolute paths, `..`, entries below symlinks, hard links and devices are
    /// refused). Exit 0 restored and checked, 1 failed (one line on stderr with the
    /// code), 2 configuration error.
    #[command(after_help = RESTORE_HELP)]
    Restore {
        /// The backup directory (default: the newest whose manifest is ok).
        dir: Option<PathBuf>,
        /// Which artifact: supabase_db, keycloak_db or storage.
        #[arg(long, value_name = "NAME", default_value = "supabase_db")]
        artifact: String,
        /// For --artifact storage: the directory to unpack into.
        #[arg(long, value_name = "PATH")]
        into: Option<PathBuf>,
        /// Where and how.
        #[command(flatten)]
        common: Common,
        /// How to reach the target.
        #[command(flatten)]
        restore: RestoreSettings,
    },
    /// Prove a backup restores: into a scratch database, rows compared, dropped.
    ///
    /// Creates `backup_drill_…` on the server of RESTORE_DATABASE_URL (its role needs
    /// CREATEDB), restores the platform dump into it, compares every table's row
    /// count with the manifest's, and drops it again, also on failure and SIGTERM;
    /// scratch databases of a killed drill are dropped first. Writes drill.json into
    /// the backup directory. Exit 0 ok, 1 failed, 2 configuration error.
    #[command(after_help = RESTORE_HELP)]
    Drill {
        /// The backup directory (default: the newest whose manifest is ok).
        dir: Option<PathBuf>,
        /// Where and how.
        #[command(flatten)]
        common: Common,
        /// How to reach the server.
        #[command(flatten)]
        restore: RestoreSettings,
    },
    /// Check a backup directory: manifest, sizes, sha256, gzip or zstd to the end.
    ///
    /// Encrypted artifacts are decrypted to the end with BACKUP_AGE_IDENTITY_FILE;
    /// without it, their age header is checked. Prints one line per artifact.
    /// Exit 0 when everything is good, 1 otherwise.
    ///
    /// With --remote, the remote backup STAMP (default: the newest remote backup with
    /// a manifest) is downloaded into a temporary directory in BACKUP_DIR and
    /// checked the same way against its remote manifest.
    #[command(after_help = OFFSITE_HELP)]
    Verify {
        /// The backup directory (default: the newest in BACKUP_DIR); with --remote, a stamp.
        dir: Option<PathBuf>,
        /// Check the off-site copy instead of the local one.
        #[arg(long)]
        remote: bool,
        /// Where and how.
        #[command(flatten)]
        common: Common,
        /// For encrypted backups.
        #[command(flatten)]
        identity: IdentitySettings,
        /// For --remote.
        #[command(flatten)]
        offsite: OffsiteSettings,
    },
    /// Copy off-site every local ok backup within RETENTION_DAYS whose copy is
    /// missing or failed, oldest first.
    ///
    /// What each run does after its own backup, alone: for catching up by hand after
    /// an outage of the object store. Takes the run lock. Writes offsite.json into
    /// each backup it tries.
    #[command(after_help = OFFSITE_HELP)]
    Sync {
        /// Where and how.
        #[command(flatten)]
        common: Common,
        /// Which backups count.
        #[command(flatten)]
        retention: RetentionSettings,
        /// Where to.
        #[command(flatten)]
        offsite: OffsiteSettings,
    },
    /// Print the newest backup's status and the age of the newest successful one.
    ///
    /// For container health checks: exit 0 when the newest successful backup is
    /// younger than --max-age, or, before any run was attempted, when `run` started
    /// less than --max-age ago; 1 otherwise (also at once after a failed first run).
    ///
    /// With BACKUP_S3_URL set, a backup counts as successful only when its
    /// offsite.json is ok too: the check turns red when off-site copies stop.
    Status {
        /// Maximum age of the newest successful backup, e.g. 26h, 90m, 2d, 3600s.
        #[arg(long, value_name = "DURATION", default_value = "26h")]
        max_age: String,
        /// Where and how.
        #[command(flatten)]
        common: Common,
        /// Whether off-site copies are on.
        #[command(flatten)]
        offsite: OffsiteSettings,
    },
}

/// Settings every command has: flag, else environment variable, else default.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Where backup directories are created (created if missing). Required.
    #[arg(long, value_name = "DIR", env = "BACKUP_DIR", hide_env_values = true)]
    pub backup_dir: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(
        long,
        value_name = "FORMAT",
        env = "LOG_FORMAT",
        hide_env_values = true
    )]
    pub log_format: Option<String>,
    /// Prometheus textfile rewritten after every run and drill [default: off]
    #[arg(
        long,
        value_name = "PATH",
        env = "BACKUP_METRICS_FILE",
        hide_env_values = true
    )]
    pub metrics_file: Option<String>,
}

/// What a backup run does: flag, else environment variable, else default.
#[derive(Args, Debug, Clone)]
pub struct BackupSettings {
    /// Optional storage directory, archived as storage_buckets.tar.gz.
    #[arg(
        long,
        value_name = "DIR",
        env = "SUPABASE_STORAGE_ROOT",
        hide_env_values = true
    )]
    pub storage_root: Option<String>,
    /// What to keep.
    #[command(flatten)]
    pub retention: RetentionSettings,
    /// Hard wall-clock limit for each pg_dump, in seconds [default: 300].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "BACKUP_PG_TIMEOUT_SECONDS",
        hide_env_values = true
    )]
    pub pg_timeout_seconds: Option<String>,
    /// gzip or zstd [default: gzip]
    #[arg(
        long,
        value_name = "CODEC",
        env = "BACKUP_COMPRESSION",
        hide_env_values = true
    )]
    pub compression: Option<String>,
    /// gzip 1-9 [default: 6], zstd 1-19 [default: 3].
    #[arg(
        long,
        value_name = "LEVEL",
        env = "BACKUP_COMPRESSION_LEVEL",
        hide_env_values = true
    )]
    pub compression_level: Option<String>,
    /// The pg_dump program [default: pg_dump on PATH].
    #[arg(long, value_name = "PATH", env = "PG_DUMP", hide_env_values = true)]
    pub pg_dump: Option<String>,
    /// age recipients (age1…, ssh-ed25519, ssh-rsa), whitespace-separated: encrypt every artifact to them [default: off]
    #[arg(
        long,
        value_name = "KEYS",
        env = "BACKUP_AGE_RECIPIENTS",
        hide_env_values = true
    )]
    pub age_recipients: Option<String>,
    /// A recipients file as `age -R` reads it (one per line, # comments) [default: off]
    #[arg(
        long,
        value_name = "PATH",
        env = "BACKUP_AGE_RECIPIENTS_FILE",
        hide_env_values = true
    )]
    pub age_recipients_file: Option<String>,
    /// Drill each new ok backup (needs RESTORE_DATABASE_URL); a failed drill exits 1 and skips retention [default: false]
    #[arg(
        long,
        value_name = "BOOL",
        env = "BACKUP_DRILL",
        hide_env_values = true
    )]
    pub drill: Option<String>,
}

/// Which backups to keep: flag, else environment variable, else default.
#[derive(Args, Debug, Clone)]
pub struct RetentionSettings {
    /// Backups older than this many days are deleted after a successful run [default: 7].
    #[arg(
        long,
        value_name = "DAYS",
        env = "RETENTION_DAYS",
        hide_env_values = true
    )]
    pub retention_days: Option<String>,
    /// The newest N successful backups are never deleted [default: 1].
    #[arg(
        long,
        value_name = "N",
        env = "BACKUP_KEEP_MIN",
        hide_env_values = true
    )]
    pub keep_min: Option<String>,
}

/// Off-site copies: flag, else environment variable, else default. The
/// credentials are environment only (see OFFSITE_HELP).
#[derive(Args, Debug, Clone)]
pub struct OffsiteSettings {
    /// Off-site copies to s3://BUCKET[/PREFIX] after each backup [default: off]
    #[arg(
        long,
        value_name = "URL",
        env = "BACKUP_S3_URL",
        hide_env_values = true
    )]
    pub s3_url: Option<String>,
    /// Hard wall-clock limit for uploading one backup, in seconds [default: 900]
    #[arg(
        long,
        value_name = "SECONDS",
        env = "BACKUP_S3_TIMEOUT_SECONDS",
        hide_env_values = true
    )]
    pub s3_timeout_seconds: Option<String>,
    /// Remote backups older than this many days are deleted after a fully successful run [default: RETENTION_DAYS]
    #[arg(
        long,
        value_name = "DAYS",
        env = "BACKUP_S3_RETENTION_DAYS",
        hide_env_values = true
    )]
    pub s3_retention_days: Option<String>,
}

/// How `restore` and `drill` run psql.
#[derive(Args, Debug, Clone)]
pub struct RestoreSettings {
    /// The psql program [default: psql on PATH].
    #[arg(long, value_name = "PATH", env = "PSQL", hide_env_values = true)]
    pub psql: Option<String>,
    /// Hard wall-clock limit for each psql run, in seconds [default: 3600].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "BACKUP_RESTORE_TIMEOUT_SECONDS",
        hide_env_values = true
    )]
    pub restore_timeout_seconds: Option<String>,
    /// For encrypted backups.
    #[command(flatten)]
    pub identity: IdentitySettings,
}

/// How encrypted artifacts are opened.
#[derive(Args, Debug, Clone)]
pub struct IdentitySettings {
    /// age identity file (AGE-SECRET-KEY-1…) to decrypt encrypted artifacts [default: none]
    #[arg(
        long,
        value_name = "PATH",
        env = "BACKUP_AGE_IDENTITY_FILE",
        hide_env_values = true
    )]
    pub age_identity_file: Option<String>,
}

/// When `run` backs up.
#[derive(Args, Debug, Clone)]
pub struct Scheduling {
    /// Cron expression in UTC: 5 fields, or 6 with seconds first [default: "0 2 * * *"].
    #[arg(
        long,
        value_name = "CRON",
        env = "BACKUP_SCHEDULE",
        hide_env_values = true
    )]
    pub schedule: Option<String>,
}
