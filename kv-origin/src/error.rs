//! Origin errors, each mapped to a protocol status.

use kv_proto::Status;

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
}

impl OriginError {
    /// The status to answer with.
    pub fn status(&self) -> Status {
        match self {
            Self::Store(_) => Status::Unavailable,
            Self::BadCursor => Status::BadRequest,
            Self::Corrupt { .. } | Self::Internal(_) => Status::Internal,
        }
    }
}
