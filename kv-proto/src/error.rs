//! Decoding and validation errors.

use crate::types::Status;

/// Why a frame or a field was refused. Every variant says which [`Status`] a
/// server answers with, so a bad request gets a typed answer rather than a
/// dropped stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The frame header names a protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The frame header names an unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownFrameKind(u8),
    /// The frame header's reserved bits are set.
    #[error("reserved header bits are set ({0:#06x})")]
    ReservedBits(u16),
    /// The frame arrived on a stream that does not carry that kind.
    #[error("expected a {expected} frame, got a {got} frame")]
    UnexpectedFrame {
        /// What the stream carries.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// The declared body length exceeds the limit for its frame kind.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Declared body length.
        len: usize,
        /// Limit for this frame kind.
        max: usize,
    },
    /// The body ended before `field` was complete.
    #[error("frame body truncated while reading {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The body holds bytes past its last field.
    #[error("{0} unexpected trailing bytes after the frame body")]
    TrailingBytes(usize),
    /// An enum field holds a value with no meaning.
    #[error("invalid {field} code {code}")]
    InvalidCode {
        /// The field.
        field: &'static str,
        /// The value found.
        code: u8,
    },
    /// A flags field has unknown bits set.
    #[error("unknown {field} flags {flags:#04x}")]
    UnknownFlags {
        /// The field.
        field: &'static str,
        /// The flags found.
        flags: u8,
    },
    /// A text field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A namespace outside 1–64 characters of `[A-Za-z0-9_-]`.
    #[error("namespace must be 1-64 characters of [A-Za-z0-9_-]")]
    InvalidNamespace,
    /// An empty key.
    #[error("key must not be empty")]
    EmptyKey,
    /// A key over [`crate::limits::MAX_KEY_LEN`] bytes.
    #[error("key of {len} bytes exceeds the limit of 512 bytes")]
    KeyTooLong {
        /// Its length.
        len: usize,
    },
    /// A value over [`crate::limits::MAX_VALUE_LEN`] bytes.
    #[error("value of {len} bytes exceeds the limit of 26214400 bytes")]
    ValueTooLarge {
        /// Its length.
        len: usize,
    },
    /// Metadata over [`crate::limits::MAX_METADATA_LEN`] bytes.
    #[error("metadata of {len} bytes exceeds the limit of 1024 bytes")]
    MetadataTooLarge {
        /// Its length.
        len: usize,
    },
    /// Metadata that does not parse as JSON.
    #[error("metadata is not valid JSON")]
    MetadataNotJson,
    /// A LIST limit of 0 or over [`crate::limits::MAX_LIST_LIMIT`].
    #[error("list limit {0} is outside 1-1000")]
    InvalidListLimit(u16),
    /// A field over its length limit that has no variant of its own.
    #[error("{field} of {len} bytes exceeds the limit of {max} bytes")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its limit.
        max: usize,
    },
}

impl ProtoError {
    /// The status a server answers with when a request fails this way.
    pub fn status(&self) -> Status {
        match self {
            Self::FrameTooLarge { .. }
            | Self::KeyTooLong { .. }
            | Self::ValueTooLarge { .. }
            | Self::MetadataTooLarge { .. } => Status::TooLarge,
            _ => Status::BadRequest,
        }
    }
}
