//! Starting a regional node from its config.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_runtime::metrics::Metrics;
use kv_runtime::metrics_server::{MetricsBindError, MetricsServer};
use kv_runtime::quic::{
    Connector, ConnectorError, Peers, QuicServer, ServerError, ServerOptions, TransportOptions,
};
use kv_runtime::tls::TlsError;

use crate::cache::{self, CacheOptions};
use crate::config::RegionalConfig;
use crate::regional::Regional;

/// Why a regional node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificates are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The endpoint could not be bound.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The link to the origin could not be set up.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The cache could not be opened.
    #[error("cannot open the cache: {0}")]
    Cache(#[from] foyer::Error),
    /// The metrics address could not be bound.
    #[error(transparent)]
    Metrics(#[from] MetricsBindError),
}

/// A regional node bound to its address, ready to serve.
#[derive(Debug)]
pub struct RegionalServer {
    regional: Arc<Regional>,
    server: QuicServer,
    metrics: Arc<Metrics>,
    metrics_server: Option<MetricsServer>,
}

impl RegionalServer {
    /// Opens the cache, loads certificates and binds the endpoint (and the
    /// metrics address, when one is configured).
    pub async fn bind(config: &RegionalConfig) -> Result<Self, StartError> {
        Self::bind_with(config, Metrics::new()).await
    }

    /// As [`RegionalServer::bind`], counting in `metrics` (which the tiers of
    /// one process may share).
    pub async fn bind_with(
        config: &RegionalConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let tls = config.tls.load()?;
        let metrics_server = MetricsServer::bind_if_configured(config.metrics, &metrics)?;
        let connector = Connector::new(&tls, TransportOptions::default())?;
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let origins = config
            .origins
            .iter()
            .map(|addr| {
                let link =
                    connector.link(addr.clone(), config.origin_name.clone(), connect_timeout);
                link.observe(&metrics, "regional", "origin");
                link
            })
            .collect();
        let origins = Peers::new(
            "origin",
            origins,
            Duration::from_secs(config.node_down_secs),
        );
        let disk_bytes = config.disk_mib * 1024 * 1024;
        let cache = cache::open(
            &CacheOptions {
                memory_bytes: config.memory_mib * 1024 * 1024,
                disk_bytes,
                dir: config.data_dir.clone(),
            },
            &metrics,
        )
        .await?;
        let regional = Arc::new(Regional::with_metrics(
            cache,
            origins,
            config.freshness(),
            (
                config.feed_backlog,
                Duration::from_millis(config.refresh_deadline_ms),
            ),
            &metrics,
        ));
        let mut options = ServerOptions::new("regional", metrics.clone());
        options.feed = Some(regional.feed().clone());
        let server = QuicServer::bind(config.listen, &tls, options)?;
        let node = Arc::downgrade(&regional);
        metrics.on_scrape(move || {
            let Some(node) = node.upgrade() else {
                return false;
            };
            node.report_cache_size(disk_bytes as u64);
            true
        });
        Ok(Self {
            regional,
            server,
            metrics,
            metrics_server,
        })
    }

    /// The bound metrics address, when metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server
            .as_ref()
            .and_then(|m| m.local_addr().ok())
    }

    /// The registry this node counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The node, for its counters.
    pub fn regional(&self) -> &Arc<Regional> {
        &self.regional
    }

    /// Follows the origins' feeds and serves until `shutdown` resolves,
    /// drains in-flight requests, then flushes the cache to disk and closes it.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let _metrics = self.metrics_server.map(MetricsServer::spawn);
        let regional = self.regional.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let _stop_following = stop.clone().drop_guard();
        for link in regional.origin_links() {
            tokio::spawn(kv_runtime::feed::follow(
                link.clone(),
                regional.clone(),
                regional.feed_metrics().clone(),
                stop.clone(),
            ));
        }
        self.server.serve(self.regional, shutdown).await;
        stop.cancel();
        if let Err(e) = regional.cache().close().await {
            tracing::error!(error = %e, "closing the cache failed");
        }
    }
}
