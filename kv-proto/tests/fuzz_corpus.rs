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
use kv_proto::{FrameHeader, FrameKind, PROTOCOL_VERSION, ProtoError, decode_frame, encode_frame};

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
    let mut invalidations = BytesMut::new();
    for (i, name) in ["a", "a/b", "é"].into_iter().enumerate() {
        let frame = kv_proto::Frame::Invalidation(kv_proto::Invalidation {
            namespace: ns("users"),
            key: key(name),
            version: u64::try_from(i).unwrap(),
        });
        encode_frame(&frame, &mut invalidations);
    }
    seeds.push(seed(
        "stream-invalidations",
        invalidations.to_vec(),
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
    let mut bad_version = by_name("invalidation");
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
    trailing.extend(by_name("invalidation"));
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
