//! The client side of a link: one [`Connector`] (a QUIC endpoint with this
//! node's client identity) per process, and one [`Link`] per peer.
//!
//! A [`Link`] keeps one connection, which carries any number of concurrent
//! request streams. When the connection closes (the peer restarted, or went
//! quiet past the idle timeout) the next request dials again. A dial runs on
//! its own task, bounded by the link's connect timeout, and concurrent
//! requests share it: a request that stops waiting for it (its budget ran
//! out) does not stop it, so a dead peer is told from a slow request.
//!
//! A link remembers when it last failed (a dial that did not complete, or a
//! connection lost mid-request) and counts as down for a while after:
//! [`Link::is_down`]. A request that merely timed out does not count.
//!
//! A request waits for at most its own budget ([`Request::budget`]), which
//! covers dialling too. Failures say whether the request had been sent in
//! full: one that was may have been applied upstream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
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
    /// The connection could not be set up; nothing was sent.
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
        /// Whether the whole request had been sent.
        sent: bool,
    },
    /// No answer within the request's budget. Not a sign that the peer is
    /// down: it may be slow, or the budget small.
    #[error("no answer from {peer} within {timeout:?}")]
    Timeout {
        /// The peer.
        peer: PeerAddr,
        /// The budget waited.
        timeout: Duration,
        /// Whether the whole request had been sent.
        sent: bool,
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

    /// Whether the link itself failed (connect, handshake, reset, idle): the
    /// only evidence that a peer is down. A timeout is not.
    pub fn is_link_failure(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Stream { .. })
    }

    /// Whether the request may have reached the peer and been applied.
    pub fn may_have_applied(&self) -> bool {
        match self {
            Self::Connect { .. } => false,
            Self::Stream { sent, .. } | Self::Timeout { sent, .. } => *sent,
            Self::Protocol { .. } => true,
        }
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
        let mut endpoint = quinn::Endpoint::client(bind).map_err(ConnectorError::Bind)?;
        endpoint.set_default_client_config(config);
        Ok(Self { endpoint })
    }

    /// A link to the peer at `addr`, which must present a certificate for
    /// `server_name`. `connect_timeout` bounds [`Link::connect`]; a request
    /// waits for its own budget.
    pub fn link(
        &self,
        addr: impl Into<PeerAddr>,
        server_name: impl Into<String>,
        connect_timeout: Duration,
    ) -> Link {
        Link {
            inner: Arc::new(LinkInner {
                endpoint: self.endpoint.clone(),
                addr: addr.into(),
                observer: OnceLock::new(),
                server_name: server_name.into(),
                connect_timeout,
                current: Mutex::new(None),
                dialing: Mutex::new(None),
                down_until: Mutex::new(None),
                down_for: Mutex::new(DEFAULT_DOWN_FOR),
            }),
        }
    }
}

/// A reconnecting link to one peer. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Link {
    inner: Arc<LinkInner>,
}

/// How long a link counts as down after it failed, unless set otherwise.
const DEFAULT_DOWN_FOR: Duration = Duration::from_secs(5);

/// A dial in progress, shared by every request waiting for it.
type Dial = Shared<BoxFuture<'static, Result<quinn::Connection, String>>>;

struct LinkInner {
    endpoint: quinn::Endpoint,
    addr: PeerAddr,
    observer: OnceLock<Upstream>,
    server_name: String,
    connect_timeout: Duration,
    current: Mutex<Option<quinn::Connection>>,
    dialing: Mutex<Option<Dial>>,
    down_until: Mutex<Option<Instant>>,
    down_for: Mutex<Duration>,
}

impl std::fmt::Debug for LinkInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkInner")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LinkInner {
    fn mark_down(&self, why: &str) {
        let down_for = *locked(&self.down_for);
        tracing::warn!(peer = %self.addr, why, ?down_for, "link failed; counting the peer as down");
        *locked(&self.down_until) = Some(Instant::now() + down_for);
    }
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

    /// How long the link counts as down after a failure.
    pub fn set_down_for(&self, down_for: Duration) {
        *locked(&self.inner.down_for) = down_for;
    }

    /// Whether the link failed recently (a dial that did not complete, or a
    /// connection lost mid-request): callers with a choice try other peers
    /// first. A request that timed out does not make a link down.
    pub fn is_down(&self) -> bool {
        locked(&self.inner.down_until).is_some_and(|until| Instant::now() < until)
    }

    /// The round-trip time QUIC measures on the open connection, if there is one.
    pub fn rtt(&self) -> Option<Duration> {
        self.open_connection().map(|c| c.rtt())
    }

    /// Whether a connection is open right now.
    pub fn is_connected(&self) -> bool {
        self.open_connection().is_some()
    }

    /// Ensures a connection is open, dialling within the connect timeout.
    pub async fn connect(&self) -> Result<(), LinkError> {
        let peer = self.inner.addr.clone();
        let timeout = self.inner.connect_timeout;
        tokio::time::timeout(timeout, self.connection())
            .await
            .map_err(|_| LinkError::Timeout {
                peer,
                timeout,
                sent: false,
            })?
            .map(drop)
    }

    /// Sends `request` and waits for its response, within the request's
    /// budget (which covers dialling, when the link has to dial). A request
    /// with no budget left is not sent.
    pub async fn request(&self, request: &Request) -> Result<Response, LinkError> {
        let started = Instant::now();
        let timeout = request.budget;
        let sent = AtomicBool::new(false);
        let result = tokio::time::timeout(timeout, self.request_inner(request, &sent))
            .await
            .unwrap_or_else(|_| {
                Err(LinkError::Timeout {
                    peer: self.inner.addr.clone(),
                    timeout,
                    sent: sent.load(Ordering::Relaxed),
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

    /// Opens a stream of its own on the link's connection (dialling if need
    /// be, within the connect timeout): for a conversation longer than one
    /// request, such as a feed subscription.
    pub async fn open_stream(&self) -> Result<(quinn::SendStream, quinn::RecvStream), LinkError> {
        let timeout = self.inner.connect_timeout;
        match tokio::time::timeout(timeout, self.open_bi()).await {
            Ok(opened) => opened.map(|(_, send, recv)| (send, recv)),
            Err(_) => Err(LinkError::Timeout {
                peer: self.inner.addr.clone(),
                timeout,
                sent: false,
            }),
        }
    }

    /// A new stream, and the connection it is on (dialling if need be). If
    /// the cached connection died since it was checked, dials once more.
    async fn open_bi(
        &self,
    ) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), LinkError> {
        let connection = self.connection().await?;
        if let Ok((send, recv)) = connection.open_bi().await {
            return Ok((connection, send, recv));
        }
        self.forget(&connection);
        let connection = self.connection().await?;
        match connection.open_bi().await {
            Ok((send, recv)) => Ok((connection, send, recv)),
            Err(e) => Err(LinkError::Stream {
                peer: self.inner.addr.clone(),
                message: e.to_string(),
                sent: false,
            }),
        }
    }

    async fn request_inner(
        &self,
        request: &Request,
        sent: &AtomicBool,
    ) -> Result<Response, LinkError> {
        let peer = &self.inner.addr;
        let stream_err = |e: &dyn std::fmt::Display| LinkError::Stream {
            peer: peer.clone(),
            message: e.to_string(),
            sent: sent.load(Ordering::Relaxed),
        };
        let (connection, mut send, mut recv) = self.open_bi().await?;
        // A write refused part-way (the server stopped reading an oversized
        // request) still has an answer waiting, so read it either way.
        let written = write_frame(&mut send, &Frame::Request(request.clone())).await;
        if written.is_ok() {
            let _ = send.finish();
            sent.store(true, Ordering::Relaxed);
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
                // A lost connection (reset, idle timeout, peer gone) is a link
                // failure; a stream the peer refused is not.
                if let Some(reason) = connection.close_reason() {
                    self.forget(&connection);
                    self.inner.mark_down(&reason.to_string());
                }
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
        let dial = {
            let mut dialing = locked(&self.inner.dialing);
            match &*dialing {
                Some(dial) => dial.clone(),
                None => {
                    let dial = tokio::spawn(dial(self.inner.clone()))
                        .map(|joined| joined.unwrap_or_else(|e| Err(e.to_string())))
                        .boxed()
                        .shared();
                    *dialing = Some(dial.clone());
                    dial
                }
            }
        };
        dial.await.map_err(|message| LinkError::Connect {
            peer: self.inner.addr.clone(),
            message,
        })
    }

    /// Drops `dead` as the current connection, if it still is.
    fn forget(&self, dead: &quinn::Connection) {
        let mut current = locked(&self.inner.current);
        if current
            .as_ref()
            .is_some_and(|c| c.stable_id() == dead.stable_id())
        {
            *current = None;
        }
    }
}

/// Dials the link's peer, within its connect timeout; on its own task, so
/// that no request that stops waiting cancels it. A failure marks the link down.
async fn dial(link: Arc<LinkInner>) -> Result<quinn::Connection, String> {
    let attempt = async {
        let addr = link.addr.resolve().await.map_err(|e| e.to_string())?;
        let connecting = link
            .endpoint
            .connect(addr, &link.server_name)
            .map_err(|e| e.to_string())?;
        let connection = connecting.await.map_err(|e| e.to_string())?;
        tracing::debug!(peer = %link.addr, %addr, "link connected");
        Ok::<_, String>(connection)
    };
    let result = match tokio::time::timeout(link.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "handshake not complete within {:?}",
            link.connect_timeout
        )),
    };
    match &result {
        Ok(connection) => {
            *locked(&link.current) = Some(connection.clone());
            *locked(&link.down_until) = None;
        }
        Err(message) => link.mark_down(message),
    }
    *locked(&link.dialing) = None;
    result
}
