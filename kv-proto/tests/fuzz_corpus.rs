//! The fuzz target's seed corpus, `fuzz/corpus/decode_frame/`: its generator,
//! and a replay of every file in it through the fuzz target's own checks
//! (`kv_proto::fuzzing::check_decoder`), so that a corpus entry that once
//! found a bug keeps guarding against it in an ordinary `cargo test`.
//!
//! To rewrite the seeds after a deliberate change to the encoding:
//!
//! ```text
//! TIERKV_REGEN_CORPUS=1 cargo test -p kv-proto --test fuzz_corpus
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use bytes::BytesMut;
use common::*;
use kv_proto::limits::{MAX_INLINE_VALUE, MAX_SUBSCRIBE_BODY};
use kv_proto::{
    Change, FeedEvent, Frame, FrameHeader, FrameKind, InlineValue, PROTOCOL_VERSION, ProtoError,
    decode_frame, encode_frame,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_frame")
}

/// What `decode_frame`, called until it stops, makes of a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// This many frames, and nothing left over.
    Frames(usize),
    /// Some frames (maybe none), then a partial one.
    Incomplete,
    /// Some frames (maybe none), then an error.
    Error,
}

struct Seed {
    name: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn seed(name: impl Into<String>, bytes: impl Into<Vec<u8>>, expect: Expect) -> Seed {
    Seed {
        name: format!("{}.bin", name.into()),
        bytes: bytes.into(),
        expect,
    }
}

fn seeds() -> Vec<Seed> {
    let samples = sample_frames();
    let by_name = |name: &str| {
        samples
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| encode(f).to_vec())
            .unwrap()
    };
    let mut seeds: Vec<Seed> = samples
        .iter()
        .map(|(name, frame)| {
            seed(
                format!("valid-{name}"),
                encode(frame).to_vec(),
                Expect::Frames(1),
            )
        })
        .collect();

    // Streams of several frames.
    let mut exchange = by_name("request-get-plain");
    exchange.extend(by_name("response-entry-full"));
    seeds.push(seed("stream-request-response", exchange, Expect::Frames(2)));
    let mut events = BytesMut::new();
    for event in feed_stream() {
        encode_frame(&Frame::Feed(event), &mut events);
    }
    seeds.push(seed(
        "stream-feed-events",
        events.to_vec(),
        Expect::Frames(feed_stream().len()),
    ));
    // A subscription resuming where the feed stream above left off, then the
    // publisher's answer: a sync and a change.
    let mut resumed = by_name("subscribe-resume");
    resumed.extend(by_name("feed-sync"));
    resumed.extend(by_name("feed-change"));
    seeds.push(seed(
        "stream-subscribe-then-feed",
        resumed,
        Expect::Frames(3),
    ));
    // A delete acknowledged, then a read of the key answered with its tombstone.
    let mut delete_then_get = by_name("request-delete");
    delete_then_get.extend(by_name("response-written"));
    delete_then_get.extend(by_name("request-get-plain"));
    delete_then_get.extend(by_name("response-deleted"));
    seeds.push(seed(
        "stream-delete-then-get",
        delete_then_get,
        Expect::Frames(4),
    ));

    // Malformed.
    let put = by_name("request-put-full");
    seeds.push(seed("bad-truncated-header", &put[..5], Expect::Incomplete));
    seeds.push(seed(
        "bad-truncated-body",
        &put[..put.len() - 3],
        Expect::Incomplete,
    ));
    let mut bad_version = by_name("feed-change");
    bad_version[0] = PROTOCOL_VERSION + 1;
    seeds.push(seed("bad-version", bad_version, Expect::Error));
    // A whole version-1 GET (no budget): refused from its header.
    let mut version_1 = BodyBuilder::new()
        .u64(1)
        .u8(OP_GET)
        .target(b"users", b"alice")
        .u8(0)
        .frame(FrameKind::Request);
    version_1[0] = 1;
    seeds.push(seed("bad-version-1", version_1.to_vec(), Expect::Error));
    let mut unknown_kind = by_name("response-written");
    unknown_kind[1] = 9;
    seeds.push(seed("bad-unknown-kind", unknown_kind, Expect::Error));
    let mut reserved = by_name("request-delete");
    reserved[3] = 1;
    seeds.push(seed("bad-reserved-bits", reserved, Expect::Error));
    let mut huge = FrameHeader {
        kind: FrameKind::Request,
        body_len: 0,
    }
    .to_bytes()
    .to_vec();
    huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    huge.extend_from_slice(b"\x01\x02\x03\x04");
    seeds.push(seed("bad-huge-declared-length", huge, Expect::Error));
    let unknown_op = BodyBuilder::request(1, 9)
        .target(b"n", b"k")
        .u8(0)
        .frame(FrameKind::Request);
    seeds.push(seed("bad-unknown-op", unknown_op.to_vec(), Expect::Error));
    let mut trailing = BodyBuilder(by_name("request-get-plain")[8..].to_vec())
        .raw(b"xx")
        .frame(FrameKind::Request)
        .to_vec();
    trailing.extend(by_name("feed-sync"));
    seeds.push(seed(
        "bad-trailing-bytes-then-valid",
        trailing,
        Expect::Error,
    ));
    let bad_key = BodyBuilder::request(1, OP_GET)
        .target(b"n", b"\xc3(")
        .u8(0)
        .frame(FrameKind::Request);
    seeds.push(seed(
        "bad-invalid-utf8-key",
        bad_key.to_vec(),
        Expect::Error,
    ));
    let bad_json = BodyBuilder::request(1, OP_PUT)
        .write_target(b"n", b"k")
        .u8(0b10)
        .bytes16(b"{\"a\":")
        .bytes32(b"v");
    seeds.push(seed(
        "bad-metadata-not-json",
        bad_json.frame(FrameKind::Request).to_vec(),
        Expect::Error,
    ));
    // A DELETE whose body ends inside its write id.
    let cut_write_id = BodyBuilder::request(1, OP_DELETE)
        .target(b"n", b"k")
        .raw(&SAMPLE_WRITE_ID.0.to_be_bytes()[..9])
        .frame(FrameKind::Request);
    seeds.push(seed(
        "bad-truncated-write-id",
        cut_write_id.to_vec(),
        Expect::Error,
    ));
    let bad_source = BodyBuilder::response(1, 4, 0, BODY_ERROR)
        .failure(0, ERROR_RETRYABLE)
        .bytes16(b"m")
        .frame(FrameKind::Response);
    seeds.push(seed(
        "bad-unknown-error-source",
        bad_source.to_vec(),
        Expect::Error,
    ));
    let bad_flags = BodyBuilder::response(1, 4, 0, BODY_ERROR)
        .failure(SOURCE_UPSTREAM, 0b11)
        .bytes16(b"m")
        .frame(FrameKind::Response);
    seeds.push(seed(
        "bad-unknown-error-flags",
        bad_flags.to_vec(),
        Expect::Error,
    ));
    // The feed and subscribe frames.
    let feed_seeds = [
        (
            "bad-feed-unknown-kind",
            BodyBuilder::new().u8(9).u64(1).frame(FrameKind::Feed),
        ),
        (
            "bad-change-unknown-flags",
            BodyBuilder::change(1, b"n", b"k", 0x10).frame(FrameKind::Feed),
        ),
        (
            "bad-change-metadata-without-value",
            BodyBuilder::change(1, b"n", b"k", CHANGE_METADATA)
                .bytes16(b"{}")
                .frame(FrameKind::Feed),
        ),
        (
            "bad-change-tombstone-with-value",
            BodyBuilder::change(1, b"n", b"k", CHANGE_TOMBSTONE | CHANGE_VALUE)
                .bytes32(b"v")
                .frame(FrameKind::Feed),
        ),
        (
            "bad-change-invalid-utf8-key",
            BodyBuilder::change(1, b"n", b"\xc3(", 0).frame(FrameKind::Feed),
        ),
        (
            "bad-inline-value-too-large",
            BodyBuilder::change(1, b"n", b"k", CHANGE_VALUE)
                .u32(u32::try_from(MAX_INLINE_VALUE + 1).unwrap())
                .frame(FrameKind::Feed),
        ),
        (
            "bad-sync-unknown-flags",
            BodyBuilder::sync(1, 2, 0b10).frame(FrameKind::Feed),
        ),
        (
            "bad-subscribe-unknown-flags",
            BodyBuilder::new()
                .u8(0b11)
                .u64(1)
                .u64(2)
                .frame(FrameKind::Subscribe),
        ),
        (
            "bad-subscribe-truncated-cursor",
            BodyBuilder::new()
                .u8(SUBSCRIBE_RESUME)
                .u64(1)
                .u32(2)
                .frame(FrameKind::Subscribe),
        ),
        (
            "bad-subscribe-too-large",
            BodyBuilder::subscribe_resume(1, 2)
                .raw(&[0; MAX_SUBSCRIBE_BODY])
                .frame(FrameKind::Subscribe),
        ),
    ];
    for (name, frame) in feed_seeds {
        seeds.push(seed(name, frame.to_vec(), Expect::Error));
    }
    // Deterministic garbage.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let garbage: Vec<u8> = (0..200)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_be_bytes()[0]
        })
        .collect();
    seeds.push(seed("bad-garbage", garbage, Expect::Error));
    seeds
}

/// The events of the "stream-feed-events" seed: a sync, a run of changes
/// (with and without an inline value, a delete) numbered from the sync's
/// next sequence number, a resync, and a sync announcing a gap.
fn feed_stream() -> Vec<FeedEvent> {
    let epoch = 0x0000_0001_0000_0002;
    vec![
        FeedEvent::Sync {
            epoch,
            next_seq: 100,
            gap: false,
        },
        FeedEvent::Change {
            seq: 100,
            change: Change {
                expiration: Some(1_900_000_000),
                value: Some(InlineValue {
                    metadata: Some(meta(r#"{"v":1}"#)),
                    value: bytes::Bytes::from_static(b"one"),
                }),
                ..plain_change("users", "a", 1)
            },
        },
        FeedEvent::Change {
            seq: 101,
            change: plain_change("users", "a/b", 2),
        },
        FeedEvent::Change {
            seq: 102,
            change: Change {
                tombstone: true,
                ..plain_change("users", "é", 3)
            },
        },
        FeedEvent::Resync { seq: 103 },
        FeedEvent::Sync {
            epoch,
            next_seq: 200,
            gap: true,
        },
    ]
}

/// With `TIERKV_REGEN_CORPUS=1`, writes the seeds into the corpus, once per
/// test run, before either test looks at it.
fn regenerate_if_asked() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        if std::env::var_os("TIERKV_REGEN_CORPUS").is_some_and(|v| v == "1") {
            let dir = corpus_dir();
            std::fs::create_dir_all(&dir).unwrap();
            for seed in seeds() {
                std::fs::write(dir.join(&seed.name), &seed.bytes).unwrap();
            }
        }
    });
}

/// Calls `decode_frame` until it stops, checking the outcome.
fn assert_outcome(seed: &Seed) {
    let mut buf = BytesMut::from(&seed.bytes[..]);
    let mut frames = 0;
    let outcome = loop {
        match decode_frame(&mut buf) {
            Ok(Some(_)) => frames += 1,
            Ok(None) if buf.is_empty() => break Expect::Frames(frames),
            Ok(None) => break Expect::Incomplete,
            Err(_) => break Expect::Error,
        }
    };
    match seed.expect {
        Expect::Frames(n) => assert_eq!(outcome, Expect::Frames(n), "{}", seed.name),
        expect => assert_eq!(outcome, expect, "{}", seed.name),
    }
}

/// The seeds decode as intended, and the corpus on disk holds each of them,
/// byte for byte (it may hold more: inputs a fuzzer has added).
#[test]
fn seed_corpus_is_up_to_date() {
    let seeds = seeds();
    assert!(seeds.len() >= 25);
    assert!(
        seeds
            .iter()
            .filter(|s| matches!(s.expect, Expect::Frames(_)))
            .count()
            >= 15
    );
    for seed in &seeds {
        assert_outcome(seed);
        // Every seed is within the fuzz target's reach and passes its checks.
        kv_proto::fuzzing::check_decoder(&seed.bytes);
    }
    // The version-1 frame is refused for its version.
    let version_1 = seeds
        .iter()
        .find(|s| s.name == "bad-version-1.bin")
        .unwrap();
    assert_eq!(
        FrameHeader::parse(&version_1.bytes),
        Err(ProtoError::UnsupportedVersion(1))
    );
    // The huge declared length is refused from the header alone.
    let huge = seeds
        .iter()
        .find(|s| s.name == "bad-huge-declared-length.bin")
        .unwrap();
    assert!(matches!(
        FrameHeader::parse(&huge.bytes),
        Err(ProtoError::FrameTooLarge { .. })
    ));
    // So is the oversized subscribe, at its own kind's limit.
    let subscribe = seeds
        .iter()
        .find(|s| s.name == "bad-subscribe-too-large.bin")
        .unwrap();
    assert_eq!(
        FrameHeader::parse(&subscribe.bytes),
        Err(ProtoError::FrameTooLarge {
            len: 17 + MAX_SUBSCRIBE_BODY,
            max: MAX_SUBSCRIBE_BODY
        })
    );
    // The feed stream decodes to its events, in order.
    let stream = seeds
        .iter()
        .find(|s| s.name == "stream-feed-events.bin")
        .unwrap();
    let mut buf = BytesMut::from(&stream.bytes[..]);
    let mut decoded = Vec::new();
    while let Some(frame) = decode_frame(&mut buf).unwrap() {
        match frame {
            Frame::Feed(event) => decoded.push(event),
            other => panic!("not a feed event: {other:?}"),
        }
    }
    assert_eq!(decoded, feed_stream());
    // Every frame kind and feed event kind is among the valid seeds.
    let mut kinds = Vec::new();
    for seed in &seeds {
        let mut buf = BytesMut::from(&seed.bytes[..]);
        while let Ok(Some(frame)) = decode_frame(&mut buf) {
            kinds.push(match frame {
                Frame::Request(_) => "request",
                Frame::Response(_) => "response",
                Frame::Feed(FeedEvent::Sync { .. }) => "sync",
                Frame::Feed(FeedEvent::Change { .. }) => "change",
                Frame::Feed(FeedEvent::Resync { .. }) => "resync",
                Frame::Subscribe(_) => "subscribe",
            });
        }
    }
    for kind in [
        "request",
        "response",
        "sync",
        "change",
        "resync",
        "subscribe",
    ] {
        assert!(kinds.contains(&kind), "no valid {kind} seed");
    }

    regenerate_if_asked();
    let dir = corpus_dir();
    for seed in &seeds {
        let path = dir.join(&seed.name);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with TIERKV_REGEN_CORPUS=1",
                path.display()
            )
        });
        assert!(
            on_disk == seed.bytes,
            "{} is stale; regenerate with TIERKV_REGEN_CORPUS=1",
            path.display()
        );
    }
}

/// Every file in the corpus, seeds and fuzzer finds alike, passes the fuzz
/// target's checks.
#[test]
fn replay_corpus_through_the_fuzz_checks() {
    regenerate_if_asked();
    let dir = corpus_dir();
    assert!(dir.is_dir(), "the fuzz corpus {} is missing", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "only {} files in {}",
        files.len(),
        dir.display()
    );

    let mut failures = Vec::new();
    let mut decoded_some = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        if matches!(decode_frame(&mut BytesMut::from(&data[..])), Ok(Some(_))) {
            decoded_some += 1;
        }
        let result = std::panic::catch_unwind(|| kv_proto::fuzzing::check_decoder(&data));
        if result.is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(failures.is_empty(), "fuzz checks failed for: {failures:#?}");
    // Frames of this version: a corpus left at an older version would still
    // pass the checks above (every frame refused), but guard nothing.
    assert!(
        decoded_some >= 15,
        "only {decoded_some} corpus files start with a valid frame"
    );
}
