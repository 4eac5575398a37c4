//! kv-client against a running stack (origin, regional node and edge on loopback).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::TryStreamExt;
use kv_client::{Client, Error, ListOptions, PutOptions, RetryPolicy};
use kv_edge::EdgeConfig;
use kv_edge::dev::{DevOptions, DevStack};
use serde_json::json;

async fn start() -> (tempfile::TempDir, DevStack, Client) {
    let dir = tempfile::tempdir().unwrap();
    let options = DevOptions {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        edge: EdgeConfig {
            min_expiration_ttl_secs: 1,
            ..EdgeConfig::default()
        },
    };
    let stack = DevStack::start(options).await.unwrap();
    let client = Client::new(&format!("http://{}", stack.http)).unwrap();
    (dir, stack, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_with_metadata_and_tier() {
    let (_dir, stack, kv) = start().await;
    let version = kv.put("app", "a/b ü", "hello").await.unwrap();
    assert_eq!(
        kv.get("app", "a/b ü").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    let found = kv.get_with_metadata("app", "a/b ü").await.unwrap().unwrap();
    assert_eq!(
        (found.version, found.tier.as_str(), found.metadata),
        (version, "edge", None)
    );

    let options = PutOptions::new()
        .expiration_ttl(3600)
        .metadata(json!({"plan": "pro", "n": 1}));
    let v2 = kv
        .put_with("app", "a/b ü", "again", &options)
        .await
        .unwrap();
    assert!(v2 > version);
    let found = kv.get_with_metadata("app", "a/b ü").await.unwrap().unwrap();
    assert_eq!(found.metadata, Some(json!({"plan": "pro", "n": 1})));
    assert!(found.expiration.is_some());
    assert_eq!(&found.value[..], b"again");

    let deleted = kv.delete("app", "a/b ü").await.unwrap();
    assert!(deleted > v2);
    assert_eq!(kv.get("app", "a/b ü").await.unwrap(), None);
    kv.delete("app", "never-existed").await.unwrap();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_one_page_and_every_page() {
    let (_dir, stack, kv) = start().await;
    for i in 0..7 {
        kv.put_with(
            "app",
            &format!("p/{i}"),
            "x",
            &PutOptions::new().metadata(json!(i)),
        )
        .await
        .unwrap();
    }
    kv.put("app", "q", "x").await.unwrap();
    let page = kv
        .list(
            "app",
            &ListOptions {
                limit: Some(3),
                ..ListOptions::prefix("p/")
            },
        )
        .await
        .unwrap();
    assert_eq!(page.keys.len(), 3);
    assert!(!page.list_complete);
    assert_eq!(page.keys[0].metadata, Some(json!(0)));
    let next = ListOptions {
        cursor: page.cursor.clone(),
        limit: Some(3),
        ..ListOptions::prefix("p/")
    };
    assert_eq!(kv.list("app", &next).await.unwrap().keys[0].name, "p/3");
    let all: Vec<_> = kv.list_all("app", "p/").try_collect().await.unwrap();
    let names: Vec<_> = all.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["p/0", "p/1", "p/2", "p/3", "p/4", "p/5", "p/6"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed() {
    let (_dir, stack, kv) = start().await;
    assert!(matches!(Client::new("ftp://x"), Err(Error::InvalidUrl(_))));
    match kv.get("bad.ns", "k").await {
        Err(Error::Api {
            status: 400, code, ..
        }) => assert_eq!(code, "bad_request"),
        other => panic!("{other:?}"),
    }
    match kv.put("app", &"k".repeat(513), "x").await {
        Err(Error::Api { status: 414, .. }) => {}
        other => panic!("{other:?}"),
    }
    match kv
        .put_with(
            "app",
            "k",
            "x",
            &PutOptions::new().metadata(json!("m".repeat(2000))),
        )
        .await
    {
        Err(e @ Error::Api { status: 400, .. }) => assert!(!e.is_retryable()),
        other => panic!("{other:?}"),
    }
    match kv
        .list(
            "app",
            &ListOptions {
                cursor: Some("forged".into()),
                ..ListOptions::default()
            },
        )
        .await
    {
        Err(Error::Api { status: 400, .. }) => {}
        other => panic!("{other:?}"),
    }
    let http = stack.http;
    stack.stop().await;
    // Nothing listens any more.
    let gone = Client::new(&format!("http://{http}")).unwrap();
    let err = gone.get("app", "k").await.unwrap_err();
    assert!(
        matches!(err, Error::Transport(_)) && err.is_retryable(),
        "{err:?}"
    );
    assert_eq!(gone.retries(), 2, "three tries in all");
    // Nothing was sent, so nothing is in doubt.
    let err = gone.put("app", "k", "x").await.unwrap_err();
    assert!(!err.is_outcome_unknown(), "{err:?}");
}

/// A proxy in front of the edge that passes every request on. `after`
/// sees each request's method and headers once the edge has answered it,
/// and may replace the answer with a bare status.
async fn proxy<F>(edge: std::net::SocketAddr, after: F) -> std::net::SocketAddr
where
    F: Fn(&axum::http::Method, &axum::http::HeaderMap) -> Option<axum::http::StatusCode>
        + Clone
        + Send
        + Sync
        + 'static,
{
    use axum::extract::Request;
    use axum::response::IntoResponse;
    let forward = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (forward, after) = (forward.clone(), after.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let url = format!("http://{edge}{}", parts.uri);
            let mut outgoing = forward.request(parts.method.clone(), url).body(body);
            for (name, value) in &parts.headers {
                if name != "host" {
                    outgoing = outgoing.header(name, value);
                }
            }
            let answer = outgoing.send().await.unwrap();
            if let Some(status) = after(&parts.method, &parts.headers) {
                return status.into_response();
            }
            let (status, headers) = (answer.status(), answer.headers().clone());
            let mut response = (status, answer.bytes().await.unwrap()).into_response();
            *response.headers_mut() = headers;
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A proxy that answers the first `lose` writes (PUT or DELETE) with a bare
/// 502, as a proxy whose connection to the edge broke after sending: the
/// edge applied them, and the client never heard.
async fn lossy_proxy(
    edge: std::net::SocketAddr,
    lose: usize,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let writes = seen.clone();
    let addr = proxy(edge, move |method, _| {
        let is_write = method == "PUT" || method == "DELETE";
        (is_write && writes.fetch_add(1, Ordering::SeqCst) < lose)
            .then_some(axum::http::StatusCode::BAD_GATEWAY)
    })
    .await;
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_retried_and_applied_once() {
    let (_dir, stack, direct) = start().await;
    let (proxy, writes) = lossy_proxy(stack.http, 1).await;
    let kv = Client::new(&format!("http://{proxy}")).unwrap();

    let version = kv.put("app", "once", "v1").await.unwrap();
    assert_eq!(writes.load(Ordering::SeqCst), 2, "the write was sent twice");
    assert_eq!(kv.retries(), 1);
    // Applied once: a second application would have a later version.
    let found = direct
        .get_with_metadata("app", "once")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.version, &found.value[..]), (version, &b"v1"[..]));

    // The same for a delete.
    let (proxy, _) = lossy_proxy(stack.http, 1).await;
    let kv = Client::new(&format!("http://{proxy}")).unwrap();
    let deleted = kv.delete("app", "once").await.unwrap();
    assert!(deleted > version);
    let later = direct.put("app", "once", "v2").await.unwrap();
    assert!(
        later > deleted,
        "the delete was applied once, before this write"
    );

    // A caller's own idempotency key names the write across clients: a
    // second client sending it gets the first version, and changes nothing.
    let options = PutOptions::new().idempotency_key("order-42");
    let first = direct.put_with("app", "mine", "a", &options).await.unwrap();
    let other = Client::new(&format!("http://{}", stack.http)).unwrap();
    assert_eq!(
        other.put_with("app", "mine", "a", &options).await.unwrap(),
        first
    );
    assert_eq!(
        direct.get("app", "mine").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );

    // Without retries, the lost answer is the caller's to handle.
    let (proxy, _) = lossy_proxy(stack.http, 1).await;
    let once = Client::new(&format!("http://{proxy}"))
        .unwrap()
        .with_retry_policy(RetryPolicy::none());
    let err = once.put("app", "k", "x").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    stack.stop().await;
}

/// A proxy that records the `kv-min-version` of each GET.
async fn min_version_recorder(
    edge: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<Option<u64>>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let addr = proxy(edge, move |method, headers| {
        if method == "GET" {
            let min = headers
                .get("kv-min-version")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            record.lock().unwrap().push(min);
        }
        None
    })
    .await;
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_a_sessions_own_writes_ask_for_their_versions() {
    let (_dir, stack, _) = start().await;
    let (proxy, seen) = min_version_recorder(stack.http).await;
    let kv = Client::new(&format!("http://{proxy}")).unwrap();
    let v1 = kv.put("app", "mine", "a").await.unwrap();
    assert_eq!(
        kv.get("app", "mine").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(kv.get("app", "other").await.unwrap(), None);
    let deleted = kv.delete("app", "mine").await.unwrap();
    assert_eq!(kv.get("app", "mine").await.unwrap(), None);
    assert_eq!(kv.session().version_of("app", "mine"), Some(deleted));
    // The newest version wins: an older one recorded late changes nothing.
    kv.session().record("app", "mine", v1);
    assert_eq!(kv.session().version_of("app", "mine"), Some(deleted));

    // A client of another edge (here, the same one through a second proxy)
    // sharing the session asks for the same versions; one without does not.
    let (proxy, seen_elsewhere) = min_version_recorder(stack.http).await;
    let shared = Client::new(&format!("http://{proxy}"))
        .unwrap()
        .with_session(kv.session().clone());
    assert_eq!(shared.get("app", "mine").await.unwrap(), None);
    let stranger = Client::new(&format!("http://{proxy}")).unwrap();
    assert_eq!(stranger.get("app", "mine").await.unwrap(), None);

    assert_eq!(*seen.lock().unwrap(), [Some(v1), None, Some(deleted)]);
    assert_eq!(*seen_elsewhere.lock().unwrap(), [Some(deleted), None]);
    stack.stop().await;
}
