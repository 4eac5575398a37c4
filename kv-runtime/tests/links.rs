//! QUIC links with a real server on loopback: concurrency on one connection,
//! and a dead peer noticed through keep-alive and the idle timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kv_proto::{GetRequest, Key, Namespace, Op, Request, Response, Status, Tier};
use kv_runtime::quic::{Connector, Handler, Link, QuicServer, ServerOptions, TransportOptions};
use kv_runtime::tls::TlsConfig;
use tokio::net::UdpSocket;
use tokio::sync::Barrier;

/// Answers every request with not-found, after every `gate` caller has arrived.
struct Gated {
    gate: Barrier,
    seen: AtomicUsize,
}

impl Handler for Gated {
    async fn handle(&self, request: Request) -> Response {
        self.seen.fetch_add(1, Ordering::SeqCst);
        self.gate.wait().await;
        Response::not_found(request.id, Tier::Origin)
    }
}

fn tls(dir: &std::path::Path) -> TlsConfig {
    TlsConfig {
        dev_certs: Some(dir.join("certs")),
        ..TlsConfig::default()
    }
}

fn request() -> Request {
    Request::new(Op::Get(GetRequest::new(
        Namespace::new("ns").unwrap(),
        Key::new("k").unwrap(),
    )))
}

fn start(tls: &TlsConfig, handler: Arc<Gated>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let identity = tls.load().unwrap();
    let server = QuicServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        ServerOptions::new("test", kv_runtime::metrics::Metrics::new()),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(handler, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn client(tls: &TlsConfig, addr: SocketAddr, timeout: Duration) -> Link {
    let connector = Connector::new(&tls.load().unwrap(), TransportOptions::default()).unwrap();
    connector.link(addr, "localhost", timeout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_many_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    const N: usize = 64;
    // The handler releases no request until all N are inside it at once,
    // which can only happen if one connection serves them concurrently.
    let handler = Arc::new(Gated {
        gate: Barrier::new(N),
        seen: AtomicUsize::new(0),
    });
    let (addr, _stop) = start(&tls, handler.clone());
    let link = client(&tls, addr, Duration::from_secs(10));
    let requests = (0..N).map(|_| {
        let link = link.clone();
        tokio::spawn(async move { link.request(&request()).await })
    });
    for answer in futures::future::join_all(requests).await {
        assert_eq!(answer.unwrap().unwrap().status, Status::NotFound);
    }
    assert_eq!(handler.seen.load(Ordering::SeqCst), N);
    assert!(link.is_connected());
}

/// A UDP relay between a client and a server that can be told to drop
/// everything, as a peer that died without a word would.
async fn relay(server: SocketAddr, blackhole: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client_addr = Arc::new(tokio::sync::Mutex::new(None::<SocketAddr>));
    {
        let (front, back, blackhole, client_addr) = (
            front.clone(),
            back.clone(),
            blackhole.clone(),
            client_addr.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client_addr.lock().await = Some(from);
                if !blackhole.load(Ordering::SeqCst) {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client_addr.lock().await;
            if let (Some(to), false) = (to, blackhole.load(Ordering::SeqCst)) {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_noticed_within_seconds_and_requests_fail_rather_than_hang() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let handler = Arc::new(Gated {
        gate: Barrier::new(1),
        seen: AtomicUsize::new(0),
    });
    let (server, _stop) = start(&tls, handler);
    let blackhole = Arc::new(AtomicBool::new(false));
    let via_relay = relay(server, blackhole.clone()).await;
    let link = client(&tls, via_relay, Duration::from_secs(3));
    assert_eq!(
        link.request(&request()).await.unwrap().status,
        Status::NotFound
    );
    assert!(link.is_connected());

    blackhole.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    let deadline = cut + Duration::from_secs(15);
    while link.is_connected() {
        assert!(Instant::now() < deadline, "a silent peer was never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let noticed = cut.elapsed();
    let idle = TransportOptions::default().idle_timeout;
    assert!(
        noticed >= idle / 2,
        "noticed after {noticed:?}, before the idle timeout could pass"
    );
    assert!(
        link.request(&request()).await.is_err(),
        "a request to a dead peer was answered"
    );

    // When the path heals, the next request dials a fresh connection.
    blackhole.store(false, Ordering::SeqCst);
    assert_eq!(
        link.request(&request()).await.unwrap().status,
        Status::NotFound
    );
}
