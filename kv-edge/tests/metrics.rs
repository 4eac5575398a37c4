//! `GET /metrics` on the edge of a one-process stack: every tier's series,
//! counted exactly as the requests that went through it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use kv_edge::EdgeConfig;
use kv_edge::dev::{DevOptions, DevStack};

/// Parses the text format into `series -> value` (comments skipped).
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn of(http: &reqwest::Client, base: &str) -> Self {
        let response = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            kv_runtime::metrics_server::CONTENT_TYPE
        );
        Self(parse(&response.text().await.unwrap()))
    }

    /// The value of `series`, which must exist.
    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("{series} not exported"))
    }

    fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.get(series) - before.0.get(series).copied().unwrap_or(0.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_request_at_every_tier() {
    let dir = tempfile::tempdir().unwrap();
    let stack = DevStack::start(DevOptions {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        edge: EdgeConfig::default(),
    })
    .await
    .unwrap();
    let base = format!("http://{}", stack.http);
    let http = reqwest::Client::new();
    let before = Scrape::of(&http, &base).await;

    // One write, two reads (a hot hit each: the write filled the hot cache),
    // one read of a missing key, one large value read twice (too large for
    // the hot cache: the regional node answers the second), and bad requests.
    let put = |path: &str, body: Vec<u8>| http.put(format!("{base}{path}")).body(body).send();
    assert_eq!(
        put("/v1/m/small", b"v".to_vec()).await.unwrap().status(),
        200
    );
    assert_eq!(
        put("/v1/m/large", vec![0; 200 * 1024])
            .await
            .unwrap()
            .status(),
        200
    );
    let get = |path: &str| http.get(format!("{base}{path}")).send();
    for _ in 0..2 {
        assert_eq!(get("/v1/m/small").await.unwrap().status(), 200);
    }
    assert_eq!(get("/v1/m/missing").await.unwrap().status(), 404);
    // A HEAD counts as the GET it is, without the body.
    let head = http
        .head(format!("{base}/v1/m/small"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("kv-version"));
    for _ in 0..2 {
        let response = get("/v1/m/large").await.unwrap();
        assert_eq!(response.headers()["kv-tier"], "regional-memory");
    }
    assert_eq!(get("/v1/m?limit=0").await.unwrap().status(), 400);
    assert_eq!(get("/nowhere").await.unwrap().status(), 404);
    assert_eq!(get("/healthz").await.unwrap().status(), 200);

    let after = Scrape::of(&http, &base).await;
    let expect = |series: &str, n: f64| {
        assert_eq!(after.delta(&before, series), n, "{series}");
    };
    expect(
        r#"tierkv_requests_total{op="put",status="ok",tier="edge"}"#,
        2.0,
    );
    expect(
        r#"tierkv_requests_total{op="get",status="ok",tier="edge"}"#,
        5.0,
    );
    expect(
        r#"tierkv_requests_total{op="get",status="not_found",tier="edge"}"#,
        1.0,
    );
    expect(
        r#"tierkv_requests_total{op="list",status="bad_request",tier="edge"}"#,
        1.0,
    );
    expect(
        r#"tierkv_requests_total{op="other",status="not_found",tier="edge"}"#,
        1.0,
    );
    expect(
        r#"tierkv_request_duration_seconds_count{op="get",tier="edge"}"#,
        6.0,
    );
    // Health checks and scrapes are not API requests.
    let edge_requests: f64 = after
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("tierkv_requests_total{") && k.contains(r#"tier="edge""#))
        .map(|(k, v)| v - before.0.get(k).copied().unwrap_or(0.0))
        .sum();
    assert_eq!(edge_requests, 10.0);

    expect(
        r#"tierkv_cache_lookups_total{result="hit",tier="edge"}"#,
        3.0,
    );
    expect(
        r#"tierkv_cache_lookups_total{result="miss",tier="edge"}"#,
        3.0,
    );
    expect(r#"tierkv_answered_by_total{tier="edge"}"#, 3.0);
    expect(r#"tierkv_answered_by_total{tier="regional-memory"}"#, 2.0);
    expect(r#"tierkv_answered_by_total{tier="origin"}"#, 1.0);

    // Behind the edge: three reads and two writes reached the regional node,
    // the missing key and the writes reached the origin.
    expect(
        r#"tierkv_upstream_requests_total{from="edge",status="ok",to="regional"}"#,
        4.0,
    );
    expect(
        r#"tierkv_upstream_requests_total{from="edge",status="not_found",to="regional"}"#,
        1.0,
    );
    expect(
        r#"tierkv_cache_lookups_total{result="hit",tier="regional-memory"}"#,
        2.0,
    );
    expect(
        r#"tierkv_cache_lookups_total{result="miss",tier="regional-memory"}"#,
        1.0,
    );
    expect(
        r#"tierkv_cache_lookups_total{result="miss",tier="regional-disk"}"#,
        1.0,
    );
    expect(
        r#"tierkv_requests_total{op="get",status="not_found",tier="regional"}"#,
        1.0,
    );
    expect(
        r#"tierkv_upstream_requests_total{from="regional",status="not_found",to="origin"}"#,
        1.0,
    );
    expect(
        r#"tierkv_requests_total{op="put",status="ok",tier="origin"}"#,
        2.0,
    );
    expect(
        r#"tierkv_requests_total{op="get",status="not_found",tier="origin"}"#,
        1.0,
    );
    expect(
        r#"tierkv_object_store_requests_total{op="put",status="ok"}"#,
        2.0,
    );
    // The read of the missing key; and each write first reads the head of
    // the key's object (for its version and write log): two new keys.
    expect(
        r#"tierkv_object_store_requests_total{op="get",status="not_found"}"#,
        1.0,
    );
    expect(
        r#"tierkv_object_store_requests_total{op="get_range",status="not_found"}"#,
        2.0,
    );
    expect("tierkv_write_conflicts_total", 0.0);
    expect("tierkv_write_replays_total", 0.0);
    expect(r#"tierkv_failovers_total{op="get",tier="edge"}"#, 0.0);

    // Sizes: the small value and the miss are hot; the large one is in
    // regional memory.
    assert_eq!(after.get(r#"tierkv_cache_entries{tier="edge"}"#), 2.0);
    assert!(after.get(r#"tierkv_cache_bytes{tier="edge"}"#) > 0.0);
    assert!(after.get(r#"tierkv_cache_bytes{tier="regional-memory"}"#) > 200.0 * 1024.0);
    assert_eq!(
        after.get(r#"tierkv_cache_capacity_bytes{tier="edge"}"#),
        64.0 * 1024.0 * 1024.0
    );
    // The edge and regional links are up, and measure an RTT.
    let links: Vec<_> = after
        .0
        .iter()
        .filter(|(k, v)| k.starts_with("tierkv_quic_connections{") && **v > 0.0)
        .collect();
    assert!(links.len() >= 4, "outbound and inbound links: {links:?}");
    assert!(
        after
            .0
            .iter()
            .any(|(k, v)| k.starts_with("tierkv_quic_rtt_seconds{") && *v > 0.0)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_key_are_counted_as_coalesced() {
    let dir = tempfile::tempdir().unwrap();
    let stack = DevStack::start(DevOptions {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        // No hot cache: every read goes upstream, and concurrent ones share a fetch.
        edge: EdgeConfig {
            hot_cache_mib: 0,
            ..EdgeConfig::default()
        },
    })
    .await
    .unwrap();
    let base = format!("http://{}", stack.http);
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{base}/v1/c/k"))
        .body(vec![7u8; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    // Rounds of 32 concurrent reads until some of them waited on another's
    // fetch (each round can, in principle, be served one by one).
    let mut coalesced = 0.0;
    for _ in 0..50 {
        let reads = (0..32).map(|_| http.get(format!("{base}/v1/c/k")).send());
        for read in futures::future::join_all(reads).await {
            assert_eq!(read.unwrap().status(), 200);
        }
        coalesced = Scrape::of(&http, &base)
            .await
            .get(r#"tierkv_coalesced_total{tier="edge"}"#);
        if coalesced > 0.0 {
            break;
        }
    }
    assert!(coalesced > 0.0, "no read ever joined another's fetch");
    assert_eq!(
        coalesced,
        stack
            .edge
            .stats()
            .coalesced
            .load(std::sync::atomic::Ordering::Relaxed) as f64
    );
    stack.stop().await;
}
