//! The checks run on arbitrary input by the `decode_frame` fuzz target.
//!
//! [`check_decoder`] is the shared body of the cargo-fuzz target in
//! `fuzz/fuzz_targets/decode_frame.rs` and of the corpus replay test in
//! `kv-proto/tests/fuzz_corpus.rs`, so that both hold the decoders to the same
//! invariants. It is public only so that those two can call it; nothing else
//! in tierkv should.

use bytes::{Bytes, BytesMut};

use crate::frame::{
    FRAME_HEADER_LEN, Frame, FrameHeader, decode_feed_event, decode_frame, decode_request,
    decode_response, decode_subscribe, encode_frame,
};

/// Feeds `data` to every decoder and checks what comes out.
///
/// - As a stream: [`decode_frame`] is called on a [`BytesMut`] holding `data`
///   for as long as it makes progress. `Ok(None)` must leave the buffer alone
///   and only happen while the buffer holds less than one whole frame; an error
///   must either leave the buffer alone (a bad header) or take exactly the
///   frame the header declared (a bad body).
/// - As one body: `data` is passed whole to [`decode_request`],
///   [`decode_response`], [`decode_feed_event`] and [`decode_subscribe`]. A rejected request must
///   carry its id exactly when `data` holds at least 8 bytes.
///
/// Every frame decoded either way must re-encode to exactly the bytes it was
/// decoded from (the encoding is canonical), [`Frame::encode_chunks`]
/// concatenated must equal [`encode_frame`]'s output, and the re-encoded bytes
/// must decode to an equal frame.
///
/// # Panics
///
/// Only when one of those invariants is broken, which is the point of a fuzz
/// check: any input may be malformed, and decoding errors are expected.
pub fn check_decoder(data: &[u8]) {
    check_stream(data);
    check_bodies(data);
}

fn check_stream(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let start = data.len() - buf.len();
        let before = buf.len();
        let header = FrameHeader::parse(&buf);
        let result = decode_frame(&mut buf);
        let consumed = before - buf.len();
        match result {
            Ok(Some(frame)) => {
                let Ok(Some(header)) = header else {
                    panic!("decode_frame returned a frame for a header parse rejects: {header:?}");
                };
                assert_eq!(
                    consumed,
                    FRAME_HEADER_LEN + header.body_len,
                    "a frame consumed the wrong length"
                );
                assert_eq!(frame.kind(), header.kind, "a frame of the wrong kind");
                check_frame(&frame, &data[start..start + consumed]);
            }
            Ok(None) => {
                assert_eq!(consumed, 0, "Ok(None) consumed input");
                match header {
                    Ok(None) => assert!(before < FRAME_HEADER_LEN, "Ok(None) with a whole header"),
                    Ok(Some(header)) => assert!(
                        before < FRAME_HEADER_LEN + header.body_len,
                        "Ok(None) with a whole frame buffered"
                    ),
                    Err(e) => panic!("Ok(None) for a header parse rejects: {e}"),
                }
                return;
            }
            Err(error) => {
                let _ = error.status();
                match header {
                    // A bad body: the frame is consumed, so the stream can go on.
                    Ok(Some(header)) => {
                        assert_eq!(
                            consumed,
                            FRAME_HEADER_LEN + header.body_len,
                            "a bad body consumed the wrong length"
                        );
                    }
                    // A bad header: nothing is consumed, and the stream is over.
                    Err(header_error) => {
                        assert_eq!(consumed, 0, "a bad header consumed input");
                        assert_eq!(
                            error, header_error,
                            "decode_frame and FrameHeader::parse disagree"
                        );
                        return;
                    }
                    Ok(None) => panic!("decode_frame failed on a partial header: {error}"),
                }
            }
        }
    }
}

fn check_bodies(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    match decode_request(body.clone()) {
        Ok(request) => check_body(&Frame::Request(request), data),
        Err(rejected) => {
            let _ = rejected.error.status();
            let expected_id = data.get(..8).map(|id| {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(id);
                u64::from_be_bytes(raw)
            });
            assert_eq!(
                rejected.id.map(|id| id.0),
                expected_id,
                "a rejected request's id is wrong"
            );
        }
    }
    match decode_response(body.clone()) {
        Ok(response) => check_body(&Frame::Response(response), data),
        Err(error) => {
            let _ = error.status();
        }
    }
    match decode_feed_event(body.clone()) {
        Ok(event) => check_body(&Frame::Feed(event), data),
        Err(error) => {
            let _ = error.status();
        }
    }
    match decode_subscribe(body) {
        Ok(subscribe) => check_body(&Frame::Subscribe(subscribe), data),
        Err(error) => {
            let _ = error.status();
        }
    }
}

/// `frame` was decoded from the body `body`, without a header.
fn check_body(frame: &Frame, body: &[u8]) {
    let mut original = BytesMut::new();
    let header = FrameHeader {
        kind: frame.kind(),
        body_len: body.len(),
    };
    original.extend_from_slice(&header.to_bytes());
    original.extend_from_slice(body);
    check_frame(frame, &original);
}

/// `frame` was decoded from the whole frame `original`, header included.
fn check_frame(frame: &Frame, original: &[u8]) {
    let mut encoded = BytesMut::new();
    encode_frame(frame, &mut encoded);
    assert_eq!(
        &encoded[..],
        original,
        "a decoded frame re-encodes to other bytes: {frame:?}"
    );

    let (head, tail) = frame.encode_chunks();
    let mut chunks = BytesMut::from(&head[..]);
    if let Some(tail) = tail {
        chunks.extend_from_slice(&tail);
    }
    assert_eq!(
        chunks, encoded,
        "encode_chunks disagrees with encode_frame: {frame:?}"
    );

    let mut again = encoded;
    match decode_frame(&mut again) {
        Ok(Some(decoded)) => assert_eq!(&decoded, frame, "a re-encoded frame decodes differently"),
        other => panic!("a re-encoded frame does not decode: {other:?} for {frame:?}"),
    }
    assert!(
        again.is_empty(),
        "a re-encoded frame left {} bytes behind",
        again.len()
    );
}
