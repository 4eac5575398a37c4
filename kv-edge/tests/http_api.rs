//! The edge's HTTP API over real HTTP, in front of real regional nodes and an
//! origin over QUIC, all on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kv_edge::EdgeConfig;
use kv_edge::dev::{DevOptions, DevStack};
use kv_runtime::time::unix_seconds;
use reqwest::StatusCode;
use serde_json::Value;

struct Fixture {
    _dir: tempfile::TempDir,
    stack: DevStack,
    http: reqwest::Client,
    base: String,
}

async fn stack_with(edge: EdgeConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let options = DevOptions {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        edge,
    };
    let stack = DevStack::start(options).await.expect("stack starts");
    let base = format!("http://{}", stack.http);
    Fixture {
        _dir: dir,
        stack,
        http: reqwest::Client::new(),
        base,
    }
}

async fn stack() -> Fixture {
    stack_with(EdgeConfig {
        min_expiration_ttl_secs: 1,
        ..EdgeConfig::default()
    })
    .await
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    fn store_gets(&self) -> u64 {
        self.stack
            .origin_node
            .store()
            .stats()
            .gets
            .load(Ordering::Relaxed)
    }
}

/// An extra edge on an ephemeral port, with `certs` and the given settings.
struct ExtraEdge {
    addr: SocketAddr,
    edge: std::sync::Arc<kv_edge::Edge>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ExtraEdge {
    async fn start(certs: &std::path::Path, config: EdgeConfig) -> Self {
        let tls = kv_runtime::tls::TlsConfig {
            dev_certs: Some(certs.join("certs")),
            ..Default::default()
        };
        let config = EdgeConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            tls,
            ..config
        };
        let server = kv_edge::EdgeServer::bind(&config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let edge = server.edge().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            edge,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("a JSON error body");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_round_trip_with_headers() {
    let f = stack().await;
    let put = f
        .http
        .put(f.url("/v1/app/user%2F1?expiration_ttl=3600"))
        .header("kv-metadata", r#"{"plan":"pro"}"#)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let version = put.json::<Value>().await.unwrap()["version"]
        .as_u64()
        .unwrap();

    let got = f.get("/v1/app/user/1").await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        header(&got, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        header(&got, "etag"),
        Some(format!("\"{version}\"").as_str())
    );
    assert_eq!(
        header(&got, "kv-tier"),
        Some("edge"),
        "read-your-writes from the hot cache"
    );
    assert_eq!(header(&got, "kv-metadata"), Some(r#"{"plan":"pro"}"#));
    let expiration: u64 = header(&got, "kv-expiration").unwrap().parse().unwrap();
    assert!((unix_seconds() + 3590..=unix_seconds() + 3600).contains(&expiration));
    assert!(header(&got, "x-request-id").is_some());
    assert_eq!(got.text().await.unwrap(), "hello");

    let not_modified = f
        .http
        .get(f.url("/v1/app/user/1"))
        .header("if-none-match", format!("\"{version}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    let modified = f
        .http
        .get(f.url("/v1/app/user/1"))
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(modified.status(), StatusCode::OK);

    let deleted = f.http.delete(f.url("/v1/app/user/1")).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = f.get("/v1/app/user/1").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(gone).await, "not_found");
    f.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_slashes_and_non_ascii_characters() {
    let f = stack().await;
    for (i, (encoded, _)) in [
        ("a%2Fb", "a/b"),
        ("a/b/c", "a/b/c"),
        ("%D0%BA%D0%BB%D1%8E%D1%87", "ключ"),
        ("%F0%9F%A6%80", "🦀"),
        ("sp%20ace", "sp ace"),
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            f.put(&format!("/v1/app/{encoded}"), format!("v{i}"))
                .await
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        f.get("/v1/app/a/b").await.text().await.unwrap(),
        "v0",
        "a%2Fb and a/b are one key"
    );
    assert_eq!(f.get("/v1/app/a%2Fb%2Fc").await.text().await.unwrap(), "v1");
    assert_eq!(f.get("/v1/app/ключ").await.text().await.unwrap(), "v2");
    assert_eq!(
        f.get("/v1/app/%F0%9F%A6%80").await.text().await.unwrap(),
        "v3"
    );
    let page: Value = f.get("/v1/app").await.json().await.unwrap();
    let names: Vec<_> = page["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a/b", "a/b/c", "sp ace", "ключ", "🦀"]);
    f.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answering_tier_moves_from_origin_to_regional_memory_to_edge() {
    let f = stack().await;
    // A second edge, sharing the regional node and origin, writes the value,
    // so this edge's hot cache is cold while the regional node is warm.
    let writer = ExtraEdge::start(
        f._dir.path(),
        EdgeConfig {
            regionals: vec![f.stack.regional.into()],
            origins: vec![f.stack.origin.into()],
            ..EdgeConfig::default()
        },
    )
    .await;
    let writer_addr = writer.addr;

    // Written at the origin only: straight through a no-regional edge path is
    // not needed; a direct origin write keeps every cache cold.
    let origin = {
        let tls = kv_runtime::tls::TlsConfig {
            dev_certs: Some(f._dir.path().join("certs")),
            ..Default::default()
        };
        let connector =
            kv_runtime::quic::Connector::new(&tls.load().unwrap(), Default::default()).unwrap();
        connector.link(f.stack.origin, "localhost", Duration::from_secs(5))
    };
    // Over the origin's 4 KiB inline limit, so the change feed announces
    // the write without carrying the value into the caches.
    let value = "v".repeat(8 * 1024);
    let put = kv_proto::PutRequest::new(
        kv_proto::Namespace::new("app").unwrap(),
        kv_proto::Key::new("tiered").unwrap(),
        bytes::Bytes::from(value.clone()),
    )
    .unwrap();
    let ack = origin
        .request(&kv_proto::Request::new(kv_proto::Op::Put(put)))
        .await
        .unwrap();
    assert_eq!(ack.status, kv_proto::Status::Ok);

    let tier = |r: &reqwest::Response| header(r, "kv-tier").map(str::to_string);
    let via_writer = f
        .http
        .get(format!("http://{writer_addr}/v1/app/tiered"))
        .send()
        .await
        .unwrap();
    assert_eq!(tier(&via_writer).as_deref(), Some("origin"));
    let first = f.get("/v1/app/tiered").await;
    assert_eq!(tier(&first).as_deref(), Some("regional-memory"));
    let second = f.get("/v1/app/tiered").await;
    assert_eq!(tier(&second).as_deref(), Some("edge"));
    assert_eq!(second.text().await.unwrap(), value);
    writer.stop().await;
    f.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_skip_the_hot_cache_but_still_read_your_writes() {
    let f = stack().await;
    let big = vec![9u8; 200 * 1024];
    assert_eq!(
        f.put("/v1/app/big", big.clone()).await.status(),
        StatusCode::OK
    );
    let got = f.get("/v1/app/big").await;
    assert_eq!(header(&got, "kv-tier"), Some("regional-memory"));
    assert_eq!(got.bytes().await.unwrap().to_vec(), big);
    let newer = vec![8u8; 200 * 1024];
    f.put("/v1/app/big", newer.clone()).await;
    assert_eq!(
        f.get("/v1/app/big").await.bytes().await.unwrap().to_vec(),
        newer
    );
    f.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_expire() {
    let f = stack().await;
    let at = unix_seconds() + 4;
    assert_eq!(
        f.put(&format!("/v1/app/soon?expiration={at}"), "x")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(f.get("/v1/app/soon").await.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while f.get("/v1/app/soon").await.status() == StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(unix_seconds() >= at);
    f.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_with_cursors() {
    let f = stack().await;
    for i in 0..25 {
        f.put(&format!("/v1/app/items/{i:02}"), "x").await;
    }
    f.put("/v1/app/other", "x").await;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = f.url("/v1/app?prefix=items/&limit=10");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = f.http.get(url).send().await.unwrap().json().await.unwrap();
        pages += 1;
        for k in page["keys"].as_array().unwrap() {
            names.push(k["name"].as_str().unwrap().to_string());
        }
        if page["list_complete"].as_bool().unwrap() {
            assert!(page["cursor"].is_null());
            break;
        }
        cursor = Some(page["cursor"].as_str().unwrap().to_string());
        assert!(pages < 5);
    }
    assert_eq!(pages, 3);
    let expected: Vec<_> = (0..25).map(|i| format!("items/{i:02}")).collect();
    assert_eq!(names, expected);
    f.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_and_bad_input_gets_a_json_error() {
    let f = stack_with(EdgeConfig::default()).await;
    let long_key = "k".repeat(513);
    let r = f.put(&format!("/v1/app/{long_key}"), "x").await;
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(error_code(r).await, "key_too_long");
    assert_eq!(
        f.put(&format!("/v1/app/{}", "k".repeat(512)), "x")
            .await
            .status(),
        StatusCode::OK
    );

    // Over 25 MiB, refused from the declared length before any body is
    // sent: a raw client sends only the headers and still gets its answer.
    let (status, body) = raw_put_headers_only(f.stack.http, 25 * 1024 * 1024 + 1).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(body.contains("value_too_large"), "{body}");
    // Exactly 25 MiB is accepted.
    assert_eq!(
        f.put("/v1/app/max", vec![1u8; 25 * 1024 * 1024])
            .await
            .status(),
        StatusCode::OK
    );
    // A streamed body with no declared length is cut off at the limit.
    let (status, body) = raw_put_chunked_past_limit(f.stack.http).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(body.contains("value_too_large"), "{body}");

    let put_with_meta = |meta: String| {
        f.http
            .put(f.url("/v1/app/m"))
            .header("kv-metadata", meta)
            .body("x")
            .send()
    };
    assert_eq!(
        put_with_meta(format!("\"{}\"", "a".repeat(1022)))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = put_with_meta(format!("\"{}\"", "a".repeat(1023)))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "metadata over 1024 bytes"
    );
    let r = put_with_meta("{not json".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "bad_request");

    for path in ["/v1/bad.ns/k", "/v1/bad%20ns/k"] {
        let r = f.get(path).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(r).await, "bad_request");
    }
    let r = f.get(&format!("/v1/{}/k", "n".repeat(65))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    for query in [
        "expiration_ttl=59",
        "expiration_ttl=60&expiration=99999999999",
        "expiration=10",
        "expiration_ttl=abc",
    ] {
        let r = f.put(&format!("/v1/app/e?{query}"), "x").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error_code(r).await, "bad_request");
    }
    assert_eq!(
        f.put("/v1/app/e?expiration_ttl=60", "x").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        f.get("/v1/app/e?cache_ttl=29").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        f.get("/v1/app/e?cache_ttl=30").await.status(),
        StatusCode::OK
    );
    // The maximum (3600 s by default) bounds how long any read can keep a
    // copy; above it, and far above it, the read is refused.
    let longest = f.get("/v1/app/e?cache_ttl=3600").await;
    assert_eq!(longest.status(), StatusCode::OK);
    for too_long in ["3601", "4294967295", "18446744073709551615"] {
        let r = f.get(&format!("/v1/app/e?cache_ttl={too_long}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{too_long}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 3600"),
            "{body}"
        );
    }
    for bad in ["?min_version=x", "?min_version=-1"] {
        let r = f.get(&format!("/v1/app/e{bad}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    for limit in ["0", "1001", "x"] {
        assert_eq!(
            f.get(&format!("/v1/app?limit={limit}")).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    let r = f.get("/v1/app?cursor=forged").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = f.get("/nowhere").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
    let r = f
        .http
        .post(f.url("/v1/app/k"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(r).await, "method_not_allowed");
    let r = f.http.delete(f.url("/v1/app")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    assert_eq!(f.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(f.get("/readyz").await.status(), StatusCode::OK);
    f.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_cold_reads_make_one_origin_read() {
    let f = stack().await;
    let writer = ExtraEdge::start(
        f._dir.path(),
        EdgeConfig {
            regionals: vec![],
            origins: vec![f.stack.origin.into()],
            hot_cache_mib: 0,
            ..EdgeConfig::default()
        },
    )
    .await;
    let writer_addr = writer.addr;
    // Over the origin's 4 KiB inline limit, so the change feed does not
    // carry the value into the caches: they stay cold.
    let value = "c".repeat(8 * 1024);
    let put = f
        .http
        .put(format!("http://{writer_addr}/v1/app/cold"))
        .body(value.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);

    let before = f.store_gets();
    let reads = (0..1000).map(|_| {
        let (http, url) = (f.http.clone(), f.url("/v1/app/cold"));
        tokio::spawn(async move {
            let r = http.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        })
    });
    for read in futures::future::join_all(reads).await {
        assert_eq!(read.unwrap(), (StatusCode::OK, value.clone()));
    }
    assert_eq!(
        f.store_gets() - before,
        1,
        "one object-store read for 1000 cold reads"
    );
    assert_eq!(
        f.stack.edge.stats().upstream_reads.load(Ordering::Relaxed),
        1
    );
    writer.stop().await;
    f.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_tier_reachable_the_edge_answers_503_once_every_dial_failed() {
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_udp_port();
    let edge = ExtraEdge::start(
        dir.path(),
        EdgeConfig {
            regionals: vec![closed.into()],
            origins: vec![closed.into()],
            connect_timeout_ms: 200,
            read_deadline_ms: 5_000,
            write_deadline_ms: 5_000,
            ..EdgeConfig::default()
        },
    )
    .await;
    let addr = edge.addr;
    let http = reqwest::Client::new();
    for (method, path) in EVERY_OPERATION {
        let r = http
            .request(method.parse().unwrap(), format!("http://{addr}{path}"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert_eq!(body["error"]["retryable"], true, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&closed.to_string()), "{message}");
    }
    assert_eq!(
        http.get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        http.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_deadline_passes_first_answers_504_by_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_udp_port();
    let deadline = Duration::from_millis(400);
    // Dials outlast the deadline: the request times out, and a write that
    // was never sent is a definite failure (`timeout`), not an unknown one.
    let edge = ExtraEdge::start(
        dir.path(),
        EdgeConfig {
            regionals: vec![closed.into()],
            origins: vec![closed.into()],
            connect_timeout_ms: 30_000,
            read_deadline_ms: deadline.as_millis() as u64,
            write_deadline_ms: deadline.as_millis() as u64,
            write_deadline_per_mib_ms: 0,
            ..EdgeConfig::default()
        },
    )
    .await;
    let addr = edge.addr;
    let http = reqwest::Client::new();
    for (method, path) in EVERY_OPERATION {
        let started = std::time::Instant::now();
        let r = http
            .request(method.parse().unwrap(), format!("http://{addr}{path}"))
            .body("x")
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT, "{method} {path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "timeout", "{method} {path}: {body}");
        // It waited for the dial while the deadline allowed (the edge keeps
        // a small margin back), and nothing hangs past the deadline (the
        // bound is loose: it proves the answer is not held for the 30 s dial).
        assert!(
            took >= deadline / 2,
            "{method} {path} answered early: {took:?}"
        );
        assert!(took < deadline * 5, "{method} {path} took {took:?}");
    }
    edge.stop().await;
}

/// One request of each operation: read, write, delete, list.
const EVERY_OPERATION: [(&str, &str); 4] = [
    ("GET", "/v1/app/k"),
    ("PUT", "/v1/app/k"),
    ("DELETE", "/v1/app/k"),
    ("GET", "/v1/app"),
];

/// A loopback UDP port with nothing listening: QUIC dials to it never finish.
fn closed_udp_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// Sends a PUT's headers declaring `content_length` bytes but no body, and
/// returns the status line and the body of the answer.
async fn raw_put_headers_only(addr: SocketAddr, content_length: usize) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/app/huge HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {content_length}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered without the body being sent")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_node_stopped_mid_test_costs_no_failed_reads() {
    let f = stack().await;
    let tls = kv_runtime::tls::TlsConfig {
        dev_certs: Some(f._dir.path().join("certs")),
        ..Default::default()
    };
    // A second regional node beside the stack's own.
    let second = kv_regional::RegionalServer::bind(&kv_regional::RegionalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        origins: vec![f.stack.origin.into()],
        data_dir: f._dir.path().join("regional-2"),
        memory_mib: 16,
        disk_mib: 64,
        tls: tls.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let second_addr = second.local_addr().unwrap();
    let (stop_second, second_stopped) = tokio::sync::oneshot::channel::<()>();
    let second_task = tokio::spawn(second.serve(async {
        let _ = second_stopped.await;
    }));
    // An edge over both, with its hot cache off so every read goes upstream.
    let edge = ExtraEdge::start(
        f._dir.path(),
        EdgeConfig {
            regionals: vec![f.stack.regional.into(), second_addr.into()],
            origins: vec![f.stack.origin.into()],
            hot_cache_mib: 0,
            connect_timeout_ms: 1_000,
            ..EdgeConfig::default()
        },
    )
    .await;
    let edge_addr = edge.addr;
    let routing = edge.edge.clone();
    let url = |k: &str| format!("http://{edge_addr}/v1/app/{k}");

    let keys: Vec<String> = (0..40).map(|i| format!("spread-{i}")).collect();
    for k in &keys {
        assert_eq!(
            f.http
                .put(url(k))
                .body(k.clone())
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let homed_on_second = keys
        .iter()
        .filter(|k| routing.upstream().home(&format!("app/{k}")) == Some(second_addr.to_string()))
        .count();
    assert!(
        homed_on_second > 5,
        "the second node should be home to some keys ({homed_on_second})"
    );
    for k in &keys {
        let r = f.http.get(url(k)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    stop_second.send(()).unwrap();
    second_task.await.unwrap();
    for round in 0..2 {
        for k in &keys {
            let r = f.http.get(url(k)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "round {round}, key {k}");
            assert_eq!(r.text().await.unwrap(), *k);
        }
    }
    assert_eq!(
        routing.upstream().home("app/spread-0").as_deref(),
        Some(f.stack.regional.to_string().as_str())
    );
    edge.stop().await;
    f.stack.stop().await;
}

/// Streams exactly 25 MiB as chunks, then one byte more, and reads the
/// answer. Nothing follows the last byte, so the server, having read every
/// byte it was sent, answers and closes cleanly.
async fn raw_put_chunked_past_limit(addr: SocketAddr) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        answer
    });
    let head = format!(
        "PUT /v1/app/streamed HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..25 {
        write
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        write.write_all(&chunk).await.unwrap();
        write.write_all(b"\r\n").await.unwrap();
    }
    write.write_all(b"1\r\nx").await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    drop(write);
    (status, body)
}
