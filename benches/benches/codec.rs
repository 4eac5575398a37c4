//! kv-proto encode and decode of the frames on the hot path.
//!
//! - `codec/get_response_1KiB`: a GET response served from regional memory
//!   (version, metadata `{"a":1}`, a 1 KiB value): encode plus decode, encode
//!   alone, decode alone.
//! - `codec/put_request_decode`: decoding PUT requests carrying 1 KiB and
//!   1 MiB values. Decoding slices the value out of the receive buffer rather
//!   than copying it, so the 1 MiB figure should be close to the 1 KiB one,
//!   not ~1000 times slower.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kv_proto::{
    Entry, Frame, Key, Metadata, Namespace, Op, PutRequest, Request, RequestId, Response, Tier,
    WriteId, decode_frame, encode_frame,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// A GET response answered from regional memory, carrying `value_len` bytes.
fn get_response(value_len: usize) -> Frame {
    let entry = Entry {
        version: 0x0001_8c2f_5a3b_0001,
        expiration: None,
        metadata: Some(Metadata::new(Bytes::from_static(b"{\"a\":1}")).expect("valid metadata")),
        value: Bytes::from(vec![0xa5; value_len]),
    };
    Frame::Response(Response::entry(RequestId(42), Tier::RegionalMemory, entry))
}

/// A PUT request carrying `value_len` bytes, with the default budget and a
/// fixed write id (so every run encodes the same bytes).
fn put_request(value_len: usize) -> Frame {
    let put = PutRequest {
        write_id: WriteId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        ..PutRequest::new(
            Namespace::new("bench").expect("valid namespace"),
            Key::new("users/12345/profile").expect("valid key"),
            Bytes::from(vec![0xa5; value_len]),
        )
        .expect("value within limits")
    };
    Frame::Request(Request {
        id: RequestId(42),
        budget: Request::DEFAULT_BUDGET,
        op: Op::Put(put),
    })
}

/// The frame's bytes on the wire.
fn encoded(frame: &Frame) -> Bytes {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf);
    buf.freeze()
}

/// Decodes the one whole frame in `buf`.
fn decode_one(buf: &mut BytesMut) -> Frame {
    decode_frame(buf)
        .expect("a valid frame")
        .expect("a whole frame")
}

fn bench_get_response(c: &mut Criterion) {
    let response = get_response(KIB);
    let wire = encoded(&response);
    // Check once, outside the measurement, that the round trip is faithful.
    let mut check = BytesMut::from(&wire[..]);
    assert_eq!(
        decode_one(&mut check),
        response,
        "round trip changed the frame"
    );

    let mut group = c.benchmark_group("codec/get_response_1KiB");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("encode+decode", |b| {
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(wire.len());
            encode_frame(black_box(&response), &mut buf);
            decode_one(black_box(&mut buf))
        })
    });
    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(wire.len());
            encode_frame(black_box(&response), &mut buf);
            buf
        })
    });
    // The receive buffer is filled in the (unmeasured) set-up, as the network
    // would fill it; only decode_frame is timed.
    group.bench_function("decode", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| decode_one(black_box(&mut buf)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_put_request_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/put_request_decode");
    for (label, value_len) in [("1KiB", KIB), ("1MiB", MIB)] {
        let request = put_request(value_len);
        let wire = encoded(&request);
        let mut check = BytesMut::from(&wire[..]);
        assert_eq!(
            decode_one(&mut check),
            request,
            "round trip changed the frame"
        );

        group.throughput(Throughput::Bytes(wire.len() as u64));
        // Filling the buffer (a 1 MiB copy) happens in the set-up; criterion
        // drops each decoded frame outside the measurement too, so only the
        // decode is timed.
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| decode_one(black_box(&mut buf)),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_get_response, bench_put_request_decode);
criterion_main!(benches);
