//! The client side of a link: one [`Connector`] (a QUIC endpoint with this
//! node's client identity) per process, and one [`Link`] per peer.
//!
//! A [`Link`] keeps one connection, which carries any number of concurrent
//! request streams. When the connection closes (the peer restarted, or went
//! quiet past the idle timeout) the next request dials again; concurrent
//! requests share that one handshake.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use kv_proto::{Frame, FrameKind, ProtoError, Request, Response, decode_response};

use super::frames::{FrameReadError, read_frame_body, write_frame};
use super::peer::PeerAddr;
use super::transport::TransportOptions;
use crate::metrics::{Metrics, Upstream, UpstreamOutcome};
use crate::tls::{TlsError, TlsIdentity};

/// Why a request over a link failed. Every variant but [`LinkError::Protocol`]
/// means the peer could not be reached or did not answer, so another peer may.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The connection could not be set up.
    #[error("cannot connect to {peer}: {message}")]
    Connect {
        /// The peer.
        peer: PeerAddr,
        /// The cause.
        message: String,
    },
    /// The connection or stream failed mid-request.
    #[error("link to {peer} failed: {message}")]
    Stream {
        /// The peer.
        peer: PeerAddr,
        /// The cause.
        message: String,
    },
    /// No answer within the request timeout.
    #[error("no answer from {peer} within {timeout:?}")]
    Timeout {
        /// The peer.
        peer: PeerAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The peer answered with a frame that does not decode.
    #[error("bad response from {peer}: {source}")]
    Protocol {
        /// The peer.
        peer: PeerAddr,
        /// What was wrong.
        source: ProtoError,
    },
}

impl LinkError {
    /// Whether another attempt, against this peer or another, might succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Protocol { .. })
    }
}

/// Why a client endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No local UDP socket could be bound.
    #[error("cannot bind a client UDP socket: {0}")]
    Bind(#[source] std::io::Error),
}

/// A client endpoint with this node's identity; dials [`Link`]s.
#[derive(Debug, Clone)]
pub struct Connector {
    endpoint: quinn::Endpoint,
}

impl Connector {
    /// A client endpoint on an ephemeral local port.
    pub fn new(tls: &TlsIdentity, transport: TransportOptions) -> Result<Self, ConnectorError> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_config()?)
            .map_err(TlsError::from)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport.to_quinn());
        let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| TlsError::Write {
            path: "udp socket".into(),
            source: e,
        })?;
        endpoint.set_default_client_config(config);
        Ok(Self { endpoint })
    }

    /// A link to the peer at `addr`, which must present a certificate for `server_name`.
    pub fn link(
        &self,
        addr: impl Into<PeerAddr>,
        server_name: impl Into<String>,
        timeout: Duration,
    ) -> Link {
        Link {
            inner: Arc::new(LinkInner {
                endpoint: self.endpoint.clone(),
                addr: addr.into(),
                observer: OnceLock::new(),
                server_name: server_name.into(),
                timeout,
                current: Mutex::new(None),
                dialing: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

/// A reconnecting link to one peer. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Link {
    inner: Arc<LinkInner>,
}

#[derive(Debug)]
struct LinkInner {
    endpoint: quinn::Endpoint,
    addr: PeerAddr,
    observer: OnceLock<Upstream>,
    server_name: String,
    timeout: Duration,
    current: Mutex<Option<quinn::Connection>>,
    dialing: tokio::sync::Mutex<()>,
}

impl Link {
    /// The peer's address, as it was given.
    pub fn peer(&self) -> &PeerAddr {
        &self.inner.addr
    }

    /// Counts this link's requests in `metrics` as requests from tier `from`
    /// to tier `to`, and reports its connection and RTT at each scrape.
    /// A link is observed once; later calls change nothing.
    pub fn observe(&self, metrics: &Arc<Metrics>, from: &str, to: &str) {
        if self.inner.observer.set(metrics.upstream(from, to)).is_err() {
            return;
        }
        let link = Arc::downgrade(&self.inner);
        let registry = Arc::downgrade(metrics);
        let peer = self.inner.addr.to_string();
        metrics.on_scrape(move || {
            let (Some(link), Some(metrics)) = (link.upgrade(), registry.upgrade()) else {
                return false;
            };
            let open = Link { inner: link }.open_connection();
            metrics.record_quic(
                &peer,
                "outbound",
                i64::from(open.is_some()),
                open.map(|c| c.rtt()),
            );
            true
        });
    }

    /// The round-trip time QUIC measures on the open connection, if there is one.
    pub fn rtt(&self) -> Option<Duration> {
        self.open_connection().map(|c| c.rtt())
    }

    /// Whether a connection is open right now.
    pub fn is_connected(&self) -> bool {
        self.open_connection().is_some()
    }

    /// Ensures a connection is open, dialling within the link's timeout.
    pub async fn connect(&self) -> Result<(), LinkError> {
        let peer = self.inner.addr.clone();
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, self.connection())
            .await
            .map_err(|_| LinkError::Timeout { peer, timeout })?
            .map(drop)
    }

    /// Sends `request` and waits for its response, within the link's timeout
    /// (which covers dialling, when the link has to dial).
    pub async fn request(&self, request: &Request) -> Result<Response, LinkError> {
        let started = Instant::now();
        let timeout = self.inner.timeout;
        let result = tokio::time::timeout(timeout, self.request_inner(request))
            .await
            .unwrap_or_else(|_| {
                Err(LinkError::Timeout {
                    peer: self.inner.addr.clone(),
                    timeout,
                })
            });
        if let Some(upstream) = self.inner.observer.get() {
            let outcome = match &result {
                Ok(response) => UpstreamOutcome::Answered(response.status),
                Err(LinkError::Timeout { .. }) => UpstreamOutcome::Timeout,
                Err(_) => UpstreamOutcome::LinkError,
            };
            upstream.observe(outcome, started.elapsed());
        }
        result
    }

    async fn request_inner(&self, request: &Request) -> Result<Response, LinkError> {
        let peer = &self.inner.addr;
        let stream_err = |e: &dyn std::fmt::Display| LinkError::Stream {
            peer: peer.clone(),
            message: e.to_string(),
        };
        let connection = self.connection().await?;
        let (mut send, mut recv) = match connection.open_bi().await {
            Ok(streams) => streams,
            // The cached connection died since it was checked: dial once more.
            Err(_) => self
                .redial(&connection)
                .await?
                .open_bi()
                .await
                .map_err(|e| stream_err(&e))?,
        };
        // A write refused part-way (the server stopped reading an oversized
        // request) still has an answer waiting, so read it either way.
        let written = write_frame(&mut send, &Frame::Request(request.clone())).await;
        if written.is_ok() {
            let _ = send.finish();
        }
        let body = match read_frame_body(&mut recv, FrameKind::Response).await {
            Ok(body) => body,
            Err(FrameReadError::Header(source)) => {
                return Err(LinkError::Protocol {
                    peer: peer.clone(),
                    source,
                });
            }
            Err(e) => {
                return Err(match written {
                    Err(write_err) => stream_err(&write_err),
                    Ok(()) => stream_err(&e),
                });
            }
        };
        decode_response(body).map_err(|source| LinkError::Protocol {
            peer: peer.clone(),
            source,
        })
    }

    fn open_connection(&self) -> Option<quinn::Connection> {
        let current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    async fn connection(&self) -> Result<quinn::Connection, LinkError> {
        if let Some(connection) = self.open_connection() {
            return Ok(connection);
        }
        let _dialing = self.inner.dialing.lock().await;
        // Someone else may have dialled while we waited.
        if let Some(connection) = self.open_connection() {
            return Ok(connection);
        }
        self.dial().await
    }

    async fn redial(&self, dead: &quinn::Connection) -> Result<quinn::Connection, LinkError> {
        let _dialing = self.inner.dialing.lock().await;
        if let Some(connection) = self
            .open_connection()
            .filter(|c| c.stable_id() != dead.stable_id())
        {
            return Ok(connection);
        }
        self.dial().await
    }

    async fn dial(&self) -> Result<quinn::Connection, LinkError> {
        let peer = &self.inner.addr;
        let connect_err = |e: &dyn std::fmt::Display| LinkError::Connect {
            peer: peer.clone(),
            message: e.to_string(),
        };
        let addr = peer.resolve().await.map_err(|e| connect_err(&e))?;
        let connecting = self
            .inner
            .endpoint
            .connect(addr, &self.inner.server_name)
            .map_err(|e| connect_err(&e))?;
        let connection = connecting.await.map_err(|e| connect_err(&e))?;
        tracing::debug!(%peer, %addr, "link connected");
        *self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok(connection)
    }
}
