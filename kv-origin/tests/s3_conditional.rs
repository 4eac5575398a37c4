//! The S3 server the tests run against makes conditional PUT atomic, as real
//! S3 does: of many writers racing one `If-None-Match: *` or one
//! `If-Match: <etag>`, exactly one wins. The origin's compare-and-swap rests
//! on that, so a server where two writers can both win would let tests pass
//! that should fail. Driven through `object_store`, as the origin drives it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/moto.rs"]
mod moto;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use object_store::path::Path;
use object_store::{
    Error, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult, RetryConfig,
    UpdateVersion,
};
use tokio::sync::Barrier;

use moto::MotoS3;

/// Writers racing in each round.
const WRITERS: usize = 32;
/// Rounds of each race, with small values.
const ROUNDS: usize = 20;
/// Rounds with large values.
const LARGE_ROUNDS: usize = 3;
/// Large enough that moto, building the new object, spills it to a temporary
/// file (past `MOTO_S3_DEFAULT_KEY_BUFFER_SIZE`, 5 MiB - 1 KiB). That write
/// releases Python's GIL between moto's precondition check and its store, so
/// without the server's lock these rounds do fail (2 or 3 winners, or a 500,
/// from the first round on, in our runs). Below that size the gap is a few
/// bytecodes: with 1 MiB values an unlocked moto passed every round here.
const LARGE: usize = 6 << 20;

/// A client of the server that never retries: each call is one request,
/// so every outcome the tests count is the server's own decision.
fn client(server: &MotoS3) -> Arc<dyn ObjectStore> {
    let no_retries = RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    };
    Arc::new(server.s3_builder().with_retry(no_retries).build().unwrap())
}

/// The value writer `writer` puts in `round`: distinct for every writer and
/// round, padded to `size` bytes.
fn value(round: usize, writer: usize, size: usize) -> Bytes {
    let mut v = format!("round {round} writer {writer};").into_bytes();
    v.resize(size.max(v.len()), b'a' + (writer % 26) as u8);
    Bytes::from(v)
}

/// Puts every value to `path` with `mode`, all at once (the requests leave
/// together, after a barrier), and returns each writer's result.
async fn race(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    mode: &PutMode,
    values: &[Bytes],
) -> Vec<Result<PutResult, Error>> {
    let barrier = Arc::new(Barrier::new(values.len()));
    let writers = values.iter().map(|v| {
        let (store, path, barrier) = (Arc::clone(store), path.clone(), Arc::clone(&barrier));
        let (payload, opts) = (PutPayload::from(v.clone()), PutOptions::from(mode.clone()));
        tokio::spawn(async move {
            barrier.wait().await;
            store.put_opts(&path, payload, opts).await
        })
    });
    join_all(writers)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect()
}

/// Checks that exactly one writer won and every other lost as `lost` allows,
/// and that the stored object is the winner's. Returns the winner's index.
async fn one_winner(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    values: &[Bytes],
    results: &[Result<PutResult, Error>],
    lost: fn(&Error) -> bool,
    round: usize,
) -> usize {
    let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "round {round} of {path}: {} writers won, not 1: {winners:?}",
        winners.len()
    );
    for (i, result) in results.iter().enumerate() {
        if let Err(e) = result {
            assert!(lost(e), "round {round} of {path}: writer {i} failed: {e:?}");
        }
    }
    let winner = winners[0];
    let stored = store.get(path).await.unwrap();
    let e_tag = stored.meta.e_tag.clone();
    let body = stored.bytes().await.unwrap();
    assert!(
        body == values[winner],
        "round {round} of {path}: the stored value is not the winner's ({winner})"
    );
    let won = results[winner].as_ref().unwrap();
    assert!(won.e_tag.is_some(), "the winning put reported no ETag");
    assert_eq!(
        won.e_tag, e_tag,
        "round {round}: the winner's ETag is not the stored one"
    );
    winner
}

fn already_exists(e: &Error) -> bool {
    // object_store turns S3's 412 to `If-None-Match: *` into AlreadyExists.
    matches!(e, Error::AlreadyExists { .. } | Error::Precondition { .. })
}

fn precondition(e: &Error) -> bool {
    matches!(e, Error::Precondition { .. })
}

/// Rounds of writers racing to create a fresh key under `prefix`.
async fn create_rounds(store: &Arc<dyn ObjectStore>, prefix: &str, rounds: usize, size: usize) {
    for round in 0..rounds {
        let path = Path::from(format!("{prefix}/key-{round}"));
        let values: Vec<Bytes> = (0..WRITERS).map(|w| value(round, w, size)).collect();
        let results = race(store, &path, &PutMode::Create, &values).await;
        one_winner(store, &path, &values, &results, already_exists, round).await;
    }
}

/// Rounds of writers racing to update `path` from the version each round
/// starts with (a HEAD first reads its ETag).
async fn update_rounds(store: &Arc<dyn ObjectStore>, path: &Path, rounds: usize, size: usize) {
    store
        .put(path, value(usize::MAX, 0, size).into())
        .await
        .unwrap();
    for round in 0..rounds {
        let meta = store.head(path).await.unwrap();
        assert!(meta.e_tag.is_some(), "HEAD of {path} gave no ETag");
        let mode = PutMode::Update(UpdateVersion {
            e_tag: meta.e_tag,
            version: meta.version,
        });
        let values: Vec<Bytes> = (0..WRITERS).map(|w| value(round, w, size)).collect();
        let results = race(store, path, &mode, &values).await;
        one_winner(store, path, &values, &results, precondition, round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_of_one_key_have_one_winner() {
    let server = MotoS3::start("tierkv-create-race");
    create_rounds(&client(&server), "create", ROUNDS, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_of_large_values_have_one_winner() {
    let server = MotoS3::start("tierkv-large-create-race");
    create_rounds(&client(&server), "large-create", LARGE_ROUNDS, LARGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_of_one_version_have_one_winner() {
    let server = MotoS3::start("tierkv-update-race");
    let store = client(&server);
    update_rounds(&store, &Path::from("update/key"), ROUNDS, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_of_large_values_have_one_winner() {
    let server = MotoS3::start("tierkv-large-update-race");
    let store = client(&server);
    update_rounds(&store, &Path::from("large/key"), LARGE_ROUNDS, LARGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_puts_that_cannot_hold_fail() {
    let server = MotoS3::start("tierkv-conditions");
    let store = client(&server);

    // An update of an object that does not exist: S3 answers 404, which
    // object_store reports as a failed precondition.
    let missing = Path::from("cond/missing");
    let any_e_tag = UpdateVersion {
        e_tag: Some("\"d41d8cd98f00b204e9800998ecf8427e\"".into()),
        version: None,
    };
    let err = store
        .put_opts(&missing, "x".into(), PutMode::Update(any_e_tag).into())
        .await
        .unwrap_err();
    assert!(precondition(&err), "update of a missing object: {err:?}");
    let err = store.head(&missing).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    // A create of an object that exists, and an update from a stale version.
    let path = Path::from("cond/present");
    let first = store
        .put_opts(&path, "first".into(), PutMode::Create.into())
        .await
        .unwrap();
    let err = store
        .put_opts(&path, "second".into(), PutMode::Create.into())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    let second = store
        .put_opts(
            &path,
            "second".into(),
            PutMode::Update(first.clone().into()).into(),
        )
        .await
        .unwrap();
    assert_ne!(second.e_tag, first.e_tag);
    let err = store
        .put_opts(&path, "third".into(), PutMode::Update(first.into()).into())
        .await
        .unwrap_err();
    assert!(precondition(&err), "update from a stale ETag: {err:?}");
    let body = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(body, "second");
}

/// The sweep's delete of an old tombstone, on a bucket other origin
/// processes write: S3's `If-Match` delete removes the object only if it is
/// still the version read, so a write that lands in between survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_delete_removes_only_the_version_it_read() {
    use kv_origin::{DeleteOutcome, Store};
    use kv_runtime::deadline::Deadline;
    let s3 = MotoS3::start("deletes");
    let store = Store::from_config(&s3.store_config()).unwrap();
    let path = object_store::path::Path::from("conditional/delete");
    let deadline = || Deadline::after(Duration::from_secs(10));
    let raw = s3.s3();
    raw.put(&path, PutPayload::from_static(b"tombstone"))
        .await
        .unwrap();
    let (_, read) = store
        .get_head(&path, 64, &deadline())
        .await
        .unwrap()
        .unwrap();

    // Another writer replaces the object after it was read: the delete is refused.
    raw.put(&path, PutPayload::from_static(b"a newer write"))
        .await
        .unwrap();
    let outcome = store
        .delete_if_unchanged(&path, &read, &deadline())
        .await
        .unwrap();
    assert_eq!(outcome, DeleteOutcome::Changed);
    let kept = raw.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&kept[..], b"a newer write");

    // Unchanged since it was read: deleted.
    let (_, current) = store
        .get_head(&path, 64, &deadline())
        .await
        .unwrap()
        .unwrap();
    let outcome = store
        .delete_if_unchanged(&path, &current, &deadline())
        .await
        .unwrap();
    assert_eq!(outcome, DeleteOutcome::Deleted);
    assert!(matches!(
        raw.get(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
    // Already gone: nothing to delete.
    let outcome = store
        .delete_if_unchanged(&path, &current, &deadline())
        .await
        .unwrap();
    assert_eq!(outcome, DeleteOutcome::Changed);
}

/// The whole sweep on S3: an old tombstone goes, a recent one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_old_tombstones_from_a_shared_bucket() {
    use std::sync::atomic::{AtomicU64, Ordering};

    use kv_origin::{Found, Origin, OriginOptions, Store, SweepOptions};
    use kv_proto::{DeleteRequest, GetRequest, Key, Namespace};
    use kv_runtime::deadline::Deadline;

    const DAY_MILLIS: u64 = 86_400_000;
    let s3 = MotoS3::start("sweep");
    let now = Arc::new(AtomicU64::new(100 * DAY_MILLIS));
    let wall = now.clone();
    let origin = Origin::with_options(
        Store::from_config(&s3.store_config()).unwrap(),
        &kv_runtime::metrics::Metrics::new(),
        OriginOptions {
            wall_clock: Some(Arc::new(move || wall.load(Ordering::Relaxed))),
            ..OriginOptions::default()
        },
    );
    let deadline = || Deadline::after(Duration::from_secs(10));
    let ns = Namespace::new("app").unwrap();
    let delete = |k: &str| DeleteRequest::new(ns.clone(), Key::new(k).unwrap());
    let read = |k: &str| GetRequest::new(ns.clone(), Key::new(k).unwrap());
    origin.delete(&delete("old"), &deadline()).await.unwrap();
    now.fetch_add(2 * DAY_MILLIS, Ordering::Relaxed);
    let recent = origin.delete(&delete("recent"), &deadline()).await.unwrap();

    let options = SweepOptions {
        max_per_sec: 10_000,
        ..SweepOptions::default()
    };
    let report = origin.sweep(&options).await.unwrap();
    assert_eq!(
        (report.examined, report.removed, report.kept),
        (2, 1, 0),
        "{report:?}"
    );
    assert_eq!(
        origin.get(&read("old"), &deadline()).await.unwrap(),
        Found::Absent { version: None }
    );
    assert_eq!(
        origin.get(&read("recent"), &deadline()).await.unwrap(),
        Found::Absent {
            version: Some(recent.version)
        }
    );
}
