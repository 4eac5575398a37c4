//! Round trips of every frame kind through the encoders and decoders.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use kv_proto::{
    Body, Entry, FRAME_HEADER_LEN, Frame, FrameHeader, FrameKind, ListPage, ListedKey, Op,
    PutRequest, Request, RequestId, Response, Status, Tier, decode_frame, decode_invalidation,
    decode_request, decode_response,
};
use proptest::prelude::*;

/// Checks every way of encoding and decoding `frame`.
fn assert_round_trip(frame: &Frame) {
    let encoded = encode(frame);
    let header = FrameHeader::parse(&encoded).unwrap().unwrap();
    assert_eq!(header.kind, frame.kind());
    assert_eq!(header.body_len, encoded.len() - FRAME_HEADER_LEN);

    // encode_chunks, concatenated, is the same frame.
    assert_eq!(encode_via_chunks(frame), encoded);

    // decode_frame takes exactly the frame off the buffer.
    let mut buf = encoded.clone();
    assert_eq!(decode_frame(&mut buf).unwrap().as_ref(), Some(frame));
    assert!(buf.is_empty());

    // The body decoders agree.
    let body = encoded.clone().freeze().slice(FRAME_HEADER_LEN..);
    match frame {
        Frame::Request(r) => assert_eq!(&decode_request(body).unwrap(), r),
        Frame::Response(r) => assert_eq!(&decode_response(body).unwrap(), r),
        Frame::Invalidation(i) => assert_eq!(&decode_invalidation(body).unwrap(), i),
    }
}

/// The value a frame carries as a separate chunk, if any.
fn carried_value(frame: &Frame) -> Option<&Bytes> {
    match frame {
        Frame::Request(Request {
            op: Op::Put(put), ..
        }) => Some(&put.value),
        Frame::Response(Response {
            body: Body::Entry(entry),
            ..
        }) => Some(&entry.value),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn request_round_trips(request in request_strategy()) {
        assert_round_trip(&Frame::Request(request));
    }

    #[test]
    fn response_round_trips(response in response_strategy()) {
        assert_round_trip(&Frame::Response(response));
    }

    #[test]
    fn invalidation_round_trips(invalidation in invalidation_strategy()) {
        assert_round_trip(&Frame::Invalidation(invalidation));
    }

    /// A value goes out as its own chunk, sharing memory with the frame's value.
    #[test]
    fn encode_chunks_does_not_copy_the_value(frame in frame_strategy()) {
        let (head, tail) = frame.encode_chunks();
        match (carried_value(&frame), tail) {
            (Some(value), Some(tail)) => {
                prop_assert_eq!(&tail, value);
                prop_assert_eq!(tail.as_ptr(), value.as_ptr());
                prop_assert_eq!(head.len() + tail.len(), encode(&frame).len());
            }
            (None, None) => prop_assert_eq!(head.len(), encode(&frame).len()),
            (value, tail) => prop_assert!(false, "value {:?} but tail {:?}", value.map(Bytes::len), tail.map(|t| t.len())),
        }
    }

    /// Several frames back to back come off one buffer in order.
    #[test]
    fn frames_back_to_back(frames in proptest::collection::vec(frame_strategy(), 1..5)) {
        let mut buf = BytesMut::new();
        for frame in &frames {
            kv_proto::encode_frame(frame, &mut buf);
        }
        for frame in &frames {
            let decoded = decode_frame(&mut buf).unwrap();
            prop_assert_eq!(decoded.as_ref(), Some(frame));
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode_frame(&mut buf).unwrap(), None);
    }
}

#[test]
fn sample_frames_round_trip() {
    let samples = sample_frames();
    assert!(samples.len() >= 15);
    for (name, frame) in &samples {
        eprintln!("{name}");
        assert_round_trip(frame);
    }
}

#[test]
fn every_status_tier_and_body_kind_round_trips() {
    let bodies = [
        Body::Empty,
        Body::Entry(Entry {
            version: 1,
            expiration: Some(2),
            metadata: Some(meta(r#"{"a":[1,2,{"b":null}]}"#)),
            value: Bytes::from_static(b"v"),
        }),
        Body::Written { version: u64::MAX },
        Body::Page(ListPage {
            keys: vec![ListedKey {
                name: key("k/😀"),
                expiration: None,
                metadata: Some(meta("true")),
            }],
            cursor: None,
        }),
        Body::Page(ListPage {
            keys: vec![],
            cursor: Some("c".into()),
        }),
        Body::Error {
            message: String::new(),
        },
        Body::Error {
            message: "ünïcödé".into(),
        },
    ];
    let tiers = std::iter::once(None).chain(Tier::ALL.iter().copied().map(Some));
    let mut count = 0;
    for tier in tiers {
        for &status in Status::ALL {
            for body in &bodies {
                assert_round_trip(&response(count, status, tier, body.clone()));
                count += 1;
            }
        }
    }
    assert_eq!(count, 5 * 6 * 7);
    assert_eq!(Status::ALL.len(), 6);
    assert_eq!(Tier::ALL.len(), 4);
}

#[test]
fn status_and_tier_codes_round_trip() {
    for &status in Status::ALL {
        assert_eq!(Status::from_code(status.code()).unwrap(), status);
    }
    for &tier in Tier::ALL {
        assert_eq!(Tier::from_code(tier.code()).unwrap(), tier);
        assert_ne!(tier.code(), 0, "tier code 0 means no tier on the wire");
    }
}

#[test]
fn request_id_text_round_trips() {
    for id in [0, 1, 0x0123_4567_89ab_cdef, u64::MAX] {
        let id = RequestId(id);
        let text = id.to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(text.parse::<RequestId>().unwrap(), id);
    }
}

/// Representative frames, split at every byte boundary: any strict prefix is
/// `Ok(None)` and consumes nothing; the rest arriving completes the frame.
#[test]
fn split_at_every_byte_boundary() {
    let put = request(
        9,
        Op::Put(PutRequest {
            expiration: Some(10),
            metadata: Some(meta(r#"{"k":"v"}"#)),
            ..PutRequest::new(
                ns("ns"),
                key("a/é"),
                Bytes::from_static(b"some value bytes"),
            )
            .unwrap()
        }),
    );
    let frames = [
        put,
        sample_frames()
            .into_iter()
            .find(|(n, _)| *n == "response-page")
            .unwrap()
            .1,
        sample_frames()
            .into_iter()
            .find(|(n, _)| *n == "invalidation")
            .unwrap()
            .1,
    ];
    for frame in &frames {
        let encoded = encode(frame);
        for split in 0..encoded.len() {
            let mut buf = BytesMut::from(&encoded[..split]);
            assert_eq!(
                decode_frame(&mut buf).unwrap(),
                None,
                "prefix of {split} bytes"
            );
            assert_eq!(&buf[..], &encoded[..split], "a prefix was consumed");
            buf.extend_from_slice(&encoded[split..]);
            assert_eq!(
                decode_frame(&mut buf).unwrap().as_ref(),
                Some(frame),
                "split at {split}"
            );
            assert!(buf.is_empty());
        }
    }
}

/// Bytes arriving one at a time, for two frames back to back.
#[test]
fn byte_at_a_time_stream() {
    let samples = sample_frames();
    let frames: Vec<&Frame> = samples.iter().map(|(_, f)| f).take(6).collect();
    let mut wire = BytesMut::new();
    for frame in &frames {
        kv_proto::encode_frame(frame, &mut wire);
    }
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for &byte in wire.iter() {
        buf.extend_from_slice(&[byte]);
        if let Some(frame) = decode_frame(&mut buf).unwrap() {
            decoded.push(frame);
        }
    }
    assert!(buf.is_empty());
    assert_eq!(decoded.iter().collect::<Vec<_>>(), frames);
}

#[test]
fn two_frames_in_one_buffer_decode_in_order() {
    let first = request(
        1,
        Op::Delete(kv_proto::DeleteRequest {
            namespace: ns("a"),
            key: key("x"),
        }),
    );
    let second = response(
        1,
        Status::Ok,
        Some(Tier::Origin),
        Body::Written { version: 5 },
    );
    let mut buf = encode(&first);
    buf.extend_from_slice(&encode(&second));
    assert_eq!(decode_frame(&mut buf).unwrap(), Some(first));
    assert_eq!(decode_frame(&mut buf).unwrap(), Some(second));
    assert_eq!(decode_frame(&mut buf).unwrap(), None);
    assert!(buf.is_empty());
}

/// Whether `inner` lies wholly inside the memory of `outer`. Compares
/// addresses only, so it needs no `unsafe`.
fn lies_within(inner: &[u8], outer: &[u8]) -> bool {
    let outer_start = outer.as_ptr() as usize;
    let outer_end = outer_start + outer.len();
    let inner_start = inner.as_ptr() as usize;
    inner_start >= outer_start && inner_start + inner.len() <= outer_end
}

fn put_with_value(value: Bytes) -> Frame {
    request(
        3,
        Op::Put(PutRequest::new(ns("zc"), key("zero/copy"), value).unwrap()),
    )
}

/// `decode_frame` slices a PUT's value out of the receive buffer.
#[test]
fn decode_frame_does_not_copy_the_value() {
    let value = Bytes::from(vec![0xa5; 4096]);
    let mut buf = encode(&put_with_value(value.clone()));
    // The whole frame, as received: the value must come from this memory.
    let received = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let frame = decode_frame(&mut buf).unwrap().unwrap();
    let Frame::Request(Request {
        op: Op::Put(put), ..
    }) = frame
    else {
        panic!("not a PUT: {frame:?}")
    };
    assert_eq!(put.value, value);
    let start = put.value.as_ptr() as usize;
    assert!(
        received.contains(&start),
        "value at {start:#x} is outside the buffer {received:x?}"
    );
    assert!(start + put.value.len() <= received.end);
    // And not the encoder's copy: it sits at the end of the frame.
    assert_eq!(start + put.value.len(), received.end);
}

/// The body decoders slice values out of the frozen input, for requests and responses.
#[test]
fn body_decoders_do_not_copy_the_value() {
    let value = Bytes::from(vec![0x5a; 1000]);
    let frozen = encode(&put_with_value(value.clone())).freeze();
    let put = match decode_request(frozen.slice(FRAME_HEADER_LEN..)).unwrap().op {
        Op::Put(put) => put,
        op => panic!("not a PUT: {op:?}"),
    };
    assert_eq!(put.value, value);
    assert!(lies_within(&put.value, &frozen));
    assert!(
        !lies_within(&put.value, &value),
        "the value was not re-read from the frame"
    );

    let entry = Entry {
        version: 1,
        expiration: None,
        metadata: None,
        value: value.clone(),
    };
    let frozen = encode(&Frame::Response(Response::entry(
        RequestId(1),
        Tier::Edge,
        entry,
    )))
    .freeze();
    let Body::Entry(decoded) = decode_response(frozen.slice(FRAME_HEADER_LEN..))
        .unwrap()
        .body
    else {
        panic!("not an entry");
    };
    assert_eq!(decoded.value, value);
    assert!(lies_within(&decoded.value, &frozen));
}

#[test]
fn response_constructors() {
    let id = RequestId(77);
    let entry = Entry {
        version: 3,
        expiration: None,
        metadata: None,
        value: Bytes::from_static(b"x"),
    };
    let cases = [
        (
            Response::entry(id, Tier::RegionalMemory, entry),
            Status::Ok,
            Some(Tier::RegionalMemory),
        ),
        (
            Response::not_found(id, Tier::Edge),
            Status::NotFound,
            Some(Tier::Edge),
        ),
        (Response::written(id, 4), Status::Ok, Some(Tier::Origin)),
        (
            Response::page(id, ListPage::default()),
            Status::Ok,
            Some(Tier::Origin),
        ),
        (
            Response::error(id, Status::Internal, "boom"),
            Status::Internal,
            None,
        ),
    ];
    for (response, status, tier) in cases {
        assert_eq!(response.id, id);
        assert_eq!(response.status, status);
        assert_eq!(response.tier, tier);
        assert_round_trip(&Frame::Response(response));
    }
    assert_eq!(
        Response::error(id, Status::BadRequest, "why").message(),
        Some("why")
    );
    assert_eq!(Response::written(id, 1).message(), None);
}

#[test]
fn frame_kinds_and_limits() {
    assert_eq!(
        FrameKind::Request.max_body_len(),
        kv_proto::limits::MAX_REQUEST_BODY
    );
    assert_eq!(
        FrameKind::Response.max_body_len(),
        kv_proto::limits::MAX_RESPONSE_BODY
    );
    assert_eq!(
        FrameKind::Invalidation.max_body_len(),
        kv_proto::limits::MAX_INVALIDATION_BODY
    );
    assert_eq!(FrameKind::Request.name(), "request");
    assert_eq!(FrameKind::Response.name(), "response");
    assert_eq!(FrameKind::Invalidation.name(), "invalidation");
}

/// The strategies reach what the round trips claim to cover: keys at the
/// 512-byte limit, with `/` and non-ASCII, empty and large values, metadata.
#[test]
fn strategies_cover_the_edges() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let keys: Vec<kv_proto::Key> = (0..300)
        .map(|_| key_strategy().new_tree(&mut runner).unwrap().current())
        .collect();
    assert!(keys.iter().all(|k| (1..=512).contains(&k.as_str().len())));
    assert!(
        keys.iter().any(|k| k.as_str().len() >= 509),
        "no key near 512 bytes"
    );
    assert!(keys.iter().any(|k| k.as_str().contains('/')));
    assert!(keys.iter().any(|k| !k.as_str().is_ascii()));
    assert!(keys.iter().any(|k| k.as_str().len() < 40));

    let values: Vec<Bytes> = (0..100)
        .map(|_| value_strategy().new_tree(&mut runner).unwrap().current())
        .collect();
    assert!(values.iter().any(Bytes::is_empty));
    assert!(values.iter().any(|v| v.len() > 1024));

    let metadata: Vec<kv_proto::Metadata> = (0..100)
        .map(|_| metadata_strategy().new_tree(&mut runner).unwrap().current())
        .collect();
    assert!(metadata.iter().all(|m| m.as_bytes().len() <= 1024));
    assert!(metadata.iter().any(|m| m.as_str().starts_with('{')));
    assert!(metadata.iter().any(|m| m.as_str().starts_with('[')));
}
