//! The one-process local stack: an origin over local files, one regional
//! node and one edge, all on 127.0.0.1 with generated development
//! certificates. A second start over the same data directory reuses its data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kv_origin::{OriginConfig, OriginServer, StoreConfig};
use kv_regional::{RegionalConfig, RegionalServer};
use kv_runtime::metrics::Metrics;
use kv_runtime::tls::TlsConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::EdgeConfig;
use crate::edge::Edge;
use crate::server::EdgeServer;

/// Where the stack keeps its data and listens.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Holds `certs/`, `origin/` (the object store) and `regional/` (the disk cache).
    pub data_dir: PathBuf,
    /// The edge's HTTP address.
    pub http: SocketAddr,
    /// Edge settings other than addresses and certificates.
    pub edge: EdgeConfig,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            data_dir: "./.tierkv".into(),
            http: ([127, 0, 0, 1], 8787).into(),
            edge: EdgeConfig::default(),
        }
    }
}

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The origin did not start.
    #[error("origin: {0}")]
    Origin(#[from] kv_origin::StartError),
    /// The regional node did not start.
    #[error("regional: {0}")]
    Regional(#[from] kv_regional::StartError),
    /// The edge did not start.
    #[error("edge: {0}")]
    Edge(#[from] crate::server::StartError),
    /// An address could not be read back.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running local stack.
#[derive(Debug)]
pub struct DevStack {
    /// The edge's HTTP address.
    pub http: SocketAddr,
    /// The origin's QUIC address.
    pub origin: SocketAddr,
    /// The regional node's QUIC address.
    pub regional: SocketAddr,
    /// The edge, for its counters.
    pub edge: Arc<Edge>,
    /// The origin, for its counters.
    pub origin_node: Arc<kv_origin::Origin>,
    /// The regional node, for its counters.
    pub regional_node: Arc<kv_regional::Regional>,
    /// The registry all three tiers count in; the edge serves it on `/metrics`.
    pub metrics: Arc<Metrics>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long starting waits for the change feeds to connect.
const FEEDS_READY_WITHIN: Duration = Duration::from_secs(10);

impl DevStack {
    /// Starts origin, regional node and edge.
    pub async fn start(options: DevOptions) -> Result<Self, DevError> {
        let tls = TlsConfig {
            dev_certs: Some(options.data_dir.join("certs")),
            ..TlsConfig::default()
        };
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let store_dir = options.data_dir.join("origin");
        let metrics = Metrics::new();
        let origin_config = OriginConfig {
            listen: loopback,
            store: StoreConfig {
                url: format!("file://{}", store_dir.display()),
                ..StoreConfig::default()
            },
            tls: tls.clone(),
            ..OriginConfig::default()
        };
        let store = kv_origin::Store::from_config(&origin_config.store)
            .map_err(kv_origin::StartError::from)?;
        let origin = OriginServer::bind_with(&origin_config, store, metrics.clone())?;
        let origin_addr = origin.local_addr()?;
        let regional = RegionalServer::bind_with(
            &RegionalConfig {
                listen: loopback,
                origins: vec![origin_addr.into()],
                data_dir: options.data_dir.join("regional"),
                memory_mib: 128,
                disk_mib: 256,
                tls: tls.clone(),
                ..RegionalConfig::default()
            },
            metrics.clone(),
        )
        .await?;
        let regional_addr = regional.local_addr()?;
        let edge = EdgeServer::bind_with(
            &EdgeConfig {
                http: options.http,
                regionals: vec![regional_addr.into()],
                origins: vec![origin_addr.into()],
                tls,
                ..options.edge
            },
            metrics.clone(),
        )
        .await?;
        let http = edge.local_addr()?;
        let (edge_node, origin_node, regional_node) = (
            edge.edge().clone(),
            origin.origin().clone(),
            regional.regional().clone(),
        );

        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        // Stopped in this order: edge first, so nothing reaches a stopped tier.
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = edge
                .serve(async {
                    let _ = stopped.await;
                })
                .await
            {
                tracing::error!(error = %e, "edge HTTP server failed");
            }
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(regional.serve(async {
            let _ = stopped.await;
        })));
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(origin.serve(async {
            let _ = stopped.await;
        })));
        let stack = Self {
            http,
            origin: origin_addr,
            regional: regional_addr,
            edge: edge_node,
            origin_node,
            regional_node,
            metrics,
            stops,
            tasks,
        };
        stack.wait_for_feeds(FEEDS_READY_WITHIN).await;
        Ok(stack)
    }

    /// Waits (up to `limit`) until the regional node follows the origin's
    /// change feed and the edge the regional node's. Until then, what the
    /// caches fetch is checked again once the feeds start.
    async fn wait_for_feeds(&self, limit: Duration) {
        let ready = || {
            self.regional_node.feed_metrics().connected_count() == 1
                && self.edge.feed_metrics().connected_count() == 1
        };
        let deadline = tokio::time::Instant::now() + limit;
        let mut poll = tokio::time::interval(Duration::from_millis(5));
        while !ready() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    ?limit,
                    "the change feeds are not connected yet; starting anyway"
                );
                return;
            }
            poll.tick().await;
        }
    }

    /// Stops the edge, then the regional node (flushing its cache), then the origin.
    pub async fn stop(self) {
        for (stop, task) in self.stops.into_iter().zip(self.tasks) {
            let _ = stop.send(());
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a tier's task failed");
            }
        }
    }
}
