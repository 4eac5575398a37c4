//! The untiered path's front-line proxies on real servers: they hold each
//! request for their delay and forward it faithfully, and report a dead
//! upstream as a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_edge::dev::{DevOptions, DevStack};
use kv_proto::{Status, Tier};
use kv_runtime::quic::{QuicServer, ServerOptions};
use loadgen::front_line::{HttpProxy, QuicProxy};
use support::{dev_tls, file_store, get, link, put, start_origin, value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_proxy_adds_its_delay_and_forwards_everything() {
    let dir = tempfile::tempdir().unwrap();
    let stack = DevStack::start(DevOptions {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..DevOptions::default()
    })
    .await
    .unwrap();
    let delay = Duration::from_millis(30);
    let proxy = HttpProxy::start(stack.http, delay).await.unwrap();
    let base = format!("http://{}/v1/ns", proxy.local_addr());
    let client = reqwest::Client::new();

    let sent = Instant::now();
    let put = client
        .put(format!("{base}/k"))
        .header("kv-metadata", r#"{"via":"fl"}"#)
        .body(vec![5u8; 200_000])
        .send()
        .await
        .unwrap();
    assert!(sent.elapsed() >= delay);
    assert_eq!(put.status(), 200);

    let sent = Instant::now();
    let got = client.get(format!("{base}/k")).send().await.unwrap();
    assert!(sent.elapsed() >= delay, "{:?}", sent.elapsed());
    assert_eq!(got.status(), 200);
    // The edge's own headers come through: tier, metadata, request id.
    assert!(got.headers().contains_key("kv-tier"));
    assert_eq!(got.headers()["kv-metadata"], r#"{"via":"fl"}"#);
    assert!(got.headers().contains_key("x-request-id"));
    assert_eq!(got.bytes().await.unwrap(), vec![5u8; 200_000]);

    // Errors pass through unchanged, status and JSON body.
    let missing = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    // With the edge gone, the proxy answers 502 with a JSON reason.
    stack.stop().await;
    let dead = client.get(format!("{base}/k")).send().await.unwrap();
    assert_eq!(dead.status(), 502);
    let body: serde_json::Value = dead.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_gateway", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quic_proxy_adds_its_delay_and_re_originates_requests() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let origin = start_origin(&tls, file_store(&dir.path().join("store")));
    let delay = Duration::from_millis(30);
    let identity = tls.load().unwrap();
    let server = QuicServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        ServerOptions::new("test", kv_runtime::metrics::Metrics::new()),
    )
    .unwrap();
    let proxy_addr = server.local_addr().unwrap();
    let proxy = Arc::new(QuicProxy::new(link(&tls, origin.addr), delay));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(proxy, async {
        let _ = stopped.await;
    }));
    let through = link(&tls, proxy_addr);

    let written = put(&through, "ns", "k", "via the front line").await;
    assert_eq!(written.status, Status::Ok, "{written:?}");
    let sent = Instant::now();
    let answer = get(&through, "ns", "k").await;
    assert!(sent.elapsed() >= delay, "{:?}", sent.elapsed());
    assert_eq!(value(&answer), "via the front line");
    assert_eq!(answer.tier, Some(Tier::Origin));

    // The origin gone: a typed `unavailable`, not a hang or a dropped stream.
    origin.stop().await;
    let answer = get(&through, "ns", "k").await;
    assert_eq!(answer.status, Status::Unavailable, "{answer:?}");

    let _ = stop.send(());
    serving.await.unwrap();
}
