//! The one place domain errors become gRPC statuses: the code, a human message, the stable
//! reason as `google.rpc.ErrorInfo` (domain `tokenmint`) and, for invalid fields,
//! `google.rpc.BadRequest`. Server-side failures are logged here with their sources.

use crate::error::{ERROR_DOMAIN, Error};
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The gRPC code of each error.
pub fn code(err: &Error) -> Code {
    match err {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists(..) => Code::AlreadyExists,
        Error::FailedPrecondition(..) => Code::FailedPrecondition,
        Error::Aborted(_) => Code::Aborted,
        Error::ResourceExhausted(_) | Error::Throttled(_) => Code::ResourceExhausted,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(..) => Code::PermissionDenied,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Store(_) | Error::Internal(_) => Code::Internal,
    }
}

/// The gRPC code name of an error (`PERMISSION_DENIED`), as the audit trail records outcomes.
pub fn code_name(err: &Error) -> &'static str {
    code_name_of(code(err))
}

/// The name of a gRPC code, as the audit trail and metrics show it.
pub fn code_name_of(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        log_server_side(&err);
        let mut details = ErrorDetails::new();
        details.set_error_info(err.reason().as_str(), ERROR_DOMAIN, HashMap::new());
        if let Error::Throttled(retry_after) = &err {
            // Whole seconds, rounded up, so a client that waits exactly this long gets in.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            details.set_retry_info(Some(std::time::Duration::from_secs(secs.max(1))));
        }
        if let Error::InvalidArgument(violations) = &err {
            for v in violations {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
        }
        Status::with_error_details(code(&err), err.to_string(), details)
    }
}

/// Failures that are the server's, not the caller's, go to the log with their whole chain of
/// causes; the caller sees only the generic message.
fn log_server_side(err: &Error) {
    let chain = || {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        causes.join(": ")
    };
    match err {
        Error::Internal(detail) => tracing::error!(%detail, "internal error"),
        Error::Store(_) => tracing::error!(cause = %chain(), "store error"),
        Error::Unavailable(_) => {
            // Mostly a wait for a pooled connection that timed out.
            metrics::counter!("tokenmint_db_unavailable_total").increment(1);
            tracing::warn!(cause = %chain(), "database unavailable")
        }
        _ => {}
    }
}
