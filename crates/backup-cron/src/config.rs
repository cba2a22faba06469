//! From flags and environment to a validated configuration, before anything is
//! created. Every error names the variable (never a secret's value) and maps to
//! exit status 2.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dsn::{Dsn, Environment, Resolved, Secret, setting, whole_number};
use manifest::BackupDir;

use crate::Error;
use crate::cli::{
    BackupSettings, Common, IdentitySettings, OffsiteSettings, RestoreSettings, RetentionSettings,
    Scheduling,
};
use crate::logging::LogFormat;
use crate::restore::RestoreConfig;
use crate::retention::RetentionPolicy;
use crate::schedule::Schedule;

/// The platform database's variables, in precedence order.
pub const DATABASE_URLS: [&str; 3] = [
    "SESSION_DATABASE_URL",
    "BACKUP_DATABASE_URL",
    "DATABASE_URL",
];

/// Everything one backup run needs.
pub struct RunConfig {
    /// `BACKUP_DIR` (exists and is writable).
    pub backup_dir: BackupDir,
    /// The platform database, with the variable it came from.
    pub platform: Resolved,
    /// `KC_DB_URL`, credentials filled in from `KC_DB_USERNAME`/`KC_DB_PASSWORD`.
    pub keycloak: Option<Dsn>,
    /// `SUPABASE_STORAGE_ROOT`; checked when the step runs, not here, so that a
    /// missing directory is recorded in the manifest.
    pub storage_root: Option<PathBuf>,
    /// `RETENTION_DAYS` and `BACKUP_KEEP_MIN`.
    pub retention: RetentionPolicy,
    /// `BACKUP_PG_TIMEOUT_SECONDS`: the wall-clock limit of each `pg_dump`.
    pub pg_timeout: Duration,
    /// `BACKUP_COMPRESSION_LEVEL`, 1–9.
    pub compression: dump_runner::Compression,
    /// `PG_DUMP`: the program.
    pub pg_dump: PathBuf,
    /// `BACKUP_DRILL=true`: how to drill each new backup.
    pub drill: Option<RestoreConfig>,
    /// `BACKUP_METRICS_FILE`.
    pub metrics_file: Option<PathBuf>,
    /// `BACKUP_AGE_RECIPIENTS` or `BACKUP_AGE_RECIPIENTS_FILE`.
    pub recipients: Option<encryption::Recipients>,
    /// `BACKUP_S3_URL` and the rest: off-site copies.
    pub offsite: Option<crate::copies::OffsiteConfig>,
}

/// Validates everything ([`resolve`]), then creates `BACKUP_DIR` if missing (the
/// only thing a valid configuration creates) and checks that it is writable.
pub fn run_config(
    common: &Common,
    settings: &BackupSettings,
    restore: &RestoreSettings,
    offsite: &OffsiteSettings,
    env: &Environment,
) -> Result<RunConfig, Error> {
    let config = resolve(common, settings, restore, offsite, env)?;
    prepare_backup_dir(config.backup_dir.root())?;
    Ok(config)
}

/// The configuration of a run from settings and environment, touching nothing
/// (`*_FILE` secrets are read, nothing is written).
pub fn resolve(
    common: &Common,
    settings: &BackupSettings,
    restore: &RestoreSettings,
    offsite: &OffsiteSettings,
    env: &Environment,
) -> Result<RunConfig, Error> {
    let backup_dir = required_path(common.backup_dir.as_deref(), "BACKUP_DIR")?;
    let platform = dsn::resolve(env, &DATABASE_URLS)?.ok_or_else(|| {
        Error::Config(format!(
            "no database configured: set one of {}",
            DATABASE_URLS.join(", ")
        ))
    })?;
    let keycloak = match dsn::resolve(env, &["KC_DB_URL"])? {
        Some(resolved) => {
            let mut dsn = resolved.dsn;
            let password = env.secret("KC_DB_PASSWORD")?;
            if password.as_ref().is_some_and(Secret::has_control_character) {
                return Err(Error::Config(
                    "KC_DB_PASSWORD holds a control character (a second line?)".to_owned(),
                ));
            }
            dsn.fill_credentials(
                setting(env.var("KC_DB_USERNAME")?, "KC_DB_USERNAME")?,
                password,
            );
            Some(dsn)
        }
        None => None,
    };
    let retention = retention(&settings.retention)?;
    let pg_timeout_seconds = whole_number(
        settings.pg_timeout_seconds.as_deref(),
        "BACKUP_PG_TIMEOUT_SECONDS",
        300u64,
        1..=604_800,
    )?;
    let compression =
        match setting(settings.compression.as_deref(), "BACKUP_COMPRESSION")?.unwrap_or("gzip") {
            "gzip" => dump_runner::Compression::gzip(whole_number(
                settings.compression_level.as_deref(),
                "BACKUP_COMPRESSION_LEVEL",
                6,
                1..=9,
            )?),
            "zstd" => dump_runner::Compression::zstd(whole_number(
                settings.compression_level.as_deref(),
                "BACKUP_COMPRESSION_LEVEL",
                3,
                1..=19,
            )?),
            _ => {
                return Err(Error::Config(
                    "BACKUP_COMPRESSION: expected gzip or zstd".to_owned(),
                ));
            }
        };
    let pg_dump =
        PathBuf::from(setting(settings.pg_dump.as_deref(), "PG_DUMP")?.unwrap_or("pg_dump"));
    let storage_root =
        setting(settings.storage_root.as_deref(), "SUPABASE_STORAGE_ROOT")?.map(PathBuf::from);
    let drill = match setting(settings.drill.as_deref(), "BACKUP_DRILL")? {
        None | Some("false") => None,
        Some("true") => {
            let config = restore_config(restore, env)?;
            if config.target.is_none() {
                return Err(Error::Config(
                    "BACKUP_DRILL=true needs RESTORE_DATABASE_URL (the server to drill on)"
                        .to_owned(),
                ));
            }
            Some(config)
        }
        Some(_) => {
            return Err(Error::Config(
                "BACKUP_DRILL: expected true or false".to_owned(),
            ));
        }
    };
    let recipients = recipients(settings)?;
    let offsite = offsite_config(offsite, retention, env)?;
    Ok(RunConfig {
        backup_dir: BackupDir::new(&backup_dir),
        platform,
        keycloak,
        storage_root,
        retention,
        pg_timeout: Duration::from_secs(pg_timeout_seconds),
        compression,
        pg_dump,
        drill,
        metrics_file: metrics_file(common)?,
        recipients,
        offsite,
    })
}

/// `RETENTION_DAYS` and `BACKUP_KEEP_MIN`.
pub fn retention(settings: &RetentionSettings) -> Result<RetentionPolicy, Error> {
    Ok(RetentionPolicy {
        retention_days: whole_number(
            settings.retention_days.as_deref(),
            "RETENTION_DAYS",
            7,
            0..=36_500,
        )?,
        keep_min: whole_number(
            settings.keep_min.as_deref(),
            "BACKUP_KEEP_MIN",
            1,
            0..=100_000,
        )?,
    })
}

/// Off-site copies: `None` without `BACKUP_S3_URL`. With it, the credentials are
/// required and every setting is checked now (nothing is sent yet).
pub fn offsite_config(
    settings: &OffsiteSettings,
    local: RetentionPolicy,
    env: &Environment,
) -> Result<Option<crate::copies::OffsiteConfig>, Error> {
    let Some(url) = setting(settings.s3_url.as_deref(), "BACKUP_S3_URL")? else {
        return Ok(None);
    };
    let location: offsite::Location = url
        .parse()
        .map_err(|error: offsite::InvalidLocation| Error::Config(error.to_string()))?;
    let required = |name: &str| -> Result<dsn::Secret, Error> {
        env.secret(name)?.ok_or_else(|| {
            Error::Config(format!(
                "BACKUP_S3_URL is set, so {name} (or {name}_FILE) is required"
            ))
        })
    };
    let credentials = offsite::Credentials {
        access_key_id: required("AWS_ACCESS_KEY_ID")?,
        secret_access_key: required("AWS_SECRET_ACCESS_KEY")?,
        session_token: env.secret("AWS_SESSION_TOKEN")?,
    };
    let timeout = Duration::from_secs(whole_number(
        settings.s3_timeout_seconds.as_deref(),
        "BACKUP_S3_TIMEOUT_SECONDS",
        900u64,
        1..=604_800,
    )?);
    let retention = RetentionPolicy {
        retention_days: whole_number(
            settings.s3_retention_days.as_deref(),
            "BACKUP_S3_RETENTION_DAYS",
            local.retention_days,
            0..=36_500,
        )?,
        keep_min: local.keep_min,
    };
    let remote_settings = offsite::Settings {
        location,
        endpoint: setting(env.var("AWS_ENDPOINT_URL")?, "AWS_ENDPOINT_URL")?.map(str::to_owned),
        region: setting(env.var("AWS_REGION")?, "AWS_REGION")?
            .unwrap_or("us-east-1")
            .to_owned(),
        credentials,
    };
    let remote = offsite::Remote::new(&remote_settings, timeout)
        .map_err(|error| Error::Config(error.to_string()))?;
    Ok(Some(crate::copies::OffsiteConfig {
        remote,
        timeout,
        retention,
    }))
}

/// `BACKUP_AGE_RECIPIENTS` or `BACKUP_AGE_RECIPIENTS_FILE` (not both: which one
/// would win is a guess an operator should not have to make).
fn recipients(settings: &BackupSettings) -> Result<Option<encryption::Recipients>, Error> {
    let config_error = |error: encryption::Error| Error::Config(error.to_string());
    match (
        setting(settings.age_recipients.as_deref(), "BACKUP_AGE_RECIPIENTS")?,
        setting(
            settings.age_recipients_file.as_deref(),
            "BACKUP_AGE_RECIPIENTS_FILE",
        )?,
    ) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Error::Config(
            "BACKUP_AGE_RECIPIENTS and BACKUP_AGE_RECIPIENTS_FILE are both set; set one".to_owned(),
        )),
        (Some(keys), None) => encryption::Recipients::parse(keys, "BACKUP_AGE_RECIPIENTS", false)
            .map(Some)
            .map_err(config_error),
        (None, Some(path)) => {
            encryption::Recipients::from_file(Path::new(path), "BACKUP_AGE_RECIPIENTS_FILE")
                .map(Some)
                .map_err(config_error)
        }
    }
}

/// `BACKUP_AGE_IDENTITY_FILE`, read now so that a bad key is a configuration
/// error before anything runs.
pub fn identities(settings: &IdentitySettings) -> Result<Option<encryption::Identities>, Error> {
    setting(
        settings.age_identity_file.as_deref(),
        "BACKUP_AGE_IDENTITY_FILE",
    )?
    .map(|path| {
        encryption::Identities::from_file(Path::new(path), "BACKUP_AGE_IDENTITY_FILE")
            .map_err(|error| Error::Config(error.to_string()))
    })
    .transpose()
}

/// `BACKUP_METRICS_FILE`.
pub fn metrics_file(common: &Common) -> Result<Option<PathBuf>, Error> {
    Ok(setting(common.metrics_file.as_deref(), "BACKUP_METRICS_FILE")?.map(PathBuf::from))
}

/// `RESTORE_DATABASE_URL` (optional here: storage restores need none), `PSQL`,
/// `BACKUP_RESTORE_TIMEOUT_SECONDS`, `BACKUP_AGE_IDENTITY_FILE`.
pub fn restore_config(
    settings: &RestoreSettings,
    env: &Environment,
) -> Result<RestoreConfig, Error> {
    let target = dsn::resolve(env, &["RESTORE_DATABASE_URL"])?.map(|resolved| resolved.dsn);
    let timeout = whole_number(
        settings.restore_timeout_seconds.as_deref(),
        "BACKUP_RESTORE_TIMEOUT_SECONDS",
        3600u64,
        1..=604_800,
    )?;
    Ok(RestoreConfig {
        target,
        psql: PathBuf::from(setting(settings.psql.as_deref(), "PSQL")?.unwrap_or("psql")),
        timeout: Duration::from_secs(timeout),
        identities: identities(&settings.identity)?,
    })
}

/// `BACKUP_DIR` for `verify` and `status`, which only read: it must exist.
pub fn existing_backup_dir(common: &Common) -> Result<PathBuf, Error> {
    let dir = required_path(common.backup_dir.as_deref(), "BACKUP_DIR")?;
    if !dir.is_dir() {
        return Err(Error::Config(format!(
            "BACKUP_DIR: {} is not a directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// `--artifact`.
pub fn artifact_name(text: &str) -> Result<manifest::ArtifactName, Error> {
    match text {
        "supabase_db" => Ok(manifest::ArtifactName::SupabaseDb),
        "keycloak_db" => Ok(manifest::ArtifactName::KeycloakDb),
        "storage" => Ok(manifest::ArtifactName::Storage),
        other => Err(Error::Config(format!(
            "--artifact: expected supabase_db, keycloak_db or storage, got {other:?}"
        ))),
    }
}

/// The backup to restore: `dir` as given, else the newest whose manifest is ok.
pub fn restore_source(dir: Option<PathBuf>, common: &Common) -> Result<PathBuf, Error> {
    if let Some(dir) = dir {
        return Ok(dir);
    }
    let root = existing_backup_dir(common)?;
    let newest = BackupDir::new(&root).newest_ok()?.ok_or_else(|| {
        Error::Config(format!(
            "no backup with an ok manifest in {}",
            root.display()
        ))
    })?;
    Ok(root.join(newest.name))
}

/// `BACKUP_SCHEDULE`.
pub fn schedule(settings: &Scheduling) -> Result<Schedule, Error> {
    let expression =
        setting(settings.schedule.as_deref(), "BACKUP_SCHEDULE")?.unwrap_or("0 2 * * *");
    let schedule = Schedule::parse(expression)
        .map_err(|error| Error::Config(format!("BACKUP_SCHEDULE: {error}")))?;
    if schedule.next_after(manifest::UtcTime::now()).is_none() {
        return Err(Error::Config(format!(
            "BACKUP_SCHEDULE: the expression never matches (within {} years)",
            crate::schedule::SEARCH_YEARS
        )));
    }
    Ok(schedule)
}

/// `LOG_FORMAT`.
pub fn log_format(common: &Common) -> Result<LogFormat, Error> {
    common
        .log_format
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|error: service_log::InvalidLogFormat| Error::Config(error.to_string()))
}

/// `26h`, `90m`, `2d`, `3600s`, `1d12h`, or plain seconds.
pub fn duration(name: &str, text: &str) -> Result<Duration, Error> {
    let invalid = || {
        Error::Config(format!(
            "{name}: expected a duration like 26h, 90m, 2d or 3600s, got {text:?}"
        ))
    };
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let unit = match character {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let value: u64 = digits.parse().map_err(|_| invalid())?;
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

fn required_path(value: Option<&str>, name: &str) -> Result<PathBuf, Error> {
    setting(value, name)?
        .map(PathBuf::from)
        .ok_or_else(|| Error::Config(format!("{name} is required")))
}

/// Creates `BACKUP_DIR` if missing and checks that we may write into it.
fn prepare_backup_dir(dir: &Path) -> Result<(), Error> {
    let unwritable =
        |reason: String| Error::Config(format!("BACKUP_DIR: {} {reason}", dir.display()));
    if !dir.exists() {
        manifest::private::create_dir_all(dir)
            .map_err(|error| unwritable(format!("cannot be created: {error}")))?;
    }
    if !dir.is_dir() {
        return Err(unwritable("is not a directory".to_owned()));
    }
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| unwritable("contains a NUL byte".to_owned()))?;
    // SAFETY: `path` is a valid C string; access only reads it.
    let writable = unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    if !writable {
        return Err(unwritable(format!(
            "is not writable: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
