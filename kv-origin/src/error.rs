//! Origin errors, each mapped to a protocol status.

use kv_proto::{ErrorSource, RequestId, Response, Status};

use crate::envelope::EnvelopeError;
use crate::store::StoreError;

/// Why an origin operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OriginError {
    /// The object store failed or timed out; retrying may help.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored object is damaged; it is never served.
    #[error("stored object {path} is damaged: {source}")]
    Corrupt {
        /// The object.
        path: String,
        /// What is wrong with it.
        source: EnvelopeError,
    },
    /// The LIST cursor was not issued by this service.
    #[error("invalid list cursor")]
    BadCursor,
    /// Shared work ended without an answer.
    #[error("internal error: {0}")]
    Internal(String),
    /// The deadline passed first. For a write: it was not applied.
    #[error("deadline passed: {0}")]
    Timeout(&'static str),
    /// A write was sent to the store but not confirmed before the deadline
    /// or a failure: it may or may not be applied.
    #[error("write outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A read asked for a newer version than the store holds.
    #[error("the store holds version {got} of this key, older than the {min} asked for")]
    VersionUnavailable {
        /// The version asked for.
        min: u64,
        /// The version the store holds (0: none).
        got: u64,
    },
}

impl OriginError {
    /// The status to answer with.
    pub fn status(&self) -> Status {
        match self {
            Self::Store(StoreError::OutcomeUnknown { .. }) | Self::OutcomeUnknown(_) => {
                Status::OutcomeUnknown
            }
            Self::Store(StoreError::Expired { .. }) | Self::Timeout(_) => Status::Timeout,
            Self::Store(_) => Status::Unavailable,
            Self::BadCursor => Status::BadRequest,
            Self::VersionUnavailable { .. } => Status::VersionUnavailable,
            Self::Corrupt { .. } | Self::Internal(_) => Status::Internal,
        }
    }

    /// The answer to a request that failed this way. Object-store failures
    /// are the origin's upstream's; a damaged object is not retryable.
    pub fn to_response(&self, id: RequestId) -> Response {
        let status = self.status();
        let source = match self {
            Self::Store(_) => ErrorSource::Upstream,
            _ => status.default_source(),
        };
        Response::failure(id, status, source, status.is_retryable(), self.to_string())
    }
}
