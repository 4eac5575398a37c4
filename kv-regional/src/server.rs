//! Starting a regional node from its config.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_runtime::quic::{
    Connector, ConnectorError, QuicServer, ServerError, ServerOptions, TransportOptions,
};
use kv_runtime::tls::TlsError;

use crate::cache::{self, CacheOptions};
use crate::config::RegionalConfig;
use crate::regional::{Freshness, Regional};

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
}

/// A regional node bound to its address, ready to serve.
#[derive(Debug)]
pub struct RegionalServer {
    regional: Arc<Regional>,
    server: QuicServer,
}

impl RegionalServer {
    /// Opens the cache, loads certificates and binds the endpoint.
    pub async fn bind(config: &RegionalConfig) -> Result<Self, StartError> {
        let tls = config.tls.load()?;
        let connector = Connector::new(&tls, TransportOptions::default())?;
        let origin = connector.link(
            config.origin,
            config.origin_name.clone(),
            Duration::from_millis(config.origin_timeout_ms),
        );
        let cache = cache::open(&CacheOptions {
            memory_bytes: config.memory_mib * 1024 * 1024,
            disk_bytes: config.disk_mib * 1024 * 1024,
            dir: config.data_dir.clone(),
        })
        .await?;
        let freshness = Freshness {
            cache_ttl: Duration::from_secs(config.cache_ttl_secs),
            negative_ttl: Duration::from_secs(config.negative_ttl_secs),
        };
        let server = QuicServer::bind(config.listen, &tls, ServerOptions::default())?;
        Ok(Self {
            regional: Arc::new(Regional::new(cache, origin, freshness)),
            server,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The node, for its counters.
    pub fn regional(&self) -> &Arc<Regional> {
        &self.regional
    }

    /// Serves until `shutdown` resolves, drains in-flight requests, then
    /// flushes the cache to disk and closes it.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let regional = self.regional.clone();
        self.server.serve(self.regional, shutdown).await;
        if let Err(e) = regional.cache().close().await {
            tracing::error!(error = %e, "closing the cache failed");
        }
    }
}
