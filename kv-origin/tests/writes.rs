//! The write path's guarantees, on the origin itself: retried writes apply
//! once, versions strictly increase per key whatever the clock does and
//! whichever origin process writes, deletes leave tombstones that no late
//! write gets under, and nothing is applied after its deadline.
//!
//! Several `Origin`s over one in-memory store stand for several origin
//! processes over one bucket (the in-memory store compares and swaps, as
//! S3 does); `multi_origin.rs` does the same with real processes on a real
//! S3-compatible server.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[path = "support/late_writes.rs"]
mod late_writes;
#[path = "support/racing.rs"]
mod racing;

use bytes::Bytes;
use kv_origin::{Found, Origin, OriginError, OriginOptions, Store, StoreConfig, SweepOptions};
use kv_proto::{DeleteRequest, GetRequest, Key, ListRequest, Namespace, PutRequest, WriteId};
use kv_runtime::deadline::Deadline;
use kv_runtime::metrics::Metrics;
use late_writes::LateWrites;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;

fn ns() -> Namespace {
    Namespace::new("app").unwrap()
}

fn key(name: &str) -> Key {
    Key::new(name).unwrap()
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

/// A wall clock the test moves, in unix milliseconds.
fn clock(at_millis: u64) -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(at_millis))
}

/// An origin process over `inner`, reading time from `now`.
fn origin(inner: Arc<dyn ObjectStore>, now: &Arc<AtomicU64>) -> Origin {
    origin_with_window(inner, now, Duration::from_secs(3600))
}

fn origin_with_window(
    inner: Arc<dyn ObjectStore>,
    now: &Arc<AtomicU64>,
    write_id_window: Duration,
) -> Origin {
    let config = StoreConfig {
        timeout_ms: 5_000,
        retries: 2,
        ..StoreConfig::default()
    };
    let store = Store::new(inner, Path::from("kv"), true, &config);
    let now = now.clone();
    Origin::with_options(
        store,
        &Metrics::new(),
        OriginOptions {
            write_id_window,
            wall_clock: Some(Arc::new(move || now.load(Ordering::Relaxed))),
            ..OriginOptions::default()
        },
    )
}

fn put_request(k: &str, value: &str, id: WriteId) -> PutRequest {
    let mut put = PutRequest::new(ns(), key(k), Bytes::from(value.to_string())).unwrap();
    put.write_id = id;
    put
}

fn delete_request(k: &str, id: WriteId) -> DeleteRequest {
    DeleteRequest {
        write_id: id,
        ..DeleteRequest::new(ns(), key(k))
    }
}

async fn read(origin: &Origin, k: &str) -> Found {
    origin
        .get(&GetRequest::new(ns(), key(k)), &deadline())
        .await
        .unwrap()
}

fn value_of(found: &Found) -> (&str, u64) {
    match found {
        Found::Value(entry) => (std::str::from_utf8(&entry.value).unwrap(), entry.version),
        absent => panic!("no value: {absent:?}"),
    }
}

#[tokio::test]
async fn a_retried_write_is_applied_once_and_answered_with_its_first_version() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let now = clock(1_000_000);
    let first = origin(store.clone(), &now);
    let second = origin(store.clone(), &now);
    let id = WriteId::random();

    let applied = first
        .put(&put_request("k", "one", id), &deadline())
        .await
        .unwrap();
    assert!(!applied.replayed);
    let version = applied.version;
    // The retry carries the same id, through another origin process; even
    // a retry with another body is not applied twice. Both say they replay.
    let retried = second
        .put(&put_request("k", "one", id), &deadline())
        .await
        .unwrap();
    let confused = first
        .put(&put_request("k", "two", id), &deadline())
        .await
        .unwrap();
    assert_eq!((retried.version, confused.version), (version, version));
    assert!(retried.replayed && confused.replayed);
    assert_eq!(value_of(&read(&second, "k").await), ("one", version));

    // A new write id is a new write.
    let next = second
        .put(&put_request("k", "three", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    assert!(next > version);
    // An old retry arriving now still gets its own version, and changes nothing.
    let late = first
        .put(&put_request("k", "one", id), &deadline())
        .await
        .unwrap()
        .version;
    assert_eq!(late, version);
    assert_eq!(value_of(&read(&first, "k").await), ("three", next));

    // Deletes too.
    let delete_id = WriteId::random();
    let deleted = first
        .delete(&delete_request("k", delete_id), &deadline())
        .await
        .unwrap()
        .version;
    let again = second
        .delete(&delete_request("k", delete_id), &deadline())
        .await
        .unwrap()
        .version;
    assert_eq!(again, deleted);
    assert!(deleted > next);
}

#[tokio::test]
async fn versions_strictly_increase_across_restarts_clock_steps_and_deletes() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let now = clock(10_000_000);
    let before_restart = origin(store.clone(), &now);
    let v1 = before_restart
        .put(&put_request("k", "a", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    drop(before_restart);

    // A restart with the clock 10 000 s behind: the new process has seen
    // nothing, but a write reads the stored version first.
    now.store(100_000, Ordering::Relaxed);
    let restarted = origin(store.clone(), &now);
    let v2 = restarted
        .put(&put_request("k", "b", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    assert!(v2 > v1, "{v2} after {v1}");
    let v3 = restarted
        .delete(&delete_request("k", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    assert!(v3 > v2, "{v3} after {v2}");
    assert_eq!(
        read(&restarted, "k").await,
        Found::Absent { version: Some(v3) },
        "a deleted key reads as absent at its delete's version"
    );

    // Another restart, the clock further back still: the tombstone keeps
    // the version, so a new write goes above the delete.
    now.store(1_000, Ordering::Relaxed);
    let again = origin(store.clone(), &now);
    let v4 = again
        .put(&put_request("k", "c", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    assert!(v4 > v3, "{v4} after the delete's {v3}");
    assert_eq!(value_of(&read(&again, "k").await), ("c", v4));

    // When the clock runs ahead again, versions follow it.
    now.store(20_000_000, Ordering::Relaxed);
    let v5 = again
        .put(&put_request("k", "d", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    assert!(v5 >= 20_000_000 << 16, "{v5} does not follow the clock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_through_three_origins_never_share_a_version_and_the_last_one_stays() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let now = clock(5_000_000);
    let origins: Vec<_> = (0..3)
        .map(|_| Arc::new(origin(store.clone(), &now)))
        .collect();
    let mut writers = Vec::new();
    for writer in 0..20 {
        let origin = origins[writer % origins.len()].clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10 {
                let value = format!("w{writer}-{i}");
                let version = origin
                    .put(&put_request("hot", &value, WriteId::random()), &deadline())
                    .await
                    .unwrap()
                    .version;
                acked.push((version, value));
            }
            acked
        }));
    }
    let (highest, last_value) = &racing::highest_of(writers, 200).await;
    assert_eq!(
        value_of(&read(&origins[0], "hot").await),
        (last_value.as_str(), *highest),
        "the stored object is the highest acknowledged write"
    );
}

#[tokio::test]
async fn a_write_whose_deadline_passed_is_not_applied() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let origin = origin(store, &clock(1_000_000));
    let expired = Deadline::after(Duration::ZERO);
    let result = origin
        .put(&put_request("k", "late", WriteId::random()), &expired)
        .await;
    assert!(matches!(result, Err(OriginError::Timeout(_))), "{result:?}");
    assert_eq!(read(&origin, "k").await, Found::Absent { version: None });
    let result = origin
        .delete(&delete_request("k", WriteId::random()), &expired)
        .await;
    assert!(matches!(result, Err(OriginError::Timeout(_))), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_after_a_timed_out_put_stays_deleted_when_the_put_lands_late() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let now = clock(1_000_000);
    let steady = origin(bucket.clone(), &now);
    let first = steady
        .put(&put_request("k", "before", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;

    // A second origin process whose store writes arrive 600 ms late.
    let late = LateWrites::new(bucket.clone(), Duration::from_millis(600));
    let (arrived, landed) = (late.arrived.clone(), late.landed.clone());
    let slow: Arc<dyn ObjectStore> = Arc::new(late);
    let lagging = origin(slow, &now);
    let put_id = WriteId::random();
    let outcome = lagging
        .put(
            &put_request("k", "resurrected", put_id),
            &Deadline::after(Duration::from_millis(200)),
        )
        .await;
    // Its caller hears that the outcome is unknown: the write was sent.
    assert!(
        matches!(outcome, Err(OriginError::OutcomeUnknown(_))),
        "{outcome:?}"
    );
    // Then the caller deletes the key (through the steady origin)...
    let deleted = steady
        .delete(&delete_request("k", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    assert!(deleted > first);
    // ...and the held-back put reaches the store after the delete. It was
    // conditional on the object it read, which the delete replaced, so it
    // is refused: the key stays deleted.
    tokio::time::timeout(Duration::from_secs(10), async {
        while arrived.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the held-back put reached the store");
    assert_eq!(landed.load(Ordering::SeqCst), 0, "the late put was applied");
    assert_eq!(
        read(&steady, "k").await,
        Found::Absent {
            version: Some(deleted)
        }
    );
}

#[tokio::test]
async fn deletes_leave_tombstones_that_reads_and_lists_do_not_show() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let origin = origin(store, &clock(1_000_000));
    for k in ["a", "b", "c"] {
        origin
            .put(&put_request(k, k, WriteId::random()), &deadline())
            .await
            .unwrap();
    }
    let deleted = origin
        .delete(&delete_request("b", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    // Deleting a key that never existed also records its version.
    let never = origin
        .delete(&delete_request("never", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    assert!(never > deleted);
    assert_eq!(
        read(&origin, "b").await,
        Found::Absent {
            version: Some(deleted)
        }
    );
    let page = origin
        .list(&ListRequest::new(ns(), ""), &deadline())
        .await
        .unwrap();
    let names: Vec<_> = page.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
}

#[tokio::test]
async fn write_ids_are_forgotten_after_their_window() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let now = clock(1_000_000);
    let origin = origin_with_window(store, &now, Duration::from_secs(60));
    let id = WriteId::random();
    let version = origin
        .put(&put_request("k", "a", id), &deadline())
        .await
        .unwrap()
        .version;
    now.fetch_add(30_000, Ordering::Relaxed);
    origin
        .put(&put_request("k", "b", WriteId::random()), &deadline())
        .await
        .unwrap();
    // Within the window, a retry is recognised.
    assert_eq!(
        origin
            .put(&put_request("k", "a", id), &deadline())
            .await
            .unwrap()
            .version,
        version
    );
    // Past it (and after another write pruned the log), the id is a new write.
    now.fetch_add(61_000, Ordering::Relaxed);
    origin
        .put(&put_request("k", "c", WriteId::random()), &deadline())
        .await
        .unwrap();
    let again = origin
        .put(&put_request("k", "a", id), &deadline())
        .await
        .unwrap()
        .version;
    assert!(
        again > version,
        "a write past its id's window is applied anew"
    );
}

#[test]
fn a_second_origin_on_a_local_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        url: format!("file://{}", dir.path().display()),
        ..StoreConfig::default()
    };
    let first = Store::from_config(&config).unwrap();
    assert!(!first.compares_and_swaps());
    let second = Store::from_config(&config).unwrap_err().to_string();
    assert!(
        second.contains("in use by another origin process"),
        "{second}"
    );
    // Once the first is gone, the directory is free again.
    drop(first);
    Store::from_config(&config).unwrap();
}

fn sweep_options() -> SweepOptions {
    SweepOptions {
        retention: Duration::from_secs(86_400),
        interval: Duration::from_secs(3_600),
        max_per_sec: 10_000,
        call_timeout: Duration::from_secs(5),
    }
}

const DAY_MILLIS: u64 = 86_400_000;

#[tokio::test]
async fn the_sweep_turns_long_expired_values_into_tombstones_and_keeps_tombstones_on_a_shared_store()
 {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let now = clock(100 * DAY_MILLIS);
    let origin = origin(store, &now);
    let now_secs = 100 * 86_400;
    let mut long_expired = put_request("old", "x", WriteId::random());
    long_expired.expiration = Some(now_secs - 2 * 86_400);
    let old = origin
        .put(&long_expired, &deadline())
        .await
        .unwrap()
        .version;
    let mut just_expired = put_request("recent", "x", WriteId::random());
    just_expired.expiration = Some(now_secs - 60);
    origin.put(&just_expired, &deadline()).await.unwrap();
    origin
        .put(&put_request("live", "x", WriteId::random()), &deadline())
        .await
        .unwrap();
    let deleted = origin
        .delete(&delete_request("gone", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;

    // Two days on: the delete is past its retention too.
    now.fetch_add(2 * DAY_MILLIS, Ordering::Relaxed);
    let report = origin.sweep(&sweep_options()).await.unwrap();
    assert_eq!(
        (report.examined, report.expired, report.removed, report.kept),
        (4, 2, 0, 1),
        "{report:?}"
    );
    // The expired value is now a tombstone above its version; the tombstone
    // stays, since another origin process may be writing the key.
    let Found::Absent {
        version: Some(swept),
    } = read(&origin, "old").await
    else {
        panic!("the swept key is not a tombstone")
    };
    assert!(swept > old);
    assert_eq!(
        read(&origin, "gone").await,
        Found::Absent {
            version: Some(deleted)
        }
    );
    assert!(matches!(read(&origin, "live").await, Found::Value(_)));
    // A second pass finds nothing more to do: the tombstones it made are new.
    let again = origin.sweep(&sweep_options()).await.unwrap();
    assert_eq!(
        (again.expired, again.removed, again.kept),
        (0, 0, 1),
        "{again:?}"
    );
}

#[tokio::test]
async fn the_sweep_removes_old_tombstones_where_the_origin_is_the_only_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::from_config(&StoreConfig {
        url: format!("file://{}", dir.path().display()),
        ..StoreConfig::default()
    })
    .unwrap();
    let now = clock(100 * DAY_MILLIS);
    let wall = now.clone();
    let origin = Origin::with_options(
        store,
        &Metrics::new(),
        OriginOptions {
            write_id_window: Duration::from_secs(3600),
            wall_clock: Some(Arc::new(move || wall.load(Ordering::Relaxed))),
            ..OriginOptions::default()
        },
    );
    let deleted = origin
        .delete(&delete_request("gone", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    origin
        .put(&put_request("kept", "x", WriteId::random()), &deadline())
        .await
        .unwrap();
    // Within the retention, the tombstone stays.
    now.fetch_add(DAY_MILLIS / 2, Ordering::Relaxed);
    let report = origin.sweep(&sweep_options()).await.unwrap();
    assert_eq!((report.examined, report.removed), (2, 0), "{report:?}");
    assert_eq!(
        read(&origin, "gone").await,
        Found::Absent {
            version: Some(deleted)
        }
    );
    // Past it, the tombstone goes; the key is simply absent, and writable.
    now.fetch_add(DAY_MILLIS, Ordering::Relaxed);
    let report = origin.sweep(&sweep_options()).await.unwrap();
    assert_eq!((report.examined, report.removed), (2, 1), "{report:?}");
    assert_eq!(read(&origin, "gone").await, Found::Absent { version: None });
    let next = origin
        .put(&put_request("gone", "back", WriteId::random()), &deadline())
        .await
        .unwrap()
        .version;
    assert!(next > deleted, "the clock has moved on since the delete");
}
