//! The tierkv wire protocol, shared by every tier and free of I/O.
//!
//! Peers speak it over QUIC with the ALPN [`ALPN`] (`tierkv/2`):
//!
//! - each bidirectional stream carries one [`Request`] frame from the client and
//!   one [`Response`] frame back, then both sides finish the stream. A request
//!   carries its budget (the time its caller still waits) and, for a write,
//!   a [`WriteId`] that every retry repeats; a failed response carries a
//!   [`Failure`]: its kind (the [`Status`]), its [`ErrorSource`] and whether
//!   a retry may help;
//! - a stream that starts with a [`Subscribe`] frame carries the change feed
//!   back: [`FeedEvent`] frames, each write and delete in order, numbered
//!   within the publisher's epoch (see [`feed`]).
//!
//! Decoding is two-phase, in the manner of a streaming codec: [`decode_frame`]
//! returns `Ok(None)` while a buffer holds only part of a frame, checks the
//! header's declared length against the limit for that frame kind *before* any
//! body is buffered, and then parses the body from a [`bytes::Bytes`], so
//! values are sliced out of the receive buffer rather than copied.
//!
//! # Layout
//!
//! - [`frame`]: the 8-byte frame header, [`encode_frame`] and [`decode_frame`].
//! - [`cmd`]: one module per request (GET, PUT, DELETE, LIST) with its body codec.
//! - [`request`] / [`response`]: the request envelope, and responses with status, tier and body.
//! - [`feed`]: the change feed's subscription and events.
//! - [`types`]: validated names ([`Namespace`], [`Key`], [`Metadata`]) and small enums.
//! - [`limits`]: every size limit, in one place.
//! - [`wire`]: the bounds-checked reader and writer helpers under all of the above.
//! - [`error`]: [`ProtoError`], each variant mapped to the [`Status`] a peer should answer with.
//! - [`fuzzing`]: the invariants the fuzz target and its corpus replay test check.

pub mod cmd;
pub mod error;
pub mod feed;
pub mod frame;
pub mod fuzzing;
pub mod limits;
pub mod request;
pub mod response;
pub mod types;
pub mod wire;

pub use cmd::{DeleteRequest, GetRequest, ListRequest, PutRequest};
pub use error::ProtoError;
pub use feed::{Change, Cursor, FeedEvent, InlineValue, Subscribe};
pub use frame::{
    FRAME_HEADER_LEN, Frame, FrameHeader, FrameKind, PROTOCOL_VERSION, RejectedRequest,
    decode_feed_event, decode_frame, decode_request, decode_response, decode_subscribe,
    encode_feed_event, encode_frame,
};
pub use request::{Op, Request, RequestId, WriteId};
pub use response::{Body, Entry, Failure, ListPage, ListedKey, Response};
pub use types::{ErrorSource, Key, Metadata, Namespace, Status, Tier};

/// The ALPN protocol id every tierkv QUIC link negotiates.
pub const ALPN: &[u8] = b"tierkv/2";
