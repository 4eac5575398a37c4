//! A regional GET answered from memory, over QUIC on loopback: one client,
//! sequential requests, against an in-process origin (`memory:///` store) and
//! regional node with dev certificates (mutual TLS).
//!
//! - `regional/memory_get_quic_1KiB`: criterion's figures.
//! - After criterion, the latency distribution of 10,000 sequential requests
//!   (p50, p90, p99, p99.9, max) is printed to stdout, outside criterion's
//!   statistics.

use std::net::SocketAddr;
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
    /// Starts both servers on the current runtime and links to the regional.
    async fn start() -> Self {
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
            origin: origin_addr,
            data_dir: dir.path().join("regional"),
            memory_mib: 64,
            disk_mib: 64,
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

/// `n` sequential GETs timed one by one; prints their distribution.
fn latency_distribution(runtime: &Runtime, stack: &Stack, n: usize) {
    let latencies = runtime.block_on(async {
        let mut latencies = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let response = stack.link.request(&stack.get).await.expect("answered");
            latencies.push(started.elapsed());
            assert!(
                response.status == Status::Ok && response.tier == Some(Tier::RegionalMemory),
                "a GET was not a regional memory hit: {:?} {:?}",
                response.status,
                response.tier
            );
        }
        latencies
    });
    println!(
        "{}",
        benches::summary("regional_memory_get_quic", latencies)
    );
}

fn main() {
    let runtime = benches::runtime();
    let stack = runtime.block_on(Stack::start());
    runtime.block_on(stack.warm());

    let mut criterion = Criterion::default().configure_from_args();
    bench_memory_get(&mut criterion, &runtime, &stack);
    criterion.final_summary();

    let n = benches::sample_count(SEQUENTIAL_REQUESTS);
    if n > 0 {
        latency_distribution(&runtime, &stack, n);
    }

    runtime.block_on(stack.stop());
}
