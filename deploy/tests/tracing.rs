//! One request followed through the JSON logs of all three tiers by its
//! request id, as an operator would grep for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Process, Stack, StackOptions};

/// The `span` object of each log line of `process` about request `id`.
fn spans_of(process: &Process, id: &str) -> Vec<Value> {
    process
        .json_lines()
        .into_iter()
        .filter(|line| line["span"]["request_id"] == id)
        .map(|line| line["span"].clone())
        .collect()
}

/// Waits until the edge, one regional node (the key's home) and one origin
/// (the key's first) have logged something about `id`.
fn wait_for_request(stack: &Stack, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = |p: &Process| !spans_of(p, id).is_empty();
        let regional = stack.regionals.iter().any(seen);
        let origin = stack.origins.iter().any(seen);
        if seen(&stack.edge) && regional && origin {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} did not appear in every tier's log: edge {}, regional {regional}, origin {origin}",
            seen(&stack.edge),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The spans of the first origin that logged something about `id`.
fn origin_spans(stack: &Stack, id: &str) -> Vec<Value> {
    stack
        .origins
        .iter()
        .map(|origin| spans_of(origin, id))
        .find(|spans| !spans.is_empty())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_is_followed_through_every_tier() {
    let stack = Stack::start(&StackOptions {
        // Per-request lines are at debug level; everything else stays at info.
        rust_log: "info,kv_runtime=debug,kv_edge=debug".into(),
        ..StackOptions::default()
    });
    let client = reqwest::Client::new();
    let secret_key = "customer-4711-private-notes";

    // A write crosses every tier on its way to the object store.
    let write_id = "00000000feedbeef";
    let response = client
        .put(stack.url(&format!("/v1/app/{secret_key}")))
        .header("x-request-id", write_id)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], write_id);

    // So does a read of a key no tier holds.
    let read_id = "00000000deadf00d";
    let response = client
        .get(stack.url("/v1/app/never-written"))
        .header("x-request-id", read_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], read_id);
    assert_eq!(response.headers()["kv-tier"], "origin");

    for id in [write_id, read_id] {
        wait_for_request(&stack, id);
    }

    // The read, tier by tier: what each one did, and who answered.
    let edge = spans_of(&stack.edge, read_id);
    let edge = edge.last().expect("edge span");
    assert_eq!(edge["tier"], "edge");
    assert_eq!(edge["op"], "get");
    assert_eq!(edge["namespace"], "app");
    assert_eq!(edge["cache"], "miss");
    assert_eq!(edge["answered_by"], "origin");
    assert_eq!(edge["status"], 404);
    let key_hash = edge["key_hash"].as_str().expect("key hash").to_string();
    assert_eq!(key_hash.len(), 16);

    let home = stack
        .regionals
        .iter()
        .find(|r| !spans_of(r, read_id).is_empty())
        .expect("the home regional node logged the read");
    let regional = spans_of(home, read_id);
    let regional = regional.last().expect("regional span");
    assert_eq!(regional["tier"], "regional");
    assert_eq!(regional["cache"], "miss");
    assert_eq!(regional["key_hash"], key_hash.as_str());
    assert_eq!(regional["status"], "not_found");

    let origin = origin_spans(&stack, read_id);
    let origin = origin.last().expect("origin span");
    assert_eq!(origin["tier"], "origin");
    assert_eq!(origin["op"], "get");
    assert_eq!(origin["key_hash"], key_hash.as_str());
    assert_eq!(origin["status"], "not_found");

    // The write reached the origin under its own id, with its own key hash.
    let origin_write = origin_spans(&stack, write_id);
    assert_eq!(origin_write.last().expect("origin span")["op"], "put");
    assert_ne!(origin_write.last().unwrap()["key_hash"], key_hash.as_str());

    // Keys may be personal data: no log line of any tier carries one.
    for process in stack.processes() {
        for line in process.lines() {
            assert!(
                !line.contains(secret_key),
                "{} logged the key itself: {line}",
                process.name
            );
        }
    }
}
