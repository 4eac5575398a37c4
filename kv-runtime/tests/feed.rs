//! The change feed over a real QUIC link on loopback: a subscriber task
//! follows a server's publisher, in order, resumes where it left off after
//! the link breaks, and is told of a gap when it cannot. Malformed
//! subscriptions, and subscriptions to a node without a feed, get typed
//! errors on their stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv_proto::{Change, FrameKind, Key, Namespace, Request, Response, Status, Tier};
use kv_runtime::feed::{FeedSink, Publisher, follow};
use kv_runtime::metrics::Metrics;
use kv_runtime::quic::frames::read_frame_body;
use kv_runtime::quic::{Connector, Handler, Link, QuicServer, ServerOptions, TransportOptions};
use kv_runtime::tls::TlsConfig;
use tokio_util::sync::CancellationToken;

struct NotFound;

impl Handler for NotFound {
    async fn handle(&self, request: Request) -> Response {
        Response::not_found(request.id, Tier::Origin)
    }
}

/// What a subscriber heard: change versions, and `0` for each resync.
#[derive(Default)]
struct Heard(Mutex<Vec<u64>>);

impl FeedSink for Heard {
    async fn apply(&self, change: Change) -> bool {
        self.0.lock().unwrap().push(change.version);
        true
    }

    fn resync(&self) {
        self.0.lock().unwrap().push(0);
    }
}

impl Heard {
    fn now(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
}

fn tls(dir: &std::path::Path) -> TlsConfig {
    TlsConfig {
        dev_certs: Some(dir.join("certs")),
        ..TlsConfig::default()
    }
}

fn change(version: u64) -> Change {
    Change {
        namespace: Namespace::new("ns").unwrap(),
        key: Key::new("k").unwrap(),
        version,
        tombstone: false,
        expiration: None,
        commit_ms: kv_runtime::time::unix_millis(),
        value: None,
    }
}

/// A running server; [`Running::stop`] shuts it down.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// A server at `addr` (0: any port) publishing `feed`. A port a stopped
/// server held is waited for until the old endpoint has let it go.
async fn serve(
    tls: &TlsConfig,
    addr: SocketAddr,
    feed: Option<Arc<Publisher>>,
) -> (SocketAddr, Running) {
    let mut options = ServerOptions::new("origin", Metrics::new());
    options.feed = feed;
    let identity = tls.load().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let server = loop {
        match QuicServer::bind(addr, &identity, options.clone()) {
            Ok(server) => break server,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "port still held; binding again");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    };
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(Arc::new(NotFound), async {
        let _ = stopped.await;
    }));
    (addr, Running { stop, task })
}

fn link(tls: &TlsConfig, addr: SocketAddr) -> Link {
    let connector = Connector::new(&tls.load().unwrap(), TransportOptions::default()).unwrap();
    connector.link(addr, "localhost", Duration::from_secs(2))
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_follows_in_order_resumes_after_a_break_and_hears_of_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let metrics = Metrics::new();
    let feed = Publisher::new(1024, metrics.feed("origin"));
    let (addr, stop) = serve(&tls, "127.0.0.1:0".parse().unwrap(), Some(feed.clone())).await;
    let heard = Arc::new(Heard::default());
    let following = Metrics::new().feed("regional");
    let cancel = CancellationToken::new();
    tokio::spawn(follow(
        link(&tls, addr),
        heard.clone(),
        following.clone(),
        cancel.clone(),
    ));
    // The first subscription has nothing to resume: a gap.
    wait_for("the subscription", || following.connected_count() == 1).await;
    assert_eq!(heard.now(), [0]);
    for v in 1..=3 {
        feed.publish(change(v));
    }
    wait_for("three changes", || heard.now().len() == 4).await;
    assert_eq!(heard.now(), [0, 1, 2, 3]);
    assert_eq!(following.applied.get(), 3);
    assert_eq!(following.lag.get_sample_count(), 3);

    // The server goes and comes back with the same publisher: the
    // subscriber resumes after change 3, and hears of 4 and 5, published
    // while it was away, without a gap.
    stop.stop().await;
    wait_for("the break to be noticed", || {
        following.connected_count() == 0
    })
    .await;
    feed.publish(change(4));
    feed.publish(change(5));
    let (_, stop) = serve(&tls, addr, Some(feed.clone())).await;
    wait_for("changes 4 and 5", || heard.now().len() == 6).await;
    assert_eq!(heard.now(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(
        following.gaps.get(),
        1,
        "only the first subscription was a gap"
    );

    // A new publisher (a restarted process) has a new epoch: a gap.
    stop.stop().await;
    wait_for("the second break", || following.connected_count() == 0).await;
    let restarted = Publisher::new(1024, metrics.feed("origin"));
    let (_, _stop) = serve(&tls, addr, Some(restarted.clone())).await;
    wait_for("the new epoch's gap", || heard.now().len() == 7).await;
    restarted.publish(change(6));
    wait_for("change 6", || heard.now().len() == 8).await;
    assert_eq!(heard.now(), [0, 1, 2, 3, 4, 5, 0, 6]);
    assert_eq!(following.gaps.get(), 2);
    cancel.cancel();
}

/// Sends `bytes` on a new stream of `link` and reads the response frame.
async fn exchange(link: &Link, bytes: &[u8]) -> Response {
    let (mut send, mut recv) = link.open_stream().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    let body = read_frame_body(&mut recv, FrameKind::Response)
        .await
        .unwrap();
    kv_proto::decode_response(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_subscription_or_one_to_a_node_without_a_feed_gets_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let feed = Publisher::new(16, Metrics::new().feed("origin"));
    let (addr, _stop) = serve(&tls, "127.0.0.1:0".parse().unwrap(), Some(feed)).await;
    let to_feed = link(&tls, addr);
    // A subscribe frame with an unknown flag bit.
    let mut bad_flags = kv_proto::FrameHeader {
        kind: FrameKind::Subscribe,
        body_len: 1,
    }
    .to_bytes()
    .to_vec();
    bad_flags.push(0x80);
    let answer = exchange(&to_feed, &bad_flags).await;
    assert_eq!(answer.status, Status::BadRequest, "{answer:?}");
    // A subscribe frame cut short inside its cursor.
    let mut truncated = kv_proto::FrameHeader {
        kind: FrameKind::Subscribe,
        body_len: 5,
    }
    .to_bytes()
    .to_vec();
    truncated.extend_from_slice(&[1, 0, 0, 0, 0]);
    let answer = exchange(&to_feed, &truncated).await;
    assert_eq!(answer.status, Status::BadRequest, "{answer:?}");
    // A feed frame is not a request.
    let mut wrong_kind = kv_proto::FrameHeader {
        kind: FrameKind::Feed,
        body_len: 1,
    }
    .to_bytes()
    .to_vec();
    wrong_kind.push(3);
    let answer = exchange(&to_feed, &wrong_kind).await;
    assert_eq!(answer.status, Status::BadRequest, "{answer:?}");
    // The connection still serves requests.
    let ok = to_feed
        .request(&Request::new(kv_proto::Op::Get(kv_proto::GetRequest::new(
            Namespace::new("ns").unwrap(),
            Key::new("k").unwrap(),
        ))))
        .await
        .unwrap();
    assert_eq!(ok.status, Status::NotFound);

    // A node that publishes nothing says so.
    let (plain, _stop) = serve(&tls, "127.0.0.1:0".parse().unwrap(), None).await;
    let mut subscribe = bytes::BytesMut::new();
    kv_proto::encode_frame(
        &kv_proto::Frame::Subscribe(kv_proto::Subscribe::default()),
        &mut subscribe,
    );
    let answer = exchange(&link(&tls, plain), &subscribe).await;
    assert_eq!(answer.status, Status::BadRequest, "{answer:?}");
    assert!(
        answer.message().unwrap().contains("no change feed"),
        "{answer:?}"
    );
}
