//! The store's one error type, sorted by what a caller can do about it.

use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or is outside the caller's organization).
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write.
    #[error("already exists")]
    AlreadyExists,
    /// The row changed since the caller read it (etag mismatch).
    #[error("the resource changed since it was read")]
    Stale,
    /// The service user still has active API keys.
    #[error("the service user has {0} active API key(s)")]
    HasActiveKeys(u64),
    /// The database could not be reached; nothing was written.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(String),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return StoreError::AlreadyExists;
        }
        match &err {
            DbErr::RecordNotFound(_) => StoreError::NotFound,
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => {
                StoreError::Unavailable(err.to_string())
            }
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
                if is_connection_error(&e.to_string()) =>
            {
                StoreError::Unavailable(err.to_string())
            }
            _ => StoreError::Database(err.to_string()),
        }
    }
}

/// sqlx reports a dropped connection as an I/O or protocol error inside a query error.
fn is_connection_error(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "connection",
        "i/o",
        "broken pipe",
        "pool timed out",
        "unable to open database",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}
