//! PostgreSQL connection strings for services that must never leak a password.
//!
//! The crate turns configuration into a [`Dsn`] and hands it on without the password
//! ever leaving this crate in readable form, except into one place: a private pgpass
//! file ([`PgpassFile`], mode 0600 in a 0700 directory, removed on drop) that a child
//! process such as `pg_dump` reads through `PGPASSFILE`.
//!
//! What it does:
//!
//! - **Parsing** ([`Dsn::parse`]): `postgres://` and `postgresql://` URLs (percent-
//!   encoding, IPv6 hosts in brackets, unix-socket hosts, query parameters),
//!   `jdbc:postgresql://` URLs with credentials as `?user=…&password=…` as PgJDBC
//!   takes them, and libpq `key=value` strings with quoting. Parse errors describe
//!   what is wrong without echoing the input, which may hold a password.
//! - **Precedence and `*_FILE` secrets** ([`resolve`], [`Environment`]): the first of
//!   several variables that is set and non-empty wins, each of them also accepted as
//!   `NAME_FILE` (Docker secrets); setting both `NAME` and `NAME_FILE` is an error.
//!   The result remembers which variable won, by its base name, for logs and manifests.
//! - **Plain settings** ([`setting`], [`whole_number`], [`seconds`]): empty means
//!   unset, white space alone is an error, numbers are range-checked, and no error
//!   shows the value, so both services answer an operator's typo the same way.
//! - **Redaction**: `Debug` and `Display` of [`Dsn`] and [`Secret`] print `***` in
//!   place of a password.
//! - **Handing over** ([`Dsn::libpq_env`], [`Dsn::write_pgpass`]): host, port, user,
//!   database and other libpq parameters as `PG*` environment variables, and the
//!   password only in the pgpass file.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let env = dsn::Environment::from_pairs([
//!     ("BACKUP_DATABASE_URL", "postgres://backup:s3cr%3At@db.internal:5432/app?sslmode=require"),
//! ]);
//! let resolved = dsn::resolve(&env, &["SESSION_DATABASE_URL", "BACKUP_DATABASE_URL", "DATABASE_URL"])?
//!     .expect("one of them is set");
//! assert_eq!(resolved.variable, "BACKUP_DATABASE_URL");
//! // Safe to log: the password is redacted.
//! assert_eq!(resolved.dsn.to_string(), "postgresql://backup:***@db.internal:5432/app?sslmode=require");
//! // What a child process gets: parameters in its environment...
//! assert!(resolved.dsn.libpq_env().contains(&("PGSSLMODE", "require".to_owned())));
//! // ...and the password only in a private file, gone when `pgpass` is dropped.
//! let pgpass = resolved.dsn.write_pgpass()?.expect("the DSN has a password");
//! assert!(pgpass.path().exists());
//! # Ok(())
//! # }
//! ```

mod environment;
mod error;
mod parse;
mod pgpass;
mod secret;
mod setting;
mod ssl_mode;
#[cfg(test)]
mod tests;

pub use environment::{Environment, Resolved, resolve};
pub use error::{Error, ParseError};
pub use pgpass::PgpassFile;
pub use secret::Secret;
pub use setting::{seconds, setting, whole_number};
pub use ssl_mode::SslMode;

/// Parsed connection parameters of one PostgreSQL database.
///
/// `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Secret>,
    dbname: Option<String>,
    parameters: Vec<(Parameter, String)>,
    ignored: Vec<String>,
}

/// The libpq parameters we pass on besides host, port, user and database, with the
/// environment variable libpq reads each from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parameter {
    pub(crate) name: &'static str,
    pub(crate) env: &'static str,
}

pub(crate) const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "sslmode",
        env: "PGSSLMODE",
    },
    Parameter {
        name: "sslrootcert",
        env: "PGSSLROOTCERT",
    },
    Parameter {
        name: "sslcert",
        env: "PGSSLCERT",
    },
    Parameter {
        name: "sslkey",
        env: "PGSSLKEY",
    },
    Parameter {
        name: "sslcrl",
        env: "PGSSLCRL",
    },
    Parameter {
        name: "sslcrldir",
        env: "PGSSLCRLDIR",
    },
    Parameter {
        name: "sslsni",
        env: "PGSSLSNI",
    },
    Parameter {
        name: "ssl_min_protocol_version",
        env: "PGSSLMINPROTOCOLVERSION",
    },
    Parameter {
        name: "ssl_max_protocol_version",
        env: "PGSSLMAXPROTOCOLVERSION",
    },
    Parameter {
        name: "gssencmode",
        env: "PGGSSENCMODE",
    },
    Parameter {
        name: "krbsrvname",
        env: "PGKRBSRVNAME",
    },
    Parameter {
        name: "channel_binding",
        env: "PGCHANNELBINDING",
    },
    Parameter {
        name: "connect_timeout",
        env: "PGCONNECT_TIMEOUT",
    },
    Parameter {
        name: "application_name",
        env: "PGAPPNAME",
    },
    Parameter {
        name: "options",
        env: "PGOPTIONS",
    },
    Parameter {
        name: "target_session_attrs",
        env: "PGTARGETSESSIONATTRS",
    },
    Parameter {
        name: "client_encoding",
        env: "PGCLIENTENCODING",
    },
    Parameter {
        name: "hostaddr",
        env: "PGHOSTADDR",
    },
];

impl Dsn {
    /// Parses a URL (`postgres://`, `postgresql://`, `jdbc:postgresql://`) or a libpq
    /// `key=value` string.
    pub fn parse(text: &str) -> Result<Dsn, ParseError> {
        parse::parse(text)
    }

    /// The host name, IP address or unix-socket directory, if given.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port, if given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The user name, if given.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The database name, if given.
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// The same connection to another database on the same server, with the same
    /// credentials (a restore drill's scratch database).
    pub fn with_dbname(&self, dbname: &str) -> Dsn {
        let mut dsn = self.clone();
        dsn.dbname = Some(dbname.to_owned());
        dsn
    }

    /// Whether a password is set.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Whether the host is a unix-socket directory, over which libpq never uses TLS.
    pub fn is_unix_socket(&self) -> bool {
        self.host
            .as_deref()
            .is_some_and(|host| host.starts_with('/'))
    }

    /// The `sslmode`, or libpq's default `prefer` when the DSN names none.
    pub fn ssl_mode(&self) -> SslMode {
        self.parameter("sslmode")
            .and_then(|value| SslMode::parse(value).ok())
            .unwrap_or(SslMode::Prefer)
    }

    /// The value of a libpq parameter such as `sslrootcert`, if given.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(parameter, _)| parameter.name == name)
            .map(|(_, value)| value.as_str())
    }

    /// JDBC-only parameters that were dropped because libpq has no equivalent
    /// (names only), so the caller can warn about them.
    pub fn ignored_parameters(&self) -> &[String] {
        &self.ignored
    }

    /// Fills in a user and a password where the DSN lacks them (`KC_DB_USERNAME`,
    /// `KC_DB_PASSWORD` next to `KC_DB_URL`). Values already in the DSN win.
    pub fn fill_credentials(&mut self, user: Option<&str>, password: Option<Secret>) {
        if self.user.is_none() {
            self.user = user.filter(|user| !user.is_empty()).map(str::to_owned);
        }
        if self.password.is_none() {
            self.password = password;
        }
    }

    /// The connection parameters as libpq environment variables (`PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGDATABASE`, `PGSSLMODE`, …). Never the password.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        let fields = [
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.map(|port| port.to_string())),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.dbname.clone()),
        ];
        env.extend(
            fields
                .into_iter()
                .filter_map(|(name, value)| Some((name, value?))),
        );
        env.extend(
            self.parameters
                .iter()
                .map(|(parameter, value)| (parameter.env, value.clone())),
        );
        env
    }
}

#[cfg(feature = "tokio-postgres")]
impl Dsn {
    /// Connection settings for a tokio-postgres client, password included (it stays
    /// inside the client's memory).
    ///
    /// `sslmode` sets how much TLS the client insists on (`require`, `verify-ca` and
    /// `verify-full` all insist; what is checked of the certificate is the TLS
    /// connector's business, see the `pg-tls` crate), `sslrootcert` is left to that
    /// connector, and a unix-socket host never uses TLS, as with libpq. Parameters
    /// tokio-postgres has no setting for (`allow`, client certificates, …) are refused
    /// rather than silently dropped.
    pub fn to_tokio_postgres(&self) -> Result<tokio_postgres::Config, ParseError> {
        use tokio_postgres::config::SslMode as ClientSslMode;
        let mut config = tokio_postgres::Config::new();
        config.ssl_mode(match self.ssl_mode() {
            _ if self.is_unix_socket() => ClientSslMode::Disable,
            SslMode::Disable => ClientSslMode::Disable,
            SslMode::Prefer => ClientSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => ClientSslMode::Require,
            SslMode::Allow => {
                return Err(ParseError::UnsupportedSslMode {
                    mode: SslMode::Allow.as_str(),
                });
            }
        });
        if let Some(host) = &self.host {
            if host.starts_with('/') {
                config.host_path(host);
            } else {
                config.host(host);
            }
        }
        if let Some(port) = self.port {
            config.port(port);
        }
        if let Some(user) = &self.user {
            config.user(user);
        }
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        if let Some(dbname) = &self.dbname {
            config.dbname(dbname);
        }
        for (parameter, value) in &self.parameters {
            match parameter.name {
                "application_name" => {
                    config.application_name(value);
                }
                "options" => {
                    config.options(value);
                }
                "connect_timeout" => {
                    let seconds = value
                        .parse()
                        .map_err(|_| ParseError::unsupported("connect_timeout"))?;
                    config.connect_timeout(std::time::Duration::from_secs(seconds));
                }
                "sslmode" | "sslrootcert" => {}
                name => return Err(ParseError::unsupported(name)),
            }
        }
        Ok(config)
    }
}

impl std::fmt::Display for Dsn {
    /// A `postgresql://` URL with the password replaced by `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use parse::encode;
        f.write_str("postgresql://")?;
        if let Some(user) = &self.user {
            f.write_str(&encode(user))?;
        }
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        if self.user.is_some() || self.password.is_some() {
            f.write_str("@")?;
        }
        match &self.host {
            Some(host) if host.contains(':') => write!(f, "[{host}]")?,
            Some(host) => f.write_str(&encode(host))?,
            None => {}
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(dbname) = &self.dbname {
            write!(f, "/{}", encode(dbname))?;
        }
        for (index, (parameter, value)) in self.parameters.iter().enumerate() {
            let separator = if index == 0 { '?' } else { '&' };
            write!(f, "{separator}{}={}", parameter.name, encode(value))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsn")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("dbname", &self.dbname)
            .field(
                "parameters",
                &self
                    .parameters
                    .iter()
                    .map(|(p, v)| (p.name, v))
                    .collect::<Vec<_>>(),
            )
            .field("ignored", &self.ignored)
            .finish()
    }
}
