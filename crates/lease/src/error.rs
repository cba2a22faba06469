//! Errors of the queue.

/// Why a queue operation failed. A lost lease is not an error: fenced operations
/// report it as `false`/`None`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection could be had from the pool (database down, pool closed).
    #[error("no database connection available")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("queue statement failed")]
    Postgres(#[from] tokio_postgres::Error),
    /// No answer within the queue's statement timeout: the database or the network
    /// to it is stalled. The connection was discarded, not returned to the pool.
    #[error("no answer from the database within {0:?}")]
    Timeout(std::time::Duration),
    /// A configured table, column or channel name is not a plain identifier.
    #[error("{what} `{name}` is not a plain SQL identifier")]
    InvalidName {
        /// `table`, `column` or `channel`.
        what: &'static str,
        /// The rejected name.
        name: String,
    },
}

impl Error {
    /// The SQLSTATE, when the database raised the error.
    pub fn sql_state(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            Error::Postgres(error) => error.code(),
            _ => None,
        }
    }
}
