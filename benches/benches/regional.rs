//! A regional GET answered from memory, and one answered from disk, over
//! QUIC on loopback: one client, sequential requests, against an in-process
//! origin (`memory:///` store) and regional node with dev certificates
//! (mutual TLS).
//!
//! - `regional/memory_get_quic_1KiB`: one key, always in the memory tier.
//! - `regional/disk_get_quic_4KiB`: a regional node with a 1 MiB memory tier
//!   and 8,192 keys of 4 KiB (32 MiB) on its disk tier, read in a cycle, so
//!   that every read has left memory long before it comes round again.
//! - After criterion, the latency distribution of 10,000 sequential requests
//!   of each (p50, p90, p99, p99.9, max) is printed to stdout, outside
//!   criterion's statistics, with the share of disk reads that the disk
//!   tier really answered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use kv_origin::{OriginConfig, OriginServer, StoreConfig};
use kv_proto::{Body, GetRequest, Key, Namespace, Op, PutRequest, Request, Status, Tier};
use kv_regional::{RegionalConfig, RegionalServer};
use kv_runtime::quic::{Connector, Link, TransportOptions};
use kv_runtime::tls::TlsConfig;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NAMESPACE: &str = "bench";
const KEY: &str = "hot/key";
const VALUE_LEN: usize = 1024;
const SEQUENTIAL_REQUESTS: usize = 10_000;
/// The disk bench's keyspace: 32 MiB against a 1 MiB memory tier.
const DISK_KEYS: usize = 8_192;
const DISK_VALUE_LEN: usize = 4 * 1024;

/// An origin and a regional node on loopback, and a client link to the regional.
struct Stack {
    link: Link,
    get: Request,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    // Dropped last: certificates, and the regional's disk tier.
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Starts both servers on the current runtime and links to the regional,
    /// whose tiers get `memory_mib` and `disk_mib`.
    async fn start(memory_mib: usize, disk_mib: usize) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let tls = TlsConfig {
            dev_certs: Some(dir.path().join("certs")),
            ..TlsConfig::default()
        };
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");

        let origin = OriginServer::bind(&OriginConfig {
            listen: loopback,
            store: StoreConfig {
                url: "memory:///".into(),
                ..StoreConfig::default()
            },
            tls: tls.clone(),
            ..OriginConfig::default()
        })
        .expect("the origin starts");
        let origin_addr = origin.local_addr().expect("the origin's address");
        let (stop_origin, origin_stopped) = oneshot::channel::<()>();
        let origin_task = tokio::spawn(origin.serve(async {
            let _ = origin_stopped.await;
        }));

        let regional = RegionalServer::bind(&RegionalConfig {
            listen: loopback,
            origins: vec![origin_addr.into()],
            data_dir: dir.path().join("regional"),
            memory_mib,
            disk_mib,
            // Longer than any run, so that no read finds its entry stale and
            // goes to the origin in the middle of a measurement.
            cache_ttl_secs: 3600,
            tls: tls.clone(),
            ..RegionalConfig::default()
        })
        .await
        .expect("the regional node starts");
        let regional_addr = regional.local_addr().expect("the regional's address");
        let (stop_regional, regional_stopped) = oneshot::channel::<()>();
        let regional_task = tokio::spawn(regional.serve(async {
            let _ = regional_stopped.await;
        }));

        let identity = tls.load().expect("the dev certificates load");
        let connector =
            Connector::new(&identity, TransportOptions::default()).expect("a client endpoint");
        let link = connector.link(regional_addr, "localhost", Duration::from_secs(10));
        let get = Request::new(Op::Get(GetRequest::new(namespace(), key())));
        Self {
            link,
            get,
            // The regional stops first, so it never waits on a stopped origin.
            stops: vec![stop_regional, stop_origin],
            tasks: vec![regional_task, origin_task],
            _dir: dir,
        }
    }

    /// Writes the key through the regional, reads it once, and checks that
    /// the read was answered from regional memory: otherwise the bench would
    /// not measure what it claims to.
    async fn warm(&self) {
        let put = PutRequest::new(namespace(), key(), Bytes::from(vec![0xa5; VALUE_LEN]))
            .expect("a value within limits");
        let written = self
            .link
            .request(&Request::new(Op::Put(put)))
            .await
            .expect("the PUT is answered");
        assert_eq!(written.status, Status::Ok, "the PUT failed: {written:?}");

        let got = self
            .link
            .request(&self.get)
            .await
            .expect("the GET is answered");
        assert_eq!(got.status, Status::Ok, "the warm-up GET failed: {got:?}");
        assert_eq!(
            got.tier,
            Some(Tier::RegionalMemory),
            "the warm-up GET was not answered from regional memory, so the bench \
             would not measure a memory hit"
        );
        match &got.body {
            Body::Entry(entry) => assert_eq!(entry.value.len(), VALUE_LEN, "wrong value"),
            other => panic!("the warm-up GET returned no value: {other:?}"),
        }
    }

    /// Writes the disk bench's keys through the regional node, then reads
    /// them all once, so that each has gone through memory to disk.
    async fn fill_disk(&self) -> Vec<Request> {
        let value = Bytes::from(vec![0x5a; DISK_VALUE_LEN]);
        let mut gets = Vec::with_capacity(DISK_KEYS);
        for i in 0..DISK_KEYS {
            let key = Key::new(format!("disk/{i:05}")).expect("a valid key");
            let put = PutRequest::new(namespace(), key.clone(), value.clone())
                .expect("a value within limits");
            let written = self
                .link
                .request(&Request::new(Op::Put(put)))
                .await
                .expect("the PUT is answered");
            assert_eq!(written.status, Status::Ok, "a PUT failed: {written:?}");
            gets.push(Request::new(Op::Get(GetRequest::new(namespace(), key))));
        }
        for get in &gets {
            let got = self.link.request(get).await.expect("the GET is answered");
            assert_eq!(got.status, Status::Ok, "a warm-up GET failed: {got:?}");
        }
        gets
    }

    /// Signals both servers to stop and waits for them to finish.
    async fn stop(self) {
        drop(self.link);
        for stop in self.stops {
            let _ = stop.send(());
        }
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a server stops within 30 s")
                .expect("a server task ran to completion");
        }
    }
}

fn namespace() -> Namespace {
    Namespace::new(NAMESPACE).expect("a valid namespace")
}

fn key() -> Key {
    Key::new(KEY).expect("a valid key")
}

/// Criterion's figures for one sequential GET at a time.
fn bench_memory_get(c: &mut Criterion, runtime: &Runtime, stack: &Stack) {
    let mut group = c.benchmark_group("regional");
    group.throughput(Throughput::Elements(1));
    group.bench_function("memory_get_quic_1KiB", |b| {
        b.to_async(runtime).iter(|| async {
            let response = stack.link.request(&stack.get).await.expect("answered");
            assert!(response.status == Status::Ok, "GET failed");
            response
        })
    });
    group.finish();
}

/// Criterion's figures for disk reads: each iteration reads the next key of
/// the cycle. Returns where in the cycle criterion stopped.
fn bench_disk_get(c: &mut Criterion, runtime: &Runtime, stack: &Stack, gets: &[Request]) -> usize {
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("regional");
    group.throughput(Throughput::Elements(1));
    group.bench_function("disk_get_quic_4KiB", |b| {
        b.to_async(runtime).iter(|| async {
            let get = &gets[next.fetch_add(1, Ordering::Relaxed) % gets.len()];
            let response = stack.link.request(get).await.expect("answered");
            assert!(response.status == Status::Ok, "GET failed");
            response
        })
    });
    group.finish();
    next.into_inner() % gets.len()
}

/// `n` sequential GETs cycling over `gets`, timed one by one; prints their
/// distribution and returns how many each tier answered.
fn latency_distribution(
    runtime: &Runtime,
    stack: &Stack,
    name: &str,
    gets: &[Request],
    n: usize,
) -> Vec<(Option<Tier>, usize)> {
    let (latencies, tiers) = runtime.block_on(async {
        let mut latencies = Vec::with_capacity(n);
        let mut tiers: Vec<(Option<Tier>, usize)> = Vec::new();
        for get in gets.iter().cycle().take(n) {
            let started = Instant::now();
            let response = stack.link.request(get).await.expect("answered");
            latencies.push(started.elapsed());
            assert!(response.status == Status::Ok, "a GET failed: {response:?}");
            match tiers.iter_mut().find(|(t, _)| *t == response.tier) {
                Some((_, count)) => *count += 1,
                None => tiers.push((response.tier, 1)),
            }
        }
        (latencies, tiers)
    });
    println!("{}", benches::summary(name, latencies));
    tiers
}

/// Panics unless `tier` answered nearly all of `tiers`: the bench would not
/// measure what its name says.
fn assert_answered_by(tier: Tier, tiers: &[(Option<Tier>, usize)]) {
    let total: usize = tiers.iter().map(|(_, n)| n).sum();
    let hits = tiers
        .iter()
        .find(|(t, _)| *t == Some(tier))
        .map_or(0, |(_, n)| *n);
    println!(
        "  answered by {}: {hits} of {total} ({:.1}%)",
        tier.as_str(),
        100.0 * hits as f64 / total.max(1) as f64
    );
    assert!(
        hits * 100 >= total * 95,
        "only {hits} of {total} reads came from {}: {tiers:?}",
        tier.as_str()
    );
}

fn main() {
    let runtime = benches::runtime();
    let mut criterion = Criterion::default().configure_from_args();
    let n = benches::sample_count(SEQUENTIAL_REQUESTS);

    let memory = runtime.block_on(Stack::start(64, 64));
    runtime.block_on(memory.warm());
    bench_memory_get(&mut criterion, &runtime, &memory);
    if n > 0 {
        let gets = [memory.get.clone()];
        let tiers = latency_distribution(&runtime, &memory, "regional_memory_get_quic", &gets, n);
        assert_answered_by(Tier::RegionalMemory, &tiers);
    }
    runtime.block_on(memory.stop());

    let disk = runtime.block_on(Stack::start(1, 128));
    let mut gets = runtime.block_on(disk.fill_disk());
    let stopped_at = bench_disk_get(&mut criterion, &runtime, &disk, &gets);
    if n > 0 {
        // Carry on the cycle where criterion stopped: the keys it read last
        // are in memory again.
        gets.rotate_left(stopped_at);
        let tiers = latency_distribution(&runtime, &disk, "regional_disk_get_quic", &gets, n);
        assert_answered_by(Tier::RegionalDisk, &tiers);
    }
    runtime.block_on(disk.stop());

    criterion.final_summary();
}
