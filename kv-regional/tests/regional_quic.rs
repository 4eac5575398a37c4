//! A regional node between a client and an origin, all over real QUIC on
//! loopback, with the regional disk cache in a real directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use kv_origin::Origin;
use kv_proto::{Body, Status, Tier};
use kv_regional::{Regional, RegionalConfig, RegionalServer};
use kv_runtime::quic::Link;
use kv_runtime::time::unix_seconds;
use support::*;

struct Stack {
    dir: tempfile::TempDir,
    tls: kv_runtime::tls::TlsConfig,
    origin: Running<Origin>,
    to_origin: Link,
    regional: Option<Running<Regional>>,
    to_regional: Link,
    config: RegionalConfig,
}

/// A regional node, once it follows the origin's change feed (what it
/// caches before then is checked again when the feed starts).
async fn start_regional(config: &RegionalConfig) -> Running<Regional> {
    let server = RegionalServer::bind(config).await.expect("regional starts");
    let addr = server.local_addr().unwrap();
    let node: Arc<Regional> = server.regional().clone();
    let running = spawn_server(addr, node.clone(), move |stopped| async move {
        server
            .serve(async {
                let _ = stopped.await;
            })
            .await;
    });
    wait_for(
        Duration::from_secs(10),
        || node.feed_metrics().connected_count() == 1,
        "the regional node to follow the origin's feed",
    )
    .await;
    running
}

impl Stack {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut RegionalConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls = dev_tls(dir.path());
        let origin = start_origin(&tls, file_store(&dir.path().join("store")));
        let mut config = RegionalConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            origins: vec![origin.addr.into()],
            connect_timeout_ms: 2_000,
            memory_mib: 32,
            disk_mib: 64,
            data_dir: dir.path().join("regional"),
            tls: tls.clone(),
            ..RegionalConfig::default()
        };
        adjust(&mut config);
        let regional = start_regional(&config).await;
        let to_origin = link(&tls, origin.addr);
        let to_regional = link(&tls, regional.addr);
        Self {
            dir,
            tls,
            origin,
            to_origin,
            regional: Some(regional),
            to_regional,
            config,
        }
    }

    /// Stops the regional node gracefully and starts it again on the same data.
    async fn restart_regional(&mut self) {
        self.stop_regional().await;
        self.start_regional_again().await;
    }

    async fn stop_regional(&mut self) {
        if let Some(regional) = self.regional.take() {
            regional.stop().await;
        }
    }

    async fn start_regional_again(&mut self) {
        let regional = start_regional(&self.config).await;
        self.to_regional = link(&self.tls, regional.addr);
        self.regional = Some(regional);
    }

    fn node(&self) -> &Regional {
        &self.regional.as_ref().expect("regional running").node
    }

    async fn stop(mut self) {
        self.stop_regional().await;
        self.origin.stop().await;
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

fn tier(response: &kv_proto::Response) -> Option<Tier> {
    response.tier
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_origin_then_regional_memory() {
    let s = Stack::start().await;
    // Over the origin's 4 KiB inline limit: the change feed announces the
    // write without bringing the value, so the cache stays cold.
    let from_origin = "o".repeat(8 * 1024);
    let version = written(&put(&s.to_origin, "app", "k", from_origin.clone()).await);
    let first = get(&s.to_regional, "app", "k").await;
    assert_eq!(
        (first.status, tier(&first)),
        (Status::Ok, Some(Tier::Origin))
    );
    assert!(value(&first) == from_origin.as_bytes(), "the value read");
    let second = get(&s.to_regional, "app", "k").await;
    assert_eq!(tier(&second), Some(Tier::RegionalMemory));
    let Body::Entry(entry) = &second.body else {
        panic!()
    };
    assert_eq!(entry.version, version);
    assert!(entry.value == from_origin.as_bytes(), "the value read back");
    assert_eq!(s.node().stats().origin_fetches.load(Ordering::Relaxed), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_the_regional_is_read_back_from_its_memory() {
    let s = Stack::start().await;
    let version = written(&put_with(&s.to_regional, "app", "k", "v1", None, Some("[1]")).await);
    let got = get(&s.to_regional, "app", "k").await;
    assert_eq!(tier(&got), Some(Tier::RegionalMemory));
    let Body::Entry(entry) = &got.body else {
        panic!()
    };
    assert_eq!(entry.version, version);
    assert_eq!(entry.metadata.as_ref().unwrap().as_str(), "[1]");
    // The origin holds it too: the write was acknowledged only once stored.
    assert_eq!(
        value(&get(&s.to_origin, "app", "k").await),
        Bytes::from("v1")
    );
    // An overwrite replaces the cached copy before it is acknowledged.
    written(&put(&s.to_regional, "app", "k", "v2").await);
    assert_eq!(
        value(&get(&s.to_regional, "app", "k").await),
        Bytes::from("v2")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_reads_come_from_the_disk_cache() {
    let mut s = Stack::start().await;
    let value_bytes = Bytes::from(vec![42u8; 100 * 1024]);
    put(&s.to_regional, "app", "durable", value_bytes.clone()).await;
    assert_eq!(
        tier(&get(&s.to_regional, "app", "durable").await),
        Some(Tier::RegionalMemory)
    );
    s.restart_regional().await;
    let gets_before = s.store_gets();
    let got = get(&s.to_regional, "app", "durable").await;
    assert_eq!(tier(&got), Some(Tier::RegionalDisk), "{:?}", got.status);
    assert_eq!(value(&got), value_bytes);
    assert_eq!(s.store_gets(), gets_before, "the origin was not asked");
    let again = get(&s.to_regional, "app", "durable").await;
    assert_eq!(
        tier(&again),
        Some(Tier::RegionalMemory),
        "a disk hit is promoted to memory"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_through_the_regional_is_seen_at_once_and_survives_a_restart() {
    let mut s = Stack::start().await;
    put(&s.to_regional, "app", "k", "v").await;
    assert_eq!(get(&s.to_regional, "app", "k").await.status, Status::Ok);
    assert_eq!(delete(&s.to_regional, "app", "k").await.status, Status::Ok);
    let got = get(&s.to_regional, "app", "k").await;
    assert_eq!(
        (got.status, tier(&got)),
        (Status::NotFound, Some(Tier::RegionalMemory))
    );
    assert_eq!(get(&s.to_origin, "app", "k").await.status, Status::NotFound);
    s.restart_regional().await;
    let got = get(&s.to_regional, "app", "k").await;
    assert_eq!(
        got.status,
        Status::NotFound,
        "a deleted value came back from disk: {got:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_values_are_not_served_past_their_expiration() {
    let s = Stack::start().await;
    let soon = unix_seconds() + 4;
    put_with(&s.to_regional, "app", "k", "v", Some(soon), None).await;
    assert_eq!(
        tier(&get(&s.to_regional, "app", "k").await),
        Some(Tier::RegionalMemory)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&s.to_regional, "app", "k").await.status == Status::Ok {
        assert!(
            tokio::time::Instant::now() < deadline,
            "value never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(unix_seconds() >= soon);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_bypasses_the_node_reaches_it_through_the_feed_and_min_version_holds() {
    let s = Stack::start_with(|c| c.cache_ttl_secs = 3600).await;
    put(&s.to_regional, "app", "k", "old").await;
    // A write that bypasses this regional node: its feed brings the value.
    let newer = written(&put(&s.to_origin, "app", "k", "new").await);
    let gets = s.store_gets();
    let regional = s.node();
    wait_for(
        Duration::from_secs(10),
        || regional.feed_metrics().applied.get() >= 2,
        "the node to apply both changes",
    )
    .await;
    let cached = get(&s.to_regional, "app", "k").await;
    assert_eq!(
        (value(&cached), tier(&cached)),
        (Bytes::from("new"), Some(Tier::RegionalMemory)),
        "replaced in memory, within an hour-long TTL"
    );
    assert_eq!(s.store_gets(), gets, "the origin was not read");

    let at_least = get_min(&s.to_regional, "app", "k", newer).await;
    assert_eq!(value(&at_least), Bytes::from("new"));
    // A version nobody wrote: a typed, retryable failure, never an older value.
    let future = get_min(&s.to_regional, "app", "k", newer + 1_000).await;
    assert_eq!(future.status, Status::VersionUnavailable, "{future:?}");
    assert!(future.is_retryable());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_reads_make_one_origin_request_and_one_store_read() {
    let s = Stack::start().await;
    put(&s.to_origin, "app", "cold", vec![1u8; 32 * 1024]).await;
    let before = s.store_gets();
    let reads = (0..100).map(|_| {
        let link = s.to_regional.clone();
        tokio::spawn(async move { get(&link, "app", "cold").await })
    });
    for read in futures::future::join_all(reads).await {
        assert_eq!(value(&read.unwrap()).len(), 32 * 1024);
    }
    let stats = s.node().stats();
    assert_eq!(
        stats.origin_fetches.load(Ordering::Relaxed),
        1,
        "one origin request"
    );
    assert_eq!(s.store_gets() - before, 1, "exactly one object-store read");
    let answered =
        stats.origin_answers.load(Ordering::Relaxed) + stats.memory_hits.load(Ordering::Relaxed);
    assert_eq!(
        answered, 100,
        "every read answered from the one fetch or the memory it filled"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_goes_to_the_origin() {
    let s = Stack::start().await;
    for i in 0..12 {
        put(&s.to_regional, "app", &format!("p/{i:02}"), "x").await;
    }
    let first = list(&s.to_regional, "app", "p/", "", 5).await;
    let Body::Page(first) = first.body else {
        panic!("{first:?}")
    };
    assert_eq!(first.keys.len(), 5);
    let second = list(
        &s.to_regional,
        "app",
        "p/",
        first.cursor.as_deref().unwrap(),
        100,
    )
    .await;
    let Body::Page(second) = second.body else {
        panic!()
    };
    assert_eq!(second.keys.len(), 7);
    assert_eq!(second.keys[0].name.as_str(), "p/05");
    assert_eq!(second.cursor, None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_disk_entry_is_read_as_a_miss_never_as_wrong_data() {
    let mut s = Stack::start().await;
    let pattern: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 241) as u8 + 7).collect();
    let pattern = Bytes::from(pattern);
    put(&s.to_regional, "app", "fragile", pattern.clone()).await;
    s.stop_regional().await;

    // Flip bytes in the middle of the value wherever it lies on disk.
    let needle = &pattern[100_000..100_064];
    let mut damaged = 0;
    for entry in walk(&s.dir.path().join("regional")) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let mut changed = false;
        let mut at = 0;
        while let Some(pos) = find(&bytes[at..], needle) {
            bytes[at + pos + 10] ^= 0xFF;
            at += pos + needle.len();
            changed = true;
        }
        if changed {
            std::fs::write(&entry, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "the value was not found on disk");

    s.start_regional_again().await;
    let got = get(&s.to_regional, "app", "fragile").await;
    assert_eq!(got.status, Status::Ok);
    assert_eq!(value(&got), pattern, "damaged data was served");
    assert_eq!(
        tier(&got),
        Some(Tier::Origin),
        "the damaged entry was a miss"
    );
    s.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_origin_down_cached_keys_are_served_and_others_fail_fast() {
    let s = Stack::start().await;
    put(&s.to_regional, "app", "cached", "v").await;
    let Stack {
        origin,
        regional,
        to_regional,
        ..
    } = s;
    let regional = regional.unwrap();
    origin.stop().await;
    let got = get(&to_regional, "app", "cached").await;
    assert_eq!(
        (got.status, tier(&got)),
        (Status::Ok, Some(Tier::RegionalMemory))
    );
    let started = std::time::Instant::now();
    let missing = get(&to_regional, "app", "uncached").await;
    assert_eq!(missing.status, Status::Unavailable, "{missing:?}");
    assert!(missing.message().unwrap().contains("origin"), "{missing:?}");
    // Bounded by the origin timeout (2 s) rather than hanging; no tight bound asserted.
    assert!(started.elapsed() < Duration::from_secs(30));
    let put_down = put(&to_regional, "app", "k", "v").await;
    assert_eq!(put_down.status, Status::Unavailable);
    regional.stop().await;
}
