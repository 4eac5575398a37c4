//! The UDP delay relay on real sockets: it adds its delay (never less, and
//! not much more), keeps each direction in order under jitter, drops what
//! the loss model says, carries a real QUIC link, and obeys its run-time
//! cut and delay switches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loadgen::delay::{Jitter, PathDelay};
use loadgen::relay::Relay;
use support::{dev_tls, file_store, get, link, put, start_origin, value};
use tokio::net::UdpSocket;

/// A UDP server that sends every datagram back.
async fn echo_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..len], from).await;
        }
    });
    addr
}

/// A UDP server that counts what it receives and answers nothing.
async fn counting_server(received: Arc<AtomicU64>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while socket.recv_from(&mut buf).await.is_ok() {
            received.fetch_add(1, Ordering::Relaxed);
        }
    });
    addr
}

async fn client_of(relay: &Relay) -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(relay.local_addr()).await.unwrap();
    client
}

/// Waits for one datagram, failing the test after `limit`.
async fn receive(client: &UdpSocket, limit: Duration) -> Vec<u8> {
    let mut buf = vec![0u8; 65_535];
    let len = tokio::time::timeout(limit, client.recv(&mut buf))
        .await
        .expect("a datagram arrives in time")
        .unwrap();
    buf.truncate(len);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_round_trip_takes_the_configured_delay_both_ways() {
    let one_way = Duration::from_millis(25);
    let relay = Relay::start(echo_server().await, PathDelay::fixed(one_way), 1)
        .await
        .unwrap();
    let client = client_of(&relay).await;
    let mut round_trips = Vec::new();
    for i in 0u32..20 {
        let sent = Instant::now();
        client.send(&i.to_be_bytes()).await.unwrap();
        let echoed = receive(&client, Duration::from_secs(5)).await;
        round_trips.push(sent.elapsed());
        assert_eq!(echoed, i.to_be_bytes(), "the payload comes back unchanged");
    }
    round_trips.sort();
    // Timers never fire early, so the floor is exact.
    assert!(
        round_trips[0] >= one_way * 2,
        "fastest {:?}",
        round_trips[0]
    );
    // The median is the delay plus scheduling slack; a generous bound, so a
    // busy machine does not fail it.
    let median = round_trips[round_trips.len() / 2];
    assert!(
        median < one_way * 2 + Duration::from_millis(40),
        "median {median:?}"
    );
    let stats = relay.stats().clone();
    // The delivery thread counts just after sending: wait for the last count.
    support::wait_for(
        Duration::from_secs(5),
        || stats.forwarded.load(Ordering::Relaxed) == 40,
        "40 datagrams counted as forwarded",
    )
    .await;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_without_reordering() {
    let path = PathDelay {
        delay_ms: 5.0,
        jitter: Jitter::Uniform { max_ms: 20.0 },
        loss: 0.0,
    };
    let relay = Relay::start(echo_server().await, path, 7).await.unwrap();
    let client = client_of(&relay).await;
    let started = Instant::now();
    // Batches of 50, so that no socket buffer on the way overflows.
    for batch in 0u32..6 {
        let numbers = batch * 50..(batch + 1) * 50;
        for i in numbers.clone() {
            client.send(&i.to_be_bytes()).await.unwrap();
        }
        for i in numbers {
            let echoed = receive(&client, Duration::from_secs(5)).await;
            assert_eq!(echoed, i.to_be_bytes(), "datagram {i} out of order");
        }
    }
    // At least the fixed delay both ways; FIFO queueing behind the largest
    // jitter draws pushes the last one further.
    assert!(started.elapsed() >= Duration::from_millis(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_drops_its_share_of_datagrams() {
    let lossy = |loss| PathDelay {
        loss,
        ..PathDelay::fixed(Duration::from_millis(1))
    };
    // Everything lost: nothing is forwarded, every datagram is counted.
    let relay = Relay::start(echo_server().await, lossy(1.0), 3)
        .await
        .unwrap();
    let client = client_of(&relay).await;
    for i in 0u32..100 {
        client.send(&i.to_be_bytes()).await.unwrap();
    }
    let stats = relay.stats().clone();
    support::wait_for(
        Duration::from_secs(5),
        || stats.dropped.load(Ordering::Relaxed) == 100,
        "100 datagrams dropped",
    )
    .await;
    assert_eq!(stats.forwarded.load(Ordering::Relaxed), 0);

    // A quarter lost: a server that only counts sees the rest.
    let received = Arc::new(AtomicU64::new(0));
    let relay = Relay::start(counting_server(received.clone()).await, lossy(0.25), 3)
        .await
        .unwrap();
    let client = client_of(&relay).await;
    let stats = relay.stats().clone();
    let accounted =
        || stats.forwarded.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed);
    // Batches of 100, each delivered before the next, so that no socket
    // buffer on the way overflows and loses datagrams the relay did not drop.
    for batch in 0u64..20 {
        for i in 0u32..100 {
            client.send(&i.to_be_bytes()).await.unwrap();
        }
        support::wait_for(
            Duration::from_secs(10),
            || accounted() == (batch + 1) * 100,
            "the batch forwarded or dropped",
        )
        .await;
    }
    support::wait_for(
        Duration::from_secs(10),
        || received.load(Ordering::Relaxed) == stats.forwarded.load(Ordering::Relaxed),
        "every forwarded datagram received",
    )
    .await;
    let dropped = stats.dropped.load(Ordering::Relaxed);
    assert!(
        (420..580).contains(&dropped),
        "{dropped} of 2000 dropped at 25%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_link_through_the_relay_sees_the_delay_as_round_trip_time() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let origin = start_origin(&tls, file_store(&dir.path().join("store")));
    let one_way = Duration::from_millis(20);
    let relay = Relay::start(origin.addr, PathDelay::fixed(one_way), 5)
        .await
        .unwrap();
    let far = link(&tls, relay.local_addr());

    let answer = put(&far, "ns", "k", "through the relay").await;
    assert_eq!(answer.status, kv_proto::Status::Ok, "{answer:?}");
    let sent = Instant::now();
    let answer = get(&far, "ns", "k").await;
    let elapsed = sent.elapsed();
    assert_eq!(value(&answer), "through the relay");
    assert!(elapsed >= one_way * 2, "a GET took {elapsed:?}");
    let rtt = far.rtt().expect("a connected link has an RTT estimate");
    assert!(rtt >= one_way * 2, "quinn's RTT estimate {rtt:?}");
    assert!(relay.stats().forwarded.load(Ordering::Relaxed) > 4);
    origin.stop().await;
}

/// Sends `payload` through the relay and waits up to `wait` for its echo.
async fn round_trip(client: &UdpSocket, payload: &[u8], wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    client.send(payload).await.unwrap();
    let mut buf = [0u8; 64];
    let deadline = started + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.recv(&mut buf)).await {
            Ok(Ok(len)) if &buf[..len] == payload => return Some(started.elapsed()),
            // An echo of an earlier (cut, then delivered late) datagram.
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("recv: {e}"),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn relay_cut_drops_everything_and_delay_adds_to_the_path() {
    let relay = Relay::start(echo_server().await, PathDelay::default(), 1)
        .await
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(relay.local_addr()).await.unwrap();
    let control = relay.control().clone();

    assert!(
        round_trip(&client, b"before", Duration::from_secs(2))
            .await
            .is_some()
    );

    control.set_cut(true);
    assert!(control.is_cut());
    let dropped_before = relay
        .stats()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        round_trip(&client, b"cut", Duration::from_millis(300)).await,
        None,
        "a cut relay delivered a datagram"
    );
    let dropped = relay
        .stats()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > dropped_before, "the cut datagram was not counted");

    control.set_cut(false);
    assert!(
        round_trip(&client, b"healed", Duration::from_secs(2))
            .await
            .is_some(),
        "the relay did not recover from a cut"
    );

    control.set_extra_delay(Duration::from_millis(100));
    let rtt = round_trip(&client, b"slow", Duration::from_secs(2))
        .await
        .expect("a slowed relay must still deliver");
    assert!(
        rtt >= Duration::from_millis(200),
        "extra delay of 100 ms each way, yet the round trip took {rtt:?}"
    );

    control.clear();
    assert!(!control.is_cut());
    assert_eq!(control.extra_delay(), Duration::ZERO);
    relay.stop();
}
