//! An edge hot hit: a 1 KiB value answered from the in-process hot cache,
//! as a library call (`Edge::get`) and through HTTP on loopback (one
//! keep-alive connection, sequential requests). Besides criterion's figures
//! it prints the distribution of 10,000 sequential requests of each kind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use kv_edge::Edge;
use kv_edge::dev::{DevOptions, DevStack};
use kv_proto::{Key, Namespace, RequestId, Tier};
use kv_runtime::deadline::Deadline;

const SEQUENTIAL_REQUESTS: usize = 10_000;

async fn library_hit(edge: &Edge, namespace: &Namespace, key: &Key) {
    let read = edge
        .get(
            RequestId(1),
            Deadline::after(Duration::from_secs(2)),
            namespace.clone(),
            key.clone(),
            kv_edge::ReadOptions::default(),
        )
        .await
        .expect("answered");
    assert!(read.tier == Tier::Edge, "not a hot hit: {:?}", read.tier);
}

async fn http_hit(client: &reqwest::Client, url: &str) {
    let response = client.get(url).send().await.expect("answered");
    assert!(
        response
            .headers()
            .get("kv-tier")
            .is_some_and(|t| t == "edge"),
        "not a hot hit"
    );
    response.bytes().await.expect("body");
}

fn main() {
    let runtime = benches::runtime();
    let dir = tempfile::tempdir().expect("a temp dir");
    let options = DevOptions {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().expect("an address"),
        ..DevOptions::default()
    };
    let stack = runtime
        .block_on(DevStack::start(options))
        .expect("the stack starts");
    let edge: Arc<Edge> = stack.edge.clone();
    let url = format!("http://{}/v1/bench/hot", stack.http);
    let client = reqwest::Client::new();
    runtime.block_on(async {
        let put = client
            .put(&url)
            .body(vec![7u8; 1024])
            .send()
            .await
            .expect("put answered");
        assert!(put.status().is_success(), "put failed: {}", put.status());
    });
    let (namespace, key) = (
        Namespace::new("bench").expect("ns"),
        Key::new("hot").expect("key"),
    );

    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("edge_hot_hit_1KiB");
        group.throughput(Throughput::Elements(1));
        group.bench_function("library", |b| {
            b.to_async(&runtime)
                .iter(|| library_hit(&edge, &namespace, &key))
        });
        group.bench_function("http", |b| {
            b.to_async(&runtime).iter(|| http_hit(&client, &url))
        });
        group.finish();
    }
    criterion.final_summary();

    let n = benches::sample_count(SEQUENTIAL_REQUESTS);
    if n > 0 {
        let (library, http) = runtime.block_on(async {
            let mut library = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                library_hit(&edge, &namespace, &key).await;
                library.push(started.elapsed());
            }
            let mut http = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                http_hit(&client, &url).await;
                http.push(started.elapsed());
            }
            (library, http)
        });
        println!("{}", benches::summary("edge_hot_hit_library", library));
        println!("{}", benches::summary("edge_hot_hit_http", http));
    }
    runtime.block_on(stack.stop());
}
