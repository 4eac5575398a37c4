//! Spans exported over OTLP/HTTP to a real HTTP listener standing in for an
//! OpenTelemetry collector (`cargo test -p kv-runtime --features otlp`).
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use kv_runtime::telemetry::{LogFormat, init};

type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector_with_their_fields() {
    let received = Received::default();
    let sink = received.clone();
    let collector = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| async move {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            sink.lock().unwrap().push((content_type, body));
            ""
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let guard = init(
        LogFormat::Text,
        "kv-test-service",
        Some(&format!("http://{addr}")),
    )
    .expect("telemetry set up");
    {
        let span = tracing::info_span!(
            "request",
            request_id = "00000000cafebabe",
            tier = "regional",
            cache = tracing::field::Empty
        );
        span.record("cache", "hit");
        let _entered = span.enter();
        tracing::info!("answered");
    }
    // Dropping the guard flushes the batch; the SDK exports from its own thread.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no export reached the collector"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exports = received.lock().unwrap().clone();
    let (content_type, body) = &exports[0];
    assert_eq!(content_type, "application/x-protobuf");
    // Protobuf keeps strings as they are: the span's name, fields and the
    // service name are all in the payload.
    let contains = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in [
        "request",
        "00000000cafebabe",
        "regional",
        "cache",
        "hit",
        "kv-test-service",
    ] {
        assert!(contains(needle), "{needle} missing from the export");
    }
}
