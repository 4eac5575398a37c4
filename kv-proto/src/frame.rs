//! Frames: an 8-byte header, then a body of the declared length.
//!
//! ```text
//!  0        1        2        4                8
//! +--------+--------+--------+----------------+----------------
//! |version | kind   |reserved| body length    | body ...
//! |  u8=2  |  u8    |  u16=0 | u32, big-endian|
//! +--------+--------+--------+----------------+----------------
//! ```
//!
//! The body length is checked against the limit for its kind as soon as the
//! header is complete, before the body is buffered.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtoError;
use crate::feed::{FeedEvent, Subscribe};
use crate::limits::{MAX_FEED_BODY, MAX_REQUEST_BODY, MAX_RESPONSE_BODY, MAX_SUBSCRIBE_BODY};
use crate::request::{Request, RequestId};
use crate::response::Response;
use crate::wire::Reader;

/// The protocol version this build speaks. Version 2 added request budgets,
/// write ids, typed errors and tombstone versions.
pub const PROTOCOL_VERSION: u8 = 2;
/// Bytes in a frame header.
pub const FRAME_HEADER_LEN: usize = 8;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A [`Request`].
    Request = 1,
    /// A [`Response`].
    Response = 2,
    /// A [`FeedEvent`].
    Feed = 3,
    /// A [`Subscribe`].
    Subscribe = 4,
}

impl FrameKind {
    fn from_code(code: u8) -> Result<Self, ProtoError> {
        match code {
            1 => Ok(Self::Request),
            2 => Ok(Self::Response),
            3 => Ok(Self::Feed),
            4 => Ok(Self::Subscribe),
            _ => Err(ProtoError::UnknownFrameKind(code)),
        }
    }

    /// The largest body a frame of this kind may declare.
    pub fn max_body_len(self) -> usize {
        match self {
            Self::Request => MAX_REQUEST_BODY,
            Self::Response => MAX_RESPONSE_BODY,
            Self::Feed => MAX_FEED_BODY,
            Self::Subscribe => MAX_SUBSCRIBE_BODY,
        }
    }

    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
            Self::Feed => "feed",
            Self::Subscribe => "subscribe",
        }
    }
}

/// A parsed and checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the body holds.
    pub kind: FrameKind,
    /// Bytes in the body, within the kind's limit.
    pub body_len: usize,
}

impl FrameHeader {
    /// Parses the header at the start of `buf`: `Ok(None)` while fewer than
    /// [`FRAME_HEADER_LEN`] bytes have arrived, an error for a header that is
    /// wrong or declares a body over its kind's limit.
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, ProtoError> {
        let Some(mut header) = buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let version = header.get_u8();
        if version != PROTOCOL_VERSION {
            return Err(ProtoError::UnsupportedVersion(version));
        }
        let kind = FrameKind::from_code(header.get_u8())?;
        let reserved = header.get_u16();
        if reserved != 0 {
            return Err(ProtoError::ReservedBits(reserved));
        }
        let body_len = usize::try_from(header.get_u32()).unwrap_or(usize::MAX);
        let max = kind.max_body_len();
        if body_len > max {
            return Err(ProtoError::FrameTooLarge { len: body_len, max });
        }
        Ok(Some(Self { kind, body_len }))
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let mut out = [0u8; FRAME_HEADER_LEN];
        let mut buf = &mut out[..];
        buf.put_u8(PROTOCOL_VERSION);
        buf.put_u8(self.kind as u8);
        buf.put_u16(0);
        buf.put_u32(u32::try_from(self.body_len).unwrap_or(u32::MAX));
        out
    }
}

/// Any frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
    /// A change-feed event.
    Feed(FeedEvent),
    /// A subscription to a change feed.
    Subscribe(Subscribe),
}

impl Frame {
    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Self::Request(_) => FrameKind::Request,
            Self::Response(_) => FrameKind::Response,
            Self::Feed(_) => FrameKind::Feed,
            Self::Subscribe(_) => FrameKind::Subscribe,
        }
    }

    /// Encodes the frame as a head and, when it carries a value, the value
    /// itself as a second chunk, so that a sender writes both without copying
    /// the value. Concatenated, the two are the frame.
    pub fn encode_chunks(&self) -> (Bytes, Option<Bytes>) {
        let mut head = BytesMut::with_capacity(256);
        head.put_slice(&[0u8; FRAME_HEADER_LEN]);
        let tail = match self {
            Self::Request(r) => r.encode_body(&mut head),
            Self::Response(r) => r.encode_body(&mut head),
            Self::Feed(event) => {
                event.encode_body(&mut head);
                None
            }
            Self::Subscribe(subscribe) => {
                subscribe.encode_body(&mut head);
                None
            }
        };
        let body_len = head.len() - FRAME_HEADER_LEN + tail.as_ref().map_or(0, Bytes::len);
        let header = FrameHeader {
            kind: self.kind(),
            body_len,
        };
        head[..FRAME_HEADER_LEN].copy_from_slice(&header.to_bytes());
        (head.freeze(), tail)
    }

    /// Decodes a body of `kind`.
    pub fn decode_body(kind: FrameKind, body: Bytes) -> Result<Self, ProtoError> {
        match kind {
            FrameKind::Request => decode_request(body)
                .map(Frame::Request)
                .map_err(|r| r.error),
            FrameKind::Response => decode_response(body).map(Frame::Response),
            FrameKind::Feed => decode_feed_event(body).map(Frame::Feed),
            FrameKind::Subscribe => decode_subscribe(body).map(Frame::Subscribe),
        }
    }
}

/// Appends `frame` to `buf`.
pub fn encode_frame(frame: &Frame, buf: &mut BytesMut) {
    let (head, tail) = frame.encode_chunks();
    buf.reserve(head.len() + tail.as_ref().map_or(0, Bytes::len));
    buf.put(head);
    if let Some(tail) = tail {
        buf.put(tail);
    }
}

/// Appends a feed event's frame to `buf`: what [`encode_frame`] writes for
/// `Frame::Feed(event)`, without taking the event by value.
pub fn encode_feed_event(event: &FeedEvent, buf: &mut BytesMut) {
    let start = buf.len();
    buf.put_slice(&[0u8; FRAME_HEADER_LEN]);
    event.encode_body(buf);
    let header = FrameHeader {
        kind: FrameKind::Feed,
        body_len: buf.len() - start - FRAME_HEADER_LEN,
    };
    buf[start..start + FRAME_HEADER_LEN].copy_from_slice(&header.to_bytes());
}

/// Takes one whole frame off the front of `buf`: `Ok(None)` while it holds
/// only part of one (having reserved room for the rest once the header is
/// checked), an error for a frame that is malformed or over its limit.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
    let Some(header) = FrameHeader::parse(buf)? else {
        return Ok(None);
    };
    let frame_len = FRAME_HEADER_LEN + header.body_len;
    if buf.len() < frame_len {
        buf.reserve(frame_len - buf.len());
        return Ok(None);
    }
    buf.advance(FRAME_HEADER_LEN);
    let body = buf.split_to(header.body_len).freeze();
    Frame::decode_body(header.kind, body).map(Some)
}

/// A request body that could not be decoded, with its id when the body held one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRequest {
    /// The id, when the body was long enough to hold it.
    pub id: Option<RequestId>,
    /// What was wrong.
    pub error: ProtoError,
}

/// Decodes a request body.
pub fn decode_request(body: Bytes) -> Result<Request, RejectedRequest> {
    let mut r = Reader::new(body);
    let request =
        Request::decode_body(&mut r).map_err(|(id, error)| RejectedRequest { id, error })?;
    r.finish().map_err(|error| RejectedRequest {
        id: Some(request.id),
        error,
    })?;
    Ok(request)
}

/// Decodes a response body.
pub fn decode_response(body: Bytes) -> Result<Response, ProtoError> {
    let mut r = Reader::new(body);
    let response = Response::decode_body(&mut r)?;
    r.finish()?;
    Ok(response)
}

/// Decodes a feed event body.
pub fn decode_feed_event(body: Bytes) -> Result<FeedEvent, ProtoError> {
    let mut r = Reader::new(body);
    let event = FeedEvent::decode_body(&mut r)?;
    r.finish()?;
    Ok(event)
}

/// Decodes a subscribe body.
pub fn decode_subscribe(body: Bytes) -> Result<Subscribe, ProtoError> {
    let mut r = Reader::new(body);
    let subscribe = Subscribe::decode_body(&mut r)?;
    r.finish()?;
    Ok(subscribe)
}
