//! The lag watcher over real HTTP, against fake edges whose answers the test
//! controls: a write that shows after some polls, one that never shows (a
//! timeout, counted), the cap on writes watched at once, and the probe
//! writer. Then against real edges with hot caches: with the change feed a
//! write shows, and without one (the origin behind a front-line proxy,
//! which relays no feed) it cannot until the cache TTL runs out, and the
//! watcher says so with timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use loadgen::visibility::{LagOptions, Watcher};
use tokio::time::Instant;

/// A fake edge: it serves `old` for its first `stale_polls` reads, then
/// whatever version was last written (a write gets the next version).
#[derive(Debug)]
struct FakeEdge {
    old: u64,
    stale_polls: u64,
    polls: AtomicU64,
    version: Arc<AtomicU64>,
}

fn versioned(version: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("kv-version", version.into());
    headers
}

async fn read(State(edge): State<Arc<FakeEdge>>) -> (StatusCode, HeaderMap) {
    let polls = edge.polls.fetch_add(1, Ordering::SeqCst);
    let version = if polls < edge.stale_polls {
        edge.old
    } else {
        edge.version.load(Ordering::SeqCst)
    };
    (StatusCode::OK, versioned(version))
}

async fn write(State(edge): State<Arc<FakeEdge>>) -> (StatusCode, HeaderMap) {
    let version = edge.version.fetch_add(1, Ordering::SeqCst) + 1;
    (StatusCode::OK, versioned(version))
}

/// Starts a fake edge; returns its base URL and its state.
async fn fake_edge(old: u64, stale_polls: u64, version: Arc<AtomicU64>) -> (String, Arc<FakeEdge>) {
    let edge = Arc::new(FakeEdge {
        old,
        stale_polls,
        polls: AtomicU64::new(0),
        version,
    });
    let app = Router::new()
        .route(
            "/v1/{ns}/{key}",
            get(read)
                .put(write)
                .delete(|| async { StatusCode::NO_CONTENT }),
        )
        .with_state(edge.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), edge)
}

fn watcher(targets: &[String], options: LagOptions, max_wait: Duration) -> Arc<Watcher> {
    Arc::new(Watcher::new(
        reqwest::Client::new(),
        targets,
        options,
        max_wait,
        Duration::from_secs(10),
    ))
}

/// Waits, polling, until `done` holds; fails after 10 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn every_other_edge_is_polled_until_it_serves_the_write() {
    // Edge 0 took the write (version 7); edge 1 serves version 6 to its
    // first three polls; edge 2 already has 8, a newer write.
    let (writer, writer_state) = fake_edge(0, 0, Arc::new(AtomicU64::new(7))).await;
    let (slow, slow_state) = fake_edge(6, 3, Arc::new(AtomicU64::new(7))).await;
    let (ahead, ahead_state) = fake_edge(0, 0, Arc::new(AtomicU64::new(8))).await;
    let targets = vec![writer, slow, ahead];
    let watcher = watcher(&targets, LagOptions::default(), Duration::from_secs(60));
    let acked = Instant::now();
    watcher
        .watch("/v1/ns/k", 0, Some(7), acked, true, false)
        .await;

    assert_eq!(
        writer_state.polls.load(Ordering::SeqCst),
        0,
        "the writer is not polled"
    );
    assert_eq!(slow_state.polls.load(Ordering::SeqCst), 4);
    assert_eq!(ahead_state.polls.load(Ordering::SeqCst), 1);
    let report = watcher.recorded().report(&targets);
    assert_eq!((report.writes, report.samples, report.timeouts), (1, 2, 0));
    let samples: Vec<u64> = report.edges.iter().map(|e| e.samples).collect();
    assert_eq!(samples, [0, 1, 1]);
    // Three stale polls, each followed by at least the poll interval.
    assert!(report.edges[1].lag_ms.max >= 3.0, "{:?}", report.edges[1]);
    assert!(report.edges[2].lag_ms.max < report.edges[1].lag_ms.max);
    assert_eq!(report.edges[1].target, targets[1]);
}

#[tokio::test]
async fn a_write_that_never_shows_is_a_counted_timeout() {
    let (writer, _) = fake_edge(0, 0, Arc::new(AtomicU64::new(5))).await;
    let (never, never_state) = fake_edge(4, u64::MAX, Arc::new(AtomicU64::new(5))).await;
    let targets = vec![writer, never];
    let max_wait = Duration::from_millis(200);
    let watcher = watcher(&targets, LagOptions::default(), max_wait);
    watcher
        .watch("/v1/ns/k", 0, Some(5), Instant::now(), true, false)
        .await;
    let report = watcher.recorded().report(&targets);
    assert_eq!((report.samples, report.timeouts), (1, 1));
    assert_eq!(report.edges[1].timeouts, 1);
    // Recorded at the bound, so that it shows in every percentile.
    assert!(report.at_bound(report.lag_ms.p50), "{:?}", report.lag_ms);
    assert!(
        (report.lag_ms.max - 200.0).abs() < 1.0,
        "{:?}",
        report.lag_ms
    );
    // It kept polling until the bound.
    assert!(never_state.polls.load(Ordering::SeqCst) > 1);
}

#[tokio::test]
async fn writes_over_the_cap_or_without_a_version_are_counted_unwatched() {
    let (writer, _) = fake_edge(0, 0, Arc::new(AtomicU64::new(5))).await;
    let (never, never_state) = fake_edge(4, u64::MAX, Arc::new(AtomicU64::new(5))).await;
    let targets = vec![writer, never];
    let options = LagOptions {
        max_watched: 1,
        ..LagOptions::default()
    };
    // Long enough that the first watch is still going when the others come.
    let watcher = watcher(&targets, options, Duration::from_secs(2));
    let first = {
        let watcher = watcher.clone();
        tokio::spawn(async move {
            watcher
                .watch("/v1/ns/k", 0, Some(5), Instant::now(), true, false)
                .await;
        })
    };
    // Once the first write is being watched, a second one is over the cap.
    wait_until("the first watch to poll", || {
        never_state.polls.load(Ordering::SeqCst) > 0
    })
    .await;
    watcher
        .watch("/v1/ns/j", 0, Some(9), Instant::now(), true, false)
        .await;
    watcher
        .watch("/v1/ns/j", 0, None, Instant::now(), true, false)
        .await;
    // Warm-up writes are not counted either way.
    watcher
        .watch("/v1/ns/j", 0, None, Instant::now(), false, false)
        .await;
    first.await.unwrap();
    let report = watcher.recorded().report(&targets);
    assert_eq!((report.writes, report.unwatched), (1, 2));
}

#[tokio::test]
async fn the_probe_writer_writes_through_each_edge_in_turn() {
    // Three edges over one key: a write through any gets the next version,
    // and every edge serves the newest at once.
    let version = Arc::new(AtomicU64::new(0));
    let mut targets = Vec::new();
    let mut states = Vec::new();
    for _ in 0..3 {
        let (url, state) = fake_edge(0, 0, version.clone()).await;
        targets.push(url);
        states.push(state);
    }
    let options = LagOptions {
        probe_rate: 50.0,
        ..LagOptions::default()
    };
    let watcher = watcher(&targets, options, Duration::from_secs(60));
    let start = Instant::now();
    // 12 writes, 20 ms apart; the first 3 are the warm-up.
    watcher
        .clone()
        .probe(
            "/v1/ns/probe".into(),
            start,
            start + Duration::from_millis(60),
            start + Duration::from_millis(240),
        )
        .await;
    assert_eq!(version.load(Ordering::SeqCst), 12);
    let report = watcher.recorded().report(&targets);
    assert_eq!((report.writes, report.probe_writes), (9, 9));
    assert_eq!(report.samples, 18, "two other edges per write");
    assert!(report.edges.iter().all(|e| e.samples == 6), "{report:?}");
    assert_eq!((report.timeouts, report.probe_errors), (0, 0));
    watcher.remove_probe("/v1/ns/probe").await;
}

/// Two edges with hot caches that keep values for an hour, over one
/// origin, reached directly (`feed`) or through a QUIC front-line proxy,
/// which relays requests but publishes no change feed.
struct TwoEdges {
    _dir: tempfile::TempDir,
    targets: Vec<String>,
    edges: Vec<support::Running<kv_edge::Edge>>,
    _origin: support::Running<kv_origin::Origin>,
    _proxy: Option<support::Running<loadgen::front_line::QuicProxy>>,
}

impl TwoEdges {
    async fn start(feed: bool) -> Self {
        use kv_edge::{EdgeConfig, EdgeServer};
        use kv_origin::{OriginConfig, OriginServer};
        use kv_runtime::quic::{Connector, QuicServer, ServerOptions, TransportOptions};

        let dir = tempfile::tempdir().unwrap();
        let tls = support::dev_tls(dir.path());
        let origin = support::serve_origin(
            OriginServer::bind(&OriginConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                store: support::file_store(&dir.path().join("bucket")),
                tls: tls.clone(),
                ..OriginConfig::default()
            })
            .unwrap(),
        );
        let (upstream, proxy) = if feed {
            (origin.addr, None)
        } else {
            let identity = tls.load().unwrap();
            let connector = Connector::new(&identity, TransportOptions::default()).unwrap();
            let link = connector.link(
                origin.addr,
                kv_runtime::dev_certs::DEV_SERVER_NAME,
                Duration::from_secs(10),
            );
            let server = QuicServer::bind(
                "127.0.0.1:0".parse().unwrap(),
                &identity,
                ServerOptions::new("front-line", kv_runtime::metrics::Metrics::new()),
            )
            .unwrap();
            let addr = server.local_addr().unwrap();
            let proxy = Arc::new(loadgen::front_line::QuicProxy::new(link, Duration::ZERO));
            let running = support::spawn_server(addr, proxy.clone(), move |stopped| async move {
                server
                    .serve(proxy, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
            (addr, Some(running))
        };
        let mut edges = Vec::new();
        let mut targets = Vec::new();
        for _ in 0..2 {
            let server = EdgeServer::bind(&EdgeConfig {
                http: "127.0.0.1:0".parse().unwrap(),
                regionals: Vec::new(),
                origins: vec![upstream.into()],
                cache_ttl_secs: 3600,
                negative_ttl_secs: 3600,
                tls: tls.clone(),
                ..EdgeConfig::default()
            })
            .await
            .unwrap();
            let addr = server.local_addr().unwrap();
            targets.push(format!("http://{addr}"));
            let node = server.edge().clone();
            edges.push(support::spawn_server(
                addr,
                node,
                move |stopped| async move {
                    server
                        .serve(async {
                            let _ = stopped.await;
                        })
                        .await
                        .unwrap();
                },
            ));
        }
        Self {
            _dir: dir,
            targets,
            edges,
            _origin: origin,
            _proxy: proxy,
        }
    }
}

/// Writes `k` through edge 0 after edge 1 cached it, and watches edge 1
/// for at most `max_wait`; returns the report.
async fn write_and_watch(
    stack: &TwoEdges,
    max_wait: Duration,
) -> loadgen::visibility::VisibilityReport {
    let http = reqwest::Client::new();
    let url = |edge: usize| format!("{}/v1/ns/k", stack.targets[edge]);
    let put = |edge: usize, value: &'static str| {
        let request = http.put(url(edge)).body(value);
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200);
            loadgen::visibility::version_of(answer.headers())
        }
    };
    put(0, "v1").await.unwrap();
    let cached = http.get(url(1)).send().await.unwrap();
    assert_eq!(cached.text().await.unwrap(), "v1");
    let version = put(0, "v2").await;
    let acked = Instant::now();
    let watcher = watcher(&stack.targets, LagOptions::default(), max_wait);
    watcher
        .watch("/v1/ns/k", 0, version, acked, true, false)
        .await;
    watcher.recorded().report(&stack.targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_feed_a_cached_copy_is_replaced_and_without_it_the_wait_times_out() {
    // The bound is a tiny fraction of the hour the copies are kept: only
    // a change feed can bring the write within it.
    let max_wait = Duration::from_secs(2);

    let fed = TwoEdges::start(true).await;
    let edges: Vec<_> = fed.edges.iter().map(|e| e.node.clone()).collect();
    support::wait_for(
        Duration::from_secs(10),
        || {
            edges
                .iter()
                .all(|e| e.feed_metrics().connected_count() == 1)
        },
        "both edges following the origin's feed",
    )
    .await;
    let report = write_and_watch(&fed, max_wait).await;
    assert_eq!(
        (report.writes, report.samples, report.timeouts),
        (1, 1, 0),
        "{report:?}"
    );

    let unfed = TwoEdges::start(false).await;
    let report = write_and_watch(&unfed, max_wait).await;
    assert_eq!(
        (report.writes, report.samples, report.timeouts),
        (1, 1, 1),
        "{report:?}"
    );
    assert!(report.at_bound(report.lag_ms.max));
    // The proxy relays no feed: the edges follow none.
    assert!(
        unfed
            .edges
            .iter()
            .all(|e| e.node.feed_metrics().connected_count() == 0)
    );
}
