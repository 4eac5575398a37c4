//! Malformed input: every decoder answers with an error (or `Ok(None)` for a
//! partial frame), never a panic.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use kv_proto::{
    FRAME_HEADER_LEN, FeedEvent, Frame, FrameHeader, FrameKind, PROTOCOL_VERSION, ProtoError,
    RejectedRequest, RequestId, Status, decode_feed_event, decode_frame, decode_request,
    decode_response, decode_subscribe, encode_frame,
};
use proptest::prelude::*;

/// Decodes a body of `kind` with the body decoder for that kind.
fn decode_body(kind: FrameKind, body: Bytes) -> Result<Frame, ProtoError> {
    match kind {
        FrameKind::Request => decode_request(body)
            .map(Frame::Request)
            .map_err(|r| r.error),
        FrameKind::Response => decode_response(body).map(Frame::Response),
        FrameKind::Feed => decode_feed_event(body).map(Frame::Feed),
        FrameKind::Subscribe => decode_subscribe(body).map(Frame::Subscribe),
    }
}

/// Every frame kind.
const KINDS: [FrameKind; 4] = [
    FrameKind::Request,
    FrameKind::Response,
    FrameKind::Feed,
    FrameKind::Subscribe,
];

/// A header with raw fields, as `FrameHeader::to_bytes` cannot write bad ones.
fn raw_header(version: u8, kind: u8, reserved: u16, body_len: u32) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(&[version, kind]);
    out.extend_from_slice(&reserved.to_be_bytes());
    out.extend_from_slice(&body_len.to_be_bytes());
    out
}

// ----------------------------------------------------------------- truncation

#[test]
fn every_strict_prefix_of_a_body_is_truncated() {
    let samples = sample_frames();
    for (name, frame) in &samples {
        let body = encode(frame).freeze().slice(FRAME_HEADER_LEN..);
        for len in 0..body.len() {
            let err = decode_body(frame.kind(), body.slice(..len)).unwrap_err();
            assert!(
                matches!(err, ProtoError::Truncated { .. }),
                "{name}, {len} of {} bytes: {err:?}",
                body.len()
            );
        }
        assert_eq!(decode_body(frame.kind(), body).unwrap(), *frame);
    }
}

#[test]
fn a_truncated_request_carries_its_id_once_the_body_holds_eight_bytes() {
    let samples = sample_frames();
    for (name, frame) in samples
        .iter()
        .filter(|(_, f)| matches!(f, Frame::Request(_)))
    {
        let body = encode(frame).freeze().slice(FRAME_HEADER_LEN..);
        for len in 0..body.len() {
            let rejected = decode_request(body.slice(..len)).unwrap_err();
            let expected = (len >= 8).then_some(RequestId(0x0123_4567_89ab_cdef));
            assert_eq!(rejected.id, expected, "{name}, {len} bytes");
        }
    }
}

#[test]
fn every_strict_prefix_of_a_frame_is_incomplete() {
    for (name, frame) in &sample_frames() {
        let encoded = encode(frame);
        for len in 0..encoded.len() {
            let mut buf = BytesMut::from(&encoded[..len]);
            assert_eq!(decode_frame(&mut buf).unwrap(), None, "{name}, {len} bytes");
            assert_eq!(buf.len(), len);
        }
    }
}

#[test]
fn a_header_declaring_less_than_the_body_needs_is_truncated() {
    for (name, frame) in &sample_frames() {
        let encoded = encode(frame);
        let body = &encoded[FRAME_HEADER_LEN..];
        if body.is_empty() {
            continue;
        }
        // The header says one byte less; the last byte is left on the buffer.
        let short = body.len() - 1;
        let mut buf = BytesMut::from(
            &FrameHeader {
                kind: frame.kind(),
                body_len: short,
            }
            .to_bytes()[..],
        );
        buf.extend_from_slice(body);
        assert!(
            matches!(decode_frame(&mut buf), Err(ProtoError::Truncated { .. })),
            "{name}"
        );
        assert_eq!(&buf[..], &body[short..]);
    }
}

// ---------------------------------------------------------------- the header

#[test]
fn wrong_protocol_version() {
    for version in [0, PROTOCOL_VERSION + 1, 0x7f, 0xff] {
        let mut buf = raw_header(version, 1, 0, 0);
        assert_eq!(
            FrameHeader::parse(&buf).unwrap_err(),
            ProtoError::UnsupportedVersion(version)
        );
        assert_eq!(
            decode_frame(&mut buf).unwrap_err(),
            ProtoError::UnsupportedVersion(version)
        );
        assert_eq!(buf.len(), FRAME_HEADER_LEN, "a bad header was consumed");
    }
    // Not judged until the whole header is in.
    let mut partial = BytesMut::from(&raw_header(9, 1, 0, 0)[..FRAME_HEADER_LEN - 1]);
    assert_eq!(decode_frame(&mut partial).unwrap(), None);
}

/// A version-1 frame (no budget, no write ids, untyped errors) is refused
/// from its header, before its body is looked at, and nothing is consumed.
#[test]
fn a_version_1_frame_is_refused() {
    // A whole version-1 GET: id, op, namespace, key, flags.
    let v1_body = BodyBuilder::new()
        .u64(7)
        .u8(OP_GET)
        .target(b"users", b"alice")
        .u8(0)
        .0;
    let mut v1 = raw_header(1, 1, 0, u32::try_from(v1_body.len()).unwrap());
    v1.extend_from_slice(&v1_body);
    let original = v1.clone();
    assert_eq!(
        FrameHeader::parse(&v1).unwrap_err(),
        ProtoError::UnsupportedVersion(1)
    );
    let err = decode_frame(&mut v1).unwrap_err();
    assert_eq!(err, ProtoError::UnsupportedVersion(1));
    assert_eq!(err.status(), kv_proto::Status::BadRequest);
    assert_eq!(v1, original, "a version-1 frame was consumed");
    // The header alone is enough to refuse it, for every kind.
    for kind in [1, 2, 3, 4] {
        let mut header = raw_header(1, kind, 0, 0);
        assert_eq!(
            decode_frame(&mut header).unwrap_err(),
            ProtoError::UnsupportedVersion(1)
        );
        assert_eq!(header.len(), FRAME_HEADER_LEN);
    }
    // Every sample frame, marked version 1.
    for (name, frame) in &sample_frames() {
        let mut buf = encode(frame);
        buf[0] = 1;
        assert_eq!(
            decode_frame(&mut buf).unwrap_err(),
            ProtoError::UnsupportedVersion(1),
            "{name}"
        );
    }
}

#[test]
fn unknown_frame_kind() {
    for kind in [0, 5, 0x80, 0xff] {
        let mut buf = raw_header(PROTOCOL_VERSION, kind, 0, 0);
        assert_eq!(
            decode_frame(&mut buf).unwrap_err(),
            ProtoError::UnknownFrameKind(kind)
        );
        assert_eq!(buf.len(), FRAME_HEADER_LEN, "a bad header was consumed");
        assert_eq!(
            ProtoError::UnknownFrameKind(kind).status(),
            kv_proto::Status::BadRequest
        );
    }
    // 3 (once the invalidation's) and 4 are known: the feed and subscribe.
    for (code, kind) in [(3, FrameKind::Feed), (4, FrameKind::Subscribe)] {
        let header = raw_header(PROTOCOL_VERSION, code, 0, 1);
        assert_eq!(
            FrameHeader::parse(&header).unwrap(),
            Some(FrameHeader { kind, body_len: 1 })
        );
    }
}

#[test]
fn reserved_bits_set() {
    for reserved in [1, 0x0100, 0x8000, 0xffff] {
        let mut buf = raw_header(PROTOCOL_VERSION, 2, reserved, 0);
        assert_eq!(
            FrameHeader::parse(&buf).unwrap_err(),
            ProtoError::ReservedBits(reserved)
        );
        assert_eq!(
            decode_frame(&mut buf).unwrap_err(),
            ProtoError::ReservedBits(reserved)
        );
    }
}

// ------------------------------------------------------------------ the body

#[test]
fn unknown_op_code() {
    for op in [0, 5, 0xff] {
        let body = BodyBuilder::request(21, op).target(b"n", b"k").u8(0);
        let rejected = decode_request(body.clone().body()).unwrap_err();
        assert_eq!(
            rejected,
            RejectedRequest {
                id: Some(RequestId(21)),
                error: ProtoError::InvalidCode {
                    field: "op",
                    code: op
                }
            }
        );
        assert_eq!(rejected.error.status(), kv_proto::Status::BadRequest);
        let mut frame = body.frame(FrameKind::Request);
        assert_eq!(
            decode_frame(&mut frame).unwrap_err(),
            ProtoError::InvalidCode {
                field: "op",
                code: op
            }
        );
    }
}

#[test]
fn unknown_status_tier_and_body_kind_codes() {
    for status in [9, 0xff] {
        let body = BodyBuilder::response(1, status, 0, BODY_EMPTY).body();
        assert_eq!(
            decode_response(body).unwrap_err(),
            ProtoError::InvalidCode {
                field: "status",
                code: status
            }
        );
    }
    for tier in [5, 0xff] {
        let body = BodyBuilder::response(1, 0, tier, BODY_EMPTY).body();
        assert_eq!(
            decode_response(body).unwrap_err(),
            ProtoError::InvalidCode {
                field: "tier",
                code: tier
            }
        );
    }
    for kind in [7, 0xff] {
        let body = BodyBuilder::response(1, 0, 1, kind).body();
        assert_eq!(
            decode_response(body).unwrap_err(),
            ProtoError::InvalidCode {
                field: "body kind",
                code: kind
            }
        );
    }
    assert!(kv_proto::Status::from_code(9).is_err());
    assert!(kv_proto::ErrorSource::from_code(0).is_err());
    assert!(
        kv_proto::Tier::from_code(0).is_err(),
        "0 is no tier, not a tier"
    );
}

#[test]
fn unknown_flag_bits() {
    for flags in [0b1000, 0x80, 0xff] {
        let get = BodyBuilder::request(1, OP_GET)
            .target(b"n", b"k")
            .u8(flags)
            .u64(0)
            .u32(0);
        assert_eq!(
            decode_request(get.body()).unwrap_err().error,
            ProtoError::UnknownFlags {
                field: "get",
                flags
            }
        );
        let put = BodyBuilder::request(1, OP_PUT)
            .write_target(b"n", b"k")
            .u8(flags)
            .u64(0)
            .bytes16(b"{}")
            .bytes32(b"");
        assert_eq!(
            decode_request(put.body()).unwrap_err().error,
            ProtoError::UnknownFlags {
                field: "put",
                flags
            }
        );
        let entry = BodyBuilder::response(1, 0, 1, BODY_ENTRY)
            .u64(1)
            .u8(flags)
            .u64(0)
            .bytes16(b"{}")
            .bytes32(b"");
        assert_eq!(
            decode_response(entry.body()).unwrap_err(),
            ProtoError::UnknownFlags {
                field: "attribute",
                flags
            }
        );
        let page = BodyBuilder::response(1, 0, 4, BODY_PAGE)
            .u16(1)
            .bytes16(b"k")
            .u8(flags)
            .bytes16(b"");
        assert_eq!(
            decode_response(page.body()).unwrap_err(),
            ProtoError::UnknownFlags {
                field: "attribute",
                flags
            }
        );
        let error = BodyBuilder::response(1, 4, 0, BODY_ERROR)
            .failure(SOURCE_LOCAL, flags)
            .bytes16(b"m");
        assert_eq!(
            decode_response(error.body()).unwrap_err(),
            ProtoError::UnknownFlags {
                field: "error",
                flags
            }
        );
    }
}

#[test]
fn trailing_bytes_after_a_valid_body() {
    for (name, frame) in &sample_frames() {
        let encoded = encode(frame);
        for extra in [&b"\0"[..], b"garbage"] {
            let mut body = BytesMut::from(&encoded[FRAME_HEADER_LEN..]);
            body.extend_from_slice(extra);
            let body = body.freeze();
            let expected = ProtoError::TrailingBytes(extra.len());
            match frame {
                Frame::Request(request) => {
                    let rejected = decode_request(body.clone()).unwrap_err();
                    assert_eq!(
                        rejected,
                        RejectedRequest {
                            id: Some(request.id),
                            error: expected.clone()
                        },
                        "{name}"
                    );
                }
                _ => assert_eq!(
                    decode_body(frame.kind(), body.clone()).unwrap_err(),
                    expected,
                    "{name}"
                ),
            }
            // The same through decode_frame, with a header counting the extra bytes.
            let mut buf = BytesMut::from(
                &FrameHeader {
                    kind: frame.kind(),
                    body_len: body.len(),
                }
                .to_bytes()[..],
            );
            buf.extend_from_slice(&body);
            assert_eq!(decode_frame(&mut buf).unwrap_err(), expected, "{name}");
        }
    }
}

#[test]
fn invalid_utf8_in_text_fields() {
    let bad = b"ok\xc3(";
    let get = BodyBuilder::request(1, OP_GET).target(b"n", bad).u8(0);
    assert_eq!(
        decode_request(get.body()).unwrap_err().error,
        ProtoError::InvalidUtf8 { field: "key" }
    );
    for key in [&b"\xff"[..], bad, b"\xed\xa0\x80"] {
        let change = BodyBuilder::change(1, b"n", key, 0);
        assert_eq!(
            decode_feed_event(change.clone().body()).unwrap_err(),
            ProtoError::InvalidUtf8 { field: "key" },
            "{key:?}"
        );
        let mut frame = change.frame(FrameKind::Feed);
        assert_eq!(
            decode_frame(&mut frame).unwrap_err(),
            ProtoError::InvalidUtf8 { field: "key" }
        );
        assert!(frame.is_empty(), "the bad frame was consumed");
    }
    let list = BodyBuilder::request(1, OP_LIST)
        .bytes8(b"n")
        .bytes16(bad)
        .bytes16(b"")
        .u16(1);
    assert_eq!(
        decode_request(list.body()).unwrap_err().error,
        ProtoError::InvalidUtf8 { field: "prefix" }
    );
    let list = BodyBuilder::request(1, OP_LIST)
        .bytes8(b"n")
        .bytes16(b"")
        .bytes16(bad)
        .u16(1);
    assert_eq!(
        decode_request(list.body()).unwrap_err().error,
        ProtoError::InvalidUtf8 { field: "cursor" }
    );
    let page = BodyBuilder::response(1, 0, 4, BODY_PAGE)
        .u16(1)
        .bytes16(bad)
        .u8(0)
        .bytes16(b"");
    assert_eq!(
        decode_response(page.body()).unwrap_err(),
        ProtoError::InvalidUtf8 { field: "name" }
    );
    let page = BodyBuilder::response(1, 0, 4, BODY_PAGE)
        .u16(0)
        .bytes16(bad);
    assert_eq!(
        decode_response(page.body()).unwrap_err(),
        ProtoError::InvalidUtf8 { field: "cursor" }
    );
    let error = BodyBuilder::error_response(1, 5, bad);
    assert_eq!(
        decode_response(error.body()).unwrap_err(),
        ProtoError::InvalidUtf8 { field: "message" }
    );
    assert_eq!(
        ProtoError::InvalidUtf8 { field: "key" }.status(),
        kv_proto::Status::BadRequest
    );
    // A UTF-16 surrogate encoded as UTF-8 is not UTF-8.
    let get = BodyBuilder::request(1, OP_GET)
        .target(b"n", b"\xed\xa0\x80")
        .u8(0);
    assert_eq!(
        decode_request(get.body()).unwrap_err().error,
        ProtoError::InvalidUtf8 { field: "key" }
    );
}

#[test]
fn rejected_request_carries_the_id_only_when_the_body_held_one() {
    let id = 0xfeed_f00d_dead_beef_u64;
    // Eight or more bytes: the id is there, whatever follows is wrong.
    for body in [
        BodyBuilder::new().u64(id),
        BodyBuilder::request(id, 0),
        BodyBuilder::request(id, OP_GET).bytes8(b"bad.ns"),
        BodyBuilder::request(id, OP_DELETE)
            .write_target(b"n", b"k")
            .u8(0),
        BodyBuilder::new().u64(id).u8(0),
        BodyBuilder::request(id, OP_DELETE).target(b"n", b"k"),
    ] {
        assert_eq!(
            decode_request(body.body()).unwrap_err().id,
            Some(RequestId(id))
        );
    }
    // Fewer than eight bytes: no id.
    for len in 0..8 {
        let rejected = decode_request(Bytes::from(vec![0xab; len])).unwrap_err();
        assert_eq!(rejected.id, None, "{len} bytes");
        assert_eq!(
            rejected.error,
            ProtoError::Truncated {
                field: "request id"
            }
        );
    }
}

#[test]
fn a_request_cut_inside_its_budget_is_truncated_and_keeps_its_id() {
    let id = 0x0bad_cafe_u64;
    let whole = BodyBuilder::request_with_budget(id, 0x0102_0304, OP_GET)
        .target(b"n", b"k")
        .u8(0)
        .body();
    assert_eq!(
        decode_request(whole.clone()).unwrap().budget,
        std::time::Duration::from_millis(0x0102_0304)
    );
    for len in 8..12 {
        let rejected = decode_request(whole.slice(..len)).unwrap_err();
        assert_eq!(
            rejected,
            RejectedRequest {
                id: Some(RequestId(id)),
                error: ProtoError::Truncated { field: "budget" }
            },
            "{len} bytes"
        );
        let mut frame = BodyBuilder(whole[..len].to_vec()).frame(FrameKind::Request);
        assert_eq!(
            decode_frame(&mut frame).unwrap_err(),
            ProtoError::Truncated { field: "budget" }
        );
    }
    // With the budget complete, what is missing is the op.
    assert_eq!(
        decode_request(whole.slice(..12)).unwrap_err().error,
        ProtoError::Truncated { field: "op" }
    );
}

#[test]
fn a_write_cut_inside_its_write_id_is_truncated_and_keeps_its_id() {
    let id = 0x5eed_u64;
    // Request id, budget, op, namespace "n", key "k": the write id follows.
    let start = 8 + 4 + 1 + (1 + 1) + (2 + 1);
    let put = BodyBuilder::request(id, OP_PUT)
        .write_target(b"n", b"k")
        .u8(0)
        .bytes32(b"v")
        .body();
    let delete = BodyBuilder::request(id, OP_DELETE)
        .write_target(b"n", b"k")
        .body();
    assert_eq!(delete.len(), start + 16);
    for (name, whole) in [("put", put), ("delete", delete)] {
        assert_eq!(&whole[start..start + 16], &SAMPLE_WRITE_ID.0.to_be_bytes());
        let request = decode_request(whole.clone()).unwrap();
        match request.op {
            kv_proto::Op::Put(put) => assert_eq!(put.write_id, SAMPLE_WRITE_ID),
            kv_proto::Op::Delete(delete) => assert_eq!(delete.write_id, SAMPLE_WRITE_ID),
            op => panic!("{name}: {op:?}"),
        }
        // Before the write id: the key is what is missing.
        assert_eq!(
            decode_request(whole.slice(..start - 1)).unwrap_err().error,
            ProtoError::Truncated { field: "key" },
            "{name}"
        );
        for len in start..start + 16 {
            let rejected = decode_request(whole.slice(..len)).unwrap_err();
            assert_eq!(
                rejected,
                RejectedRequest {
                    id: Some(RequestId(id)),
                    error: ProtoError::Truncated { field: "write id" }
                },
                "{name}, {len} bytes"
            );
            let mut frame = BodyBuilder(whole[..len].to_vec()).frame(FrameKind::Request);
            assert_eq!(
                decode_frame(&mut frame).unwrap_err(),
                ProtoError::Truncated { field: "write id" },
                "{name}, {len} bytes"
            );
            assert!(frame.is_empty(), "the bad frame was consumed");
        }
    }
    // A PUT cut right after its write id misses its flags.
    let put = BodyBuilder::request(id, OP_PUT)
        .write_target(b"n", b"k")
        .body();
    assert_eq!(
        decode_request(put).unwrap_err().error,
        ProtoError::Truncated { field: "put flags" }
    );
}

#[test]
fn unknown_error_source_code() {
    for code in [0, 4, 0x80, 0xff] {
        for flags in [0, ERROR_RETRYABLE] {
            let body = BodyBuilder::response(3, 4, 0, BODY_ERROR)
                .failure(code, flags)
                .bytes16(b"store unreachable");
            let err = decode_response(body.clone().body()).unwrap_err();
            assert_eq!(
                err,
                ProtoError::InvalidCode {
                    field: "error source",
                    code
                }
            );
            let mut frame = body.frame(FrameKind::Response);
            assert_eq!(decode_frame(&mut frame).unwrap_err(), err);
            assert!(frame.is_empty());
        }
    }
    // The known ones decode, retryable or not.
    for (code, source) in [
        (SOURCE_CALLER, kv_proto::ErrorSource::Caller),
        (SOURCE_LOCAL, kv_proto::ErrorSource::Local),
        (SOURCE_UPSTREAM, kv_proto::ErrorSource::Upstream),
    ] {
        for (flags, retryable) in [(0, false), (ERROR_RETRYABLE, true)] {
            let body = BodyBuilder::response(3, 4, 0, BODY_ERROR)
                .failure(code, flags)
                .bytes16(b"m");
            let response = decode_response(body.body()).unwrap();
            assert_eq!(
                response.failure_info(),
                Some(&kv_proto::Failure {
                    source,
                    retryable,
                    message: "m".into()
                })
            );
        }
    }
}

#[test]
fn unknown_error_flags() {
    for flags in 0..=u8::MAX {
        let body = BodyBuilder::response(3, 5, 0, BODY_ERROR)
            .failure(SOURCE_LOCAL, flags)
            .bytes16(b"m")
            .body();
        let result = decode_response(body);
        if flags & !ERROR_RETRYABLE == 0 {
            assert_eq!(
                result.unwrap().is_retryable(),
                flags == ERROR_RETRYABLE,
                "{flags:#04x}"
            );
        } else {
            assert_eq!(
                result.unwrap_err(),
                ProtoError::UnknownFlags {
                    field: "error",
                    flags
                },
                "{flags:#04x}"
            );
        }
    }
}

#[test]
fn truncated_error_and_deleted_bodies() {
    let error = BodyBuilder::response(1, 4, 0, BODY_ERROR)
        .failure(SOURCE_UPSTREAM, ERROR_RETRYABLE)
        .bytes16(b"m")
        .body();
    // Id, status, tier, age and body kind take 15 bytes.
    let fields = [
        (11, "age"),
        (13, "age"),
        (14, "body kind"),
        (15, "error source"),
        (16, "error flags"),
        (17, "message"),
        (18, "message"),
        (19, "message"),
    ];
    assert_eq!(error.len(), 20);
    for (len, field) in fields {
        assert_eq!(
            decode_response(error.slice(..len)).unwrap_err(),
            ProtoError::Truncated { field },
            "{len} bytes"
        );
    }
    assert!(decode_response(error).is_ok());

    let deleted = BodyBuilder::response(1, 1, 1, BODY_DELETED).u64(7).body();
    for len in 15..23 {
        assert_eq!(
            decode_response(deleted.slice(..len)).unwrap_err(),
            ProtoError::Truncated { field: "version" },
            "{len} bytes"
        );
    }
    assert_eq!(
        decode_response(deleted).unwrap().body,
        kv_proto::Body::Deleted { version: 7 }
    );
}

/// After a frame whose body is bad, the stream goes on with the next frame.
#[test]
fn a_bad_body_is_consumed_and_the_next_frame_decodes() {
    let mut buf = BodyBuilder::request(1, 0xee).frame(FrameKind::Request);
    let (_, good) = sample_frames().swap_remove(0);
    encode_frame(&good, &mut buf);
    assert!(matches!(
        decode_frame(&mut buf),
        Err(ProtoError::InvalidCode { field: "op", .. })
    ));
    assert_eq!(decode_frame(&mut buf).unwrap(), Some(good));
    assert!(buf.is_empty());
}

#[test]
fn empty_input() {
    assert_eq!(decode_frame(&mut BytesMut::new()).unwrap(), None);
    assert_eq!(decode_request(Bytes::new()).unwrap_err().id, None);
    assert!(matches!(
        decode_response(Bytes::new()),
        Err(ProtoError::Truncated { .. })
    ));
    assert_eq!(
        decode_feed_event(Bytes::new()),
        Err(ProtoError::Truncated {
            field: "feed event kind"
        })
    );
    assert_eq!(
        decode_subscribe(Bytes::new()),
        Err(ProtoError::Truncated {
            field: "subscribe flags"
        })
    );
    // A header declaring an empty body: no kind has an empty body.
    for kind in KINDS {
        let mut buf = BodyBuilder::new().frame(kind);
        assert!(
            matches!(decode_frame(&mut buf), Err(ProtoError::Truncated { .. })),
            "{kind:?}"
        );
        assert!(buf.is_empty(), "the empty frame was consumed");
    }
}

// ---------------------------------------------------------------------- feed

/// Decodes `body` as a feed event both ways, as a body and as a whole frame,
/// checks both give `expected` and that the frame was consumed.
fn assert_feed_error(body: BodyBuilder, expected: &ProtoError) {
    assert_eq!(
        decode_feed_event(body.clone().body()).as_ref(),
        Err(expected),
        "{:x?}",
        body.0
    );
    let mut frame = body.frame(FrameKind::Feed);
    assert_eq!(decode_frame(&mut frame).as_ref(), Err(expected));
    assert!(frame.is_empty(), "the bad frame was consumed");
}

/// The same for a subscribe body.
fn assert_subscribe_error(body: BodyBuilder, expected: &ProtoError) {
    assert_eq!(
        decode_subscribe(body.clone().body()).as_ref(),
        Err(expected),
        "{:x?}",
        body.0
    );
    let mut frame = body.frame(FrameKind::Subscribe);
    assert_eq!(decode_frame(&mut frame).as_ref(), Err(expected));
    assert!(frame.is_empty(), "the bad frame was consumed");
}

#[test]
fn unknown_feed_event_kind() {
    for kind in [0, 4, 0x80, 0xff] {
        let err = ProtoError::InvalidCode {
            field: "feed event kind",
            code: kind,
        };
        assert_eq!(err.status(), Status::BadRequest);
        // Alone, and followed by what a resync would hold.
        assert_feed_error(BodyBuilder::new().u8(kind), &err);
        assert_feed_error(BodyBuilder::new().u8(kind).u64(1), &err);
    }
    // The known kinds, each with a whole body, decode.
    for body in [
        BodyBuilder::sync(1, 2, 0),
        BodyBuilder::change(1, b"n", b"k", 0),
        BodyBuilder::new().u8(FEED_RESYNC).u64(1),
    ] {
        assert!(decode_feed_event(body.body()).is_ok());
    }
}

/// Every value of a change's flags byte: unknown bits are refused, so are
/// metadata without a value and a tombstone with a value, and everything
/// else decodes to what the bits say.
#[test]
fn every_change_flags_byte() {
    for flags in 0..=u8::MAX {
        // The fields the flags announce, in their order.
        let mut body = BodyBuilder::change(5, b"n", b"k", flags);
        if flags & CHANGE_EXPIRATION != 0 {
            body = body.u64(1_900_000_000);
        }
        if flags & CHANGE_METADATA != 0 {
            body = body.bytes16(b"{}");
        }
        if flags & CHANGE_VALUE != 0 {
            body = body.bytes32(b"v");
        }
        let tombstone = flags & CHANGE_TOMBSTONE != 0;
        let has_value = flags & CHANGE_VALUE != 0;
        let has_metadata = flags & CHANGE_METADATA != 0;
        if flags & !CHANGE_KNOWN_FLAGS != 0 {
            assert_feed_error(
                body,
                &ProtoError::UnknownFlags {
                    field: "change",
                    flags,
                },
            );
        } else if (has_metadata && !has_value) || (tombstone && has_value) {
            assert_feed_error(
                body,
                &ProtoError::InvalidCode {
                    field: "change flags",
                    code: flags,
                },
            );
        } else {
            let Ok(FeedEvent::Change { seq, change }) = decode_feed_event(body.body()) else {
                panic!("{flags:#06b} was refused");
            };
            assert_eq!(seq, 5);
            assert_eq!(change.namespace, ns("n"));
            assert_eq!(change.key, key("k"));
            assert_eq!(change.version, SAMPLE_VERSION);
            assert_eq!(change.commit_ms, SAMPLE_COMMIT_MS);
            assert_eq!(change.tombstone, tombstone, "{flags:#06b}");
            assert_eq!(
                change.expiration,
                (flags & CHANGE_EXPIRATION != 0).then_some(1_900_000_000),
                "{flags:#06b}"
            );
            let value = change.value.as_ref();
            assert_eq!(value.is_some(), has_value, "{flags:#06b}");
            assert_eq!(
                value.and_then(|v| v.metadata.as_ref()).map(|m| m.as_str()),
                has_metadata.then_some("{}"),
                "{flags:#06b}"
            );
            if let Some(value) = value {
                assert_eq!(&value.value[..], b"v");
            }
        }
    }
}

#[test]
fn unknown_change_flag_bits() {
    for flags in [0x10, 0x20, 0x80, 0xf0, 0xff] {
        assert_feed_error(
            BodyBuilder::change(1, b"n", b"k", flags),
            &ProtoError::UnknownFlags {
                field: "change",
                flags,
            },
        );
    }
}

#[test]
fn change_with_metadata_but_no_value_is_refused() {
    for flags in [
        CHANGE_METADATA,
        CHANGE_METADATA | CHANGE_EXPIRATION,
        CHANGE_METADATA | CHANGE_TOMBSTONE,
    ] {
        let err = ProtoError::InvalidCode {
            field: "change flags",
            code: flags,
        };
        assert_eq!(err.status(), Status::BadRequest);
        // With the metadata present, and with the body ending at the flags.
        assert_feed_error(
            BodyBuilder::change(1, b"n", b"k", flags)
                .u64(1)
                .bytes16(b"{}"),
            &err,
        );
        assert_feed_error(BodyBuilder::change(1, b"n", b"k", flags), &err);
    }
}

#[test]
fn tombstone_with_a_value_is_refused() {
    for flags in [
        CHANGE_TOMBSTONE | CHANGE_VALUE,
        CHANGE_TOMBSTONE | CHANGE_VALUE | CHANGE_METADATA,
        CHANGE_KNOWN_FLAGS,
    ] {
        let mut body = BodyBuilder::change(1, b"n", b"k", flags);
        if flags & CHANGE_EXPIRATION != 0 {
            body = body.u64(1);
        }
        if flags & CHANGE_METADATA != 0 {
            body = body.bytes16(b"{}");
        }
        assert_feed_error(
            body.bytes32(b"v"),
            &ProtoError::InvalidCode {
                field: "change flags",
                code: flags,
            },
        );
    }
    // The encoder writes what it is given; the decoder refuses it.
    let frame = Frame::Feed(FeedEvent::Change {
        seq: 1,
        change: kv_proto::Change {
            tombstone: true,
            value: Some(kv_proto::InlineValue {
                metadata: None,
                value: Bytes::from_static(b"v"),
            }),
            ..plain_change("n", "k", 1)
        },
    });
    let mut buf = encode(&frame);
    assert_eq!(
        decode_frame(&mut buf).unwrap_err(),
        ProtoError::InvalidCode {
            field: "change flags",
            code: CHANGE_TOMBSTONE | CHANGE_VALUE
        }
    );
    assert!(buf.is_empty());
}

#[test]
fn unknown_sync_flag_bits() {
    for flags in 0..=u8::MAX {
        let body = BodyBuilder::sync(3, 4, flags);
        if flags & !SYNC_GAP == 0 {
            assert_eq!(
                decode_feed_event(body.body()).unwrap(),
                FeedEvent::Sync {
                    epoch: 3,
                    next_seq: 4,
                    gap: flags == SYNC_GAP
                }
            );
        } else {
            assert_feed_error(
                body,
                &ProtoError::UnknownFlags {
                    field: "sync",
                    flags,
                },
            );
        }
    }
}

#[test]
fn trailing_bytes_after_a_feed_event() {
    for (body, extra) in [
        (BodyBuilder::sync(1, 2, SYNC_GAP), 1),
        (BodyBuilder::new().u8(FEED_RESYNC).u64(1), 8),
        (BodyBuilder::change(1, b"n", b"k", CHANGE_TOMBSTONE), 3),
        // A value's bytes past its declared length.
        (
            BodyBuilder::change(1, b"n", b"k", CHANGE_VALUE).bytes32(b"v"),
            2,
        ),
    ] {
        assert!(decode_feed_event(body.clone().body()).is_ok());
        let body = body.raw(&vec![0xaa; extra]);
        assert_feed_error(body, &ProtoError::TrailingBytes(extra));
    }
}

// ----------------------------------------------------------------- subscribe

#[test]
fn unknown_subscribe_flag_bits() {
    for flags in 0..=u8::MAX {
        // The cursor is there whatever the flags say.
        let body = BodyBuilder::new().u8(flags).u64(7).u64(8);
        match flags {
            0 => assert_subscribe_error(body, &ProtoError::TrailingBytes(16)),
            SUBSCRIBE_RESUME => assert_eq!(
                decode_subscribe(body.body()).unwrap().resume,
                Some(kv_proto::Cursor {
                    epoch: 7,
                    next_seq: 8
                })
            ),
            _ => {
                let err = ProtoError::UnknownFlags {
                    field: "subscribe",
                    flags,
                };
                assert_eq!(err.status(), Status::BadRequest);
                assert_subscribe_error(body, &err);
                // Refused from the flags alone.
                assert_subscribe_error(BodyBuilder::new().u8(flags), &err);
            }
        }
    }
}

#[test]
fn a_subscribe_cut_inside_its_cursor_is_truncated() {
    let whole = BodyBuilder::subscribe_resume(0x0102_0304_0506_0708, 0x1112_1314_1516_1718);
    assert_eq!(whole.0.len(), 17);
    assert!(decode_subscribe(whole.clone().body()).is_ok());
    for len in 1..17 {
        let field = if len < 9 { "epoch" } else { "next_seq" };
        assert_subscribe_error(
            BodyBuilder(whole.0[..len].to_vec()),
            &ProtoError::Truncated { field },
        );
    }
    // A first subscription is one byte; a resume flag promises more.
    assert!(decode_subscribe(BodyBuilder::new().u8(0).body()).is_ok());
    assert_subscribe_error(
        BodyBuilder::new().u8(SUBSCRIBE_RESUME),
        &ProtoError::Truncated { field: "epoch" },
    );
}

/// A subscribe over its small limit is refused from its header alone.
#[test]
fn an_oversized_subscribe_is_refused_from_its_header() {
    let max = kv_proto::limits::MAX_SUBSCRIBE_BODY;
    let mut buf = BodyBuilder::subscribe_resume(1, 2)
        .raw(&vec![0; max + 1 - 17])
        .frame(FrameKind::Subscribe);
    let original = buf.clone();
    let expected = ProtoError::FrameTooLarge { len: max + 1, max };
    assert_eq!(decode_frame(&mut buf).unwrap_err(), expected);
    assert_eq!(buf, original, "a bad header was consumed");
}

// ------------------------------------------------------------------ proptest

/// Re-encoding a decoded frame gives bytes that decode to an equal frame.
fn assert_reencodes(frame: &Frame) -> Result<(), TestCaseError> {
    let mut buf = encode(frame);
    prop_assert_eq!(encode_via_chunks(frame), buf.clone());
    let again = decode_frame(&mut buf);
    prop_assert_eq!(again.as_ref().ok().and_then(Option::as_ref), Some(frame));
    prop_assert!(buf.is_empty());
    Ok(())
}

/// Arbitrary bytes through every decoder: no panic, and whatever decodes re-encodes.
fn feed(data: &[u8]) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decode_frame(&mut buf) {
        assert_reencodes(&frame)?;
    }
    let body = Bytes::copy_from_slice(data);
    match decode_request(body.clone()) {
        Ok(request) => assert_reencodes(&Frame::Request(request))?,
        Err(rejected) => prop_assert_eq!(rejected.id.is_some(), data.len() >= 8),
    }
    if let Ok(response) = decode_response(body.clone()) {
        assert_reencodes(&Frame::Response(response))?;
    }
    if let Ok(event) = decode_feed_event(body.clone()) {
        assert_reencodes(&Frame::Feed(event))?;
    }
    if let Ok(subscribe) = decode_subscribe(body) {
        assert_reencodes(&Frame::Subscribe(subscribe))?;
    }
    Ok(())
}

/// Arbitrary bytes behind a valid header of a random kind, within that
/// kind's limit, so the body decoders see most of the input.
fn with_header() -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(KINDS.to_vec())
        .prop_flat_map(|kind| {
            let len = kind.max_body_len().min(2047);
            (Just(kind), proptest::collection::vec(any::<u8>(), 0..=len))
        })
        .prop_map(|(kind, body)| BodyBuilder(body).frame(kind).to_vec())
}

/// A feed event of a known kind (and for a change, known flags) with
/// arbitrary bytes after it, so the change decoder sees more than its first
/// byte.
fn feed_body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(vec![FEED_SYNC, FEED_CHANGE, FEED_RESYNC]),
        0..=CHANGE_KNOWN_FLAGS,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(kind, flags, tail)| {
            let body = match kind {
                FEED_CHANGE => BodyBuilder::change(1, b"n", b"k", flags),
                kind => BodyBuilder::new().u8(kind).u64(1),
            };
            body.raw(&tail).frame(FrameKind::Feed).to_vec()
        })
}

/// A valid frame with a few bytes overwritten, then cut short, doubled, or
/// given extra body bytes.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        frame_strategy(),
        proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
        any::<proptest::sample::Index>(),
        0u8..4,
        proptest::collection::vec(any::<u8>(), 1..4),
    )
        .prop_map(|(frame, edits, cut, shape, extra)| {
            let mut bytes = encode(&frame).to_vec();
            // Edits anywhere: in the header they mostly make header errors, in
            // a value or a name they often leave a frame that still decodes.
            for (at, byte) in edits {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            match shape {
                0 => bytes.truncate(cut.index(bytes.len() + 1)),
                1 => bytes.extend_from_slice(&bytes.clone()),
                // Extra bytes in the body, counted by the header.
                2 if bytes.len() >= FRAME_HEADER_LEN => {
                    bytes.extend_from_slice(&extra);
                    let body_len = u32::try_from(bytes.len() - FRAME_HEADER_LEN).unwrap();
                    bytes[4..8].copy_from_slice(&body_len.to_be_bytes());
                }
                _ => {}
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        feed(&data)?;
        kv_proto::fuzzing::check_decoder(&data);
    }

    #[test]
    fn arbitrary_bodies_never_panic(data in with_header()) {
        feed(&data)?;
        feed(&data[FRAME_HEADER_LEN..])?;
        kv_proto::fuzzing::check_decoder(&data);
    }

    #[test]
    fn arbitrary_feed_tails_never_panic(data in feed_body()) {
        feed(&data)?;
        feed(&data[FRAME_HEADER_LEN..])?;
        kv_proto::fuzzing::check_decoder(&data);
    }

    #[test]
    fn mutated_frames_never_panic(data in mutated_frame()) {
        feed(&data)?;
        if data.len() > FRAME_HEADER_LEN {
            feed(&data[FRAME_HEADER_LEN..])?;
        }
        kv_proto::fuzzing::check_decoder(&data);
    }
}
