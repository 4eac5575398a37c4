//! A UDP relay that puts an emulated wide-area path between QUIC peers.
//!
//! Peers dial the relay's address instead of the server's. Each distinct
//! client address gets its own socket towards the server, so replies find
//! their way back. Every datagram, in each direction, is held for the path's
//! delay (fixed plus jitter) or dropped with the path's loss rate.
//!
//! A direction is a FIFO link: a datagram never overtakes an earlier one, so
//! jitter shows up as queueing, the way it does on a real path, rather than
//! as reordering (which QUIC would read as loss).
//!
//! Each direction delivers from a thread of its own that sleeps until each
//! datagram's release time. tokio's timers tick in milliseconds and would
//! add up to two milliseconds per pass; a thread's sleep is precise to tens
//! of microseconds. A delay is never shorter than configured.
//!
//! A [`RelayControl`] switches faults at run time: a cut drops every
//! datagram in both directions (a partition), and an extra delay is added
//! to the path's (a slow link). `loadgen chaos` uses it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::delay::PathDelay;

/// Largest datagram relayed; QUIC never sends more than this.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams a direction may hold before new ones are dropped, as a full
/// router queue would.
const QUEUE_DATAGRAMS: usize = 16_384;

/// What a relay has done.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams delivered, both directions.
    pub forwarded: AtomicU64,
    /// Datagrams dropped by the loss model or a full queue.
    pub dropped: AtomicU64,
    /// Distinct clients seen.
    pub clients: AtomicU64,
}

/// Faults a running relay applies, switched at run time; none by default.
#[derive(Debug, Default)]
pub struct RelayControl {
    cut: AtomicBool,
    extra_delay_us: AtomicU64,
}

impl RelayControl {
    /// Drops every datagram, both directions, while `cut` is set.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
    }

    /// Whether the relay drops everything.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }

    /// Adds `extra` to every datagram's delay, both directions (zero: none).
    pub fn set_extra_delay(&self, extra: Duration) {
        let micros = u64::try_from(extra.as_micros()).unwrap_or(u64::MAX);
        self.extra_delay_us.store(micros, Ordering::Relaxed);
    }

    /// The delay added to the path's.
    pub fn extra_delay(&self) -> Duration {
        Duration::from_micros(self.extra_delay_us.load(Ordering::Relaxed))
    }

    /// Back to no faults.
    pub fn clear(&self) {
        self.set_cut(false);
        self.set_extra_delay(Duration::ZERO);
    }
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    target: SocketAddr,
    stats: Arc<RelayStats>,
    control: Arc<RelayControl>,
    tasks: JoinSet<()>,
}

impl Relay {
    /// Starts relaying datagrams that reach a new loopback port to `target`,
    /// delaying each direction by `path`. `seed` makes jitter and loss
    /// repeatable.
    pub async fn start(target: SocketAddr, path: PathDelay, seed: u64) -> std::io::Result<Self> {
        let (socket, sender) = socket_pair(SocketAddr::new(target.ip(), 0), None)?;
        let local_addr = socket.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let control = Arc::new(RelayControl::default());
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(
            socket,
            sender,
            target,
            Shaping {
                path,
                control: control.clone(),
            },
            seed,
            stats.clone(),
        ));
        Ok(Self {
            local_addr,
            target,
            stats,
            control,
            tasks,
        })
    }

    /// The address peers dial instead of the target.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server behind the relay.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<RelayStats> {
        &self.stats
    }

    /// The run-time fault switches.
    pub fn control(&self) -> &Arc<RelayControl> {
        &self.control
    }

    /// Stops relaying.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

/// Reads client datagrams; opens a session per client address.
async fn accept(
    socket: UdpSocket,
    sender: Arc<std::net::UdpSocket>,
    target: SocketAddr,
    shaping: Shaping,
    seed: u64,
    stats: Arc<RelayStats>,
) {
    let mut sessions: HashMap<SocketAddr, Pipe> = HashMap::new();
    // Each session's tasks end when this set is dropped with the relay.
    let mut session_tasks = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // An ICMP error from an earlier send surfaces here on some
            // systems; the socket itself is fine.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(e) => {
                tracing::warn!(error = %e, "relay socket failed");
                return;
            }
        };
        let datagram = Bytes::copy_from_slice(&buf[..len]);
        let pipe = match sessions.entry(client) {
            Entry::Occupied(session) => session.into_mut(),
            Entry::Vacant(vacant) => {
                let (upstream, upstream_sender) =
                    match socket_pair(SocketAddr::new(target.ip(), 0), Some(target)) {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::warn!(error = %e, "relay cannot open an upstream socket");
                            continue;
                        }
                    };
                let index = stats.clients.fetch_add(1, Ordering::Relaxed);
                let session_seed = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let to_server = Pipe::start(
                    Sink::Connected(upstream_sender),
                    shaping.clone(),
                    session_seed,
                    stats.clone(),
                );
                let to_client = Pipe::start(
                    Sink::To(sender.clone(), client),
                    shaping.clone(),
                    session_seed.rotate_left(17) ^ 1,
                    stats.clone(),
                );
                session_tasks.spawn(replies(upstream, to_client));
                vacant.insert(to_server)
            }
        };
        pipe.push(datagram);
    }
}

/// Reads the server's replies to one client and queues them back.
async fn replies(upstream: UdpSocket, mut to_client: Pipe) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(len) => to_client.push(Bytes::copy_from_slice(&buf[..len])),
            // The server's port was closed (it restarted); keep listening.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(_) => return,
        }
    }
}

/// A socket bound to `addr` (and connected to `peer`, if given), as a tokio
/// socket to receive on and a blocking clone that a delivery thread sends on.
fn socket_pair(
    addr: SocketAddr,
    peer: Option<SocketAddr>,
) -> std::io::Result<(UdpSocket, Arc<std::net::UdpSocket>)> {
    let socket = std::net::UdpSocket::bind(addr)?;
    if let Some(peer) = peer {
        socket.connect(peer)?;
    }
    let sender = socket.try_clone()?;
    // The flag is shared by both handles: sends can see `WouldBlock`, which
    // `Sink::send` handles.
    socket.set_nonblocking(true)?;
    Ok((UdpSocket::from_std(socket)?, Arc::new(sender)))
}

/// Where a direction delivers.
#[derive(Debug)]
enum Sink {
    /// The upstream socket, connected to the server.
    Connected(Arc<std::net::UdpSocket>),
    /// The relay's own socket, sending to one client.
    To(Arc<std::net::UdpSocket>, SocketAddr),
}

impl Sink {
    /// Sends one datagram, waiting briefly if the socket's buffer is full.
    fn send(&self, datagram: &[u8]) -> bool {
        for _ in 0..1_000 {
            let sent = match self {
                Sink::Connected(socket) => socket.send(datagram),
                Sink::To(socket, addr) => socket.send_to(datagram, addr),
            };
            match sent {
                Ok(_) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) => return false,
            }
        }
        false
    }
}

/// What a relay does to each datagram: the path's delay and loss, and the
/// run-time faults.
#[derive(Debug, Clone)]
struct Shaping {
    path: PathDelay,
    control: Arc<RelayControl>,
}

/// One direction of one session: assigns each datagram its release time and
/// hands it to a thread that sends it then.
#[derive(Debug)]
struct Pipe {
    shaping: Shaping,
    rng: StdRng,
    last_release: Instant,
    queue: std::sync::mpsc::SyncSender<(Instant, Bytes)>,
    stats: Arc<RelayStats>,
}

impl Pipe {
    fn start(sink: Sink, shaping: Shaping, seed: u64, stats: Arc<RelayStats>) -> Self {
        let (queue, pending) = std::sync::mpsc::sync_channel::<(Instant, Bytes)>(QUEUE_DATAGRAMS);
        let delivered = stats.clone();
        // The thread ends when the pipe (its sender) is dropped with the relay.
        std::thread::spawn(move || {
            while let Ok((release, datagram)) = pending.recv() {
                let now = Instant::now();
                if release > now {
                    std::thread::sleep(release - now);
                }
                if sink.send(&datagram) {
                    delivered.forwarded.fetch_add(1, Ordering::Relaxed);
                } else {
                    delivered.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            shaping,
            rng: StdRng::seed_from_u64(seed),
            last_release: Instant::now(),
            queue,
            stats,
        }
    }

    fn push(&mut self, datagram: Bytes) {
        if self.shaping.control.is_cut() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(delay) = self.shaping.path.sample(&mut self.rng) else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let delay = delay + self.shaping.control.extra_delay();
        let release = (Instant::now() + delay).max(self.last_release);
        if self.queue.try_send((release, datagram)).is_ok() {
            self.last_release = release;
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
