//! Several origin processes on one bucket, and origins killed mid-write:
//! the real `kv-origin` binary, a real S3-compatible server whose
//! conditional PUT is atomic (`s3_conditional.rs` proves it), and local
//! directories.

#![allow(clippy::unwrap_used)]

#[path = "support/moto.rs"]
mod moto;
#[path = "support/racing.rs"]
mod racing;
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use kv_proto::{Body, Op, PutRequest, Request, Status, WriteId};
use kv_runtime::quic::Link;
use moto::MotoS3;
use support::{assert_refused, dev_tls, get, key, link, ns, value, written};

/// A `kv-origin` process, killed on drop.
struct OriginProcess {
    child: Child,
    addr: SocketAddr,
}

impl OriginProcess {
    /// Starts `kv-origin` with `store_args` and waits until it serves.
    fn start(certs: &Path, store_args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kv-origin"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--dev-certs")
            .arg(certs)
            .args(store_args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = loop {
            let line = received
                .recv_timeout(Duration::from_secs(30))
                .expect("kv-origin started in time");
            if line.contains("kv-origin ready") {
                break line;
            }
        };
        // Keep draining, so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in received {});
        let addr = ready
            .split_whitespace()
            .find_map(|field| field.strip_prefix("addr="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {ready:?}"));
        Self { child, addr }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OriginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_args(s3: &MotoS3) -> Vec<String> {
    [
        "--store",
        &format!("s3://{}", s3.bucket()),
        "--s3-endpoint",
        s3.endpoint(),
        "--s3-allow-http",
        "true",
        "--s3-region",
        moto::REGION,
        "--s3-access-key-id",
        moto::ACCESS_KEY,
        "--s3-secret-access-key",
        moto::SECRET_KEY,
    ]
    .map(String::from)
    .to_vec()
}

fn file_args(dir: &Path) -> Vec<String> {
    vec!["--store".into(), format!("file://{}", dir.display())]
}

async fn put_as(link: &Link, k: &str, value: Bytes, id: WriteId) -> kv_proto::Response {
    let mut put = PutRequest::new(ns("app"), key(k), value).unwrap();
    put.write_id = id;
    let request = Request::new(Op::Put(put)).with_budget(Duration::from_secs(20));
    link.request(&request).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_origin_processes_and_twenty_writers_on_one_key_agree() {
    let s3 = MotoS3::start("race");
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let certs = dir.path().join("certs");
    let origins: Vec<_> = (0..3)
        .map(|_| OriginProcess::start(&certs, &s3_args(&s3)))
        .collect();
    let links: Vec<_> = origins.iter().map(|o| link(&tls, o.addr)).collect();

    let mut writers = Vec::new();
    for writer in 0..20 {
        let links = links.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..5 {
                let value = format!("w{writer}-{i}");
                let id = WriteId::random();
                let to = &links[(writer + i) % links.len()];
                let response = put_as(to, "hot", Bytes::from(value.clone()), id).await;
                assert_eq!(response.status, Status::Ok, "{response:?}");
                let version = written(&response);
                // Every other write is retried at once through another
                // origin process, as after a lost answer: same version.
                if i % 2 == 0 {
                    let other = &links[(writer + i + 1) % links.len()];
                    let again = put_as(other, "hot", Bytes::from(value.clone()), id).await;
                    assert_eq!(written(&again), version, "a retry was applied anew");
                }
                acked.push((version, value));
            }
            acked
        }));
    }
    let (highest, last) = &racing::highest_of(writers, 100).await;
    for link in &links {
        let got = get(link, "app", "hot").await;
        let Body::Entry(entry) = &got.body else {
            panic!("{got:?}")
        };
        assert_eq!(
            (entry.version, value(&got)),
            (*highest, Bytes::from(last.clone()))
        );
    }
}

/// A value whose every byte is derived from its id, so a torn or mixed
/// object would show.
fn patterned(id: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| id.wrapping_mul(31).wrapping_add((i % 251) as u8))
        .collect::<Vec<u8>>()
        .into()
}

/// Writes 2 MiB values to one key through an origin until the origin is
/// killed, `rounds` times (restarting it each time): every read after a
/// restart is one whole value that was written, never a damaged one.
async fn killed_mid_write(rounds: u8, store_args: impl Fn() -> Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let certs = dir.path().join("certs");
    let len = 2 * 1024 * 1024;
    let values: HashMap<u8, Bytes> = (0..=u8::MAX).map(|id| (id, patterned(id, len))).collect();
    let mut next_id = 0u8;
    for round in 0..rounds {
        let origin = OriginProcess::start(&certs, &store_args());
        let to = link(&tls, origin.addr);
        // Writes go on in the background until the process dies.
        let first = next_id;
        let writer = {
            let to = to.clone();
            let values = values.clone();
            tokio::spawn(async move {
                let mut id = first;
                loop {
                    let response = put_as(&to, "big", values[&id].clone(), WriteId::random()).await;
                    if response.status != Status::Ok {
                        break;
                    }
                    id = id.wrapping_add(1);
                }
            })
        };
        // Kill it a moment into a write: after a few writes have gone by.
        let wait = Duration::from_millis(150 + 70 * u64::from(round));
        tokio::time::sleep(wait).await;
        origin.kill();
        let _ = writer.await;
        next_id = next_id.wrapping_add(64);

        let restarted = OriginProcess::start(&certs, &store_args());
        let got = get(&link(&tls, restarted.addr), "app", "big").await;
        match got.status {
            Status::Ok => {
                let read = value(&got);
                assert!(
                    values.values().any(|v| *v == read),
                    "round {round}: a value that was never written ({} bytes)",
                    read.len()
                );
            }
            // Killed before the first write of the first round landed.
            Status::NotFound if round == 0 => {}
            other => panic!("round {round}: {other} {got:?}"),
        }
        restarted.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_killed_mid_write_leaves_the_old_or_the_new_object_on_local_files() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_path_buf();
    killed_mid_write(4, || file_args(&path)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_killed_mid_write_leaves_the_old_or_the_new_object_on_s3() {
    let s3 = MotoS3::start("killed");
    killed_mid_write(3, || s3_args(&s3)).await;
}

#[test]
fn a_second_origin_process_on_a_local_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let certs = dir.path().join("certs");
    let first = OriginProcess::start(&certs, &file_args(&data));
    let mut second = Command::new(env!("CARGO_BIN_EXE_kv-origin"));
    second
        .args(["--listen", "127.0.0.1:0"])
        .arg("--dev-certs")
        .arg(&certs)
        .args(file_args(&data));
    assert_refused(second, "in use by another origin process");
    // Killed, the first releases the directory (the lock dies with it).
    first.kill();
    OriginProcess::start(&certs, &file_args(&data)).kill();
}

/// A store that ignores `If-Match` on a delete would delete unconditionally,
/// which the sweep must never do on a shared bucket: the origin finds out
/// (s3s-fs is such a store) and keeps old tombstones there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tombstones_stay_on_a_store_that_ignores_conditional_deletes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use kv_origin::{Origin, OriginOptions, Store, SweepOptions};
    use kv_runtime::deadline::Deadline;

    const DAY_MILLIS: u64 = 86_400_000;
    let s3 = support::S3Server::start("ignores");
    let store = Store::from_config(&s3.store("ignores", "kv")).unwrap();
    let deadline = Deadline::after(Duration::from_secs(10));
    assert!(!store.probe_conditional_delete(&deadline).await);
    let now = Arc::new(AtomicU64::new(100 * DAY_MILLIS));
    let wall = now.clone();
    let origin = Origin::with_options(
        store,
        &kv_runtime::metrics::Metrics::new(),
        OriginOptions {
            wall_clock: Some(Arc::new(move || wall.load(Ordering::Relaxed))),
            ..OriginOptions::default()
        },
    );
    origin
        .delete(
            &kv_proto::DeleteRequest::new(ns("app"), key("gone")),
            &deadline,
        )
        .await
        .unwrap();
    now.fetch_add(2 * DAY_MILLIS, Ordering::Relaxed);
    let options = SweepOptions {
        max_per_sec: 10_000,
        ..SweepOptions::default()
    };
    let report = origin.sweep(&options).await.unwrap();
    assert_eq!(
        (report.examined, report.removed, report.kept),
        (1, 0, 1),
        "{report:?}"
    );
}
