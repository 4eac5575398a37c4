//! Feeds arbitrary bytes to every kv-proto decoder: `decode_frame` in a loop,
//! as a stream, and `decode_request` / `decode_response` /
//! `decode_feed_event` / `decode_subscribe` on the whole input. Anything
//! decoded must re-encode to the same bytes and decode again to an equal
//! frame.
//!
//! The checks live in `kv_proto::fuzzing::check_decoder`, shared with the
//! corpus replay test in `kv-proto/tests/fuzz_corpus.rs`.
//!
//! Run with `cargo +nightly fuzz run decode_frame` from `fuzz/`'s parent.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kv_proto::fuzzing::check_decoder(data);
});
