//! Helpers shared by the kv-proto integration tests: a hand-rolled body
//! builder for crafting frames the typed constructors refuse, representative
//! frames of every kind, and proptest strategies for valid frames.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kv_proto::limits::MAX_INLINE_VALUE;
use kv_proto::{
    Body, Change, Cursor, DeleteRequest, Entry, ErrorSource, Failure, FeedEvent, Frame,
    FrameHeader, FrameKind, GetRequest, InlineValue, Key, ListPage, ListRequest, ListedKey,
    Metadata, Namespace, Op, PutRequest, Request, RequestId, Response, Status, Subscribe, Tier,
    WriteId, encode_frame,
};
use proptest::prelude::*;

/// Builds a frame body field by field, following the layouts in `kv-proto/src`.
#[derive(Debug, Default, Clone)]
pub struct BodyBuilder(pub Vec<u8>);

impl BodyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u128(mut self, v: u128) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A u8 length prefix, then the bytes.
    pub fn bytes8(self, bytes: &[u8]) -> Self {
        self.u8(u8::try_from(bytes.len()).unwrap()).raw(bytes)
    }

    /// A u16 length prefix, then the bytes.
    pub fn bytes16(self, bytes: &[u8]) -> Self {
        self.u16(u16::try_from(bytes.len()).unwrap()).raw(bytes)
    }

    /// A u32 length prefix, then the bytes.
    pub fn bytes32(self, bytes: &[u8]) -> Self {
        self.u32(u32::try_from(bytes.len()).unwrap()).raw(bytes)
    }

    /// Request id, the default budget and op code.
    pub fn request(id: u64, op: u8) -> Self {
        Self::request_with_budget(id, DEFAULT_BUDGET_MS, op)
    }

    /// Request id, a budget in milliseconds and op code.
    pub fn request_with_budget(id: u64, budget_ms: u32, op: u8) -> Self {
        Self::new().u64(id).u32(budget_ms).u8(op)
    }

    /// Namespace and key, as GET and feed changes start.
    pub fn target(self, namespace: &[u8], key: &[u8]) -> Self {
        self.bytes8(namespace).bytes16(key)
    }

    /// Namespace, key and [`SAMPLE_WRITE_ID`], as PUT and DELETE start.
    pub fn write_target(self, namespace: &[u8], key: &[u8]) -> Self {
        self.target(namespace, key).u128(SAMPLE_WRITE_ID.0)
    }

    /// Response id, status, tier code, an age of 0 and body kind.
    pub fn response(id: u64, status: u8, tier: u8, body_kind: u8) -> Self {
        Self::new().u64(id).u8(status).u8(tier).u32(0).u8(body_kind)
    }

    /// An error body's source code and flags, after [`BodyBuilder::response`]
    /// with [`BODY_ERROR`]; the message follows.
    pub fn failure(self, source: u8, flags: u8) -> Self {
        self.u8(source).u8(flags)
    }

    /// A whole error response: a local, non-retryable failure with `message`.
    pub fn error_response(id: u64, status: u8, message: &[u8]) -> Self {
        Self::response(id, status, 0, BODY_ERROR)
            .failure(SOURCE_LOCAL, 0)
            .bytes16(message)
    }

    /// A change event up to and including its flags: event kind, sequence
    /// number, namespace, key, version, commit time and `flags`. The
    /// optional fields the flags announce follow.
    pub fn change(seq: u64, namespace: &[u8], key: &[u8], flags: u8) -> Self {
        Self::new()
            .u8(FEED_CHANGE)
            .u64(seq)
            .target(namespace, key)
            .u64(SAMPLE_VERSION)
            .u64(SAMPLE_COMMIT_MS)
            .u8(flags)
    }

    /// A whole sync event.
    pub fn sync(epoch: u64, next_seq: u64, flags: u8) -> Self {
        Self::new().u8(FEED_SYNC).u64(epoch).u64(next_seq).u8(flags)
    }

    /// A subscribe body resuming at `epoch` and `next_seq`.
    pub fn subscribe_resume(epoch: u64, next_seq: u64) -> Self {
        Self::new().u8(SUBSCRIBE_RESUME).u64(epoch).u64(next_seq)
    }

    pub fn body(self) -> Bytes {
        Bytes::from(self.0)
    }

    /// The body behind a header of `kind` declaring its exact length.
    pub fn frame(self, kind: FrameKind) -> BytesMut {
        let header = FrameHeader {
            kind,
            body_len: self.0.len(),
        };
        let mut out = BytesMut::from(&header.to_bytes()[..]);
        out.extend_from_slice(&self.0);
        out
    }
}

pub const OP_GET: u8 = 1;
pub const OP_PUT: u8 = 2;
pub const OP_DELETE: u8 = 3;
pub const OP_LIST: u8 = 4;

pub const BODY_EMPTY: u8 = 0;
pub const BODY_ENTRY: u8 = 1;
pub const BODY_WRITTEN: u8 = 2;
pub const BODY_PAGE: u8 = 3;
pub const BODY_ERROR: u8 = 4;
pub const BODY_DELETED: u8 = 5;
pub const BODY_NOT_MODIFIED: u8 = 6;

pub const SOURCE_CALLER: u8 = 1;
pub const SOURCE_LOCAL: u8 = 2;
pub const SOURCE_UPSTREAM: u8 = 3;
/// The one known bit of an error body's flags.
pub const ERROR_RETRYABLE: u8 = 0b1;

pub const FEED_SYNC: u8 = 1;
pub const FEED_CHANGE: u8 = 2;
pub const FEED_RESYNC: u8 = 3;

/// The one known bit of a sync event's flags.
pub const SYNC_GAP: u8 = 0b1;
/// The bits of a change's flags.
pub const CHANGE_TOMBSTONE: u8 = 0b0001;
pub const CHANGE_EXPIRATION: u8 = 0b0010;
pub const CHANGE_VALUE: u8 = 0b0100;
pub const CHANGE_METADATA: u8 = 0b1000;
pub const CHANGE_KNOWN_FLAGS: u8 = 0b1111;
/// The one known bit of a subscribe body's flags.
pub const SUBSCRIBE_RESUME: u8 = 0b1;

/// The version and commit time [`BodyBuilder::change`] writes.
pub const SAMPLE_VERSION: u64 = 0x0001_8c2f_5a3b_0007;
pub const SAMPLE_COMMIT_MS: u64 = 1_767_225_600_123;

/// [`Request::DEFAULT_BUDGET`] in whole milliseconds, as the wire carries it.
pub const DEFAULT_BUDGET_MS: u32 = 5_000;

/// The write id of the hand-built bodies and of the sample writes: fixed, so
/// that the encoded samples (and the fuzz seeds made of them) are stable.
pub const SAMPLE_WRITE_ID: WriteId = WriteId(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);

pub fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

pub fn key(name: &str) -> Key {
    Key::new(name).unwrap()
}

pub fn meta(json: &str) -> Metadata {
    Metadata::new(Bytes::copy_from_slice(json.as_bytes())).unwrap()
}

/// `frame` encoded with `encode_frame`.
pub fn encode(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf);
    buf
}

/// `frame` encoded with `Frame::encode_chunks`, the chunks concatenated.
pub fn encode_via_chunks(frame: &Frame) -> BytesMut {
    let (head, tail) = frame.encode_chunks();
    let mut buf = BytesMut::from(&head[..]);
    if let Some(tail) = tail {
        buf.extend_from_slice(&tail);
    }
    buf
}

/// A request with the default budget.
pub fn request(id: u64, op: Op) -> Frame {
    request_with_budget(id, Request::DEFAULT_BUDGET, op)
}

pub fn request_with_budget(id: u64, budget: Duration, op: Op) -> Frame {
    Frame::Request(Request {
        id: RequestId(id),
        budget,
        op,
    })
}

/// A PUT with no expiration or metadata and a fixed write id.
pub fn put(
    namespace: &str,
    key_name: &str,
    value: impl Into<Bytes>,
    write_id: WriteId,
) -> PutRequest {
    PutRequest {
        write_id,
        ..PutRequest::new(ns(namespace), key(key_name), value.into()).unwrap()
    }
}

/// A DELETE with a fixed write id.
pub fn delete(namespace: &str, key_name: &str, write_id: WriteId) -> DeleteRequest {
    DeleteRequest {
        write_id,
        ..DeleteRequest::new(ns(namespace), key(key_name))
    }
}

/// An error body.
pub fn failure(source: ErrorSource, retryable: bool, message: &str) -> Body {
    Body::Error(Failure {
        source,
        retryable,
        message: message.into(),
    })
}

pub fn response(id: u64, status: Status, tier: Option<Tier>, body: Body) -> Frame {
    Frame::Response(Response {
        id: RequestId(id),
        status,
        tier,
        age_ms: if tier.is_some() { 1_500 } else { 0 },
        body,
    })
}

/// A write of `key_name` not carried inline: no expiration, no value, the
/// sample commit time.
pub fn plain_change(namespace: &str, key_name: &str, version: u64) -> Change {
    Change {
        namespace: ns(namespace),
        key: key(key_name),
        version,
        tombstone: false,
        expiration: None,
        commit_ms: SAMPLE_COMMIT_MS,
        value: None,
    }
}

/// Representative valid frames: every op, every body kind, every feed event
/// kind and change shape, and a subscribe with and without a cursor.
pub fn sample_frames() -> Vec<(&'static str, Frame)> {
    let id = 0x0123_4567_89ab_cdef;
    vec![
        (
            "request-get-plain",
            request(id, Op::Get(GetRequest::new(ns("users"), key("alice")))),
        ),
        (
            "request-get-min-version-ttl",
            request(
                id,
                Op::Get(GetRequest {
                    namespace: ns("users"),
                    key: key("a/b/ключ/鍵"),
                    min_version: Some(42),
                    cache_ttl: Some(60),
                    unless_version: None,
                }),
            ),
        ),
        (
            "request-get-unless-version",
            request(
                id,
                Op::Get(GetRequest {
                    unless_version: Some(41),
                    ..GetRequest::new(ns("users"), key("alice"))
                }),
            ),
        ),
        (
            "request-get-min-version",
            request(
                id,
                Op::Get(GetRequest {
                    min_version: Some(u64::MAX),
                    ..GetRequest::new(ns("n"), key("k"))
                }),
            ),
        ),
        (
            "request-get-cache-ttl",
            request(
                id,
                Op::Get(GetRequest {
                    cache_ttl: Some(0),
                    ..GetRequest::new(ns("n"), key("k"))
                }),
            ),
        ),
        (
            "request-get-no-budget",
            request_with_budget(
                id,
                Duration::ZERO,
                Op::Get(GetRequest::new(ns("users"), key("alice"))),
            ),
        ),
        (
            "request-get-longest-budget",
            request_with_budget(
                id,
                Request::MAX_BUDGET,
                Op::Get(GetRequest::new(ns("users"), key("alice"))),
            ),
        ),
        (
            "request-put-empty-value",
            request(
                id,
                Op::Put(put("cfg", "empty", Bytes::new(), SAMPLE_WRITE_ID)),
            ),
        ),
        (
            "request-put-full",
            request(
                id,
                Op::Put(PutRequest {
                    namespace: ns("cfg"),
                    key: key("feature/flags"),
                    value: Bytes::from_static(b"{\"dark_mode\":true}"),
                    expiration: Some(1_900_000_000),
                    metadata: Some(meta(r#"{"content-type":"application/json"}"#)),
                    write_id: WriteId(u128::MAX),
                }),
            ),
        ),
        (
            "request-put-metadata-only",
            request(
                id,
                Op::Put(PutRequest {
                    metadata: Some(meta("[1,2,3]")),
                    ..put(
                        "cfg",
                        "k",
                        Bytes::from_static(b"\x00\x01\xff"),
                        SAMPLE_WRITE_ID,
                    )
                }),
            ),
        ),
        (
            "request-put-expiration-only",
            request_with_budget(
                id,
                Duration::from_millis(1),
                Op::Put(PutRequest {
                    expiration: Some(1),
                    ..put("cfg", "k", vec![7u8; 300], WriteId(0))
                }),
            ),
        ),
        (
            "request-delete",
            request(id, Op::Delete(delete("users", "bob", SAMPLE_WRITE_ID))),
        ),
        (
            "request-delete-short-budget",
            request_with_budget(
                id,
                Duration::from_millis(250),
                Op::Delete(delete("users", "a/é", WriteId(1))),
            ),
        ),
        (
            "request-list-first-page",
            request(id, Op::List(ListRequest::new(ns("users"), ""))),
        ),
        (
            "request-list-cursor",
            request(
                id,
                Op::List(ListRequest {
                    namespace: ns("users"),
                    prefix: "team/é/".into(),
                    cursor: "opaque-cursor".into(),
                    limit: 10,
                }),
            ),
        ),
        (
            "response-not-found",
            response(id, Status::NotFound, Some(Tier::RegionalDisk), Body::Empty),
        ),
        (
            "response-deleted",
            Frame::Response(Response::deleted(RequestId(id), Tier::RegionalMemory, 12)),
        ),
        (
            "response-not-modified",
            Frame::Response(
                Response::not_modified(RequestId(id), Tier::RegionalDisk, 12)
                    .with_age(Duration::from_millis(2_500)),
            ),
        ),
        (
            "response-entry-full",
            response(
                id,
                Status::Ok,
                Some(Tier::Edge),
                Body::Entry(Entry {
                    version: 7,
                    expiration: Some(1_900_000_000),
                    metadata: Some(meta(r#"{"etag":"abc"}"#)),
                    value: Bytes::from_static(b"hello, world"),
                }),
            ),
        ),
        (
            "response-entry-plain",
            response(
                id,
                Status::Ok,
                Some(Tier::RegionalMemory),
                Body::Entry(Entry {
                    version: 1,
                    expiration: None,
                    metadata: None,
                    value: Bytes::new(),
                }),
            ),
        ),
        (
            "response-written",
            response(
                id,
                Status::Ok,
                Some(Tier::Origin),
                Body::Written {
                    version: 99,
                    replayed: false,
                },
            ),
        ),
        (
            "response-page",
            response(
                id,
                Status::Ok,
                Some(Tier::Origin),
                Body::Page(ListPage {
                    keys: vec![
                        ListedKey {
                            name: key("a"),
                            expiration: None,
                            metadata: None,
                        },
                        ListedKey {
                            name: key("b/é"),
                            expiration: Some(5),
                            metadata: None,
                        },
                        ListedKey {
                            name: key("c"),
                            expiration: Some(6),
                            metadata: Some(meta("null")),
                        },
                        ListedKey {
                            name: key("d"),
                            expiration: None,
                            metadata: Some(meta("{}")),
                        },
                    ],
                    cursor: Some("next-page".into()),
                }),
            ),
        ),
        (
            "response-page-empty",
            response(id, Status::Ok, None, Body::Page(ListPage::default())),
        ),
        (
            "response-error",
            Frame::Response(Response::error(
                RequestId(id),
                Status::Unavailable,
                "origin unreachable",
            )),
        ),
        (
            "response-error-caller",
            Frame::Response(Response::error(
                RequestId(id),
                Status::BadRequest,
                "key must not be empty",
            )),
        ),
        (
            "response-error-timeout-relayed",
            Frame::Response(
                Response::error(RequestId(id), Status::Timeout, "no answer in time").relayed(),
            ),
        ),
        (
            "response-error-outcome-unknown",
            Frame::Response(Response::failure(
                RequestId(id),
                Status::OutcomeUnknown,
                ErrorSource::Upstream,
                true,
                "link to the origin lost after the write was sent",
            )),
        ),
        (
            "response-error-not-retryable-empty",
            response(
                id,
                Status::Unavailable,
                None,
                failure(ErrorSource::Upstream, false, ""),
            ),
        ),
        (
            "feed-sync",
            Frame::Feed(FeedEvent::Sync {
                epoch: 0x0000_0001_0000_0002,
                next_seq: 1,
                gap: false,
            }),
        ),
        (
            "feed-sync-gap",
            Frame::Feed(FeedEvent::Sync {
                epoch: u64::MAX,
                next_seq: 0,
                gap: true,
            }),
        ),
        (
            "feed-change",
            Frame::Feed(FeedEvent::Change {
                seq: 7,
                change: Change {
                    namespace: ns("users"),
                    key: key("alice/é"),
                    version: 3,
                    tombstone: false,
                    expiration: Some(1_900_000_000),
                    commit_ms: SAMPLE_COMMIT_MS,
                    value: Some(InlineValue {
                        metadata: Some(meta(r#"{"etag":"abc"}"#)),
                        value: Bytes::from_static(b"hello, feed"),
                    }),
                },
            }),
        ),
        (
            "feed-change-value-only",
            Frame::Feed(FeedEvent::Change {
                seq: 8,
                change: Change {
                    value: Some(InlineValue {
                        metadata: None,
                        value: Bytes::new(),
                    }),
                    ..plain_change("cfg", "empty", 4)
                },
            }),
        ),
        (
            "feed-change-not-inline",
            Frame::Feed(FeedEvent::Change {
                seq: 9,
                change: plain_change("cfg", "feature/flags", u64::MAX),
            }),
        ),
        (
            "feed-change-tombstone",
            Frame::Feed(FeedEvent::Change {
                seq: u64::MAX,
                change: Change {
                    tombstone: true,
                    ..plain_change("users", "bob", 12)
                },
            }),
        ),
        ("feed-resync", Frame::Feed(FeedEvent::Resync { seq: 10 })),
        ("subscribe", Frame::Subscribe(Subscribe { resume: None })),
        (
            "subscribe-resume",
            Frame::Subscribe(Subscribe {
                resume: Some(Cursor {
                    epoch: 0x0000_0001_0000_0002,
                    next_seq: 11,
                }),
            }),
        ),
    ]
}

// ---------------------------------------------------------------- strategies

/// 1–64 characters of `[A-Za-z0-9_-]`.
pub fn namespace_strategy() -> impl Strategy<Value = Namespace> {
    "[A-Za-z0-9_-]{1,64}".prop_map(|s| Namespace::new(s).unwrap())
}

/// Characters for keys: mostly ASCII, plenty of `/`, and any Unicode scalar.
fn key_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => Just('/'),
        2 => any::<char>(),
        1 => proptest::sample::select(vec!['é', 'ß', '中', '😀', '\u{0}', '\u{7f}', '\u{10ffff}']),
    ]
}

/// Collects `chars` into a string of at most `max` bytes, cutting at a char boundary.
pub fn take_bytes(chars: impl IntoIterator<Item = char>, max: usize) -> String {
    let mut s = String::new();
    for c in chars {
        if s.len() + c.len_utf8() > max {
            break;
        }
        s.push(c);
    }
    s
}

/// Text of up to `max` bytes (possibly empty).
pub fn text_strategy(max_chars: usize, max_bytes: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(key_char(), 0..=max_chars).prop_map(move |c| take_bytes(c, max_bytes))
}

/// Keys of 1..=512 bytes of UTF-8, some right at the limit.
pub fn key_strategy() -> impl Strategy<Value = Key> {
    let short = proptest::collection::vec(key_char(), 1..40);
    // Up to 600 chars of up to 4 bytes, cut to 512 bytes: often at or near the limit.
    let long = proptest::collection::vec(key_char(), 130..600);
    prop_oneof![3 => short, 1 => long].prop_map(|chars| Key::new(take_bytes(chars, 512)).unwrap())
}

/// A small JSON document, at most 1024 bytes, compact or pretty.
pub fn metadata_strategy() -> impl Strategy<Value = Metadata> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e9f64..1e9).prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    let doc = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z_-]{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    (doc, any::<bool>())
        .prop_map(|(doc, pretty)| {
            if pretty {
                serde_json::to_vec_pretty(&doc).unwrap()
            } else {
                serde_json::to_vec(&doc).unwrap()
            }
        })
        .prop_filter("metadata over 1024 bytes", |json| json.len() <= 1024)
        .prop_map(|json| Metadata::new(json).unwrap())
}

/// Values: empty, small, or some KiB.
pub fn value_strategy() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => Just(Bytes::new()),
        4 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        1 => proptest::collection::vec(any::<u8>(), 1024..20_000).prop_map(Bytes::from),
    ]
}

/// Budgets in whole milliseconds (what the wire carries), the edges often.
pub fn budget_strategy() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => Just(Duration::from_millis(1)),
        1 => Just(Request::MAX_BUDGET),
        1 => Just(Request::DEFAULT_BUDGET),
        4 => any::<u32>().prop_map(|ms| Duration::from_millis(ms.into())),
    ]
}

/// Write ids: the edges, small ones, and any 128 bits.
pub fn write_id_strategy() -> impl Strategy<Value = WriteId> {
    prop_oneof![
        1 => Just(WriteId(0)),
        1 => Just(WriteId(u128::MAX)),
        1 => any::<u8>().prop_map(|n| WriteId(n.into())),
        4 => any::<u128>().prop_map(WriteId),
    ]
}

pub fn op_strategy() -> impl Strategy<Value = Op> {
    let get = (
        namespace_strategy(),
        key_strategy(),
        any::<Option<u64>>(),
        any::<Option<u32>>(),
        any::<Option<u64>>(),
    )
        .prop_map(|(namespace, key, min_version, cache_ttl, unless_version)| {
            Op::Get(GetRequest {
                namespace,
                key,
                min_version,
                cache_ttl,
                unless_version,
            })
        });
    let put = (
        namespace_strategy(),
        key_strategy(),
        value_strategy(),
        any::<Option<u64>>(),
        proptest::option::of(metadata_strategy()),
        write_id_strategy(),
    )
        .prop_map(|(namespace, key, value, expiration, metadata, write_id)| {
            Op::Put(PutRequest {
                namespace,
                key,
                value,
                expiration,
                metadata,
                write_id,
            })
        });
    let delete = (namespace_strategy(), key_strategy(), write_id_strategy()).prop_map(
        |(namespace, key, write_id)| {
            Op::Delete(DeleteRequest {
                namespace,
                key,
                write_id,
            })
        },
    );
    let list = (
        namespace_strategy(),
        text_strategy(200, 512),
        text_strategy(600, 2048),
        1u16..=1000,
    )
        .prop_map(|(namespace, prefix, cursor, limit)| {
            Op::List(ListRequest {
                namespace,
                prefix,
                cursor,
                limit,
            })
        });
    prop_oneof![get, put, delete, list]
}

pub fn request_strategy() -> impl Strategy<Value = Request> {
    (any::<u64>(), budget_strategy(), op_strategy()).prop_map(|(id, budget, op)| Request {
        id: RequestId(id),
        budget,
        op,
    })
}

pub fn status_strategy() -> impl Strategy<Value = Status> {
    proptest::sample::select(Status::ALL)
}

pub fn error_source_strategy() -> impl Strategy<Value = ErrorSource> {
    proptest::sample::select(ErrorSource::ALL)
}

/// Failures of every source, retryable or not, with messages up to the limit.
pub fn failure_strategy() -> impl Strategy<Value = Failure> {
    (
        error_source_strategy(),
        any::<bool>(),
        text_strategy(1200, 4096),
    )
        .prop_map(|(source, retryable, message)| Failure {
            source,
            retryable,
            message,
        })
}

pub fn tier_strategy() -> impl Strategy<Value = Option<Tier>> {
    proptest::option::of(proptest::sample::select(Tier::ALL))
}

pub fn listed_key_strategy() -> impl Strategy<Value = ListedKey> {
    (
        key_strategy(),
        any::<Option<u64>>(),
        proptest::option::of(metadata_strategy()),
    )
        .prop_map(|(name, expiration, metadata)| ListedKey {
            name,
            expiration,
            metadata,
        })
}

pub fn body_strategy() -> impl Strategy<Value = Body> {
    let entry = (
        any::<u64>(),
        any::<Option<u64>>(),
        proptest::option::of(metadata_strategy()),
        value_strategy(),
    )
        .prop_map(|(version, expiration, metadata, value)| {
            Body::Entry(Entry {
                version,
                expiration,
                metadata,
                value,
            })
        });
    // A decoded page never holds `Some("")`: an empty cursor is `None`.
    let cursor = proptest::option::of(
        proptest::collection::vec(key_char(), 1..700).prop_map(|c| take_bytes(c, 2048)),
    );
    let page = (
        proptest::collection::vec(listed_key_strategy(), 0..12),
        cursor,
    )
        .prop_map(|(keys, cursor)| Body::Page(ListPage { keys, cursor }));
    prop_oneof![
        Just(Body::Empty),
        any::<u64>().prop_map(|version| Body::Deleted { version }),
        any::<u64>().prop_map(|version| Body::NotModified { version }),
        entry,
        (any::<u64>(), any::<bool>())
            .prop_map(|(version, replayed)| Body::Written { version, replayed }),
        page,
        failure_strategy().prop_map(Body::Error),
    ]
}

pub fn response_strategy() -> impl Strategy<Value = Response> {
    (
        any::<u64>(),
        status_strategy(),
        tier_strategy(),
        any::<u32>(),
        body_strategy(),
    )
        .prop_map(|(id, status, tier, age_ms, body)| Response {
            id: RequestId(id),
            status,
            tier,
            age_ms,
            body,
        })
}

/// Inline values: empty, small, some KiB, or exactly the limit.
pub fn inline_bytes_strategy() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => Just(Bytes::new()),
        4 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        1 => proptest::collection::vec(any::<u8>(), 1024..8192).prop_map(Bytes::from),
        1 => any::<u8>().prop_map(|b| Bytes::from(vec![b; MAX_INLINE_VALUE])),
    ]
}

/// Inline values with and without metadata.
pub fn inline_value_strategy() -> impl Strategy<Value = InlineValue> {
    (
        proptest::option::of(metadata_strategy()),
        inline_bytes_strategy(),
    )
        .prop_map(|(metadata, value)| InlineValue { metadata, value })
}

/// Writes (with and without an expiration and an inline value, itself with
/// and without metadata) and deletes (never with a value, which the decoder
/// refuses).
pub fn change_strategy() -> impl Strategy<Value = Change> {
    let write = (
        namespace_strategy(),
        key_strategy(),
        any::<u64>(),
        any::<Option<u64>>(),
        any::<u64>(),
        proptest::option::of(inline_value_strategy()),
    )
        .prop_map(
            |(namespace, key, version, expiration, commit_ms, value)| Change {
                namespace,
                key,
                version,
                tombstone: false,
                expiration,
                commit_ms,
                value,
            },
        );
    let delete = (
        namespace_strategy(),
        key_strategy(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(namespace, key, version, commit_ms)| Change {
            namespace,
            key,
            version,
            tombstone: true,
            expiration: None,
            commit_ms,
            value: None,
        });
    prop_oneof![3 => write, 1 => delete]
}

/// Every kind of feed event: syncs with and without a gap, changes, resyncs.
pub fn feed_event_strategy() -> impl Strategy<Value = FeedEvent> {
    prop_oneof![
        1 => (any::<u64>(), any::<u64>(), any::<bool>())
            .prop_map(|(epoch, next_seq, gap)| FeedEvent::Sync { epoch, next_seq, gap }),
        4 => (any::<u64>(), change_strategy())
            .prop_map(|(seq, change)| FeedEvent::Change { seq, change }),
        1 => any::<u64>().prop_map(|seq| FeedEvent::Resync { seq }),
    ]
}

/// Subscriptions, first ones and resumed ones.
pub fn subscribe_strategy() -> impl Strategy<Value = Subscribe> {
    proptest::option::of(
        (any::<u64>(), any::<u64>()).prop_map(|(epoch, next_seq)| Cursor { epoch, next_seq }),
    )
    .prop_map(|resume| Subscribe { resume })
}

pub fn frame_strategy() -> impl Strategy<Value = Frame> {
    prop_oneof![
        request_strategy().prop_map(Frame::Request),
        response_strategy().prop_map(Frame::Response),
        feed_event_strategy().prop_map(Frame::Feed),
        subscribe_strategy().prop_map(Frame::Subscribe),
    ]
}
