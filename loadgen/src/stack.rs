//! One setup of the comparison as a real tierkv stack in this process:
//! origin, regional nodes and edges on loopback, with the emulated wide-area
//! paths (UDP relays), central storage's latency (`ThrottledStore` over a
//! fork of the preloaded in-memory store) and, in
//! the untiered setup, the front-line proxies between them.
//!
//! ```text
//! untiered:         app → FL(http) → edge → FL(quic) ⇢ origin → store
//! direct:           app → edge ⇢ origin → store
//! direct+regional:  app → edge ⇢ regional ⇢ origin → store
//! tiered:           app → edge[hot cache] ⇢ regional ⇢ origin → store
//! ```
//! `⇢` is a relay with the profile's delay: `edge_regional` between an edge
//! and a regional node, `to_origin` on every path to the origin.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kv_edge::{Edge, EdgeConfig, EdgeServer};
use kv_origin::{Origin, OriginConfig, OriginServer, Store, StoreConfig};
use kv_regional::{Regional, RegionalConfig, RegionalServer};
use kv_runtime::quic::{Connector, QuicServer, ServerOptions, TransportOptions};
use kv_runtime::tls::{TlsConfig, TlsIdentity};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::throttle::ThrottledStore;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::front_line::{HttpProxy, QuicProxy};
use crate::profile::Profile;
use crate::relay::Relay;

/// The setups `compare` runs, old path first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SetupKind {
    /// Front-line proxy hops in and out, no regional tier, no hot cache.
    Untiered,
    /// Direct links, no regional tier, no hot cache.
    Direct,
    /// Direct links and the regional tier, no hot cache.
    DirectRegional,
    /// Direct links, the regional tier and the hot cache.
    Tiered,
}

impl SetupKind {
    /// All four, in report order.
    pub const ALL: [SetupKind; 4] = [
        SetupKind::Untiered,
        SetupKind::Direct,
        SetupKind::DirectRegional,
        SetupKind::Tiered,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            SetupKind::Untiered => "untiered",
            SetupKind::Direct => "direct",
            SetupKind::DirectRegional => "direct+regional",
            SetupKind::Tiered => "tiered",
        }
    }

    /// The setup called `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn front_line(self) -> bool {
        self == SetupKind::Untiered
    }

    fn regional_tier(self) -> bool {
        matches!(self, SetupKind::DirectRegional | SetupKind::Tiered)
    }

    fn hot_cache(self) -> bool {
        self == SetupKind::Tiered
    }
}

/// Why a stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// Certificates, sockets or directories.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The origin.
    #[error("origin: {0}")]
    Origin(#[from] kv_origin::StartError),
    /// A regional node.
    #[error("regional: {0}")]
    Regional(#[from] kv_regional::StartError),
    /// An edge.
    #[error("edge: {0}")]
    Edge(#[from] kv_edge::StartError),
    /// TLS material.
    #[error("tls: {0}")]
    Tls(#[from] kv_runtime::tls::TlsError),
    /// A QUIC endpoint.
    #[error("quic: {0}")]
    Quic(String),
}

/// Request deadlines and dial limits in the stack: generous, because a
/// multi-MiB value crossing an emulated long path takes many round trips.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters read off the stack after a run: proof of which tiers worked.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StackCounters {
    /// Object-store GETs at the origin.
    pub store_gets: u64,
    /// Object-store PUTs at the origin.
    pub store_puts: u64,
    /// Reads the regional nodes sent to the origin.
    pub regional_origin_fetches: u64,
    /// Datagrams the relays carried.
    pub relayed_datagrams: u64,
    /// Datagrams the relays dropped.
    pub dropped_datagrams: u64,
}

/// A running setup.
#[derive(Debug)]
pub struct Stack {
    kind: SetupKind,
    /// Where the load goes: one base URL per edge (or its front-line proxy).
    pub targets: Vec<String>,
    origin: Arc<Origin>,
    regionals: Vec<Arc<Regional>>,
    edges: Vec<Arc<Edge>>,
    relays: Vec<Relay>,
    http_proxies: Vec<HttpProxy>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Spawns `serve(stop)` and keeps its stop switch.
fn spawn_until_stopped<F>(
    stops: &mut Vec<oneshot::Sender<()>>,
    tasks: &mut Vec<JoinHandle<()>>,
    serve: impl FnOnce(oneshot::Receiver<()>) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel();
    stops.push(stop);
    tasks.push(tokio::spawn(serve(stopped)));
}

impl Stack {
    /// Starts `kind` under `work_dir`, with its origin over a fork of the
    /// preloaded `dataset`, and delays from `profile`.
    pub async fn start(
        kind: SetupKind,
        profile: &Profile,
        dataset: &InMemory,
        work_dir: &Path,
        seed: u64,
    ) -> Result<Self, StackError> {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let tls = TlsConfig {
            dev_certs: Some(work_dir.join("certs")),
            ..TlsConfig::default()
        };
        let identity = tls.load()?;
        let (mut stops, mut tasks) = (Vec::new(), Vec::new());
        let mut relays = Vec::new();

        let throttled = ThrottledStore::new(dataset.fork(), profile.store.throttle());
        let store = Store::new(
            Arc::new(throttled) as Arc<dyn ObjectStore>,
            object_store::path::Path::default(),
            true,
            &StoreConfig {
                timeout_ms: 60_000,
                ..StoreConfig::default()
            },
        );
        let origin = OriginServer::bind_with_store(
            &OriginConfig {
                listen: loopback,
                tls: tls.clone(),
                ..OriginConfig::default()
            },
            store,
        )?;
        let origin_node = origin.origin().clone();
        let origin_relay =
            Relay::start(origin.local_addr()?, profile.network.to_origin, seed).await?;
        let origin_far = origin_relay.local_addr();
        relays.push(origin_relay);
        spawn_until_stopped(&mut stops, &mut tasks, |stopped| {
            origin.serve(async {
                let _ = stopped.await;
            })
        });

        let mut regional_nodes = Vec::new();
        let mut regional_far = Vec::new();
        if kind.regional_tier() {
            for i in 0..profile.topology.regionals {
                let regional = RegionalServer::bind(&RegionalConfig {
                    listen: loopback,
                    origins: vec![origin_far.into()],
                    connect_timeout_ms: UPSTREAM_TIMEOUT.as_millis() as u64,
                    memory_mib: profile.topology.regional_memory_mib,
                    disk_mib: profile.topology.regional_disk_mib,
                    data_dir: work_dir.join(kind.name()).join(format!("regional-{i}")),
                    cache_ttl_secs: profile.topology.cache_ttl_secs,
                    tls: tls.clone(),
                    ..RegionalConfig::default()
                })
                .await?;
                regional_nodes.push(regional.regional().clone());
                let relay = Relay::start(
                    regional.local_addr()?,
                    profile.network.edge_regional,
                    seed.wrapping_add(1 + i as u64),
                )
                .await?;
                regional_far.push(relay.local_addr());
                relays.push(relay);
                spawn_until_stopped(&mut stops, &mut tasks, |stopped| {
                    regional.serve(async {
                        let _ = stopped.await;
                    })
                });
            }
        }

        let mut edges = Vec::new();
        let mut targets = Vec::new();
        let mut http_proxies = Vec::new();
        for _ in 0..profile.topology.edges {
            // In the untiered setup the edge reaches storage through its
            // own front-line proxy, which then crosses the long path.
            let origin_addr = if kind.front_line() {
                start_quic_proxy(&identity, origin_far, profile, &mut stops, &mut tasks)?
            } else {
                origin_far
            };
            let edge = EdgeServer::bind(&EdgeConfig {
                http: loopback,
                regionals: regional_far.iter().map(|a| (*a).into()).collect(),
                origins: vec![origin_addr.into()],
                read_deadline_ms: UPSTREAM_TIMEOUT.as_millis() as u64,
                write_deadline_ms: UPSTREAM_TIMEOUT.as_millis() as u64,
                connect_timeout_ms: UPSTREAM_TIMEOUT.as_millis() as u64,
                hot_cache_mib: if kind.hot_cache() {
                    profile.topology.hot_cache_mib
                } else {
                    0
                },
                hot_max_value_kib: profile.topology.hot_max_value_kib,
                cache_ttl_secs: profile.topology.cache_ttl_secs,
                tls: tls.clone(),
                ..EdgeConfig::default()
            })
            .await?;
            edges.push(edge.edge().clone());
            let http = edge.local_addr()?;
            spawn_until_stopped(&mut stops, &mut tasks, |stopped| async move {
                let shutdown = async {
                    let _ = stopped.await;
                };
                if let Err(e) = edge.serve(shutdown).await {
                    tracing::warn!(error = %e, "edge stopped");
                }
            });
            let entry = if kind.front_line() {
                let proxy = HttpProxy::start(http, profile.front_line_delay()).await?;
                let entry = proxy.local_addr();
                http_proxies.push(proxy);
                entry
            } else {
                http
            };
            targets.push(format!("http://{entry}"));
        }
        // Edges are stopped first (they were started last), so nothing
        // reaches a stopped tier.
        stops.reverse();
        tasks.reverse();
        Ok(Self {
            kind,
            targets,
            origin: origin_node,
            regionals: regional_nodes,
            edges,
            relays,
            http_proxies,
            stops,
            tasks,
        })
    }

    /// Which setup this is.
    pub fn kind(&self) -> SetupKind {
        self.kind
    }

    /// The edges, for their counters.
    pub fn edges(&self) -> &[Arc<Edge>] {
        &self.edges
    }

    /// Counters of the tiers and relays.
    pub fn counters(&self) -> StackCounters {
        use std::sync::atomic::Ordering::Relaxed;
        let store = self.origin.store().stats();
        StackCounters {
            store_gets: store.gets.load(Relaxed),
            store_puts: store.puts.load(Relaxed),
            regional_origin_fetches: self
                .regionals
                .iter()
                .map(|r| r.stats().origin_fetches.load(Relaxed))
                .sum(),
            relayed_datagrams: self
                .relays
                .iter()
                .map(|r| r.stats().forwarded.load(Relaxed))
                .sum(),
            dropped_datagrams: self
                .relays
                .iter()
                .map(|r| r.stats().dropped.load(Relaxed))
                .sum(),
        }
    }

    /// Stops every node, edges first.
    pub async fn stop(self) {
        drop(self.http_proxies);
        for (stop, task) in self.stops.into_iter().zip(self.tasks) {
            let _ = stop.send(());
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a node's task failed");
            }
        }
        for relay in self.relays {
            relay.stop();
        }
    }
}

/// Starts a QUIC front-line proxy in front of `origin`; returns its address.
fn start_quic_proxy(
    identity: &TlsIdentity,
    origin: SocketAddr,
    profile: &Profile,
    stops: &mut Vec<oneshot::Sender<()>>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<SocketAddr, StackError> {
    let connector = Connector::new(identity, TransportOptions::default())
        .map_err(|e| StackError::Quic(e.to_string()))?;
    let link = connector.link(
        origin,
        kv_runtime::dev_certs::DEV_SERVER_NAME,
        UPSTREAM_TIMEOUT,
    );
    let server = QuicServer::bind(
        ([127, 0, 0, 1], 0).into(),
        identity,
        ServerOptions::new("front-line", kv_runtime::metrics::Metrics::new()),
    )
    .map_err(|e| StackError::Quic(e.to_string()))?;
    let addr = server.local_addr()?;
    let proxy = Arc::new(QuicProxy::new(link, profile.front_line_delay()));
    spawn_until_stopped(stops, tasks, |stopped| {
        server.serve(proxy, async {
            let _ = stopped.await;
        })
    });
    Ok(addr)
}
