//! An origin read over `file://`: a GET over QUIC on loopback to an
//! in-process origin whose object store is a local directory. The origin
//! keeps no cache, so every GET reads the object from the file system
//! (the page cache, once warm) and checks its envelope's checksums.
//!
//! - `origin/file_get_quic_1KiB`: criterion's figures, one sequential GET
//!   at a time from one client.
//! - After criterion, the distribution of 10,000 sequential GETs is printed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use kv_origin::{OriginConfig, OriginServer, StoreConfig};
use kv_proto::{GetRequest, Key, Namespace, Op, PutRequest, Request, Status, Tier};
use kv_runtime::quic::{Connector, TransportOptions};
use kv_runtime::tls::TlsConfig;
use tokio::sync::oneshot;

const VALUE_LEN: usize = 1024;
const SEQUENTIAL_REQUESTS: usize = 10_000;

fn main() {
    let runtime = benches::runtime();
    let dir = tempfile::tempdir().expect("a temp dir");
    let tls = TlsConfig {
        dev_certs: Some(dir.path().join("certs")),
        ..TlsConfig::default()
    };
    // quinn binds its endpoint on the current runtime.
    let _guard = runtime.enter();
    let origin = OriginServer::bind(&OriginConfig {
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        store: StoreConfig {
            url: format!("file://{}", dir.path().join("store").display()),
            ..StoreConfig::default()
        },
        tls: tls.clone(),
        ..OriginConfig::default()
    })
    .expect("the origin starts");
    let addr = origin.local_addr().expect("the origin's address");
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = runtime.spawn(origin.serve(async {
        let _ = stopped.await;
    }));

    let identity = tls.load().expect("the dev certificates load");
    let link = Connector::new(&identity, TransportOptions::default())
        .expect("a client endpoint")
        .link(addr, "localhost", Duration::from_secs(10));
    let namespace = Namespace::new("bench").expect("a valid namespace");
    let key = Key::new("stored/key").expect("a valid key");
    let put = PutRequest::new(
        namespace.clone(),
        key.clone(),
        Bytes::from(vec![0x3c; VALUE_LEN]),
    )
    .expect("a value within limits");
    let get = Request::new(Op::Get(GetRequest::new(namespace, key)));
    runtime.block_on(async {
        let written = link
            .request(&Request::new(Op::Put(put)))
            .await
            .expect("the PUT is answered");
        assert_eq!(written.status, Status::Ok, "the PUT failed: {written:?}");
    });

    let read = || async {
        let response = link.request(&get).await.expect("answered");
        assert!(
            response.status == Status::Ok && response.tier == Some(Tier::Origin),
            "not an origin read: {response:?}"
        );
        response
    };
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("origin");
    group.throughput(Throughput::Elements(1));
    group.bench_function("file_get_quic_1KiB", |b| b.to_async(&runtime).iter(read));
    group.finish();
    criterion.final_summary();

    let n = benches::sample_count(SEQUENTIAL_REQUESTS);
    if n > 0 {
        let latencies = runtime.block_on(async {
            let mut latencies = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                read().await;
                latencies.push(started.elapsed());
            }
            latencies
        });
        println!("{}", benches::summary("origin_file_get_quic", latencies));
    }

    drop(link);
    let _ = stop.send(());
    runtime
        .block_on(serving)
        .expect("the origin's task ran to completion");
}
