//! Every size limit of the protocol. These follow Workers KV where it has them.

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 512;
/// Largest value, in bytes (25 MiB).
pub const MAX_VALUE_LEN: usize = 25 * 1024 * 1024;
/// Largest JSON metadata document, in bytes.
pub const MAX_METADATA_LEN: usize = 1024;
/// Longest namespace name, in characters of `[A-Za-z0-9_-]`.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Most keys one LIST page may return.
pub const MAX_LIST_LIMIT: u16 = 1000;
/// Longest opaque LIST cursor, in bytes.
pub const MAX_CURSOR_LEN: usize = 2048;
/// Longest error message carried in a response, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Room in a frame body for everything but the value: ids, flags, names, metadata.
const BODY_OVERHEAD: usize = 64 * 1024;

/// Largest request body: a PUT of the largest value plus its other fields.
pub const MAX_REQUEST_BODY: usize = MAX_VALUE_LEN + BODY_OVERHEAD;
/// Largest response body: a GET of the largest value plus its other fields.
/// A full LIST page (1000 × (key + metadata)) is far smaller.
pub const MAX_RESPONSE_BODY: usize = MAX_VALUE_LEN + BODY_OVERHEAD;
/// Largest value a feed change may carry inline (publishers are
/// configured with a smaller one).
pub const MAX_INLINE_VALUE: usize = 64 * 1024;
/// Largest feed event body: a change with the largest inline value.
pub const MAX_FEED_BODY: usize = MAX_INLINE_VALUE + BODY_OVERHEAD;
/// Largest subscribe body.
pub const MAX_SUBSCRIBE_BODY: usize = 64;
