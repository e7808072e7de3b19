//! The store's one error type, sorted by what a caller can do about it.

use sea_orm::{DbErr, RuntimeErr, SqlErr, SqlxError};

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store operation failed. Cloned when one shared read fails for several callers.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// A stored value cannot be read back (a corrupt scope list, an unknown state). Fails
    /// closed: never read as an empty or default value.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database could not be reached; nothing was written.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// Anything else the database reported.
    #[error("database error")]
    Database(#[source] DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return StoreError::AlreadyExists;
        }
        match &err {
            DbErr::RecordNotFound(_) => StoreError::NotFound,
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => StoreError::Unavailable(err),
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
                if is_connection_error(e) =>
            {
                StoreError::Unavailable(err)
            }
            _ => StoreError::Database(err),
        }
    }
}

/// Whether the driver says the database itself could not be reached or used, by error kind:
/// the transport failed, the pool gave up, or the server reported an SQLSTATE of the classes
/// "connection exception" (08), "insufficient resources" (53) or "operator intervention" (57),
/// or SQLite could not open or lock its file.
pub(crate) fn is_connection_error(err: &SqlxError) -> bool {
    match err {
        SqlxError::Io(_)
        | SqlxError::Tls(_)
        | SqlxError::Protocol(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => true,
        SqlxError::Database(db) => db.code().is_some_and(|code| {
            ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "55000"
                || sqlite_unavailable(&code)
        }),
        _ => false,
    }
}

/// SQLITE_BUSY (5), SQLITE_IOERR (10) and SQLITE_CANTOPEN (14), with their extended codes.
fn sqlite_unavailable(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 10 | 14))
}
