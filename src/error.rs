//! The domain's one error type. Each error carries a stable [`Reason`] clients can switch on;
//! `grpc::status` maps errors to `tonic::Status` (with `google.rpc.ErrorInfo`), and `http` to
//! HTTP statuses and OAuth 2.0 error codes.

use tokenmint_store::StoreError;

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `google.rpc.ErrorInfo` domain of every reason.
pub const ERROR_DOMAIN: &str = "tokenmint";

/// A request field that failed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field path, e.g. `service_user.name`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// A kind of resource, as named in not-found errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `org_…`.
    Organization,
    /// `su_…`.
    ServiceUser,
    /// `ak_…`.
    ApiKey,
    /// `rb_…`.
    RoleBinding,
    /// An administrator entry of a service user.
    Administrator,
    /// `prj_…`.
    Project,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::Organization => "organization",
            Resource::ServiceUser => "service user",
            Resource::ApiKey => "API key",
            Resource::RoleBinding => "role binding",
            Resource::Administrator => "administrator",
            Resource::Project => "project",
        })
    }
}

/// Why a call failed, as a stable machine-readable word (`google.rpc.ErrorInfo.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// One or more request fields are invalid; the BadRequest details name them.
    InvalidArgument,
    /// No such organization in the caller's view.
    OrganizationNotFound,
    /// No such service user in the caller's view.
    ServiceUserNotFound,
    /// No such API key in the caller's view.
    ApiKeyNotFound,
    /// No such role binding in the caller's view.
    RoleBindingNotFound,
    /// The principal is not an administrator of that service user.
    AdministratorNotFound,
    /// No such project in the caller's view.
    ProjectNotFound,
    /// The principal already holds that role there.
    RoleBindingAlreadyExists,
    /// The principal already administers that service user.
    AdministratorAlreadyExists,
    /// The change would leave the organization without an active owner.
    LastOwner,
    /// Only principals holding `admin` or `owner` can administer service users.
    PrincipalLacksAdminRole,
    /// A service user of that name exists in the organization.
    ServiceUserAlreadyExists,
    /// The service user has a key of that name.
    ApiKeyAlreadyExists,
    /// An organization of that name exists.
    OrganizationAlreadyExists,
    /// A project of that name exists in the organization.
    ProjectAlreadyExists,
    /// Deleting a project that role bindings point at, without `force`.
    ProjectHasBindings,
    /// Deleting a service user that still has active keys, without `force`.
    ServiceUserHasActiveKeys,
    /// The service user is disabled.
    ServiceUserDisabled,
    /// A principal may not disable or delete itself.
    CannotActOnSelf,
    /// The etag no longer matches.
    EtagMismatch,
    /// Missing, malformed, wrong, revoked or expired credentials.
    InvalidCredentials,
    /// The caller's role is too low for the call.
    RoleTooLow,
    /// The caller is an admin but not one of the service user's administrators.
    NotAnAdministrator,
    /// The target holds a role above the caller's.
    TargetOutranksCaller,
    /// The caller asked to grant a role above its own.
    ScopeNotGrantable,
    /// The key may not be used from the caller's network address.
    NetworkNotAllowed,
    /// An organization quota would be exceeded.
    QuotaExceeded,
    /// The database cannot be reached; nothing was written.
    DatabaseUnavailable,
    /// The API key is revoked or expired, and the call needs an active one.
    ApiKeyNotActive,
    /// Too many failed attempts from this address or against this key ID; retry later.
    TooManyFailures,
    /// A bug or corrupt state.
    Internal,
}

impl Reason {
    /// The reason as sent to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::OrganizationNotFound => "ORGANIZATION_NOT_FOUND",
            Reason::ServiceUserNotFound => "SERVICE_USER_NOT_FOUND",
            Reason::ApiKeyNotFound => "API_KEY_NOT_FOUND",
            Reason::RoleBindingNotFound => "ROLE_BINDING_NOT_FOUND",
            Reason::AdministratorNotFound => "ADMINISTRATOR_NOT_FOUND",
            Reason::ProjectNotFound => "PROJECT_NOT_FOUND",
            Reason::RoleBindingAlreadyExists => "ROLE_BINDING_ALREADY_EXISTS",
            Reason::AdministratorAlreadyExists => "ADMINISTRATOR_ALREADY_EXISTS",
            Reason::LastOwner => "LAST_OWNER",
            Reason::PrincipalLacksAdminRole => "PRINCIPAL_LACKS_ADMIN_ROLE",
            Reason::ServiceUserAlreadyExists => "SERVICE_USER_ALREADY_EXISTS",
            Reason::ApiKeyAlreadyExists => "API_KEY_ALREADY_EXISTS",
            Reason::OrganizationAlreadyExists => "ORGANIZATION_ALREADY_EXISTS",
            Reason::ProjectAlreadyExists => "PROJECT_ALREADY_EXISTS",
            Reason::ProjectHasBindings => "PROJECT_HAS_BINDINGS",
            Reason::ServiceUserHasActiveKeys => "SERVICE_USER_HAS_ACTIVE_KEYS",
            Reason::ServiceUserDisabled => "SERVICE_USER_DISABLED",
            Reason::CannotActOnSelf => "CANNOT_ACT_ON_SELF",
            Reason::EtagMismatch => "ETAG_MISMATCH",
            Reason::InvalidCredentials => "INVALID_CREDENTIALS",
            Reason::RoleTooLow => "ROLE_TOO_LOW",
            Reason::NotAnAdministrator => "NOT_AN_ADMINISTRATOR",
            Reason::TargetOutranksCaller => "TARGET_OUTRANKS_CALLER",
            Reason::ScopeNotGrantable => "SCOPE_NOT_GRANTABLE",
            Reason::NetworkNotAllowed => "NETWORK_NOT_ALLOWED",
            Reason::QuotaExceeded => "QUOTA_EXCEEDED",
            Reason::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Reason::ApiKeyNotActive => "API_KEY_NOT_ACTIVE",
            Reason::TooManyFailures => "TOO_MANY_FAILURES",
            Reason::Internal => "INTERNAL",
        }
    }
}

/// Why a domain operation failed. Messages are safe to show to the caller: they never contain a
/// secret, a token, SQL or driver text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more request fields are invalid.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist, or the caller may not know it exists.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// Resource kind.
        kind: Resource,
        /// The ID asked for (already validated as an ID).
        id: String,
    },
    /// A resource with that name exists.
    #[error("{1}")]
    AlreadyExists(Reason, String),
    /// The resource is not in a state that allows the operation.
    #[error("{1}")]
    FailedPrecondition(Reason, String),
    /// The resource changed since the caller read it.
    #[error("{0}")]
    Aborted(String),
    /// A quota would be exceeded; the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Too many recent failures from the caller's address or against the key ID it named;
    /// the caller may retry after the given time.
    #[error("too many failed attempts; retry in {} seconds", .0.as_secs().max(1))]
    Throttled(std::time::Duration),
    /// Missing, malformed or wrong credentials. The message is deliberately the same for all.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller is known but may not do this.
    #[error("{1}")]
    PermissionDenied(Reason, String),
    /// The database cannot be reached; nothing was written.
    #[error("the database is unavailable, try again")]
    Unavailable(#[source] StoreError),
    /// The store failed in a way that is a bug or corrupt data; the source goes to the log.
    #[error("internal error")]
    Store(#[source] StoreError),
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

    /// Maps a store error, naming the resource for not-found.
    pub fn from_store(err: StoreError, kind: Resource, id: &str) -> Self {
        match err {
            StoreError::NotFound => Error::NotFound {
                kind,
                id: id.to_owned(),
            },
            other => other.into(),
        }
    }

    /// The stable reason of this error.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidArgument(_) => Reason::InvalidArgument,
            Error::NotFound { kind, .. } => match kind {
                Resource::Organization => Reason::OrganizationNotFound,
                Resource::ServiceUser => Reason::ServiceUserNotFound,
                Resource::ApiKey => Reason::ApiKeyNotFound,
                Resource::RoleBinding => Reason::RoleBindingNotFound,
                Resource::Administrator => Reason::AdministratorNotFound,
                Resource::Project => Reason::ProjectNotFound,
            },
            Error::AlreadyExists(reason, _)
            | Error::FailedPrecondition(reason, _)
            | Error::PermissionDenied(reason, _) => *reason,
            Error::Aborted(_) => Reason::EtagMismatch,
            Error::ResourceExhausted(_) => Reason::QuotaExceeded,
            Error::Throttled(_) => Reason::TooManyFailures,
            Error::Unauthenticated(_) => Reason::InvalidCredentials,
            Error::Unavailable(_) => Reason::DatabaseUnavailable,
            Error::Store(_) | Error::Internal(_) => Reason::Internal,
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            // Callers that know what was looked up use `from_store`; this is the fallback.
            StoreError::NotFound => Error::Internal("a row vanished during the call".into()),
            StoreError::AlreadyExists => Error::Internal("unexpected unique violation".into()),
            StoreError::Stale => Error::Aborted(
                "the resource changed since it was read; get it again and retry".into(),
            ),
            StoreError::Unavailable(_) => Error::Unavailable(err),
            StoreError::Corrupt(_) | StoreError::Database(_) => Error::Store(err),
        }
    }
}

impl From<tokenmint_token::CryptoError> for Error {
    fn from(err: tokenmint_token::CryptoError) -> Self {
        Error::Internal(err.to_string())
    }
}
