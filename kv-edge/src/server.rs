//! Starting an edge from its config.

use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_runtime::metrics::Metrics;
use kv_runtime::quic::{Connector, ConnectorError, Peers, TransportOptions};
use kv_runtime::tls::TlsError;

use crate::config::EdgeConfig;
use crate::edge::Edge;
use crate::hot::HotCache;
use crate::http::{self, ApiOptions};
use crate::upstream::Upstream;

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificates are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The upstream links could not be set up.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The HTTP address could not be bound.
    #[error("cannot bind HTTP on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// An edge bound to its HTTP address, ready to serve.
#[derive(Debug)]
pub struct EdgeServer {
    edge: Arc<Edge>,
    listener: tokio::net::TcpListener,
    options: ApiOptions,
    metrics: Arc<Metrics>,
}

impl EdgeServer {
    /// Loads certificates, sets up links and binds the HTTP address.
    pub async fn bind(config: &EdgeConfig) -> Result<Self, StartError> {
        Self::bind_with(config, Metrics::new()).await
    }

    /// As [`EdgeServer::bind`], counting in `metrics` (which the tiers of one
    /// process may share); `GET /metrics` serves the whole registry.
    pub async fn bind_with(config: &EdgeConfig, metrics: Arc<Metrics>) -> Result<Self, StartError> {
        let tls = config.tls.load()?;
        let connector = Connector::new(&tls, TransportOptions::default())?;
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let down_for = Duration::from_secs(config.node_down_secs);
        let peers = |addrs: &[kv_runtime::quic::PeerAddr], name: &str, to: &'static str| {
            let links = addrs
                .iter()
                .map(|addr| {
                    let link = connector.link(addr.clone(), name.to_string(), connect_timeout);
                    link.observe(&metrics, "edge", to);
                    link
                })
                .collect();
            Peers::new(to, links, down_for)
        };
        let upstream = Upstream::new(
            peers(&config.regionals, &config.regional_name, "regional"),
            peers(&config.origins, &config.origin_name, "origin"),
            &metrics,
        );
        let hot = HotCache::new(
            config.hot_cache_mib * 1024 * 1024,
            config.hot_max_value_kib * 1024,
        );
        let edge = Arc::new(Edge::with_metrics(
            hot,
            upstream,
            config.freshness(),
            Duration::from_millis(config.read_deadline_ms),
            &metrics,
        ));
        let node = Arc::downgrade(&edge);
        metrics.on_scrape(move || {
            let Some(node) = node.upgrade() else {
                return false;
            };
            node.report_cache_size();
            true
        });
        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.http,
                source,
            })?;
        let options = ApiOptions {
            min_cache_ttl: config.min_cache_ttl_secs,
            max_cache_ttl: config.max_cache_ttl_secs,
            min_expiration_ttl: config.min_expiration_ttl_secs,
            deadlines: config.deadlines(),
        };
        Ok(Self {
            edge,
            listener,
            options,
            metrics,
        })
    }

    /// The registry this edge counts in and serves on `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The bound HTTP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The edge, for its counters.
    pub fn edge(&self) -> &Arc<Edge> {
        &self.edge
    }

    /// Follows the upstream feeds and serves HTTP until `shutdown` resolves;
    /// in-flight requests finish first.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = ?self.listener.local_addr().ok(), "serving HTTP");
        let stop = tokio_util::sync::CancellationToken::new();
        let _stop_following = stop.clone().drop_guard();
        for link in self.edge.upstream().feed_sources() {
            tokio::spawn(kv_runtime::feed::follow(
                link.clone(),
                self.edge.clone(),
                self.edge.feed_metrics().clone(),
                stop.clone(),
            ));
        }
        let app = http::router(self.edge, self.options, self.metrics);
        // Small answers go out at once rather than waiting on Nagle's algorithm.
        let listener = self.listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        tracing::info!("HTTP server stopped");
        Ok(())
    }
}
