//! Why the database cannot serve the worker, named the way an operator fixes it.
//!
//! A bare "db error" sends an operator guessing; each [`DatabaseProblem`] has a
//! stable code (for `/readyz` and logs), a sentence, the fix, and whether waiting
//! can cure it. `drain` and `check` give up at once on a problem that waiting
//! cannot cure (a wrong password stays wrong); `run` keeps retrying every problem,
//! because an operator may mend it while the worker waits, and reports it as not
//! ready meanwhile.
//!
//! Classification uses the SQLSTATE the server sent, or the error's source chain
//! (a TLS failure as `pg_tls` names it; anything else means the server is
//! unreachable), never the server's message text.

use pg_tls::HandshakeFailure;
use tokio_postgres::error::SqlState;

/// A database problem the worker cannot work around by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DatabaseProblem {
    /// Wrong password, or a role the server does not let in (28P01, 28000).
    AuthFailed,
    /// The database in the DSN does not exist (3D000).
    DatabaseMissing,
    /// The platform's tables or functions the worker needs are missing, or a column
    /// has another type (42P01, 42883, 3F000).
    SchemaMissing,
    /// The role lacks a privilege the worker needs (42501).
    PermissionDenied,
    /// A warning: every role may call the platform's `SECURITY DEFINER` result
    /// helpers (PostgreSQL's default EXECUTE for PUBLIC, never revoked), so any role
    /// that can connect can write any submission's result.
    HelpersOpenToPublic,
    /// `sslmode` requires TLS and the server does not offer it.
    TlsRefused,
    /// The server's certificate is not signed by a CA the worker trusts (or has
    /// expired).
    TlsUntrusted,
    /// The server's certificate names another host than the DSN.
    TlsWrongHost,
    /// The TLS handshake failed for another reason (versions, ciphers).
    TlsFailed,
    /// No answer: the server is down, restarting, full, or the network is cut.
    Unreachable,
}

impl DatabaseProblem {
    /// Classifies a failed connection or statement.
    pub fn of_postgres(error: &tokio_postgres::Error) -> DatabaseProblem {
        if let Some(code) = error.code() {
            return DatabaseProblem::of_sql_state(code);
        }
        match pg_tls::failure_of(error) {
            Some(HandshakeFailure::Refused) => DatabaseProblem::TlsRefused,
            Some(HandshakeFailure::Untrusted) => DatabaseProblem::TlsUntrusted,
            Some(HandshakeFailure::WrongHost) => DatabaseProblem::TlsWrongHost,
            Some(_) => DatabaseProblem::TlsFailed,
            None => DatabaseProblem::Unreachable,
        }
    }

    /// Classifies a failure to get a connection from the pool.
    pub fn of_pool(error: &deadpool_postgres::PoolError) -> DatabaseProblem {
        match error {
            deadpool_postgres::PoolError::Backend(error) => DatabaseProblem::of_postgres(error),
            _ => DatabaseProblem::Unreachable,
        }
    }

    /// Classifies a queue error.
    pub fn of_queue(error: &lease::Error) -> DatabaseProblem {
        match error {
            lease::Error::Postgres(error) => DatabaseProblem::of_postgres(error),
            lease::Error::Pool(error) => DatabaseProblem::of_pool(error),
            _ => DatabaseProblem::Unreachable,
        }
    }

    fn of_sql_state(code: &SqlState) -> DatabaseProblem {
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            DatabaseProblem::AuthFailed
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            DatabaseProblem::DatabaseMissing
        } else if *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::UNDEFINED_FUNCTION
            || *code == SqlState::INVALID_SCHEMA_NAME
            || *code == SqlState::UNDEFINED_COLUMN
        {
            DatabaseProblem::SchemaMissing
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            DatabaseProblem::PermissionDenied
        } else {
            DatabaseProblem::Unreachable
        }
    }

    /// A stable code for `/readyz`, logs and scripts.
    pub fn code(self) -> &'static str {
        match self {
            DatabaseProblem::AuthFailed => "db_auth_failed",
            DatabaseProblem::DatabaseMissing => "db_not_found",
            DatabaseProblem::SchemaMissing => "db_schema_missing",
            DatabaseProblem::PermissionDenied => "db_permission_denied",
            DatabaseProblem::HelpersOpenToPublic => "db_helpers_open_to_public",
            DatabaseProblem::TlsRefused => "db_tls_refused",
            DatabaseProblem::TlsUntrusted => "db_tls_untrusted",
            DatabaseProblem::TlsWrongHost => "db_tls_wrong_host",
            DatabaseProblem::TlsFailed => "db_tls_failed",
            DatabaseProblem::Unreachable => "db_unreachable",
        }
    }

    /// What is wrong, in a sentence.
    pub fn describe(self) -> &'static str {
        match self {
            DatabaseProblem::AuthFailed => {
                "the database refused the worker's user name or password"
            }
            DatabaseProblem::DatabaseMissing => "the database named in the DSN does not exist",
            DatabaseProblem::SchemaMissing => {
                "the platform's tables or functions the worker needs are missing, or of other types"
            }
            DatabaseProblem::PermissionDenied => "the worker's role lacks a privilege it needs",
            DatabaseProblem::HelpersOpenToPublic => {
                "every role may call the platform's result helpers (EXECUTE for PUBLIC), and so write any submission's result"
            }
            DatabaseProblem::TlsRefused => {
                "the database does not accept TLS, and sslmode requires it"
            }
            DatabaseProblem::TlsUntrusted => {
                "the database's certificate is not signed by a trusted CA, or has expired"
            }
            DatabaseProblem::TlsWrongHost => {
                "the database's certificate is issued for another host name than the DSN's"
            }
            DatabaseProblem::TlsFailed => "the TLS handshake with the database failed",
            DatabaseProblem::Unreachable => "the database does not answer",
        }
    }

    /// How to fix it.
    pub fn fix(self) -> &'static str {
        match self {
            DatabaseProblem::AuthFailed => {
                "check the user and password in LEARNING_DATABASE_URL (or its _FILE); the role needs LOGIN and a password (docs/operations.md, \"Running without Docker\")"
            }
            DatabaseProblem::DatabaseMissing => {
                "check the database name at the end of LEARNING_DATABASE_URL"
            }
            DatabaseProblem::SchemaMissing => {
                "point LEARNING_DATABASE_URL at the platform's database, with all of the platform's migrations applied (docs/reference/platform.md)"
            }
            DatabaseProblem::PermissionDenied => {
                "connect as the platform's gustav_worker role (given LOGIN and a password as the platform's runbook says) or a login role that is a member of it, never a superuser (docs/operations.md, \"The worker's database role\")"
            }
            DatabaseProblem::HelpersOpenToPublic => {
                "a platform owner may apply: revoke execute on function public.learning_worker_update_completed(uuid, text, text, jsonb), public.learning_worker_update_completed(uuid, text, text, json), public.learning_worker_update_failed(uuid, text, text), public.learning_worker_mark_retry(uuid, text, text, timestamptz) from public; (the worker keeps its own grant)"
            }
            DatabaseProblem::TlsRefused => {
                "enable ssl on the server, or lower sslmode in LEARNING_DATABASE_URL if the network is private"
            }
            DatabaseProblem::TlsUntrusted => {
                "point sslrootcert in LEARNING_DATABASE_URL at the CA certificate (PEM) that signed the server's certificate, or renew an expired one"
            }
            DatabaseProblem::TlsWrongHost => {
                "connect by the host name the certificate names (its subjectAltName), or use sslmode=verify-ca"
            }
            DatabaseProblem::TlsFailed => {
                "check the server's ssl settings (TLS 1.2 or newer) and the worker log for the handshake error"
            }
            DatabaseProblem::Unreachable => {
                "check the host and port in LEARNING_DATABASE_URL, and that PostgreSQL is running and reachable"
            }
        }
    }

    /// Whether it is only a warning: `check` reports it, and the worker works.
    pub fn is_warning(self) -> bool {
        self == DatabaseProblem::HelpersOpenToPublic
    }

    /// Whether waiting can cure it (the server comes back); otherwise an operator
    /// must act.
    pub fn may_pass(self) -> bool {
        self == DatabaseProblem::Unreachable
    }
}

impl std::fmt::Display for DatabaseProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.describe(), self.code())
    }
}
