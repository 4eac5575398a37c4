//! The origin served over real QUIC on loopback, against two real backends:
//! local files and an S3-compatible server (s3s-fs) that the tests start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use kv_origin::{Origin, StoreConfig};
use kv_proto::{Body, FrameHeader, FrameKind, Status, Tier};
use kv_runtime::quic::Link;
use kv_runtime::time::unix_seconds;
use support::*;

struct Fixture {
    _dir: tempfile::TempDir,
    tls: kv_runtime::tls::TlsConfig,
    origin: Running<Origin>,
    link: Link,
    _s3: Option<S3Server>,
}

impl Fixture {
    fn file() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir.path().join("store"));
        Self::with_store(dir, store, None)
    }

    fn s3() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Server::start("tierkv");
        let store = s3.store("tierkv", "test-prefix");
        Self::with_store(dir, store, Some(s3))
    }

    fn with_store(dir: tempfile::TempDir, store: StoreConfig, s3: Option<S3Server>) -> Self {
        let tls = dev_tls(dir.path());
        let origin = start_origin(&tls, store);
        let link = link(&tls, origin.addr);
        Self {
            _dir: dir,
            tls,
            origin,
            link,
            _s3: s3,
        }
    }

    fn store_gets(&self) -> u64 {
        self.origin
            .node
            .store()
            .stats()
            .gets
            .load(Ordering::Relaxed)
    }
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let fixture = super::Fixture::file();
                    super::$test(&fixture).await;
                    fixture.origin.stop().await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let fixture = super::Fixture::s3();
                    super::$test(&fixture).await;
                    fixture.origin.stop().await;
                }
            )*
        }
    };
}

on_every_backend!(
    put_then_get_returns_the_value_with_its_attributes,
    versions_strictly_increase_and_the_last_write_wins,
    delete_removes_the_key,
    expired_values_read_as_not_found,
    list_by_prefix_pages_through_with_a_cursor,
    concurrent_gets_of_a_cold_key_make_one_store_read,
    keys_with_slashes_and_unicode_are_kept_apart,
    large_values_round_trip,
);

async fn put_then_get_returns_the_value_with_its_attributes(f: &Fixture) {
    let expiration = unix_seconds() + 3600;
    let put = put_with(
        &f.link,
        "app",
        "user/1",
        "hello",
        Some(expiration),
        Some(r#"{"v":1}"#),
    )
    .await;
    assert_eq!(put.status, Status::Ok);
    let version = written(&put);
    let got = get(&f.link, "app", "user/1").await;
    assert_eq!((got.status, got.tier), (Status::Ok, Some(Tier::Origin)));
    let Body::Entry(entry) = &got.body else {
        panic!("no entry: {got:?}")
    };
    assert_eq!(entry.value, Bytes::from_static(b"hello"));
    assert_eq!(entry.version, version);
    assert_eq!(entry.expiration, Some(expiration));
    assert_eq!(
        entry.metadata.as_ref().map(|m| m.as_str()),
        Some(r#"{"v":1}"#)
    );
    let chosen = kv_proto::Request {
        id: kv_proto::RequestId(0x1234_5678_9abc_def0),
        budget: kv_proto::Request::DEFAULT_BUDGET,
        op: kv_proto::Op::Get(kv_proto::GetRequest::new(ns("app"), key("user/1"))),
    };
    let echoed = f.link.request(&chosen).await.unwrap();
    assert_eq!(echoed.id, chosen.id, "the request id is carried back");
    let missing = get(&f.link, "app", "user/2").await;
    assert_eq!(
        (missing.status, missing.tier),
        (Status::NotFound, Some(Tier::Origin))
    );
}

async fn versions_strictly_increase_and_the_last_write_wins(f: &Fixture) {
    let mut last = 0;
    for i in 0..5 {
        let version = written(&put(&f.link, "app", "k", format!("v{i}")).await);
        assert!(version > last, "version {version} after {last}");
        last = version;
    }
    let got = get(&f.link, "app", "k").await;
    assert_eq!(value(&got), Bytes::from("v4"));

    // Concurrent writers: whatever the order, the stored value is the one
    // with the highest acknowledged version.
    let writes = (0..20).map(|i| {
        let link = f.link.clone();
        tokio::spawn(async move {
            (
                written(&put(&link, "app", "race", format!("w{i}")).await),
                i,
            )
        })
    });
    let mut acks = Vec::new();
    for w in writes {
        acks.push(w.await.unwrap());
    }
    let (_, winner) = acks.iter().max().unwrap();
    let got = get(&f.link, "app", "race").await;
    assert_eq!(value(&got), Bytes::from(format!("w{winner}")));
}

async fn delete_removes_the_key(f: &Fixture) {
    let put_version = written(&put(&f.link, "app", "gone", "x").await);
    let deleted = delete(&f.link, "app", "gone").await;
    assert_eq!(deleted.status, Status::Ok);
    assert!(
        written(&deleted) > put_version,
        "a delete is versioned after the write it removes"
    );
    assert_eq!(get(&f.link, "app", "gone").await.status, Status::NotFound);
    // Deleting a missing key is not an error.
    assert_eq!(delete(&f.link, "app", "never").await.status, Status::Ok);
}

async fn expired_values_read_as_not_found(f: &Fixture) {
    let past = unix_seconds() - 10;
    assert_eq!(
        put_with(&f.link, "app", "old", "x", Some(past), None)
            .await
            .status,
        Status::Ok
    );
    assert_eq!(get(&f.link, "app", "old").await.status, Status::NotFound);

    let soon = unix_seconds() + 4;
    put_with(&f.link, "app", "soon", "x", Some(soon), None).await;
    assert_eq!(get(&f.link, "app", "soon").await.status, Status::Ok);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&f.link, "app", "soon").await.status == Status::Ok {
        assert!(
            tokio::time::Instant::now() < deadline,
            "value did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        unix_seconds() >= soon,
        "expired no earlier than its expiration"
    );
    // Expired keys are left out of LIST too.
    let page = list(&f.link, "app", "", "", 1000).await;
    let Body::Page(page) = page.body else {
        panic!("no page")
    };
    assert!(
        page.keys
            .iter()
            .all(|k| k.name.as_str() != "old" && k.name.as_str() != "soon")
    );
}

async fn list_by_prefix_pages_through_with_a_cursor(f: &Fixture) {
    let mut expected = Vec::new();
    for i in 0..23 {
        let k = format!("logs/{i:03}");
        put_with(
            &f.link,
            "app",
            &k,
            "x",
            None,
            Some(&format!("{{\"i\":{i}}}")),
        )
        .await;
        expected.push(k);
    }
    for other in ["logs", "logr/1", "logs0", "m", "a/logs/1"] {
        put(&f.link, "app", other, "y").await;
    }
    put(&f.link, "other-ns", "logs/999", "z").await;

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let response = list(&f.link, "app", "logs/", &cursor, 10).await;
        assert_eq!(response.status, Status::Ok, "{response:?}");
        let Body::Page(page) = response.body else {
            panic!("no page")
        };
        assert!(page.keys.len() <= 10);
        for k in &page.keys {
            let i: u32 = k.name.as_str()[5..].parse().unwrap();
            assert_eq!(
                k.metadata.as_ref().unwrap().as_str(),
                format!("{{\"i\":{i}}}")
            );
        }
        seen.extend(page.keys.into_iter().map(|k| k.name.as_str().to_string()));
        pages += 1;
        match page.cursor {
            Some(next) => cursor = next,
            None => break,
        }
        assert!(pages < 10, "listing does not end");
    }
    assert_eq!(seen, expected, "every key under the prefix, in order, once");
    assert_eq!(pages, 3);

    let all = list(&f.link, "app", "", "", 1000).await;
    let Body::Page(all) = all.body else {
        panic!("no page")
    };
    let names: Vec<_> = all
        .keys
        .iter()
        .map(|k| k.name.as_str().to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "lexicographic order");
    assert_eq!(names.len(), 28);
    assert_eq!(all.cursor, None);

    let bad = list(&f.link, "app", "", "not-a-cursor", 10).await;
    assert_eq!(bad.status, Status::BadRequest);
}

async fn concurrent_gets_of_a_cold_key_make_one_store_read(f: &Fixture) {
    put(&f.link, "app", "cold", vec![7u8; 64 * 1024]).await;
    let before = f.store_gets();
    let reads = (0..100).map(|_| {
        let link = f.link.clone();
        tokio::spawn(async move { get(&link, "app", "cold").await })
    });
    let results = futures::future::join_all(reads).await;
    for r in results {
        assert_eq!(value(&r.unwrap()).len(), 64 * 1024);
    }
    let reads = f.store_gets() - before;
    // Requests that arrive after the shared read finished start a new one;
    // on loopback almost all arrive together. The coalesced counter proves sharing.
    assert!(reads >= 1);
    assert!(
        f.origin.node.coalesced() + reads >= 100,
        "every read either led or joined: {} coalesced, {reads} store reads",
        f.origin.node.coalesced()
    );
    assert!(
        reads < 100,
        "concurrent reads were not coalesced ({reads} store reads)"
    );
}

async fn keys_with_slashes_and_unicode_are_kept_apart(f: &Fixture) {
    let keys = [
        "a",
        "a/b",
        "a/b/",
        "/a",
        "a//b",
        "ключ/значение",
        "🦀",
        "a b",
        "..",
        "a%2Fb",
    ];
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            put(&f.link, "app", k, format!("{i}")).await.status,
            Status::Ok,
            "{k}"
        );
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            value(&get(&f.link, "app", k).await),
            Bytes::from(format!("{i}")),
            "{k}"
        );
    }
    let longest = "é".repeat(256);
    assert_eq!(longest.len(), 512);
    put(&f.link, "app", &longest, "max").await;
    assert_eq!(
        value(&get(&f.link, "app", &longest).await),
        Bytes::from("max")
    );
}

async fn large_values_round_trip(f: &Fixture) {
    let big: Vec<u8> = (0..kv_proto::limits::MAX_VALUE_LEN)
        .map(|i| (i % 251) as u8)
        .collect();
    let big = Bytes::from(big);
    assert_eq!(
        put(&f.link, "app", "big", big.clone()).await.status,
        Status::Ok
    );
    assert_eq!(value(&get(&f.link, "app", "big").await), big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_before_a_restart_is_read_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let store = file_store(&dir.path().join("store"));
    let origin = start_origin(&tls, store.clone());
    let first = written(&put(&link(&tls, origin.addr), "app", "k", "kept").await);
    origin.stop().await;

    let origin = start_origin(&tls, store);
    let client = link(&tls, origin.addr);
    assert_eq!(value(&get(&client, "app", "k").await), Bytes::from("kept"));
    assert!(written(&put(&client, "app", "k", "newer").await) > first);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_answers_unavailable_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let closed_port = free_tcp_port();
    let store = StoreConfig {
        url: "s3://nowhere".into(),
        s3_endpoint: Some(format!("http://127.0.0.1:{closed_port}")),
        s3_region: Some("us-east-1".into()),
        s3_access_key_id: Some("x".into()),
        s3_secret_access_key: Some("y".into()),
        s3_allow_http: true,
        timeout_ms: 500,
        retries: 1,
    };
    let origin = start_origin(&tls, store);
    let client = link(&tls, origin.addr);
    let got = get(&client, "app", "k").await;
    assert_eq!(got.status, Status::Unavailable, "{got:?}");
    assert!(got.message().unwrap().contains("get"), "{got:?}");
    let put = put(&client, "app", "k", "v").await;
    assert_eq!(put.status, Status::Unavailable);
    assert!(origin.node.store().stats().failures.load(Ordering::Relaxed) >= 2);
    origin.stop().await;
}

/// Builds a raw request frame: header, then `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        kind: FrameKind::Request,
        body_len: body.len(),
    };
    [&header.to_bytes()[..], body].concat()
}

/// The start of every request body: id, budget (5 s), op code.
fn request_head(id: u64, op: u8) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(&5_000u32.to_be_bytes());
    body.push(op);
    body
}

/// A GET body: the head, namespace, key, flags.
fn get_body(id: u64, namespace: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = request_head(id, 1);
    body.push(namespace.len() as u8);
    body.extend_from_slice(namespace);
    body.extend_from_slice(&(key.len() as u16).to_be_bytes());
    body.extend_from_slice(key);
    body.push(0);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_the_connection_keeps_serving() {
    let f = Fixture::file();
    put(&f.link, "app", "ok", "fine").await;
    let conn = raw_connection(&f.tls, f.origin.addr).await;

    // A key one byte over the limit.
    let r = raw_exchange(&conn, &frame(&get_body(41, b"app", &[b'k'; 513]))).await;
    assert_eq!((r.status, r.id.0), (Status::TooLarge, 41), "{r:?}");
    // At the limit is fine.
    let r = raw_exchange(&conn, &frame(&get_body(42, b"app", &[b'k'; 512]))).await;
    assert_eq!(r.status, Status::NotFound, "{r:?}");
    // A bad namespace.
    let r = raw_exchange(&conn, &frame(&get_body(43, b"a.b", b"k"))).await;
    assert_eq!((r.status, r.id.0), (Status::BadRequest, 43), "{r:?}");
    // A frame declaring a body over the limit is refused from its header.
    let header = FrameHeader {
        kind: FrameKind::Request,
        body_len: 0,
    }
    .to_bytes();
    let mut huge = header;
    huge[4..8].copy_from_slice(&(30u32 * 1024 * 1024).to_be_bytes());
    let r = raw_exchange(&conn, &huge).await;
    assert_eq!(r.status, Status::TooLarge, "{r:?}");
    // A PUT whose value is over 25 MiB: refused by its length prefix.
    let mut put_body = request_head(44, 2);
    put_body.extend_from_slice(&[3, b'a', b'p', b'p', 0, 1, b'k']);
    put_body.extend_from_slice(&[0; 16]); // write id
    put_body.push(0); // flags
    put_body.extend_from_slice(&(26u32 * 1024 * 1024).to_be_bytes());
    let r = raw_exchange(&conn, &frame(&put_body)).await;
    assert_eq!((r.status, r.id.0), (Status::TooLarge, 44), "{r:?}");
    // Metadata that is not JSON.
    let mut bad_meta = request_head(45, 2);
    bad_meta.extend_from_slice(&[3, b'a', b'p', b'p', 0, 1, b'k']);
    bad_meta.extend_from_slice(&[0; 16]); // write id
    bad_meta.extend_from_slice(&[0b10, 0, 3]);
    bad_meta.extend_from_slice(b"{x}");
    bad_meta.extend_from_slice(&0u32.to_be_bytes());
    let r = raw_exchange(&conn, &frame(&bad_meta)).await;
    assert_eq!((r.status, r.id.0), (Status::BadRequest, 45), "{r:?}");
    // Garbage, a wrong version, an unknown op, a truncated frame.
    let r = raw_exchange(&conn, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.status, Status::BadRequest, "{r:?}");
    let mut wrong_version = frame(&get_body(46, b"app", b"k"));
    wrong_version[0] = 9;
    assert_eq!(
        raw_exchange(&conn, &wrong_version).await.status,
        Status::BadRequest
    );
    let mut unknown_op = get_body(47, b"app", b"k");
    unknown_op[12] = 77;
    let r = raw_exchange(&conn, &frame(&unknown_op)).await;
    assert_eq!((r.status, r.id.0), (Status::BadRequest, 47), "{r:?}");
    let whole = frame(&get_body(48, b"app", b"k"));
    let r = raw_exchange(&conn, &whole[..whole.len() - 3]).await;
    assert_eq!(r.status, Status::BadRequest, "{r:?}");
    // A response frame sent as a request.
    let mut response_kind = frame(&get_body(49, b"app", b"k"));
    response_kind[1] = FrameKind::Response as u8;
    assert_eq!(
        raw_exchange(&conn, &response_kind).await.status,
        Status::BadRequest
    );

    // The same connection still serves good requests.
    let r = raw_exchange(&conn, &frame(&get_body(50, b"app", b"ok"))).await;
    assert_eq!((r.status, r.id.0), (Status::Ok, 50));
    assert_eq!(value(&r), Bytes::from("fine"));
    assert!(conn.close_reason().is_none(), "connection still open");
    f.origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_from_our_ca_are_refused() {
    let f = Fixture::file();
    // A client with a certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    let stranger = link(&dev_tls(other.path()), f.origin.addr);
    let refused = stranger
        .request(&kv_proto::Request::new(kv_proto::Op::Get(
            kv_proto::GetRequest::new(ns("app"), key("k")),
        )))
        .await;
    assert!(
        refused.is_err(),
        "a stranger's request was answered: {refused:?}"
    );

    // A client presenting no certificate at all.
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(f._dir.path().join("certs/ca.pem")).unwrap();
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    };
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut anonymous = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![kv_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(anonymous).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
    let attempt = async {
        let conn = endpoint
            .connect(f.origin.addr, "localhost")
            .unwrap()
            .await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(b"x").await?;
        let _ = send.finish();
        recv.read_to_end(1024).await.map_err(|e| anyhow_like(&e))?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("refusal is prompt");
    assert!(result.is_err(), "an anonymous client was served");

    // Our own clients still get through.
    assert_eq!(put(&f.link, "app", "k", "v").await.status, Status::Ok);
    f.origin.stop().await;
}

fn anyhow_like(e: &dyn std::fmt::Display) -> Box<dyn std::error::Error> {
    e.to_string().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_reconnects_after_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let store = file_store(&dir.path().join("store"));
    let origin = start_origin(&tls, store.clone());
    let addr = origin.addr;
    let client = link(&tls, addr);
    put(&client, "app", "k", "v").await;
    assert!(client.is_connected());
    origin.stop().await;

    // The same port again, so the link's address stays valid.
    let config = kv_origin::OriginConfig {
        listen: addr,
        store,
        tls: tls.clone(),
        ..Default::default()
    };
    // The old endpoint's socket closes once its driver notices; wait for the port.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let server = loop {
        match kv_origin::OriginServer::bind(&config) {
            Ok(server) => break server,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "port never freed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let got = get(&client, "app", "k").await;
    assert_eq!(value(&got), Bytes::from("v"));
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// An origin whose every store read takes `read_delay`.
fn start_slow_origin(tls: &kv_runtime::tls::TlsConfig, read_delay: Duration) -> Running<Origin> {
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    let slow = ThrottledStore::new(
        object_store::memory::InMemory::new(),
        ThrottleConfig {
            wait_get_per_call: read_delay,
            ..ThrottleConfig::default()
        },
    );
    let store = kv_origin::Store::new(
        std::sync::Arc::new(slow),
        object_store::path::Path::default(),
        true,
        &StoreConfig::default(),
    );
    let config = kv_origin::OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: tls.clone(),
        ..Default::default()
    };
    serve_origin(kv_origin::OriginServer::bind_with_store(&config, store).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_during_one_slow_store_read_make_exactly_one_read() {
    // Every store read takes a second, so all 100 readers arrive while the
    // first read is still in flight.
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let origin = start_slow_origin(&tls, Duration::from_secs(1));
    let client = link(&tls, origin.addr);
    put(&client, "app", "cold", "v").await;
    let stats = origin.node.store().stats().clone();
    let before = stats.gets.load(Ordering::Relaxed);
    let reads = (0..100).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { get(&client, "app", "cold").await })
    });
    for read in futures::future::join_all(reads).await {
        assert_eq!(value(&read.unwrap()), Bytes::from("v"));
    }
    assert_eq!(
        stats.gets.load(Ordering::Relaxed) - before,
        1,
        "exactly one object-store read"
    );
    assert_eq!(origin.node.coalesced(), 99);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let origin = start_slow_origin(&tls, Duration::from_millis(1500));
    let client = link(&tls, origin.addr);
    put(&client, "app", "k", "v").await;
    let stats = origin.node.store().stats().clone();
    let before = stats.gets.load(Ordering::Relaxed);
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { get(&client, "app", "k").await }
    });
    // Shut down only once the read has reached the store.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.gets.load(Ordering::Relaxed) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the read never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    origin.stop().await;
    let answer = in_flight.await.unwrap();
    assert_eq!(
        value(&answer),
        Bytes::from("v"),
        "the in-flight read was answered"
    );
    // After shutdown, nothing answers.
    let after = client
        .request(&kv_proto::Request::new(kv_proto::Op::Get(
            kv_proto::GetRequest::new(ns("app"), key("k")),
        )))
        .await;
    assert!(after.is_err(), "a stopped origin answered: {after:?}");
}
