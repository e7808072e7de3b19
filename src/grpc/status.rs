//! The one place domain errors become gRPC statuses, with `google.rpc.BadRequest` details for
//! invalid fields.

use crate::error::Error;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound { .. } => Status::not_found(message),
            Error::AlreadyExists(_) => Status::already_exists(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::Aborted(_) => Status::aborted(message),
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::Unavailable => Status::unavailable(message),
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal(message)
            }
        }
    }
}
