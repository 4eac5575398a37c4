//! Writes that can be trusted, through real edges over HTTP, a real
//! regional node and a real origin over QUIC, all on loopback: a write
//! retried through another edge after a timeout is applied once, and with
//! the origin down, cached reads still answer while everything else answers
//! within its deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/late_writes.rs"]
mod late_writes;
#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kv_edge::{EdgeConfig, EdgeServer};
use kv_origin::{OriginConfig, OriginServer, Store, StoreConfig};
use kv_regional::{RegionalConfig, RegionalServer};
use late_writes::LateWrites;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use reqwest::StatusCode;
use support::{Running, dev_tls, serve_origin, spawn_server, wait_for};

/// An origin on an ephemeral port over `store` (whose writes, or reads, are slow).
fn start_origin_over(
    dir: &Path,
    store: LateWrites,
    limits: StoreConfig,
) -> Running<kv_origin::Origin> {
    let store = Store::new(
        Arc::new(store),
        object_store::path::Path::from("kv"),
        true,
        &limits,
    );
    let config = OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: dev_tls(dir),
        ..OriginConfig::default()
    };
    serve_origin(OriginServer::bind_with_store(&config, store).unwrap())
}

/// A regional node on an ephemeral port, in front of `origin`.
async fn start_regional(dir: &Path, origin: SocketAddr) -> Running<kv_regional::Regional> {
    let server = RegionalServer::bind(&RegionalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        origins: vec![origin.into()],
        data_dir: dir.join("regional"),
        memory_mib: 16,
        disk_mib: 64,
        tls: dev_tls(dir),
        ..RegionalConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let node = server.regional().clone();
    spawn_server(addr, node, move |stopped| async move {
        server
            .serve(async {
                let _ = stopped.await;
            })
            .await;
    })
}

/// An edge on an ephemeral port.
async fn start_edge(dir: &Path, config: EdgeConfig) -> Running<kv_edge::Edge> {
    let server = EdgeServer::bind(&EdgeConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        tls: dev_tls(dir),
        ..config
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let node = server.edge().clone();
    spawn_server(addr, node, move |stopped| async move {
        server
            .serve(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_retried_through_another_edge_after_a_timeout_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    // The origin's store takes 800 ms to apply a write.
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let late = LateWrites::new(bucket.clone(), Duration::from_millis(800));
    let arrived = late.arrived.clone();
    let origin = start_origin_over(dir.path(), late, StoreConfig::default());
    let regional = start_regional(dir.path(), origin.addr).await;
    let edge_config = |write_deadline_ms| EdgeConfig {
        regionals: vec![regional.addr.into()],
        origins: vec![origin.addr.into()],
        write_deadline_ms,
        write_deadline_per_mib_ms: 0,
        ..EdgeConfig::default()
    };
    // The first edge gives writes 300 ms: less than the store needs.
    let impatient = start_edge(dir.path(), edge_config(300)).await;
    let patient = start_edge(dir.path(), edge_config(10_000)).await;
    let http = reqwest::Client::new();
    let url = |edge: &Running<kv_edge::Edge>| format!("http://{}/v1/app/order", edge.addr);

    let first = http
        .put(url(&impatient))
        .header("idempotency-key", "order-1")
        .body("paid")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::GATEWAY_TIMEOUT);
    let write_id = first.headers()["kv-write-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["error"]["code"], "outcome_unknown", "{body}");
    assert_eq!(body["error"]["retryable"], true, "{body}");

    // The client retries through the other edge, with the write id it was
    // given (the same key would do as well).
    let retry = http
        .put(url(&patient))
        .header("idempotency-key", &write_id)
        .body("paid")
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["kv-write-id"], write_id.as_str());
    let version: u64 = retry.headers()["kv-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    // Both attempts reached the store; the key holds one write of that id.
    wait_for(
        Duration::from_secs(10),
        || arrived.load(Ordering::SeqCst) >= 2,
        "both attempts reached the store",
    )
    .await;
    let stored = origin
        .node
        .store()
        .get(
            &kv_origin::layout::Layout::new("kv".into()).object_path(
                &kv_proto::Namespace::new("app").unwrap(),
                &kv_proto::Key::new("order").unwrap(),
            ),
            &kv_runtime::deadline::Deadline::after(Duration::from_secs(5)),
        )
        .await
        .unwrap()
        .expect("stored");
    let object = kv_origin::envelope::decode(stored.0).unwrap();
    let id = kv_proto::WriteId::from_idempotency_key(&write_id);
    let applied: Vec<_> = object.writes.iter().filter(|w| w.id == id).collect();
    assert_eq!(applied.len(), 1, "{:?}", object.writes);
    assert_eq!(
        (applied[0].version, object.entry.version),
        (version, version)
    );
    let read = http.get(url(&patient)).send().await.unwrap();
    assert_eq!(read.headers()["kv-version"], version.to_string().as_str());
    assert_eq!(read.text().await.unwrap(), "paid");

    impatient.stop().await;
    patient.stop().await;
    regional.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_origin_down_cached_reads_answer_and_the_rest_fail_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let origin = support::start_origin(
        &dev_tls(dir.path()),
        support::file_store(&dir.path().join("store")),
    );
    let regional = start_regional(dir.path(), origin.addr).await;
    let edge = start_edge(
        dir.path(),
        EdgeConfig {
            regionals: vec![regional.addr.into()],
            origins: vec![origin.addr.into()],
            // Every read goes to the regional tier.
            hot_cache_mib: 0,
            ..EdgeConfig::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", edge.addr);
    let put = http
        .put(format!("{base}/v1/app/cached"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    origin.stop().await;

    // Cached at the regional tier: still served, from there.
    for _ in 0..3 {
        let got = http
            .get(format!("{base}/v1/app/cached"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(got.headers()["kv-tier"], "regional-memory");
    }
    // Everything else fails, each within the 2 s deadline counted from its
    // start (the bound asserted is loose: it proves nothing hangs).
    for (method, path) in [
        ("GET", "/v1/app/uncached"),
        ("PUT", "/v1/app/k"),
        ("DELETE", "/v1/app/k"),
        ("GET", "/v1/app"),
    ] {
        let started = Instant::now();
        let r = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .body("x")
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            matches!(
                r.status(),
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
            ),
            "{method} {path}: {}",
            r.status()
        );
        let body: serde_json::Value = r.json().await.unwrap();
        let code = body["error"]["code"].as_str().unwrap().to_string();
        // Nothing was sent to a dead origin, so no write is in doubt.
        assert!(
            code == "unavailable" || code == "timeout",
            "{method} {path}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("origin"),
            "{method} {path}: {body}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{method} {path} took {took:?}"
        );
    }
    // The regional node is not counted down for its origin's failure: the
    // cached key is still answered by it.
    let got = http
        .get(format!("{base}/v1/app/cached"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["kv-tier"], "regional-memory");
    edge.stop().await;
    regional.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_puts_answer_200_or_outcome_unknown_and_every_200_is_readable() {
    const PUTS: usize = 40;
    const SIZE: usize = 20 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let stack = kv_edge::dev::DevStack::start(kv_edge::dev::DevOptions {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        edge: EdgeConfig::default(),
    })
    .await
    .unwrap();
    let base = format!("http://{}", stack.http);
    let http = reqwest::Client::new();
    let value = |i: usize| -> bytes::Bytes {
        (0..SIZE)
            .map(|b| (i as u8).wrapping_mul(13).wrapping_add((b % 239) as u8))
            .collect::<Vec<u8>>()
            .into()
    };
    let puts: Vec<_> = (0..PUTS)
        .map(|i| {
            let (http, url, body) = (http.clone(), format!("{base}/v1/app/big-{i}"), value(i));
            tokio::spawn(async move {
                let r = http.put(url).body(body).send().await.unwrap();
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap();
                (i, status, body)
            })
        })
        .collect();
    let (mut ok, mut unknown) = (Vec::new(), 0);
    for put in puts {
        let (i, status, body) = put.await.unwrap();
        match status {
            StatusCode::OK => ok.push(i),
            StatusCode::GATEWAY_TIMEOUT if body["error"]["code"] == "outcome_unknown" => {
                unknown += 1
            }
            other => panic!("PUT {i}: {other} {body}"),
        }
    }
    eprintln!(
        "{PUTS} concurrent 20 MiB PUTs: {} answered 200, {unknown} outcome_unknown",
        ok.len()
    );
    for i in ok {
        let r = http
            .get(format!("{base}/v1/app/big-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "an acknowledged value is missing"
        );
        assert!(r.bytes().await.unwrap() == value(i), "value {i} differs");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_its_caller_abandoned_stops_its_upstream_work() {
    let dir = tempfile::tempdir().unwrap();
    // Every object-store read takes 30 s; the edge's deadline is 20 s.
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let slow = LateWrites::new(bucket, Duration::ZERO).with_read_delay(Duration::from_secs(30));
    let abandoned = slow.reads_abandoned.clone();
    // No store time limit ends the read before the test gives up on it.
    let limits = StoreConfig {
        timeout_ms: 60_000,
        ..StoreConfig::default()
    };
    let origin = start_origin_over(dir.path(), slow, limits);
    let regional = start_regional(dir.path(), origin.addr).await;
    let edge = start_edge(
        dir.path(),
        EdgeConfig {
            regionals: vec![regional.addr.into()],
            origins: vec![origin.addr.into()],
            read_deadline_ms: 20_000,
            ..EdgeConfig::default()
        },
    )
    .await;
    // The client gives up long before the edge's deadline.
    let r = reqwest::Client::new()
        .get(format!("http://{}/v1/app/slow", edge.addr))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    // Nobody waits for the read any more: edge, regional node and origin
    // drop it, down to the object-store call, long before its deadline.
    wait_for(
        Duration::from_secs(10),
        || abandoned.load(Ordering::SeqCst) >= 1,
        "the store read was dropped",
    )
    .await;
    edge.stop().await;
    regional.stop().await;
    origin.stop().await;
}

/// Found by `loadgen chaos`: the answer to a retried write carries its first
/// version, and caches once took it as news and put the old value back over
/// newer ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_write_never_puts_an_older_value_back_in_any_cache() {
    for hot_cache_mib in [64, 0] {
        let dir = tempfile::tempdir().unwrap();
        let stack = kv_edge::dev::DevStack::start(kv_edge::dev::DevOptions {
            data_dir: dir.path().to_path_buf(),
            http: "127.0.0.1:0".parse().unwrap(),
            edge: EdgeConfig {
                hot_cache_mib,
                ..EdgeConfig::default()
            },
        })
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let url = format!("http://{}/v1/app/k", stack.http);
        let send = |method: &str, key: Option<&str>, body: &str| {
            let mut request = http
                .request(method.parse().unwrap(), &url)
                .body(body.to_string());
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            request.send()
        };
        let version = |r: &reqwest::Response| -> u64 {
            r.headers()["kv-version"].to_str().unwrap().parse().unwrap()
        };
        let tier = if hot_cache_mib > 0 {
            "edge"
        } else {
            "regional-memory"
        };

        let first = send("PUT", Some("write-a"), "a").await.unwrap();
        let newer = send("PUT", None, "b").await.unwrap();
        let replay = send("PUT", Some("write-a"), "a").await.unwrap();
        assert_eq!(
            version(&replay),
            version(&first),
            "a replay answers the first version"
        );
        let got = http.get(&url).send().await.unwrap();
        assert_eq!(got.headers()["kv-tier"], tier);
        assert_eq!(version(&got), version(&newer));
        assert_eq!(
            got.text().await.unwrap(),
            "b",
            "hot cache {hot_cache_mib} MiB"
        );

        // A replayed delete does not hide a later write either.
        let deleted = send("DELETE", Some("delete-1"), "").await.unwrap();
        let later = send("PUT", None, "c").await.unwrap();
        let again = send("DELETE", Some("delete-1"), "").await.unwrap();
        assert_eq!(version(&again), version(&deleted));
        let got = http.get(&url).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(version(&got), version(&later));
        assert_eq!(
            got.text().await.unwrap(),
            "c",
            "hot cache {hot_cache_mib} MiB"
        );
        stack.stop().await;
    }
}
