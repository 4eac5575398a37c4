//! Round trips of every frame kind through the encoders and decoders.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use kv_proto::limits::MAX_INLINE_VALUE;
use kv_proto::{
    Body, Change, Cursor, DeleteRequest, Entry, ErrorSource, FRAME_HEADER_LEN, Failure, FeedEvent,
    Frame, FrameHeader, FrameKind, GetRequest, InlineValue, ListPage, ListedKey, Op, PutRequest,
    Request, RequestId, Response, Status, Subscribe, Tier, WriteId, decode_feed_event,
    decode_frame, decode_request, decode_response, decode_subscribe,
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
        Frame::Feed(event) => assert_eq!(&decode_feed_event(body).unwrap(), event),
        Frame::Subscribe(subscribe) => assert_eq!(&decode_subscribe(body).unwrap(), subscribe),
    }
}

/// The value a frame carries as a separate chunk, if any. A feed change's
/// inline value is small and goes in the head with the rest of the event.
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
    fn feed_event_round_trips(event in feed_event_strategy()) {
        assert_round_trip(&Frame::Feed(event));
    }

    #[test]
    fn subscribe_round_trips(subscribe in subscribe_strategy()) {
        assert_round_trip(&Frame::Subscribe(subscribe));
    }

    /// `encode_feed_event` appends what `encode_frame` writes for the event,
    /// after whatever the buffer already holds.
    #[test]
    fn encode_feed_event_matches_encode_frame(
        event in feed_event_strategy(),
        before in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let frame = Frame::Feed(event.clone());
        let mut buf = BytesMut::from(&before[..]);
        kv_proto::encode_feed_event(&event, &mut buf);
        prop_assert_eq!(&buf[..before.len()], &before[..]);
        prop_assert_eq!(&buf[before.len()..], &encode(&frame)[..]);
        let mut rest = buf.split_off(before.len());
        prop_assert_eq!(decode_frame(&mut rest).unwrap(), Some(frame));
        prop_assert!(rest.is_empty());
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
    assert!(samples.len() >= 25);
    for (name, frame) in &samples {
        eprintln!("{name}");
        assert_round_trip(frame);
    }
}

#[test]
fn every_status_tier_and_body_kind_round_trips() {
    let bodies = [
        Body::Empty,
        Body::Deleted { version: 0 },
        Body::Deleted { version: u64::MAX },
        Body::Entry(Entry {
            version: 1,
            expiration: Some(2),
            metadata: Some(meta(r#"{"a":[1,2,{"b":null}]}"#)),
            value: Bytes::from_static(b"v"),
        }),
        Body::Written {
            version: u64::MAX,
            replayed: true,
        },
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
        failure(ErrorSource::Caller, false, ""),
        failure(ErrorSource::Local, true, "ünïcödé"),
        failure(ErrorSource::Upstream, false, "origin: store unreachable"),
        failure(ErrorSource::Upstream, true, "x"),
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
    assert_eq!(count, 5 * 9 * 11);
    assert_eq!(Status::ALL.len(), 9);
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
    for &source in ErrorSource::ALL {
        assert_eq!(ErrorSource::from_code(source.code()).unwrap(), source);
    }
}

#[test]
fn new_codes_and_names() {
    assert_eq!(Status::Timeout.code(), 6);
    assert_eq!(Status::Timeout.as_str(), "timeout");
    assert_eq!(Status::OutcomeUnknown.code(), 7);
    assert_eq!(Status::OutcomeUnknown.to_string(), "outcome_unknown");
    assert_eq!(Status::VersionUnavailable.code(), 8);
    assert_eq!(Status::VersionUnavailable.as_str(), "version_unavailable");
    assert_eq!(
        ErrorSource::ALL,
        [
            ErrorSource::Caller,
            ErrorSource::Local,
            ErrorSource::Upstream
        ]
    );
    for (source, code, name) in [
        (ErrorSource::Caller, 1, "caller"),
        (ErrorSource::Local, 2, "local"),
        (ErrorSource::Upstream, 3, "upstream"),
    ] {
        assert_eq!(source.code(), code);
        assert_eq!(source.as_str(), name);
        assert_eq!(source.to_string(), name);
    }
    assert_eq!(kv_proto::PROTOCOL_VERSION, 2);
    assert_eq!(kv_proto::ALPN, b"tierkv/2");
}

#[test]
fn status_retryable_failure_and_default_source() {
    // (status, retryable, failure, default source)
    let table = [
        (Status::Ok, false, false, ErrorSource::Local),
        (Status::NotFound, false, false, ErrorSource::Local),
        (Status::BadRequest, false, true, ErrorSource::Caller),
        (Status::TooLarge, false, true, ErrorSource::Caller),
        (Status::Unavailable, true, true, ErrorSource::Local),
        (Status::Internal, false, true, ErrorSource::Local),
        (Status::Timeout, true, true, ErrorSource::Local),
        (Status::OutcomeUnknown, true, true, ErrorSource::Local),
        (Status::VersionUnavailable, true, true, ErrorSource::Local),
    ];
    assert_eq!(table.len(), Status::ALL.len());
    for (status, retryable, is_failure, source) in table {
        assert_eq!(status.is_retryable(), retryable, "{status}");
        assert_eq!(status.is_failure(), is_failure, "{status}");
        assert_eq!(status.default_source(), source, "{status}");
        // Response::error takes both from the status.
        let response = Response::error(RequestId(1), status, "m");
        assert_eq!(
            response.failure_info(),
            Some(&Failure {
                source,
                retryable,
                message: "m".into()
            }),
            "{status}"
        );
        assert_eq!(response.is_retryable(), retryable, "{status}");
        assert_eq!(response.tier, None);
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
            .find(|(n, _)| *n == "feed-change")
            .unwrap()
            .1,
        sample_frames()
            .into_iter()
            .find(|(n, _)| *n == "subscribe-resume")
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
    let first = request(1, Op::Delete(delete("a", "x", WriteId(7))));
    let second = response(
        1,
        Status::Ok,
        Some(Tier::Origin),
        Body::Written {
            version: 5,
            replayed: false,
        },
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
            Response::deleted(id, Tier::RegionalDisk, 9),
            Status::NotFound,
            Some(Tier::RegionalDisk),
        ),
        (
            Response::error(id, Status::Internal, "boom"),
            Status::Internal,
            None,
        ),
        (
            Response::failure(id, Status::Timeout, ErrorSource::Caller, false, "late"),
            Status::Timeout,
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
    assert_eq!(Response::written(id, 1).failure_info(), None);
    assert_eq!(
        Response::deleted(id, Tier::Edge, 3).body,
        Body::Deleted { version: 3 }
    );
    assert_eq!(Response::deleted(id, Tier::Edge, 3).message(), None);
}

/// `failure` keeps what it is given, even against what the status implies,
/// and `is_retryable` follows the failure rather than the status.
#[test]
fn failure_constructor_and_is_retryable() {
    let id = RequestId(5);
    for &status in Status::ALL {
        for &source in ErrorSource::ALL {
            for retryable in [false, true] {
                let response = Response::failure(id, status, source, retryable, "why");
                assert_eq!(response.status, status);
                assert_eq!(response.tier, None);
                assert_eq!(
                    response.body,
                    failure(source, retryable, "why"),
                    "{status} {source} {retryable}"
                );
                assert_eq!(response.is_retryable(), retryable);
                assert_eq!(response.message(), Some("why"));
                assert_round_trip(&Frame::Response(response));
            }
        }
    }
    // Without a failure body, the status decides.
    for &status in Status::ALL {
        let response = response_value(status, Body::Empty);
        assert_eq!(response.is_retryable(), status.is_retryable(), "{status}");
        assert_eq!(response.failure_info(), None);
    }
    // A long message is cut by `failure` as by `error`.
    let long = Response::failure(
        id,
        Status::Internal,
        ErrorSource::Local,
        false,
        "é".repeat(3000),
    );
    assert_eq!(
        long.message().map(str::len),
        Some(kv_proto::limits::MAX_MESSAGE_LEN)
    );
}

fn response_value(status: Status, body: Body) -> Response {
    Response {
        id: RequestId(1),
        status,
        tier: Some(Tier::Edge),
        age_ms: 0,
        body,
    }
}

#[test]
fn a_response_carries_the_age_of_its_copy() {
    let entry = Entry {
        version: 3,
        expiration: None,
        metadata: None,
        value: Bytes::from_static(b"v"),
    };
    let aged = Response::entry(RequestId(2), Tier::RegionalDisk, entry)
        .with_age(std::time::Duration::from_millis(1_234));
    assert_eq!(aged.age_ms, 1_234);
    assert_round_trip(&Frame::Response(aged.clone()));
    let ancient = aged.with_age(std::time::Duration::from_secs(u64::MAX / 2));
    assert_eq!(ancient.age_ms, u32::MAX, "ages saturate");
    assert_eq!(
        Response::not_found(RequestId(3), Tier::Origin).read_version(),
        Some(0)
    );
    assert_eq!(
        Response::deleted(RequestId(3), Tier::Origin, 9).read_version(),
        Some(9)
    );
    assert_eq!(
        Response::error(RequestId(3), Status::Unavailable, "m").read_version(),
        None
    );
}

#[test]
fn relayed_blames_the_tier_behind() {
    let id = RequestId(8);
    for &status in Status::ALL {
        for retryable in [false, true] {
            let local = Response::failure(id, status, ErrorSource::Local, retryable, "m");
            let relayed = local.clone().relayed();
            assert_eq!(
                relayed.failure_info().map(|f| f.source),
                Some(ErrorSource::Upstream)
            );
            // Nothing else changes.
            assert_eq!(relayed.status, local.status);
            assert_eq!(relayed.id, local.id);
            assert_eq!(relayed.tier, local.tier);
            assert_eq!(relayed.is_retryable(), retryable);
            assert_eq!(relayed.message(), Some("m"));
            // Relaying again (through another tier) keeps it upstream.
            assert_eq!(relayed.clone().relayed(), relayed);

            for source in [ErrorSource::Caller, ErrorSource::Upstream] {
                let response = Response::failure(id, status, source, retryable, "m");
                assert_eq!(response.clone().relayed(), response, "{source}");
            }
        }
    }
    // The default sources: a caller's mistake stays the caller's.
    let bad = Response::error(id, Status::BadRequest, "empty key").relayed();
    assert_eq!(bad.failure_info().unwrap().source, ErrorSource::Caller);
    let down = Response::error(id, Status::Unavailable, "store down").relayed();
    assert_eq!(down.failure_info().unwrap().source, ErrorSource::Upstream);
    // Answers that are not failures pass through untouched.
    for response in [
        Response::written(id, 1),
        Response::deleted(id, Tier::Origin, 2),
        Response::not_found(id, Tier::Edge),
        Response::page(id, ListPage::default()),
    ] {
        assert_eq!(response.clone().relayed(), response);
    }
}

// ------------------------------------------------------------------- budgets

fn get_with_budget(budget: Duration) -> Frame {
    request_with_budget(0xb0d9, budget, Op::Get(GetRequest::new(ns("n"), key("k"))))
}

/// The budget as it is on the wire: the u32 after the request id.
fn wire_budget(frame: &Frame) -> u32 {
    let encoded = encode(frame);
    let at = FRAME_HEADER_LEN + 8;
    u32::from_be_bytes(encoded[at..at + 4].try_into().unwrap())
}

fn decoded_budget(frame: &Frame) -> Duration {
    match decode_frame(&mut encode(frame)).unwrap() {
        Some(Frame::Request(request)) => request.budget,
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn budgets_round_trip() {
    for ms in [
        0,
        1,
        2,
        999,
        1000,
        5000,
        u64::from(u32::MAX) - 1,
        u64::from(u32::MAX),
    ] {
        let budget = Duration::from_millis(ms);
        let frame = get_with_budget(budget);
        assert_eq!(u64::from(wire_budget(&frame)), ms);
        assert_eq!(decoded_budget(&frame), budget, "{ms} ms");
        assert_round_trip(&frame);
    }
    assert_eq!(Request::MAX_BUDGET, Duration::from_millis(u32::MAX.into()));
}

/// The wire carries whole milliseconds: anything finer is cut off.
#[test]
fn a_budget_is_sent_in_whole_milliseconds() {
    for (budget, ms) in [
        (Duration::from_micros(1500), 1),
        (Duration::from_nanos(999_999), 0),
        (Duration::new(2, 999_999_999), 2999),
    ] {
        let frame = get_with_budget(budget);
        assert_eq!(wire_budget(&frame), ms, "{budget:?}");
        assert_eq!(decoded_budget(&frame), Duration::from_millis(ms.into()));
    }
}

#[test]
fn request_new_and_with_budget() {
    let op = Op::Get(GetRequest::new(ns("n"), key("k")));
    let request = Request::new(op.clone());
    assert_eq!(request.budget, Request::DEFAULT_BUDGET);
    assert_eq!(Request::DEFAULT_BUDGET, Duration::from_secs(5));
    assert_eq!(
        u128::from(DEFAULT_BUDGET_MS),
        Request::DEFAULT_BUDGET.as_millis()
    );
    let id = request.id;
    let shorter = request.with_budget(Duration::from_millis(40));
    assert_eq!(shorter.budget, Duration::from_millis(40));
    assert_eq!(shorter.id, id, "with_budget keeps the id");
    assert_eq!(shorter.op, op);
    assert_round_trip(&Frame::Request(shorter));
    // Fresh ids each time.
    assert_ne!(Request::new(op.clone()).id, Request::new(op).id);
}

// ----------------------------------------------------------------- write ids

fn written_write_id(frame: &Frame) -> WriteId {
    match decode_frame(&mut encode(frame)).unwrap() {
        Some(Frame::Request(Request {
            op: Op::Put(put), ..
        })) => put.write_id,
        Some(Frame::Request(Request {
            op: Op::Delete(delete),
            ..
        })) => delete.write_id,
        other => panic!("not a write: {other:?}"),
    }
}

#[test]
fn write_ids_round_trip_for_put_and_delete() {
    for id in [
        WriteId(0),
        WriteId(1),
        SAMPLE_WRITE_ID,
        WriteId(1 << 64),
        WriteId(u128::MAX),
        WriteId::random(),
    ] {
        let put_frame = request(1, Op::Put(put("n", "k", &b"v"[..], id)));
        let delete_frame = request(2, Op::Delete(delete("n", "k", id)));
        for frame in [put_frame, delete_frame] {
            assert_eq!(written_write_id(&frame), id);
            assert_round_trip(&frame);
            // Big-endian, right after the namespace ("n") and key ("k").
            let encoded = encode(&frame);
            let at = FRAME_HEADER_LEN + 8 + 4 + 1 + (1 + 1) + (2 + 1);
            assert_eq!(&encoded[at..at + 16], &id.0.to_be_bytes(), "{frame:?}");
        }
    }
}

#[test]
fn constructors_draw_fresh_write_ids() {
    let puts: HashSet<WriteId> = (0..1000)
        .map(|_| {
            PutRequest::new(ns("n"), key("k"), Bytes::new())
                .unwrap()
                .write_id
        })
        .collect();
    assert_eq!(puts.len(), 1000);
    let deletes: HashSet<WriteId> = (0..1000)
        .map(|_| DeleteRequest::new(ns("n"), key("k")).write_id)
        .collect();
    assert_eq!(deletes.len(), 1000);
    assert!(puts.is_disjoint(&deletes));
    // Both halves are random, not just the low 64 bits.
    assert!(puts.iter().any(|id| id.0 >> 64 != 0));
    assert!(puts.iter().any(|id| id.0 as u64 != 0));
    let delete = DeleteRequest::new(ns("users"), key("bob"));
    assert_eq!(delete.namespace, ns("users"));
    assert_eq!(delete.key, key("bob"));
}

#[test]
fn write_id_display_is_32_hex_digits() {
    for (id, text) in [
        (WriteId(0), "00000000000000000000000000000000"),
        (WriteId(0xab), "000000000000000000000000000000ab"),
        (SAMPLE_WRITE_ID, "00112233445566778899aabbccddeeff"),
        (WriteId(u128::MAX), "ffffffffffffffffffffffffffffffff"),
    ] {
        assert_eq!(id.to_string(), text);
        // And an id's text, used as an idempotency key, is that id.
        assert_eq!(WriteId::from_idempotency_key(text), id);
    }
}

#[test]
fn idempotency_keys_of_32_hex_digits_are_taken_verbatim() {
    let cases = [
        ("00112233445566778899aabbccddeeff", SAMPLE_WRITE_ID.0),
        (
            "0123456789abcdef0123456789abcdef",
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ),
        // Hex digits of either case.
        (
            "0123456789ABCDEF0123456789ABCDEF",
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ),
        ("ffffffffffffffffffffffffffffffff", u128::MAX),
        ("00000000000000000000000000000001", 1),
    ];
    for (text, id) in cases {
        assert_eq!(WriteId::from_idempotency_key(text), WriteId(id), "{text}");
    }
    for _ in 0..100 {
        let id = WriteId::random();
        assert_eq!(WriteId::from_idempotency_key(&id.to_string()), id);
    }
}

/// 128-bit FNV-1a, written out independently of the crate's fold.
fn fnv1a_128(text: &str) -> u128 {
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in text.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    hash
}

#[test]
fn other_idempotency_keys_are_hashed_stably() {
    let not_hex = [
        "",
        "order-7731",
        "a",
        // Almost 32 hex digits: 31, 33, one non-hex character, spaces, a prefix.
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0",
        "0123456789abcdef0123456789abcdeg",
        " 123456789abcdef0123456789abcdef",
        "0x23456789abcdef0123456789abcdef",
        "0123456789abcdef-123456789abcdef",
        "ключ идемпотентности",
    ];
    for text in not_hex {
        let id = WriteId::from_idempotency_key(text);
        // The same text always maps to the same id: FNV-1a, 128 bits.
        assert_eq!(WriteId::from_idempotency_key(text), id, "{text:?}");
        assert_eq!(id, WriteId(fnv1a_128(text)), "{text:?}");
    }
    // Pinned values, so that a change of the hash (which would map the keys
    // clients already sent to other ids) does not go unnoticed.
    assert_eq!(
        WriteId::from_idempotency_key(""),
        WriteId(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    );
    // The published FNV-1a 128 of "a".
    assert_eq!(
        WriteId::from_idempotency_key("a"),
        WriteId(0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964)
    );
}

/// A `+` is not a hex digit, so `+` and 31 hex digits is not taken verbatim.
/// `u128::from_str_radix` accepts a leading `+`, and `from_idempotency_key`
/// relies on it alone, so today this key maps to the same id as the distinct
/// key "0fff…f" (31 f's after the 0).
#[test]
fn a_key_with_a_plus_sign_is_hashed() {
    let signed = format!("+{}", "f".repeat(31));
    let zero = format!("0{}", "f".repeat(31));
    assert_eq!(signed.len(), 32);
    assert_eq!(
        WriteId::from_idempotency_key(&signed),
        WriteId(fnv1a_128(&signed))
    );
    assert_ne!(
        WriteId::from_idempotency_key(&signed),
        WriteId::from_idempotency_key(&zero)
    );
}

#[test]
fn distinct_idempotency_keys_get_distinct_ids() {
    let mut ids = HashSet::new();
    let mut count = 0;
    for i in 0..10_000u32 {
        // Keys that differ little: a counter, and the same with a suffix.
        for text in [
            format!("order-{i}"),
            format!("order-{i}-retry"),
            i.to_string(),
        ] {
            assert!(
                ids.insert(WriteId::from_idempotency_key(&text)),
                "{text:?} collides"
            );
            count += 1;
        }
    }
    assert_eq!(ids.len(), count);
    // Hashed keys do not land on the ids of verbatim ones here either.
    for i in 0..10_000u128 {
        let text = format!("{i:032x}");
        assert_eq!(WriteId::from_idempotency_key(&text), WriteId(i));
        assert!(!ids.contains(&WriteId(i)));
    }
}

// ------------------------------------------------------------ deleted bodies

#[test]
fn deleted_round_trips() {
    for version in [0, 1, 0x0001_8c2f_5a3b_0001, u64::MAX] {
        for &tier in Tier::ALL {
            let response = Response::deleted(RequestId(version), tier, version);
            assert_eq!(response.status, Status::NotFound);
            assert_eq!(response.tier, Some(tier));
            let frame = Frame::Response(response);
            assert_round_trip(&frame);
            let encoded = encode(&frame);
            // After id, status, tier and age: body kind 5, then the
            // version, and nothing else.
            let at = FRAME_HEADER_LEN + 8 + 1 + 1 + 4;
            assert_eq!(encoded[at], BODY_DELETED);
            assert_eq!(&encoded[at + 1..], &version.to_be_bytes());
        }
    }
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
        FrameKind::Feed.max_body_len(),
        kv_proto::limits::MAX_FEED_BODY
    );
    assert_eq!(
        FrameKind::Subscribe.max_body_len(),
        kv_proto::limits::MAX_SUBSCRIBE_BODY
    );
    assert_eq!(FrameKind::Request.name(), "request");
    assert_eq!(FrameKind::Response.name(), "response");
    assert_eq!(FrameKind::Feed.name(), "feed");
    assert_eq!(FrameKind::Subscribe.name(), "subscribe");
    // The codes on the wire: the feed took the old invalidation's 3.
    for (kind, code) in [
        (FrameKind::Request, 1u8),
        (FrameKind::Response, 2),
        (FrameKind::Feed, 3),
        (FrameKind::Subscribe, 4),
    ] {
        assert_eq!(kind as u8, code);
        let header = FrameHeader { kind, body_len: 0 }.to_bytes();
        assert_eq!(header[1], code);
        assert_eq!(FrameHeader::parse(&header).unwrap().unwrap().kind, kind);
    }
    let kinds = [
        Frame::Feed(FeedEvent::Resync { seq: 1 }).kind(),
        Frame::Subscribe(Subscribe::default()).kind(),
    ];
    assert_eq!(kinds, [FrameKind::Feed, FrameKind::Subscribe]);
}

// ---------------------------------------------------------------------- feed

/// The encodings of the feed frames, byte for byte, against bodies built by
/// hand from the layout in `kv-proto/src/feed.rs`: each hand-built body
/// decodes to the frame, and the frame encodes to exactly that body.
#[test]
fn feed_and_subscribe_bodies_match_their_layout() {
    let change = |tombstone, expiration, value| Change {
        namespace: ns("n"),
        key: key("k/é"),
        version: SAMPLE_VERSION,
        tombstone,
        expiration,
        commit_ms: SAMPLE_COMMIT_MS,
        value,
    };
    let cases = [
        (
            FeedEvent::Sync {
                epoch: 5,
                next_seq: 6,
                gap: false,
            },
            BodyBuilder::sync(5, 6, 0),
        ),
        (
            FeedEvent::Sync {
                epoch: u64::MAX,
                next_seq: 0,
                gap: true,
            },
            BodyBuilder::sync(u64::MAX, 0, SYNC_GAP),
        ),
        (
            FeedEvent::Resync { seq: 0x0102 },
            BodyBuilder::new().u8(FEED_RESYNC).u64(0x0102),
        ),
        (
            FeedEvent::Change {
                seq: 1,
                change: change(false, None, None),
            },
            BodyBuilder::change(1, b"n", "k/é".as_bytes(), 0),
        ),
        (
            FeedEvent::Change {
                seq: 2,
                change: change(true, None, None),
            },
            BodyBuilder::change(2, b"n", "k/é".as_bytes(), CHANGE_TOMBSTONE),
        ),
        (
            FeedEvent::Change {
                seq: 3,
                change: change(false, Some(99), None),
            },
            BodyBuilder::change(3, b"n", "k/é".as_bytes(), CHANGE_EXPIRATION).u64(99),
        ),
        (
            FeedEvent::Change {
                seq: 4,
                change: change(
                    false,
                    None,
                    Some(InlineValue {
                        metadata: None,
                        value: Bytes::from_static(b"v"),
                    }),
                ),
            },
            BodyBuilder::change(4, b"n", "k/é".as_bytes(), CHANGE_VALUE).bytes32(b"v"),
        ),
        (
            FeedEvent::Change {
                seq: 5,
                change: change(
                    false,
                    Some(7),
                    Some(InlineValue {
                        metadata: Some(meta("[1]")),
                        value: Bytes::from_static(b"xyz"),
                    }),
                ),
            },
            BodyBuilder::change(
                5,
                b"n",
                "k/é".as_bytes(),
                CHANGE_EXPIRATION | CHANGE_VALUE | CHANGE_METADATA,
            )
            .u64(7)
            .bytes16(b"[1]")
            .bytes32(b"xyz"),
        ),
    ];
    for (event, body) in cases {
        let frame = Frame::Feed(event.clone());
        assert_eq!(
            &encode(&frame)[FRAME_HEADER_LEN..],
            &body.0[..],
            "{event:?}"
        );
        assert_eq!(decode_feed_event(body.clone().body()).unwrap(), event);
        assert_eq!(
            decode_frame(&mut body.frame(FrameKind::Feed)).unwrap(),
            Some(frame)
        );
    }

    let subscribes = [
        (Subscribe { resume: None }, BodyBuilder::new().u8(0)),
        (
            Subscribe {
                resume: Some(Cursor {
                    epoch: 0x0a0b,
                    next_seq: u64::MAX,
                }),
            },
            BodyBuilder::subscribe_resume(0x0a0b, u64::MAX),
        ),
    ];
    for (subscribe, body) in subscribes {
        let frame = Frame::Subscribe(subscribe);
        assert_eq!(&encode(&frame)[FRAME_HEADER_LEN..], &body.0[..]);
        assert_eq!(decode_subscribe(body.clone().body()).unwrap(), subscribe);
        assert_eq!(
            decode_frame(&mut body.frame(FrameKind::Subscribe)).unwrap(),
            Some(frame)
        );
    }
    assert_eq!(Subscribe::default(), Subscribe { resume: None });
}

#[test]
fn feed_event_seq() {
    assert_eq!(
        FeedEvent::Sync {
            epoch: 1,
            next_seq: 2,
            gap: true
        }
        .seq(),
        None
    );
    assert_eq!(FeedEvent::Resync { seq: 3 }.seq(), Some(3));
    assert_eq!(
        FeedEvent::Change {
            seq: u64::MAX,
            change: plain_change("n", "k", 1),
        }
        .seq(),
        Some(u64::MAX)
    );
}

/// The body decoders slice an inline value out of the frozen input too.
#[test]
fn feed_decoder_does_not_copy_the_inline_value() {
    let value = Bytes::from(vec![0x3c; 2000]);
    let event = FeedEvent::Change {
        seq: 1,
        change: Change {
            value: Some(InlineValue {
                metadata: None,
                value: value.clone(),
            }),
            ..plain_change("zc", "zero/copy", 2)
        },
    };
    let frozen = encode(&Frame::Feed(event)).freeze();
    let FeedEvent::Change { change, .. } =
        decode_feed_event(frozen.slice(FRAME_HEADER_LEN..)).unwrap()
    else {
        panic!("not a change");
    };
    let inline = change.value.unwrap();
    assert_eq!(inline.value, value);
    assert!(lies_within(&inline.value, &frozen));
    assert!(!lies_within(&inline.value, &value));
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

    // Requests: budgets at both edges and between, write ids on both writes.
    let requests: Vec<Request> = (0..400)
        .map(|_| request_strategy().new_tree(&mut runner).unwrap().current())
        .collect();
    let budgets: Vec<Duration> = requests.iter().map(|r| r.budget).collect();
    assert!(budgets.contains(&Duration::ZERO));
    assert!(budgets.contains(&Duration::from_millis(1)));
    assert!(budgets.contains(&Request::MAX_BUDGET));
    assert!(
        budgets
            .iter()
            .any(|b| *b > Duration::from_millis(1) && *b < Request::MAX_BUDGET)
    );
    assert!(
        budgets
            .iter()
            .all(|b| b.subsec_nanos() % 1_000_000 == 0 && *b <= Request::MAX_BUDGET)
    );
    let write_ids: Vec<WriteId> = requests
        .iter()
        .filter_map(|r| match &r.op {
            Op::Put(put) => Some(put.write_id),
            Op::Delete(delete) => Some(delete.write_id),
            _ => None,
        })
        .collect();
    assert!(write_ids.contains(&WriteId(0)));
    assert!(write_ids.contains(&WriteId(u128::MAX)));
    assert!(
        write_ids
            .iter()
            .any(|id| id.0 >> 64 != 0 && id.0 != u128::MAX)
    );
    assert!(requests.iter().any(|r| matches!(r.op, Op::Delete(_))));

    // Responses: every status, Deleted bodies, failures of every source, both ways.
    let responses: Vec<Response> = (0..600)
        .map(|_| response_strategy().new_tree(&mut runner).unwrap().current())
        .collect();
    for &status in Status::ALL {
        assert!(responses.iter().any(|r| r.status == status), "{status}");
    }
    assert!(
        responses
            .iter()
            .any(|r| matches!(r.body, Body::Deleted { .. }))
    );
    for &source in ErrorSource::ALL {
        for retryable in [false, true] {
            assert!(
                responses.iter().any(|r| r
                    .failure_info()
                    .is_some_and(|f| f.source == source && f.retryable == retryable)),
                "no {source} failure with retryable = {retryable}"
            );
        }
    }

    // Feed events: every kind, syncs with and without a gap, and changes of
    // every shape the decoder accepts.
    let events: Vec<FeedEvent> = (0..600)
        .map(|_| {
            feed_event_strategy()
                .new_tree(&mut runner)
                .unwrap()
                .current()
        })
        .collect();
    for gap in [false, true] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, FeedEvent::Sync { gap: g, .. } if *g == gap)),
            "no sync with gap = {gap}"
        );
    }
    assert!(events.iter().any(|e| matches!(e, FeedEvent::Resync { .. })));
    let changes: Vec<&Change> = events
        .iter()
        .filter_map(|e| match e {
            FeedEvent::Change { change, .. } => Some(change),
            _ => None,
        })
        .collect();
    assert!(changes.iter().any(|c| c.tombstone));
    assert!(changes.iter().any(|c| !c.tombstone && c.value.is_none()));
    assert!(changes.iter().any(|c| c.expiration.is_some()));
    assert!(
        changes
            .iter()
            .any(|c| !c.tombstone && c.expiration.is_none())
    );
    // Never a tombstone with a value: the decoder refuses that.
    assert!(changes.iter().all(|c| !(c.tombstone && c.value.is_some())));
    let inline: Vec<&InlineValue> = changes.iter().filter_map(|c| c.value.as_ref()).collect();
    assert!(inline.iter().any(|v| v.metadata.is_some()));
    assert!(inline.iter().any(|v| v.metadata.is_none()));
    assert!(inline.iter().any(|v| v.value.is_empty()));
    assert!(inline.iter().any(|v| v.value.len() == MAX_INLINE_VALUE));
    assert!(inline.iter().all(|v| v.value.len() <= MAX_INLINE_VALUE));

    let subscribes: Vec<Subscribe> = (0..50)
        .map(|_| {
            subscribe_strategy()
                .new_tree(&mut runner)
                .unwrap()
                .current()
        })
        .collect();
    assert!(subscribes.iter().any(|s| s.resume.is_none()));
    assert!(subscribes.iter().any(|s| s.resume.is_some()));
}
