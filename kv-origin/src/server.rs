//! Starting an origin: store, certificates and QUIC endpoint from a config.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

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
}

/// An origin bound to its address, ready to serve.
#[derive(Debug)]
pub struct OriginServer {
    origin: Arc<Origin>,
    server: QuicServer,
}

impl OriginServer {
    /// Builds the store, loads certificates and binds the endpoint.
    pub fn bind(config: &OriginConfig) -> Result<Self, StartError> {
        let store = Store::from_config(&config.store)?;
        Self::bind_with_store(config, store)
    }

    /// As [`OriginServer::bind`], over a store built by the caller.
    pub fn bind_with_store(config: &OriginConfig, store: Store) -> Result<Self, StartError> {
        let tls = config.tls.load()?;
        let server = QuicServer::bind(config.listen, &tls, ServerOptions::default())?;
        Ok(Self {
            origin: Arc::new(Origin::new(store)),
            server,
        })
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
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        self.server.serve(Arc::new(self.origin), shutdown).await;
    }
}
