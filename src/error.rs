//! The domain's one error type. `grpc::status` maps it to `tonic::Status`.

use tokenmint_store::StoreError;

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request field that failed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field path, e.g. `service_user.name`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// Why a domain operation failed. Messages are safe to show to the caller: they never contain a
/// secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more request fields are invalid.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist, or the caller may not know it exists.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// Resource kind, e.g. "service user".
        kind: &'static str,
        /// The ID asked for.
        id: String,
    },
    /// A resource with that name exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The resource is not in a state that allows the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The resource changed since the caller read it.
    #[error("{0}")]
    Aborted(String),
    /// Missing, malformed or wrong credentials. The message is deliberately the same for all.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The database cannot be reached; nothing was written.
    #[error("the database is unavailable, try again")]
    Unavailable,
    /// A bug or corrupt state; details go to the log, not the caller.
    #[error("internal error")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// An invalid-argument error about one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// Maps a store error, naming the resource for not-found and conflict cases.
    pub fn from_store(err: StoreError, kind: &'static str, id: &str) -> Self {
        match err {
            StoreError::NotFound => Error::NotFound {
                kind,
                id: id.to_owned(),
            },
            other => other.into(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Error::NotFound {
                kind: "resource",
                id: String::new(),
            },
            StoreError::AlreadyExists => Error::AlreadyExists("the resource already exists".into()),
            StoreError::Stale => Error::Aborted(
                "the resource changed since it was read; get it again and retry".into(),
            ),
            StoreError::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                Error::Unavailable
            }
            StoreError::Corrupt(detail) => {
                Error::Internal(format!("corrupt stored data: {detail}"))
            }
            StoreError::Database(source) => Error::Internal(source.to_string()),
        }
    }
}

impl From<tokenmint_token::CryptoError> for Error {
    fn from(err: tokenmint_token::CryptoError) -> Self {
        Error::Internal(err.to_string())
    }
}
