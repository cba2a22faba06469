//! Errors. No message ever contains a DSN, a password or a secret file's contents.

use std::path::PathBuf;

/// Why configuration could not be turned into a [`Dsn`](crate::Dsn), or its pgpass
/// file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A variable's value is not a DSN we understand.
    #[error("{variable} is not a valid PostgreSQL connection string: {reason}")]
    Invalid {
        /// The variable's base name, e.g. `DATABASE_URL`.
        variable: String,
        /// What is wrong, without the value.
        reason: ParseError,
    },
    /// Both `NAME` and `NAME_FILE` are set.
    #[error("both {variable} and {variable}_FILE are set; set only one of them")]
    BothSet {
        /// The base name.
        variable: String,
    },
    /// `NAME_FILE` names a file that cannot be read (missing, a directory, no
    /// permission); the message carries the operating system's reason.
    #[error("{variable}_FILE: cannot read {}: {reason}", path.display())]
    SecretFile {
        /// The base name.
        variable: String,
        /// The path from `NAME_FILE`.
        path: PathBuf,
        /// The operating system's reason.
        reason: std::io::Error,
    },
    /// `NAME_FILE` names a file that holds nothing (or only a line break): a
    /// secret that was never written, which must not read as "not configured".
    #[error("{variable}_FILE: {} is empty", path.display())]
    SecretFileEmpty {
        /// The base name.
        variable: String,
        /// The path from `NAME_FILE`.
        path: PathBuf,
    },
    /// `NAME_FILE` names a file larger than any secret could be.
    #[error("{variable}_FILE: {} is larger than {limit} bytes", path.display())]
    SecretFileTooLarge {
        /// The base name.
        variable: String,
        /// The path from `NAME_FILE`.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// `NAME_FILE` starts with a byte-order mark, which an editor adds and no secret
    /// holds: kept, it would become part of the password.
    #[error("{variable}_FILE: {} starts with a byte-order mark; save it without one", path.display())]
    SecretFileByteOrderMark {
        /// The base name.
        variable: String,
        /// The path from `NAME_FILE`.
        path: PathBuf,
    },
    /// `NAME_FILE` holds more than one line: a secret is one line, and a second
    /// would reach a pgpass file or a request header as part of it.
    #[error("{variable}_FILE: {} holds more than one line; a secret is one line", path.display())]
    SecretFileLines {
        /// The base name.
        variable: String,
        /// The path from `NAME_FILE`.
        path: PathBuf,
    },
    /// A secret (from `NAME` or `NAME_FILE`) is not valid UTF-8.
    #[error("{variable} is not valid UTF-8")]
    NotUtf8 {
        /// The base name.
        variable: String,
    },
    /// A setting that holds white space and nothing else.
    #[error("{variable} holds only white space; unset it or give it a value")]
    Blank {
        /// The variable.
        variable: String,
    },
    /// A setting that should be a number and is not one.
    #[error("{variable}: expected {expected}; the value is not a number")]
    NotANumber {
        /// The variable.
        variable: String,
        /// What it should be, e.g. `a whole number from 1 to 9`.
        expected: String,
    },
    /// A number outside the setting's range.
    #[error("{variable}: expected {expected}; the value is outside that range")]
    OutOfRange {
        /// The variable.
        variable: String,
        /// What it should be, e.g. `a whole number from 1 to 9`.
        expected: String,
    },
    /// A credential holds a control character (a line break, say), which no pgpass
    /// line can carry.
    #[error("a credential holds a control character, which a pgpass file cannot carry")]
    PgpassControlCharacter,
    /// The private pgpass file could not be created.
    #[error("cannot create the private pgpass file")]
    Pgpass(#[source] std::io::Error),
}

/// What is wrong with a connection string. Never includes (part of) the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing but white space.
    #[error("it is empty")]
    Empty,
    /// Longer than any real connection string.
    #[error("it is longer than {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// Neither a supported URL scheme nor `key=value` pairs.
    #[error(
        "expected a postgres:// or postgresql:// URL, a jdbc:postgresql:// URL or key=value pairs"
    )]
    UnsupportedFormat,
    /// A `%` not followed by two hex digits, or bytes that are not UTF-8.
    #[error("invalid percent-encoding in the {field}")]
    InvalidPercentEncoding {
        /// Which part, e.g. `password`.
        field: &'static str,
    },
    /// The port is not a number from 1 to 65535.
    #[error("the port is not a number from 1 to 65535")]
    InvalidPort,
    /// Several comma-separated hosts (libpq failover lists are not supported).
    #[error("multiple hosts are not supported")]
    MultipleHosts,
    /// An IPv6 host without its closing bracket.
    #[error("an IPv6 host lacks its closing `]`")]
    UnterminatedIpv6,
    /// A parameter we do not pass on.
    #[error("unsupported parameter {name}")]
    UnsupportedParameter {
        /// The parameter's name, shown only when it looks like a parameter name.
        name: String,
    },
    /// A parameter given twice.
    #[error("parameter {name} is given twice")]
    DuplicateParameter {
        /// The parameter's name.
        name: String,
    },
    /// `key=value` syntax: a key without `=`.
    #[error("a key is not followed by `=`")]
    MissingEquals,
    /// `key=value` syntax: a quoted value without its closing quote.
    #[error("a quoted value lacks its closing quote")]
    UnterminatedQuote,
    /// `sslmode` is not one of libpq's modes.
    #[error("sslmode must be disable, allow, prefer, require, verify-ca or verify-full")]
    InvalidSslMode,
    /// An `sslmode` libpq knows but this client cannot honour.
    #[error("sslmode={mode} is not supported here; use prefer, require, verify-ca or verify-full")]
    UnsupportedSslMode {
        /// The mode, e.g. `allow`.
        mode: &'static str,
    },
    /// A control character (newline, NUL, …), which no real value contains and which
    /// would corrupt a pgpass file.
    #[error("the {field} contains a control character")]
    ControlCharacter {
        /// Which part, e.g. `user`.
        field: &'static str,
    },
}

impl ParseError {
    pub(crate) fn unsupported(name: &str) -> ParseError {
        ParseError::UnsupportedParameter {
            name: displayable_name(name),
        }
    }
}

/// A parameter name in backticks, or a placeholder when it does not look like a
/// name: a malformed string may put a secret where a name is expected.
pub(crate) fn displayable_name(name: &str) -> String {
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if looks_like_a_name {
        format!("`{name}`")
    } else {
        "(name not shown)".to_owned()
    }
}
