//! kv-client against a running stack (origin, regional node and edge on loopback).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::TryStreamExt;
use kv_client::{Client, Error, ListOptions, PutOptions};
use kv_edge::EdgeConfig;
use kv_edge::dev::{DevOptions, DevStack};
use serde_json::json;

async fn start() -> (tempfile::TempDir, DevStack, Client) {
    let dir = tempfile::tempdir().unwrap();
    let options = DevOptions {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        edge: EdgeConfig {
            min_expiration_ttl_secs: 1,
            ..EdgeConfig::default()
        },
    };
    let stack = DevStack::start(options).await.unwrap();
    let client = Client::new(&format!("http://{}", stack.http)).unwrap();
    (dir, stack, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_with_metadata_and_tier() {
    let (_dir, stack, kv) = start().await;
    let version = kv.put("app", "a/b ü", "hello").await.unwrap();
    assert_eq!(
        kv.get("app", "a/b ü").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    let found = kv.get_with_metadata("app", "a/b ü").await.unwrap().unwrap();
    assert_eq!(
        (found.version, found.tier.as_str(), found.metadata),
        (version, "edge", None)
    );

    let options = PutOptions::new()
        .expiration_ttl(3600)
        .metadata(json!({"plan": "pro", "n": 1}));
    let v2 = kv
        .put_with("app", "a/b ü", "again", &options)
        .await
        .unwrap();
    assert!(v2 > version);
    let found = kv.get_with_metadata("app", "a/b ü").await.unwrap().unwrap();
    assert_eq!(found.metadata, Some(json!({"plan": "pro", "n": 1})));
    assert!(found.expiration.is_some());
    assert_eq!(&found.value[..], b"again");

    kv.delete("app", "a/b ü").await.unwrap();
    assert_eq!(kv.get("app", "a/b ü").await.unwrap(), None);
    kv.delete("app", "never-existed").await.unwrap();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_one_page_and_every_page() {
    let (_dir, stack, kv) = start().await;
    for i in 0..7 {
        kv.put_with(
            "app",
            &format!("p/{i}"),
            "x",
            &PutOptions::new().metadata(json!(i)),
        )
        .await
        .unwrap();
    }
    kv.put("app", "q", "x").await.unwrap();
    let page = kv
        .list(
            "app",
            &ListOptions {
                limit: Some(3),
                ..ListOptions::prefix("p/")
            },
        )
        .await
        .unwrap();
    assert_eq!(page.keys.len(), 3);
    assert!(!page.list_complete);
    assert_eq!(page.keys[0].metadata, Some(json!(0)));
    let next = ListOptions {
        cursor: page.cursor.clone(),
        limit: Some(3),
        ..ListOptions::prefix("p/")
    };
    assert_eq!(kv.list("app", &next).await.unwrap().keys[0].name, "p/3");
    let all: Vec<_> = kv.list_all("app", "p/").try_collect().await.unwrap();
    let names: Vec<_> = all.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["p/0", "p/1", "p/2", "p/3", "p/4", "p/5", "p/6"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed() {
    let (_dir, stack, kv) = start().await;
    assert!(matches!(Client::new("ftp://x"), Err(Error::InvalidUrl(_))));
    match kv.get("bad.ns", "k").await {
        Err(Error::Api {
            status: 400, code, ..
        }) => assert_eq!(code, "bad_request"),
        other => panic!("{other:?}"),
    }
    match kv.put("app", &"k".repeat(513), "x").await {
        Err(Error::Api { status: 414, .. }) => {}
        other => panic!("{other:?}"),
    }
    match kv
        .put_with(
            "app",
            "k",
            "x",
            &PutOptions::new().metadata(json!("m".repeat(2000))),
        )
        .await
    {
        Err(e @ Error::Api { status: 400, .. }) => assert!(!e.is_retryable()),
        other => panic!("{other:?}"),
    }
    match kv
        .list(
            "app",
            &ListOptions {
                cursor: Some("forged".into()),
                ..ListOptions::default()
            },
        )
        .await
    {
        Err(Error::Api { status: 400, .. }) => {}
        other => panic!("{other:?}"),
    }
    let http = stack.http;
    stack.stop().await;
    // Nothing listens any more.
    let gone = Client::new(&format!("http://{http}")).unwrap();
    let err = gone.get("app", "k").await.unwrap_err();
    assert!(
        matches!(err, Error::Transport(_)) && err.is_retryable(),
        "{err:?}"
    );
}
