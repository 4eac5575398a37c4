//! Every limit, exactly at it and one over, through the typed constructors and
//! on the wire (hand-crafted bodies for what the constructors refuse).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use kv_proto::limits::{
    MAX_CURSOR_LEN, MAX_FEED_BODY, MAX_INLINE_VALUE, MAX_KEY_LEN, MAX_LIST_LIMIT, MAX_MESSAGE_LEN,
    MAX_METADATA_LEN, MAX_NAMESPACE_LEN, MAX_REQUEST_BODY, MAX_RESPONSE_BODY, MAX_SUBSCRIBE_BODY,
    MAX_VALUE_LEN,
};
use kv_proto::{
    Body, Change, Cursor, ErrorSource, FRAME_HEADER_LEN, FeedEvent, Frame, FrameHeader, FrameKind,
    InlineValue, Key, ListRequest, Metadata, Namespace, Op, ProtoError, PutRequest, Request,
    RequestId, Response, Status, Subscribe, decode_feed_event, decode_frame, decode_request,
    decode_response, decode_subscribe,
};

/// The error a request body is rejected with, checking the id came back.
fn request_error(body: BodyBuilder, id: u64) -> ProtoError {
    let rejected = decode_request(body.body()).unwrap_err();
    assert_eq!(rejected.id, Some(RequestId(id)));
    rejected.error
}

#[test]
fn the_limits_are_what_the_docs_say() {
    assert_eq!(MAX_KEY_LEN, 512);
    assert_eq!(MAX_VALUE_LEN, 25 * 1024 * 1024);
    assert_eq!(MAX_METADATA_LEN, 1024);
    assert_eq!(MAX_NAMESPACE_LEN, 64);
    assert_eq!(MAX_LIST_LIMIT, 1000);
    assert_eq!(MAX_CURSOR_LEN, 2048);
    assert_eq!(MAX_MESSAGE_LEN, 4096);
    // Room in each frame for its largest body.
    const { assert!(MAX_REQUEST_BODY > MAX_VALUE_LEN) };
    const { assert!(MAX_RESPONSE_BODY > MAX_VALUE_LEN) };
    assert_eq!(MAX_INLINE_VALUE, 64 * 1024);
    const { assert!(MAX_INLINE_VALUE < MAX_VALUE_LEN) };
    // The largest change: kind, seq, namespace, key, version, commit time,
    // flags, expiration, metadata and an inline value at the limit.
    const {
        assert!(
            MAX_FEED_BODY
                >= 1 + 8
                    + (1 + MAX_NAMESPACE_LEN)
                    + (2 + MAX_KEY_LEN)
                    + 8
                    + 8
                    + 1
                    + 8
                    + (2 + MAX_METADATA_LEN)
                    + (4 + MAX_INLINE_VALUE)
        )
    };
    // The largest subscribe: flags and a cursor.
    const { assert!(MAX_SUBSCRIBE_BODY >= 1 + 8 + 8) };
}

// ---------------------------------------------------------------------- keys

#[test]
fn key_at_the_limit_is_accepted() {
    let ascii = "k".repeat(512);
    let emoji = "😀".repeat(128); // 4 bytes each: 512 bytes, 128 chars
    let mixed = format!("{}é", "/".repeat(510)); // 510 + 2 bytes
    for text in [ascii, emoji, mixed] {
        assert_eq!(text.len(), MAX_KEY_LEN);
        let key = Key::new(text.clone()).unwrap();
        assert_eq!(key.as_str(), text);
        // And on the wire, both through the encoder and hand-crafted.
        let frame = request(
            1,
            Op::Delete(kv_proto::DeleteRequest {
                namespace: ns("n"),
                key: key.clone(),
                write_id: SAMPLE_WRITE_ID,
            }),
        );
        assert_eq!(decode_frame(&mut encode(&frame)).unwrap(), Some(frame));
        let body = BodyBuilder::request(1, OP_GET)
            .target(b"n", text.as_bytes())
            .u8(0);
        let Op::Get(get) = decode_request(body.body()).unwrap().op else {
            panic!("not a GET")
        };
        assert_eq!(get.key, key);
    }
}

#[test]
fn key_one_byte_over_is_refused() {
    // The limit is in bytes: 511 ASCII bytes and a 2-byte character are 513 bytes.
    for text in [
        "k".repeat(513),
        format!("{}é", "k".repeat(511)),
        "😀".repeat(129),
    ] {
        let err = Key::new(text.clone()).unwrap_err();
        assert_eq!(err, ProtoError::KeyTooLong { len: text.len() });
        assert_eq!(err.status(), Status::TooLarge);
    }
    // Only 257 characters, but 514 bytes.
    assert_eq!(
        Key::new("é".repeat(257)).unwrap_err(),
        ProtoError::KeyTooLong { len: 514 }
    );
}

#[test]
fn key_one_byte_over_is_refused_on_the_wire() {
    let long = vec![b'k'; 513];
    let get = BodyBuilder::request(5, OP_GET).target(b"n", &long).u8(0);
    assert_eq!(request_error(get, 5), ProtoError::KeyTooLong { len: 513 });
    let put = BodyBuilder::request(5, OP_PUT)
        .write_target(b"n", &long)
        .u8(0)
        .bytes32(b"v");
    assert_eq!(request_error(put, 5), ProtoError::KeyTooLong { len: 513 });
    let delete = BodyBuilder::request(5, OP_DELETE).write_target(b"n", &long);
    assert_eq!(
        request_error(delete, 5),
        ProtoError::KeyTooLong { len: 513 }
    );

    let change = BodyBuilder::change(1, b"n", &long, 0);
    let err = decode_feed_event(change.clone().body()).unwrap_err();
    assert_eq!(err, ProtoError::KeyTooLong { len: 513 });
    assert_eq!(err.status(), Status::TooLarge);
    assert_eq!(
        decode_frame(&mut change.frame(FrameKind::Feed)).unwrap_err(),
        ProtoError::KeyTooLong { len: 513 }
    );

    let page = BodyBuilder::response(1, 0, 4, BODY_PAGE)
        .u16(1)
        .bytes16(&long)
        .u8(0)
        .bytes16(b"");
    assert_eq!(
        decode_response(page.body()).unwrap_err(),
        ProtoError::KeyTooLong { len: 513 }
    );

    // Refused from the length prefix alone, before the key's bytes arrive.
    let prefix_only = BodyBuilder::request(5, OP_GET).bytes8(b"n").u16(513);
    assert_eq!(
        request_error(prefix_only, 5),
        ProtoError::KeyTooLong { len: 513 }
    );
    let whole_frame = BodyBuilder::request(5, OP_GET)
        .target(b"n", &long)
        .u8(0)
        .frame(FrameKind::Request);
    assert_eq!(
        decode_frame(&mut whole_frame.clone()).unwrap_err(),
        ProtoError::KeyTooLong { len: 513 }
    );
}

#[test]
fn empty_key_is_refused() {
    let err = Key::new("").unwrap_err();
    assert_eq!(err, ProtoError::EmptyKey);
    assert_eq!(err.status(), Status::BadRequest);

    let get = BodyBuilder::request(6, OP_GET).target(b"n", b"").u8(0);
    assert_eq!(request_error(get, 6), ProtoError::EmptyKey);
    let change = BodyBuilder::change(1, b"n", b"", CHANGE_TOMBSTONE);
    assert_eq!(
        decode_feed_event(change.body()).unwrap_err(),
        ProtoError::EmptyKey
    );
    let page = BodyBuilder::response(1, 0, 4, BODY_PAGE)
        .u16(1)
        .bytes16(b"")
        .u8(0)
        .bytes16(b"");
    assert_eq!(
        decode_response(page.body()).unwrap_err(),
        ProtoError::EmptyKey
    );
}

// -------------------------------------------------------------------- values

#[test]
fn value_at_the_limit_is_accepted() {
    let value = Bytes::from(vec![0x42; MAX_VALUE_LEN]);
    let put = PutRequest::new(ns("big"), key("big"), value.clone()).unwrap();
    let frame = request(8, Op::Put(put));
    let mut buf = encode(&frame);
    let header = FrameHeader::parse(&buf).unwrap().unwrap();
    assert!(header.body_len > MAX_VALUE_LEN && header.body_len <= MAX_REQUEST_BODY);
    assert_eq!(decode_frame(&mut buf).unwrap(), Some(frame));

    // A GET answer of the largest value fits a response frame too.
    let entry = kv_proto::Entry {
        version: 1,
        expiration: None,
        metadata: None,
        value,
    };
    let frame = Frame::Response(Response::entry(RequestId(8), kv_proto::Tier::Origin, entry));
    let mut buf = encode(&frame);
    assert!(FrameHeader::parse(&buf).unwrap().unwrap().body_len <= MAX_RESPONSE_BODY);
    assert_eq!(decode_frame(&mut buf).unwrap(), Some(frame));
}

#[test]
fn value_one_byte_over_is_refused() {
    let value = Bytes::from(vec![0u8; MAX_VALUE_LEN + 1]);
    let err = PutRequest::new(ns("big"), key("big"), value).unwrap_err();
    assert_eq!(
        err,
        ProtoError::ValueTooLarge {
            len: MAX_VALUE_LEN + 1
        }
    );
    assert_eq!(err.status(), Status::TooLarge);
}

#[test]
fn value_over_the_limit_is_refused_on_the_wire() {
    // Only the length prefix is sent: the limit is checked before the bytes.
    let over = u32::try_from(MAX_VALUE_LEN + 1).unwrap();
    let put = BodyBuilder::request(9, OP_PUT)
        .write_target(b"n", b"k")
        .u8(0)
        .u32(over);
    let err = request_error(put, 9);
    assert_eq!(
        err,
        ProtoError::ValueTooLarge {
            len: MAX_VALUE_LEN + 1
        }
    );
    assert_eq!(err.status(), Status::TooLarge);
    let put = BodyBuilder::request(9, OP_PUT)
        .write_target(b"n", b"k")
        .u8(0)
        .u32(u32::MAX);
    assert_eq!(
        request_error(put, 9),
        ProtoError::ValueTooLarge {
            len: u32::MAX as usize
        }
    );

    let entry = BodyBuilder::response(1, 0, 1, BODY_ENTRY)
        .u64(1)
        .u8(0)
        .u32(over);
    assert_eq!(
        decode_response(entry.body()).unwrap_err(),
        ProtoError::ValueTooLarge {
            len: MAX_VALUE_LEN + 1
        }
    );

    // A prefix at the limit with fewer bytes present is merely truncated.
    let at = u32::try_from(MAX_VALUE_LEN).unwrap();
    let put = BodyBuilder::request(9, OP_PUT)
        .write_target(b"n", b"k")
        .u8(0)
        .u32(at)
        .raw(b"abc");
    assert!(matches!(
        request_error(put, 9),
        ProtoError::Truncated { field: "value" }
    ));
}

// ------------------------------------------------------------- frame headers

fn header_bytes(kind: FrameKind, body_len: usize) -> BytesMut {
    BytesMut::from(&FrameHeader { kind, body_len }.to_bytes()[..])
}

#[test]
fn frame_header_at_the_limit_is_accepted_before_the_body_arrives() {
    for (kind, max) in [
        (FrameKind::Request, MAX_REQUEST_BODY),
        (FrameKind::Response, MAX_RESPONSE_BODY),
        (FrameKind::Feed, MAX_FEED_BODY),
        (FrameKind::Subscribe, MAX_SUBSCRIBE_BODY),
    ] {
        let mut buf = header_bytes(kind, max);
        assert_eq!(
            FrameHeader::parse(&buf).unwrap(),
            Some(FrameHeader {
                kind,
                body_len: max
            })
        );
        assert_eq!(decode_frame(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), FRAME_HEADER_LEN, "the header was consumed");
        // Room for the body was reserved once the header checked out.
        assert!(buf.capacity() >= FRAME_HEADER_LEN + max);
    }
}

#[test]
fn frame_header_over_the_limit_is_refused_before_the_body_arrives() {
    for (kind, max) in [
        (FrameKind::Request, MAX_REQUEST_BODY),
        (FrameKind::Response, MAX_RESPONSE_BODY),
        (FrameKind::Feed, MAX_FEED_BODY),
        (FrameKind::Subscribe, MAX_SUBSCRIBE_BODY),
    ] {
        for len in [max + 1, u32::MAX as usize] {
            let mut buf = header_bytes(kind, len);
            let expected = ProtoError::FrameTooLarge { len, max };
            assert_eq!(FrameHeader::parse(&buf).unwrap_err(), expected);
            assert_eq!(expected.status(), Status::TooLarge);
            assert_eq!(decode_frame(&mut buf).unwrap_err(), expected);
            assert_eq!(buf.len(), FRAME_HEADER_LEN);
            // Nothing was reserved for a body that will never be accepted.
            assert!(buf.capacity() < max, "reserved {} bytes", buf.capacity());
        }
    }
}

/// A change with everything at its limit: the longest namespace and key,
/// an expiration, the largest metadata and an inline value of
/// [`MAX_INLINE_VALUE`] bytes.
fn largest_change(value_len: usize) -> FeedEvent {
    FeedEvent::Change {
        seq: u64::MAX,
        change: Change {
            namespace: Namespace::new("n".repeat(MAX_NAMESPACE_LEN)).unwrap(),
            key: Key::new("😀".repeat(MAX_KEY_LEN / 4)).unwrap(),
            version: u64::MAX,
            tombstone: false,
            expiration: Some(u64::MAX),
            commit_ms: u64::MAX,
            value: Some(InlineValue {
                metadata: Some(Metadata::new(json_string_of_len(MAX_METADATA_LEN)).unwrap()),
                value: Bytes::from(vec![0xee; value_len]),
            }),
        },
    }
}

#[test]
fn feed_body_at_its_largest_fits() {
    let frame = Frame::Feed(largest_change(MAX_INLINE_VALUE));
    let mut buf = encode(&frame);
    let body_len = FrameHeader::parse(&buf).unwrap().unwrap().body_len;
    assert!(body_len > MAX_INLINE_VALUE + MAX_KEY_LEN + MAX_METADATA_LEN);
    assert!(body_len <= MAX_FEED_BODY);
    assert_eq!(decode_frame(&mut buf).unwrap(), Some(frame));
    assert!(buf.is_empty());
}

#[test]
fn subscribe_body_at_its_largest_fits() {
    let frame = Frame::Subscribe(Subscribe {
        resume: Some(Cursor {
            epoch: u64::MAX,
            next_seq: u64::MAX,
        }),
    });
    let mut buf = encode(&frame);
    let body_len = FrameHeader::parse(&buf).unwrap().unwrap().body_len;
    assert_eq!(body_len, 17);
    assert!(body_len <= MAX_SUBSCRIBE_BODY);
    let body = buf.clone().freeze().slice(FRAME_HEADER_LEN..);
    assert_eq!(
        decode_subscribe(body).map(Frame::Subscribe).as_ref(),
        Ok(&frame)
    );
    assert_eq!(decode_frame(&mut buf).unwrap(), Some(frame));
}

#[test]
fn inline_value_at_the_limit_is_accepted_on_the_wire() {
    let value = vec![0x11; MAX_INLINE_VALUE];
    let body = BodyBuilder::change(3, b"n", b"k", CHANGE_VALUE).bytes32(&value);
    let FeedEvent::Change { change, .. } = decode_feed_event(body.body()).unwrap() else {
        panic!("not a change");
    };
    assert_eq!(change.value.unwrap().value.len(), MAX_INLINE_VALUE);
}

#[test]
fn inline_value_one_byte_over_is_refused() {
    let over = ProtoError::FieldTooLong {
        field: "inline value",
        len: MAX_INLINE_VALUE + 1,
        max: MAX_INLINE_VALUE,
    };
    // Whole, hand-built.
    let body =
        BodyBuilder::change(3, b"n", b"k", CHANGE_VALUE).bytes32(&vec![0x11; MAX_INLINE_VALUE + 1]);
    assert_eq!(decode_feed_event(body.clone().body()).unwrap_err(), over);
    let mut frame = body.frame(FrameKind::Feed);
    assert_eq!(decode_frame(&mut frame).unwrap_err(), over);
    assert!(frame.is_empty(), "the bad frame was consumed");
    // Only the length prefix: refused before the bytes arrive.
    let prefix = BodyBuilder::change(3, b"n", b"k", CHANGE_VALUE | CHANGE_METADATA)
        .bytes16(b"{}")
        .u32(u32::try_from(MAX_INLINE_VALUE + 1).unwrap());
    assert_eq!(decode_feed_event(prefix.body()).unwrap_err(), over);
    let prefix = BodyBuilder::change(3, b"n", b"k", CHANGE_VALUE).u32(u32::MAX);
    assert_eq!(
        decode_feed_event(prefix.body()).unwrap_err(),
        ProtoError::FieldTooLong {
            field: "inline value",
            len: u32::MAX as usize,
            max: MAX_INLINE_VALUE,
        }
    );
    // The encoder does not check; the decoder refuses what it wrote.
    let mut buf = encode(&Frame::Feed(largest_change(MAX_INLINE_VALUE + 1)));
    assert!(FrameHeader::parse(&buf).unwrap().unwrap().body_len <= MAX_FEED_BODY);
    assert_eq!(decode_frame(&mut buf).unwrap_err(), over);
}

// ------------------------------------------------------------------ metadata

/// A JSON string of exactly `len` bytes.
fn json_string_of_len(len: usize) -> String {
    format!("\"{}\"", "m".repeat(len - 2))
}

#[test]
fn metadata_at_the_limit_is_accepted() {
    let json = json_string_of_len(MAX_METADATA_LEN);
    assert_eq!(json.len(), 1024);
    let metadata = Metadata::new(json.clone()).unwrap();
    assert_eq!(metadata.as_str(), json);
    assert_eq!(metadata.as_bytes().len(), 1024);

    let put = PutRequest {
        metadata: Some(metadata),
        ..PutRequest::new(ns("n"), key("k"), Bytes::new()).unwrap()
    };
    let frame = request(1, Op::Put(put));
    assert_eq!(decode_frame(&mut encode(&frame)).unwrap(), Some(frame));
}

#[test]
fn metadata_one_byte_over_is_refused() {
    let err = Metadata::new(json_string_of_len(MAX_METADATA_LEN + 1)).unwrap_err();
    assert_eq!(err, ProtoError::MetadataTooLarge { len: 1025 });
    assert_eq!(err.status(), Status::TooLarge);

    let json = json_string_of_len(MAX_METADATA_LEN + 1);
    let put = BodyBuilder::request(2, OP_PUT)
        .write_target(b"n", b"k")
        .u8(0b10)
        .bytes16(json.as_bytes())
        .bytes32(b"");
    assert_eq!(
        request_error(put, 2),
        ProtoError::MetadataTooLarge { len: 1025 }
    );
    let entry = BodyBuilder::response(1, 0, 1, BODY_ENTRY)
        .u64(1)
        .u8(0b10)
        .bytes16(json.as_bytes())
        .bytes32(b"");
    assert_eq!(
        decode_response(entry.body()).unwrap_err(),
        ProtoError::MetadataTooLarge { len: 1025 }
    );
}

#[test]
fn metadata_must_be_json() {
    let not_json: [&[u8]; 9] = [
        b"",
        b"   ",
        b"{",
        b"not json",
        b"{} {}",
        b"{'single': 1}",
        b"[1,]",
        b"\"\xff\"",        // invalid UTF-8 inside a string
        b"{\"\xc3\":true}", // a truncated UTF-8 sequence in a key
    ];
    for json in not_json {
        let err = Metadata::new(Bytes::from_static(json)).unwrap_err();
        assert_eq!(err, ProtoError::MetadataNotJson, "{json:?}");
        assert_eq!(err.status(), Status::BadRequest);
    }
    for json in [
        "{}",
        "[]",
        "null",
        "0",
        "\"s\"",
        " { \"a\" : [1, 2.5, true] } \n",
        "\"é😀\"",
    ] {
        assert_eq!(Metadata::new(json).unwrap().as_str(), json);
    }

    let put = BodyBuilder::request(3, OP_PUT)
        .write_target(b"n", b"k")
        .u8(0b10)
        .bytes16(b"nope")
        .bytes32(b"v");
    assert_eq!(request_error(put, 3), ProtoError::MetadataNotJson);
    let put = BodyBuilder::request(3, OP_PUT)
        .write_target(b"n", b"k")
        .u8(0b10)
        .bytes16(b"\"\xfe\"")
        .bytes32(b"v");
    assert_eq!(request_error(put, 3), ProtoError::MetadataNotJson);
    let page = BodyBuilder::response(1, 0, 4, BODY_PAGE)
        .u16(1)
        .bytes16(b"k")
        .u8(0b10)
        .bytes16(b"{")
        .bytes16(b"");
    assert_eq!(
        decode_response(page.body()).unwrap_err(),
        ProtoError::MetadataNotJson
    );
}

// ---------------------------------------------------------------- namespaces

#[test]
fn namespace_limits() {
    let longest = "a".repeat(MAX_NAMESPACE_LEN);
    assert_eq!(Namespace::new(longest.clone()).unwrap().as_str(), longest);
    let all_chars = "azAZ09_-";
    assert_eq!(Namespace::new(all_chars).unwrap().as_str(), all_chars);

    let bad = [
        "a".repeat(65),
        String::new(),
        "a.b".into(),
        "a b".into(),
        "a/b".into(),
        "é".into(),
        "ns\0".into(),
    ];
    for name in bad {
        let err = Namespace::new(name.clone()).unwrap_err();
        assert_eq!(err, ProtoError::InvalidNamespace, "{name:?}");
        assert_eq!(err.status(), Status::BadRequest);
    }
}

#[test]
fn namespace_limits_on_the_wire() {
    let ok = BodyBuilder::request(4, OP_DELETE).write_target("a".repeat(64).as_bytes(), b"k");
    assert!(decode_request(ok.body()).is_ok());

    let bad: [&[u8]; 6] = [&[b'a'; 65], b"", b"a.b", b"a b", b"a/b", "é".as_bytes()];
    for name in bad {
        let body = BodyBuilder::request(4, OP_DELETE).write_target(name, b"k");
        assert_eq!(
            request_error(body, 4),
            ProtoError::InvalidNamespace,
            "{name:?}"
        );
        let change = BodyBuilder::change(1, name, b"k", 0);
        assert_eq!(
            decode_feed_event(change.body()).unwrap_err(),
            ProtoError::InvalidNamespace
        );
    }
    // Invalid UTF-8 is an invalid namespace, not an encoding error.
    let body = BodyBuilder::request(4, OP_DELETE).write_target(b"\xff", b"k");
    assert_eq!(request_error(body, 4), ProtoError::InvalidNamespace);
    // A length prefix over 64 is refused before the bytes arrive.
    let body = BodyBuilder::request(4, OP_LIST).u8(200);
    assert_eq!(request_error(body, 4), ProtoError::InvalidNamespace);
}

// ---------------------------------------------------------------------- LIST

fn list_body(prefix: &[u8], cursor: &[u8], limit: u16) -> BodyBuilder {
    BodyBuilder::request(11, OP_LIST)
        .bytes8(b"n")
        .bytes16(prefix)
        .bytes16(cursor)
        .u16(limit)
}

#[test]
fn list_limit_bounds() {
    for limit in [1, 500, MAX_LIST_LIMIT] {
        let list = ListRequest {
            limit,
            ..ListRequest::new(ns("n"), "p")
        };
        let frame = request(11, Op::List(list));
        assert_eq!(decode_frame(&mut encode(&frame)).unwrap(), Some(frame));
    }
    for limit in [0, MAX_LIST_LIMIT + 1, u16::MAX] {
        let err = request_error(list_body(b"", b"", limit), 11);
        assert_eq!(err, ProtoError::InvalidListLimit(limit));
        assert_eq!(err.status(), Status::BadRequest);
        // The encoder does not validate; the decoder does.
        let frame = request(
            11,
            Op::List(ListRequest {
                limit,
                ..ListRequest::new(ns("n"), "")
            }),
        );
        assert_eq!(
            decode_frame(&mut encode(&frame)).unwrap_err(),
            ProtoError::InvalidListLimit(limit)
        );
    }
    assert_eq!(ListRequest::new(ns("n"), "").limit, MAX_LIST_LIMIT);
}

#[test]
fn list_cursor_and_prefix_bounds() {
    let cursor = vec![b'c'; MAX_CURSOR_LEN];
    let prefix = vec![b'p'; MAX_KEY_LEN];
    let Op::List(list) = decode_request(list_body(&prefix, &cursor, 1).body())
        .unwrap()
        .op
    else {
        panic!("not a LIST");
    };
    assert_eq!(list.cursor.len(), MAX_CURSOR_LEN);
    assert_eq!(list.prefix.len(), MAX_KEY_LEN);

    let err = request_error(list_body(b"", &[b'c'; MAX_CURSOR_LEN + 1], 1), 11);
    assert_eq!(
        err,
        ProtoError::FieldTooLong {
            field: "cursor",
            len: MAX_CURSOR_LEN + 1,
            max: MAX_CURSOR_LEN
        }
    );
    let err = request_error(list_body(&[b'p'; MAX_KEY_LEN + 1], b"", 1), 11);
    assert_eq!(
        err,
        ProtoError::FieldTooLong {
            field: "prefix",
            len: MAX_KEY_LEN + 1,
            max: MAX_KEY_LEN
        }
    );
}

#[test]
fn page_cursor_and_key_count_bounds() {
    let page = |count: u16, cursor: &[u8]| {
        let mut b = BodyBuilder::response(1, 0, 4, BODY_PAGE).u16(count);
        for i in 0..count {
            b = b.bytes16(format!("key{i}").as_bytes()).u8(0);
        }
        b.bytes16(cursor)
    };
    let Body::Page(ok) = decode_response(page(MAX_LIST_LIMIT, &[b'c'; MAX_CURSOR_LEN]).body())
        .unwrap()
        .body
    else {
        panic!("not a page");
    };
    assert_eq!(ok.keys.len(), 1000);
    assert_eq!(ok.cursor.as_deref().map(str::len), Some(MAX_CURSOR_LEN));

    assert_eq!(
        decode_response(page(0, &[b'c'; MAX_CURSOR_LEN + 1]).body()).unwrap_err(),
        ProtoError::FieldTooLong {
            field: "cursor",
            len: MAX_CURSOR_LEN + 1,
            max: MAX_CURSOR_LEN
        }
    );
    // A count over the limit is refused before any key is read.
    let over = BodyBuilder::response(1, 0, 4, BODY_PAGE).u16(MAX_LIST_LIMIT + 1);
    assert_eq!(
        decode_response(over.body()).unwrap_err(),
        ProtoError::InvalidListLimit(1001)
    );
}

// ------------------------------------------------------------ error messages

#[test]
fn error_message_bounds() {
    let at = BodyBuilder::error_response(1, 5, &[b'e'; MAX_MESSAGE_LEN]);
    assert_eq!(
        decode_response(at.body()).unwrap().message().map(str::len),
        Some(MAX_MESSAGE_LEN)
    );
    let over = BodyBuilder::error_response(1, 5, &[b'e'; MAX_MESSAGE_LEN + 1]);
    assert_eq!(
        decode_response(over.body()).unwrap_err(),
        ProtoError::FieldTooLong {
            field: "message",
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        }
    );
}

#[test]
fn response_error_cuts_long_messages_at_a_char_boundary() {
    let ascii = Response::error(RequestId(1), Status::Internal, "x".repeat(10_000));
    assert_eq!(ascii.message().map(str::len), Some(MAX_MESSAGE_LEN));
    // 4095 bytes, then a 4-byte char straddling the limit: cut before it.
    let text = format!("{}😀tail", "x".repeat(MAX_MESSAGE_LEN - 1));
    let cut = Response::error(RequestId(1), Status::Internal, text);
    assert_eq!(
        cut.message(),
        Some("x".repeat(MAX_MESSAGE_LEN - 1).as_str())
    );
    for response in [ascii, cut] {
        let frame = Frame::Response(response);
        assert_eq!(decode_frame(&mut encode(&frame)).unwrap(), Some(frame));
    }
    // `failure` cuts the same way.
    let text = format!("{}😀tail", "x".repeat(MAX_MESSAGE_LEN - 1));
    let cut = Response::failure(
        RequestId(1),
        Status::Timeout,
        ErrorSource::Upstream,
        true,
        text,
    );
    assert_eq!(
        cut.message(),
        Some("x".repeat(MAX_MESSAGE_LEN - 1).as_str())
    );
    assert!(cut.is_retryable());
    // Short messages are kept whole.
    assert_eq!(
        Response::error(RequestId(1), Status::BadRequest, "é").message(),
        Some("é")
    );
}

// ------------------------------------------------------------------- budgets

fn budget_of(budget: Duration) -> (u32, Duration) {
    let frame = request_with_budget(
        1,
        budget,
        Op::Get(kv_proto::GetRequest::new(ns("n"), key("k"))),
    );
    let encoded = encode(&frame);
    let on_wire = u32::from_be_bytes(
        encoded[FRAME_HEADER_LEN + 8..FRAME_HEADER_LEN + 12]
            .try_into()
            .unwrap(),
    );
    let Some(Frame::Request(decoded)) = decode_frame(&mut encode(&frame)).unwrap() else {
        panic!("not a request");
    };
    (on_wire, decoded.budget)
}

#[test]
fn budget_at_the_limit_and_over() {
    assert_eq!(Request::MAX_BUDGET.as_millis(), u128::from(u32::MAX));
    // At the limit: carried as it is.
    assert_eq!(
        budget_of(Request::MAX_BUDGET),
        (u32::MAX, Request::MAX_BUDGET)
    );
    // One millisecond over, and far over: sent as the limit, not wrapped.
    for over in [
        Request::MAX_BUDGET + Duration::from_millis(1),
        Request::MAX_BUDGET + Duration::from_secs(1),
        Duration::MAX,
    ] {
        assert_eq!(budget_of(over), (u32::MAX, Request::MAX_BUDGET), "{over:?}");
    }
    // The smallest budgets.
    assert_eq!(budget_of(Duration::ZERO), (0, Duration::ZERO));
    assert_eq!(
        budget_of(Duration::from_millis(1)),
        (1, Duration::from_millis(1))
    );
    // Any u32 on the wire is a budget: the decoder refuses none.
    for ms in [0, 1, u32::MAX / 2, u32::MAX] {
        let body = BodyBuilder::request_with_budget(4, ms, OP_GET)
            .target(b"n", b"k")
            .u8(0);
        assert_eq!(
            decode_request(body.body()).unwrap().budget,
            Duration::from_millis(ms.into())
        );
    }
}
