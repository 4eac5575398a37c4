//! The change feed through real processes' worth of tiers on loopback: one
//! origin over a file store, two regional nodes and three edges over HTTP,
//! every edge reaching each regional node through its own UDP relay, so a
//! test can cut an edge off. Cache TTLs are an hour: only the feed can make
//! a write visible on an edge that has a copy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kv_edge::{EdgeConfig, EdgeServer};
use kv_origin::{Origin, OriginConfig, OriginServer, Store};
use kv_regional::{RegionalConfig, RegionalServer};
use loadgen::delay::PathDelay;
use loadgen::relay::Relay;
use support::{Running, dev_tls, file_store, serve_origin, spawn_server, wait_for};

/// How long a change may take to show everywhere before a test fails. The
/// feed needs milliseconds; this is generous for a loaded CI machine.
const VISIBLE_WITHIN: Duration = Duration::from_secs(10);
const HOUR: u64 = 3600;

struct Cluster {
    dir: tempfile::TempDir,
    origin: Option<Running<Origin>>,
    origin_addr: SocketAddr,
    regionals: Vec<Running<kv_regional::Regional>>,
    edges: Vec<Running<kv_edge::Edge>>,
    /// `relays[e]`: edge `e`'s relays, one per regional node.
    relays: Vec<Vec<Relay>>,
    http: reqwest::Client,
    tuning: Tuning,
}

fn origin_config(dir: &Path, listen: SocketAddr) -> OriginConfig {
    OriginConfig {
        listen,
        store: file_store(&dir.join("bucket")),
        tls: dev_tls(dir),
        ..OriginConfig::default()
    }
}

/// Settings that differ between tests.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    edges: usize,
    /// Change-feed events the regional nodes keep for their edges.
    regional_backlog: usize,
    /// The cache TTL of every tier, seconds.
    ttl_secs: u64,
    /// The stale-if-error grace of every tier, seconds.
    stale_secs: u64,
    /// The edges' read deadline, milliseconds.
    read_deadline_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            edges: 2,
            regional_backlog: kv_runtime::feed::DEFAULT_BACKLOG,
            ttl_secs: HOUR,
            stale_secs: 60,
            read_deadline_ms: 2_000,
        }
    }
}

impl Cluster {
    async fn start(edges: usize, regional_backlog: usize) -> Self {
        Self::tuned(Tuning {
            edges,
            regional_backlog,
            ..Tuning::default()
        })
        .await
    }

    async fn tuned(tuning: Tuning) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let origin = serve_origin(
            OriginServer::bind(&origin_config(dir.path(), "127.0.0.1:0".parse().unwrap())).unwrap(),
        );
        let origin_addr = origin.addr;
        let mut regionals = Vec::new();
        for n in 0..2 {
            let server = RegionalServer::bind(&RegionalConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                origins: vec![origin_addr.into()],
                data_dir: dir.path().join(format!("regional-{n}")),
                memory_mib: 16,
                disk_mib: 64,
                cache_ttl_secs: tuning.ttl_secs,
                negative_ttl_secs: tuning.ttl_secs,
                max_cache_ttl_secs: tuning.ttl_secs,
                stale_if_error_secs: tuning.stale_secs,
                feed_backlog: tuning.regional_backlog,
                tls: dev_tls(dir.path()),
                ..RegionalConfig::default()
            })
            .await
            .unwrap();
            let addr = server.local_addr().unwrap();
            let node = server.regional().clone();
            regionals.push(spawn_server(addr, node, move |stopped| async move {
                server
                    .serve(async {
                        let _ = stopped.await;
                    })
                    .await;
            }));
        }
        let mut cluster = Self {
            dir,
            origin: Some(origin),
            origin_addr,
            regionals,
            edges: Vec::new(),
            relays: Vec::new(),
            http: reqwest::Client::new(),
            tuning,
        };
        for _ in 0..tuning.edges {
            cluster.add_edge().await;
        }
        cluster.wait_until_following().await;
        cluster
    }

    async fn add_edge(&mut self) {
        let mut relays = Vec::new();
        for regional in &self.regionals {
            relays.push(
                Relay::start(regional.addr, PathDelay::fixed(Duration::ZERO), 1)
                    .await
                    .unwrap(),
            );
        }
        let server = EdgeServer::bind(&EdgeConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            regionals: relays.iter().map(|r| r.local_addr().into()).collect(),
            origins: vec![self.origin_addr.into()],
            cache_ttl_secs: self.tuning.ttl_secs,
            negative_ttl_secs: self.tuning.ttl_secs,
            max_cache_ttl_secs: self.tuning.ttl_secs.max(30),
            stale_if_error_secs: self.tuning.stale_secs,
            read_deadline_ms: self.tuning.read_deadline_ms,
            tls: dev_tls(self.dir.path()),
            ..EdgeConfig::default()
        })
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let node = server.edge().clone();
        self.edges
            .push(spawn_server(addr, node, move |stopped| async move {
                server
                    .serve(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            }));
        self.relays.push(relays);
    }

    /// Waits until every regional node follows the origin and every edge
    /// follows every regional node: a write made before that could be missed.
    async fn wait_until_following(&self) {
        let regionals = self.regionals.clone_nodes();
        let edges = self.edges.clone_nodes();
        wait_for(
            VISIBLE_WITHIN,
            || {
                regionals
                    .iter()
                    .all(|r| r.feed().subscribers() >= edges.len())
                    && edges
                        .iter()
                        .all(|e| e.feed_metrics().connected_count() == regionals.len())
            },
            "every tier following its upstream feeds",
        )
        .await;
    }

    fn url(&self, edge: usize, key: &str) -> String {
        format!("http://{}/v1/app/{key}", self.edges[edge].addr)
    }

    /// What edge `edge` answers for `key`: the value, or `None` for a 404.
    async fn read(&self, edge: usize, key: &str) -> Option<String> {
        let response = self.http.get(self.url(edge, key)).send().await.unwrap();
        match response.status().as_u16() {
            200 => Some(response.text().await.unwrap()),
            404 => None,
            status => panic!("edge {edge} answered {status} for {key}"),
        }
    }

    /// Edge `edge`'s whole answer for `key`, asking for `min_version` or newer.
    async fn read_at_least(&self, edge: usize, key: &str, min_version: Option<u64>) -> Answer {
        let mut request = self.http.get(self.url(edge, key));
        if let Some(min) = min_version {
            request = request.header("kv-min-version", min);
        }
        let response = request.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (version, cache, age) = (
            header("kv-version").map(|v| v.parse().unwrap()),
            header("kv-cache-status"),
            header("age").map(|v| v.parse().unwrap()),
        );
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        Answer {
            status,
            version,
            cache,
            age,
            body,
        }
    }

    async fn put(&self, edge: usize, key: &str, value: &str) -> u64 {
        let response = self
            .http
            .put(self.url(edge, key))
            .body(value.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "PUT {key} through edge {edge}");
        response.headers()["kv-version"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    async fn delete(&self, edge: usize, key: &str) {
        let response = self.http.delete(self.url(edge, key)).send().await.unwrap();
        assert_eq!(response.status(), 204, "DELETE {key} through edge {edge}");
    }

    /// Waits until every edge answers `expected` for `key`.
    async fn wait_everywhere(&self, key: &str, expected: Option<&str>) {
        let deadline = tokio::time::Instant::now() + VISIBLE_WITHIN;
        for edge in 0..self.edges.len() {
            loop {
                let seen = self.read(edge, key).await;
                if seen.as_deref() == expected {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "edge {edge} still answers {seen:?} for {key}, not {expected:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    fn set_cut(&self, edge: usize, cut: bool) {
        for relay in &self.relays[edge] {
            relay.control().set_cut(cut);
        }
    }
}

/// An edge's answer to a read.
#[derive(Debug)]
struct Answer {
    status: u16,
    version: Option<u64>,
    cache: Option<String>,
    age: Option<u64>,
    body: String,
}

trait Nodes<T> {
    fn clone_nodes(&self) -> Vec<Arc<T>>;
}

impl<T> Nodes<T> for Vec<Running<T>> {
    fn clone_nodes(&self) -> Vec<Arc<T>> {
        self.iter().map(|r| r.node.clone()).collect()
    }
}

/// Reads `key` through every edge, so each caches it (a value or a miss).
async fn warm(cluster: &Cluster, key: &str, expected: Option<&str>) {
    for edge in 0..cluster.edges.len() {
        assert_eq!(cluster.read(edge, key).await.as_deref(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_edge_is_served_by_every_other_edge_without_waiting_for_a_ttl() {
    let cluster = Cluster::start(3, kv_runtime::feed::DEFAULT_BACKLOG).await;
    cluster.put(0, "small", "v1").await;
    let large_v1 = "a".repeat(20_000);
    cluster.put(0, "large", &large_v1).await;
    warm(&cluster, "small", Some("v1")).await;
    warm(&cluster, "large", Some(&large_v1)).await;

    // Small values travel inline and replace the copies; large ones (over
    // the origin's 4 KiB inline limit) drop them, and the next read fetches.
    cluster.put(1, "small", "v2").await;
    let large_v2 = "b".repeat(20_000);
    cluster.put(2, "large", &large_v2).await;
    cluster.wait_everywhere("small", Some("v2")).await;
    cluster.wait_everywhere("large", Some(&large_v2)).await;

    let lag = |node: &Running<kv_edge::Edge>| node.node.feed_metrics().lag.get_sample_count();
    // Each edge measured the lag of each change made through another edge
    // (two at least), and of no change twice, however many regional nodes
    // relayed it: four changes at most (its own writes count when the feed
    // beat the write's answer back to it).
    for edge in &cluster.edges {
        assert!((2..=4).contains(&lag(edge)), "{} lag samples", lag(edge));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_is_seen_everywhere_including_by_edges_that_cached_a_miss() {
    let cluster = Cluster::start(3, kv_runtime::feed::DEFAULT_BACKLOG).await;
    // Every edge (and both regional nodes) caches the miss for an hour.
    warm(&cluster, "k", None).await;
    cluster.put(0, "k", "here").await;
    cluster.wait_everywhere("k", Some("here")).await;
    cluster.delete(1, "k").await;
    cluster.wait_everywhere("k", None).await;
    cluster.put(2, "k", "back").await;
    cluster.wait_everywhere("k", Some("back")).await;
}

/// Cuts edge `edge` off its regional nodes until its links time out (QUIC's
/// idle timeout, 4 s), so that its feeds end; runs `meanwhile` during the
/// cut, then heals it and waits until the edge follows both nodes again.
async fn cut_until_the_feeds_end(
    cluster: &Cluster,
    edge: usize,
    meanwhile: impl Future<Output = ()>,
) {
    cluster.set_cut(edge, true);
    meanwhile.await;
    let node = cluster.edges[edge].node.clone();
    wait_for(
        Duration::from_secs(30),
        || node.feed_metrics().connected_count() == 0,
        "the cut edge's feeds to end",
    )
    .await;
    cluster.set_cut(edge, false);
    wait_for(
        VISIBLE_WITHIN,
        || node.feed_metrics().connected_count() == cluster.regionals.len(),
        "the healed edge to follow its feeds again",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_cut_and_healed_resumes_with_no_stale_read_after() {
    let cluster = Cluster::start(2, kv_runtime::feed::DEFAULT_BACKLOG).await;
    cluster.put(1, "k", "v1").await;
    warm(&cluster, "k", Some("v1")).await;
    let metrics = cluster.edges[0].node.feed_metrics().clone();
    let (gaps, revalidations) = (metrics.gaps.get(), metrics.revalidations.get());
    cut_until_the_feeds_end(&cluster, 0, async {
        cluster.put(1, "k", "v2").await;
        // Cut off, edge 0 still serves its copy: the TTL is the backstop.
        assert_eq!(cluster.read(0, "k").await.as_deref(), Some("v1"));
    })
    .await;
    // The edge resumed where it left off: the change arrives, no gap.
    cluster.wait_everywhere("k", Some("v2")).await;
    for _ in 0..20 {
        assert_eq!(cluster.read(0, "k").await.as_deref(), Some("v2"));
    }
    assert_eq!(metrics.gaps.get(), gaps, "the backlog covered the cut");
    assert_eq!(metrics.revalidations.get(), revalidations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_the_backlog_revalidates_instead_of_serving_old_data() {
    // The regional nodes keep only 2 events for their edges.
    let cluster = Cluster::start(2, 2).await;
    cluster.put(1, "k", "v1").await;
    warm(&cluster, "k", Some("v1")).await;
    let metrics = cluster.edges[0].node.feed_metrics().clone();
    let gaps = metrics.gaps.get();
    cut_until_the_feeds_end(&cluster, 0, async {
        cluster.put(1, "k", "v2").await;
        for n in 0..5 {
            cluster.put(1, &format!("other-{n}"), "x").await;
        }
    })
    .await;
    // The change to `k` fell out of the backlog: only revalidation can show v2.
    cluster.wait_everywhere("k", Some("v2")).await;
    assert!(metrics.gaps.get() > gaps, "the edge saw the gap");
    assert!(
        metrics.revalidations.get() >= 1,
        "the edge revalidated its copy"
    );
    for _ in 0..20 {
        assert_eq!(cluster.read(0, "k").await.as_deref(), Some("v2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_restart_makes_every_tier_revalidate_what_it_cached() {
    let mut cluster = Cluster::start(2, kv_runtime::feed::DEFAULT_BACKLOG).await;
    cluster.put(0, "k", "v1").await;
    warm(&cluster, "k", Some("v1")).await;
    let regional_gaps: u64 = cluster
        .regionals
        .iter()
        .map(|r| r.node.feed_metrics().gaps.get())
        .sum();

    // The origin stops; while it is down, the bucket changes behind every
    // cache's back (an origin process with no subscribers writes it); then
    // the origin comes back, with a new epoch.
    cluster.origin.take().unwrap().stop().await;
    {
        let store = Store::from_config(&file_store(&cluster.dir.path().join("bucket"))).unwrap();
        let offline = Origin::new(store);
        let mut put = kv_proto::PutRequest::new(
            kv_proto::Namespace::new("app").unwrap(),
            kv_proto::Key::new("k").unwrap(),
            bytes::Bytes::from_static(b"v2"),
        )
        .unwrap();
        put.write_id = kv_proto::WriteId::random();
        let deadline = kv_runtime::deadline::Deadline::after(Duration::from_secs(5));
        offline.put(&put, &deadline).await.unwrap();
    }
    // The stopped origin's port may be held for a moment longer.
    let config = origin_config(cluster.dir.path(), cluster.origin_addr);
    let deadline = tokio::time::Instant::now() + VISIBLE_WITHIN;
    let restarted = loop {
        match OriginServer::bind(&config) {
            Ok(server) => break server,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "cannot rebind: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    cluster.origin = Some(serve_origin(restarted));

    // Nothing announced v2; the new epoch alone makes every copy suspect.
    cluster.wait_everywhere("k", Some("v2")).await;
    let regional_gaps_after: u64 = cluster
        .regionals
        .iter()
        .map(|r| r.node.feed_metrics().gaps.get())
        .sum();
    assert!(
        regional_gaps_after >= regional_gaps + 2,
        "both regional nodes saw the new epoch"
    );
    for edge in &cluster.edges {
        assert!(edge.node.feed_metrics().revalidations.get() >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_naming_its_write_version_gets_it_from_any_edge() {
    let cluster = Cluster::tuned(Tuning {
        read_deadline_ms: 5_000,
        ..Tuning::default()
    })
    .await;
    let v1 = cluster.put(0, "k", "v1").await;
    warm(&cluster, "k", Some("v1")).await;
    // Edge 1 hears of changes, and reaches its regional nodes, 400 ms late.
    for relay in &cluster.relays[1] {
        relay.control().set_extra_delay(Duration::from_millis(400));
    }
    let v2 = cluster.put(0, "k", "v2").await;
    assert!(v2 > v1);
    let plain = cluster.read_at_least(1, "k", None).await;
    assert_eq!(
        (plain.status, plain.body.as_str()),
        (200, "v1"),
        "without a minimum, the copy is served until the feed arrives"
    );
    let mine = cluster.read_at_least(1, "k", Some(v2)).await;
    assert_eq!((mine.status, mine.body.as_str()), (200, "v2"), "{mine:?}");
    assert_eq!(mine.version, Some(v2));
    assert_eq!(mine.cache.as_deref(), Some("revalidated"));

    // A version nobody wrote: 412, never an older value, within the deadline.
    let started = std::time::Instant::now();
    let future = cluster.read_at_least(0, "k", Some(v2 + 1_000_000)).await;
    assert_eq!(future.status, 412, "{future:?}");
    let error: serde_json::Value = serde_json::from_str(&future.body).unwrap();
    assert_eq!(error["error"]["code"], "version_unavailable", "{error}");
    assert_eq!(error["error"]["retryable"], true, "{error}");
    assert!(started.elapsed() < Duration::from_millis(cluster.tuning.read_deadline_ms + 1_000));
    let malformed = cluster
        .http
        .get(cluster.url(0, "k"))
        .header("kv-min-version", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_read_across_its_ttl_never_misses_and_is_refreshed_once_per_ttl() {
    let cluster = Cluster::tuned(Tuning {
        edges: 1,
        ttl_secs: 2,
        ..Tuning::default()
    })
    .await;
    cluster.put(0, "hot", "v").await;
    let edge = cluster.edges[0].node.clone();
    let refreshes = edge.answers().refreshes.get();
    let started = std::time::Instant::now();
    let mut reads = 0;
    // Three TTLs of continuous reads.
    while started.elapsed() < Duration::from_secs(6) {
        let answer = cluster.read_at_least(0, "hot", None).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "v"));
        assert_eq!(
            answer.cache.as_deref(),
            Some("hit"),
            "read {reads}: {answer:?}"
        );
        reads += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refreshed = edge.answers().refreshes.get() - refreshes;
    // A refresh starts in the last 20 % of the TTL: every 1.6 s.
    let periods = started.elapsed().as_secs_f64() / 1.6;
    assert!(
        refreshed >= 2 && refreshed as f64 <= periods.ceil() + 1.0,
        "{refreshed} refreshes in {:?} ({reads} reads)",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_origin_down_a_stale_copy_is_served_within_the_grace_then_the_read_fails() {
    let mut cluster = Cluster::tuned(Tuning {
        edges: 1,
        ttl_secs: 1,
        stale_secs: 2,
        ..Tuning::default()
    })
    .await;
    cluster.put(0, "k", "v1").await;
    cluster.origin.take().unwrap().stop().await;
    let started = std::time::Instant::now();
    let mut stale = 0;
    let failure = loop {
        let answer = cluster.read_at_least(0, "k", None).await;
        if answer.status != 200 {
            break answer;
        }
        assert_eq!(answer.body, "v1");
        match answer.cache.as_deref() {
            Some("stale") => {
                stale += 1;
                // Past the TTL, within the grace, counted from the origin's read.
                let age = answer.age.unwrap();
                assert!((1..=3).contains(&age), "{answer:?}");
            }
            Some("hit") => assert_eq!(stale, 0, "a hit after the copy went stale"),
            other => panic!("unexpected cache status {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the copy never stopped being served"
        );
    };
    assert!(stale >= 1, "no stale answer before the failure");
    assert!(
        [502, 503, 504].contains(&failure.status),
        "past the grace the read fails: {failure:?}"
    );
    let error: serde_json::Value = serde_json::from_str(&failure.body).unwrap();
    assert_eq!(error["error"]["retryable"], true, "{error}");
}
