//! Validated names and the small enums of the protocol.

use std::fmt;

use bytes::Bytes;

use crate::error::ProtoError;
use crate::limits::{MAX_KEY_LEN, MAX_METADATA_LEN, MAX_NAMESPACE_LEN};

/// A namespace: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, ProtoError> {
        let name = name.into();
        let valid_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if name.is_empty() || name.len() > MAX_NAMESPACE_LEN || !name.bytes().all(valid_char) {
            return Err(ProtoError::InvalidNamespace);
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key: 1–512 bytes of UTF-8. Any character is allowed, `/` included.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Validates `key`.
    pub fn new(key: impl Into<String>) -> Result<Self, ProtoError> {
        let key = key.into();
        if key.is_empty() {
            return Err(ProtoError::EmptyKey);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(ProtoError::KeyTooLong { len: key.len() });
        }
        Ok(Self(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// User metadata: a JSON document of at most 1024 bytes, kept as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Metadata(Bytes);

impl Metadata {
    /// Validates that `json` is at most 1024 bytes of well-formed JSON.
    pub fn new(json: impl Into<Bytes>) -> Result<Self, ProtoError> {
        let json = json.into();
        if json.len() > MAX_METADATA_LEN {
            return Err(ProtoError::MetadataTooLarge { len: json.len() });
        }
        // JSON text is UTF-8. Check it first: serde_json skips the contents of
        // strings it ignores without validating them, so `from_slice` alone
        // would accept `"\xff"`, and `as_str` would then return "".
        let text = std::str::from_utf8(&json).map_err(|_| ProtoError::MetadataNotJson)?;
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|_| ProtoError::MetadataNotJson)?;
        Ok(Self(json))
    }

    /// The JSON text.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The JSON text as a `str` (validation guarantees UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code),+
        }

        impl $name {
            /// Every variant, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire code.
            pub fn code(self) -> u8 {
                self as u8
            }

            /// Parses a wire code.
            pub fn from_code(code: u8) -> Result<Self, ProtoError> {
                match code {
                    $($code => Ok(Self::$variant),)+
                    _ => Err(ProtoError::InvalidCode { field: $field, code }),
                }
            }

            /// The name used in headers, logs and metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

code_enum! {
    /// The outcome of a request.
    Status, "status" {
        /// The request succeeded.
        Ok = 0 => "ok",
        /// The key does not exist, or has expired.
        NotFound = 1 => "not_found",
        /// The request is malformed or breaks a rule.
        BadRequest = 2 => "bad_request",
        /// A key, value, metadata or whole frame exceeds its size limit.
        TooLarge = 3 => "too_large",
        /// A tier or the object store could not be reached; retrying may help.
        Unavailable = 4 => "unavailable",
        /// A bug or an unexpected state in the answering tier.
        Internal = 5 => "internal",
        /// The request's deadline passed before it was answered. For a write,
        /// this means it was *not* applied: a write that may have been
        /// applied answers [`Status::OutcomeUnknown`] instead.
        Timeout = 6 => "timeout",
        /// A write was sent but its outcome is not known (its deadline passed,
        /// or the link failed, after it left). It may or may not be applied;
        /// retrying it with the same write id settles which.
        OutcomeUnknown = 7 => "outcome_unknown",
        /// A read named a minimum version (its caller's own write, say) that
        /// no tier could provide within its deadline. Never answered with an
        /// older version instead.
        VersionUnavailable = 8 => "version_unavailable",
    }
}

code_enum! {
    /// Who an error is to be blamed on, as seen by the tier that answers.
    ErrorSource, "error source" {
        /// The request itself is at fault (too large, malformed, ...).
        Caller = 1 => "caller",
        /// The answering tier failed.
        Local = 2 => "local",
        /// A tier or service behind the answering tier failed.
        Upstream = 3 => "upstream",
    }
}

code_enum! {
    /// The tier that answered a read.
    Tier, "tier" {
        /// The edge's in-process hot cache.
        Edge = 1 => "edge",
        /// A regional node's memory cache.
        RegionalMemory = 2 => "regional-memory",
        /// A regional node's disk cache.
        RegionalDisk = 3 => "regional-disk",
        /// The origin, from object storage.
        Origin = 4 => "origin",
    }
}

impl Status {
    /// Whether a retry might succeed (for a write: with the same write id).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Unavailable | Self::Timeout | Self::OutcomeUnknown | Self::VersionUnavailable
        )
    }

    /// Whether this is a failure rather than an answer.
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::Ok | Self::NotFound)
    }

    /// Who a failure with this status is blamed on when the tier that
    /// detects it says nothing more.
    pub fn default_source(self) -> ErrorSource {
        match self {
            Self::BadRequest | Self::TooLarge => ErrorSource::Caller,
            _ => ErrorSource::Local,
        }
    }
}
