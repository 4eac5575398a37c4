//! One kv-proto frame on a QUIC stream.
//!
//! The header is read first and checked, so a body over its limit is refused
//! before a byte of it is buffered; then exactly the declared body is read.

use bytes::{Bytes, BytesMut};
use kv_proto::{FRAME_HEADER_LEN, Frame, FrameHeader, FrameKind, ProtoError};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    /// The stream ended cleanly before any byte of a frame.
    #[error("stream finished")]
    Finished,
    /// The stream failed or ended inside a frame.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The header is wrong, or declares a body over its limit.
    #[error("bad frame header: {0}")]
    Header(ProtoError),
    /// The header names a frame kind this stream does not carry.
    #[error("expected a {expected} frame, got a {got} frame")]
    UnexpectedKind {
        /// What the stream carries.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
}

/// Reads one frame header and its body, which must be of `kind`.
pub async fn read_frame_body(
    recv: &mut quinn::RecvStream,
    kind: FrameKind,
) -> Result<Bytes, FrameReadError> {
    read_frame_of(recv, &[kind]).await.map(|(_, body)| body)
}

/// Reads one frame header and its body, which must be of one of `kinds`
/// (the first is named in the error when it is not).
pub async fn read_frame_of(
    recv: &mut quinn::RecvStream,
    kinds: &[FrameKind],
) -> Result<(FrameKind, Bytes), FrameReadError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    if let Err(e) = recv.read_exact(&mut header).await {
        return Err(match e {
            quinn::ReadExactError::FinishedEarly(0) => FrameReadError::Finished,
            e => FrameReadError::Read(e),
        });
    }
    let header = FrameHeader::parse(&header)
        .map_err(FrameReadError::Header)?
        .ok_or(FrameReadError::Finished)?;
    if !kinds.contains(&header.kind) {
        return Err(FrameReadError::UnexpectedKind {
            expected: kinds.first().map_or("no", |k| k.name()),
            got: header.kind.name(),
        });
    }
    // The length was checked against the kind's limit by `parse`.
    let mut body = BytesMut::zeroed(header.body_len);
    recv.read_exact(&mut body).await?;
    Ok((header.kind, body.freeze()))
}

/// Writes `frame`; a value goes out as its own chunk, without a copy.
pub async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &Frame,
) -> Result<(), quinn::WriteError> {
    let (head, tail) = frame.encode_chunks();
    match tail {
        Some(tail) => send.write_all_chunks(&mut [head, tail]).await,
        None => send.write_all_chunks(&mut [head]).await,
    }
}
