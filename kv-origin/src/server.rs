//! Starting an origin: store, certificates and QUIC endpoint from a config.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use kv_runtime::metrics::Metrics;
use kv_runtime::metrics_server::{MetricsBindError, MetricsServer};
use kv_runtime::quic::{QuicServer, ServerError, ServerOptions};
use kv_runtime::tls::TlsError;

use crate::config::OriginConfig;
use crate::origin::Origin;
use crate::store::{Store, StoreError};

/// Why an origin could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store config is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The certificates are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The endpoint could not be bound.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The metrics address could not be bound.
    #[error(transparent)]
    Metrics(#[from] MetricsBindError),
}

/// An origin bound to its address, ready to serve.
#[derive(Debug)]
pub struct OriginServer {
    origin: Arc<Origin>,
    sweep: Option<crate::sweep::SweepOptions>,
    server: QuicServer,
    metrics: Arc<Metrics>,
    metrics_server: Option<MetricsServer>,
}

impl OriginServer {
    /// Builds the store, loads certificates and binds the endpoint (and the
    /// metrics address, when one is configured).
    pub fn bind(config: &OriginConfig) -> Result<Self, StartError> {
        let store = Store::from_config(&config.store)?;
        Self::bind_with(config, store, Metrics::new())
    }

    /// As [`OriginServer::bind`], over a store built by the caller.
    pub fn bind_with_store(config: &OriginConfig, store: Store) -> Result<Self, StartError> {
        Self::bind_with(config, store, Metrics::new())
    }

    /// As [`OriginServer::bind`], over a store built by the caller, counting
    /// in `metrics` (which the tiers of one process may share).
    pub fn bind_with(
        config: &OriginConfig,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let tls = config.tls.load()?;
        let metrics_server = MetricsServer::bind_if_configured(config.metrics, &metrics)?;
        let store = store.observed(&metrics);
        let origin = Arc::new(Origin::with_options(
            store,
            &metrics,
            config.origin_options(),
        ));
        let mut options = ServerOptions::new("origin", metrics.clone());
        options.feed = Some(origin.feed().clone());
        let server = QuicServer::bind(config.listen, &tls, options)?;
        Ok(Self {
            sweep: config.sweep_options(),
            origin,
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

    /// The registry this origin counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The origin, for its counters.
    pub fn origin(&self) -> &Arc<Origin> {
        &self.origin
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    /// Metrics are served for as long as requests are.
    /// The sweep runs beside the requests, until shutdown.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let _metrics = self.metrics_server.map(MetricsServer::spawn);
        let stop = tokio_util::sync::CancellationToken::new();
        let sweeper = self.sweep.map(|options| {
            let (origin, metrics, stop) = (self.origin.clone(), self.metrics.clone(), stop.clone());
            tokio::spawn(async move { crate::sweep::run(origin, options, &metrics, stop).await })
        });
        self.server.serve(Arc::new(self.origin), shutdown).await;
        stop.cancel();
        if let Some(sweeper) = sweeper {
            let _ = sweeper.await;
        }
    }
}
