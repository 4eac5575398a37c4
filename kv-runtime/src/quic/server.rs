//! The QUIC server loop shared by the origin and regional tiers.
//!
//! One task per connection accepts bidirectional streams; one task per stream
//! reads a request frame, asks the [`Handler`], and writes the response. A
//! stream that opens with a subscription instead is served the node's change
//! feed (see [`crate::feed`]) until it ends. A
//! malformed or oversized request gets a typed error response on its own
//! stream, and the connection keeps serving its other streams.
//!
//! Shutdown: stop accepting connections and streams, let in-flight requests
//! finish (up to a grace period), then close the endpoint.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kv_proto::{
    Frame, FrameKind, Request, RequestId, Response, Status, Subscribe, decode_request,
    decode_subscribe,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::frames::{FrameReadError, read_frame_of, write_frame};
use super::transport::TransportOptions;
use crate::feed::{Publisher, serve_subscription};
use crate::metrics::{Metrics, Served};
use crate::tls::{TlsError, TlsIdentity};

/// Answers requests. Implemented by each tier.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Failures are responses with an error status.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// A shared handler serves as well as the handler itself.
impl<H: Handler> Handler for Arc<H> {
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send {
        H::handle(self, request)
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The tier this server is, for spans and metrics (`origin`, `regional`).
    pub tier: &'static str,
    /// Where requests and connections are counted.
    pub metrics: Arc<Metrics>,
    /// Keep-alive, idle timeout and stream limits.
    pub transport: TransportOptions,
    /// How long a client may take to send one whole request frame.
    pub request_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests before closing.
    pub shutdown_grace: Duration,
    /// The change feed this node publishes to subscribers, if any.
    pub feed: Option<Arc<Publisher>>,
}

impl ServerOptions {
    /// Defaults for a server of `tier`, counting in `metrics`.
    pub fn new(tier: &'static str, metrics: Arc<Metrics>) -> Self {
        Self {
            tier,
            metrics,
            transport: TransportOptions::default(),
            request_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            feed: None,
        }
    }
}

/// The open connections of a server, for the connection and RTT gauges.
type Connections = Arc<Mutex<HashMap<usize, quinn::Connection>>>;

/// What every stream task of a server shares.
struct StreamContext<H> {
    handler: Arc<H>,
    tier: &'static str,
    served: Served,
    read_timeout: Duration,
    feed: Option<Arc<Publisher>>,
    stop: CancellationToken,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The address could not be bound.
    #[error("cannot bind QUIC endpoint on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// QUIC stream error code sent when a request is refused before it was read whole.
const REFUSED: u32 = 1;

/// A bound QUIC endpoint, ready to serve.
#[derive(Debug)]
pub struct QuicServer {
    endpoint: quinn::Endpoint,
    options: ServerOptions,
    connections: Connections,
    served: Served,
}

impl QuicServer {
    /// Binds `addr` with mutual TLS from `tls`.
    pub fn bind(
        addr: SocketAddr,
        tls: &TlsIdentity,
        options: ServerOptions,
    ) -> Result<Self, ServerError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_config()?)
            .map_err(TlsError::from)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(options.transport.to_quinn());
        let endpoint = quinn::Endpoint::server(config, addr)
            .map_err(|source| ServerError::Bind { addr, source })?;
        let connections = Connections::default();
        let open = Arc::downgrade(&connections);
        let metrics = Arc::downgrade(&options.metrics);
        options.metrics.on_scrape(move || {
            let (Some(open), Some(metrics)) = (open.upgrade(), metrics.upgrade()) else {
                return false;
            };
            for connection in open.lock().unwrap_or_else(PoisonError::into_inner).values() {
                let peer = connection.remote_address().to_string();
                metrics.record_quic(&peer, "inbound", 1, Some(connection.rtt()));
            }
            true
        });
        // Created now, so that the series exist from the first scrape.
        let served = options.metrics.served(options.tier);
        Ok(Self {
            endpoint,
            options,
            connections,
            served,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves requests with `handler` until `shutdown` resolves, then drains.
    pub async fn serve<H: Handler>(self, handler: Arc<H>, shutdown: impl Future<Output = ()>) {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let addr = self.local_addr().ok();
        info!(?addr, tier = self.options.tier, "serving QUIC");
        let context = Arc::new(StreamContext {
            handler,
            tier: self.options.tier,
            served: self.served.clone(),
            read_timeout: self.options.request_read_timeout,
            feed: self.options.feed.clone(),
            stop: stop.clone(),
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let context = context.clone();
                    let stop = stop.clone();
                    let requests = tracker.clone();
                    let connections = self.connections.clone();
                    tracker.spawn(async move {
                        serve_connection(incoming, context, stop, requests, connections).await;
                    });
                }
                () = &mut shutdown => break,
            }
        }
        info!(
            in_flight = tracker.len(),
            "shutting down: draining in-flight requests"
        );
        self.endpoint.set_server_config(None);
        stop.cancel();
        tracker.close();
        if tokio::time::timeout(self.options.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            warn!("shutdown grace period over with requests still in flight");
        }
        self.endpoint.close(0u32.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        info!("QUIC server stopped");
    }
}

async fn serve_connection<H: Handler>(
    incoming: quinn::Incoming,
    context: Arc<StreamContext<H>>,
    stop: CancellationToken,
    requests: TaskTracker,
    connections: Connections,
) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            // A client without a certificate chaining to our CA ends here.
            warn!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
    };
    debug!(%remote, "peer connected");
    let id = connection.stable_id();
    let track = |open: Option<&quinn::Connection>| {
        let mut all = connections.lock().unwrap_or_else(PoisonError::into_inner);
        match open {
            Some(connection) => all.insert(id, connection.clone()),
            None => all.remove(&id),
        };
    };
    track(Some(&connection));
    loop {
        let stream = tokio::select! {
            stream = connection.accept_bi() => stream,
            () = stop.cancelled() => break,
        };
        match stream {
            Ok((send, recv)) => {
                requests.spawn(serve_stream(send, recv, context.clone()));
            }
            Err(e) => {
                debug!(%remote, reason = %e, "peer disconnected");
                break;
            }
        }
    }
    track(None);
}

async fn serve_stream<H: Handler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    context: Arc<StreamContext<H>>,
) {
    let started = Instant::now();
    let in_flight = context.served.start();
    let mut op = "other";
    let read = tokio::time::timeout(context.read_timeout, read_first(&mut recv)).await;
    let response = match read {
        Ok(Ok(First::Subscribe(subscribe))) => match &context.feed {
            Some(feed) => {
                // A subscription lasts as long as the link: not a request.
                drop(in_flight);
                serve_subscription(feed, subscribe, send, context.stop.clone()).await;
                return;
            }
            None => refuse(
                RequestId::default(),
                Status::BadRequest,
                "this node publishes no change feed",
            ),
        },
        Err(_) => {
            let _ = recv.stop(REFUSED.into());
            refuse(
                RequestId::default(),
                Status::BadRequest,
                "request not received in time",
            )
        }
        Ok(Err(Refusal::Stream)) => return,
        Ok(Err(Refusal::Answer(response))) => {
            let _ = recv.stop(REFUSED.into());
            response
        }
        Ok(Ok(First::Request(request))) => {
            op = request.op.name();
            // `cache` and `answered_by` are recorded by the handler.
            let span = info_span!(
                "request",
                request_id = %request.id,
                tier = context.tier,
                op,
                namespace = %request.op.namespace(),
                key_hash = request.op.key().map(|k| crate::telemetry::key_hash(k.as_str())),
                cache = tracing::field::Empty,
                answered_by = tracing::field::Empty,
                status = tracing::field::Empty,
            );
            // A read whose caller gave up (it reset the stream, or stopped
            // reading: its deadline passed) is dropped, and with it any
            // upstream work no other reader waits on. A write runs to its
            // end, bounded by its own deadline, so that its outcome is
            // settled rather than cut off half-way.
            let abandonable = matches!(request.op, kv_proto::Op::Get(_));
            let handling = context.handler.handle(request).instrument(span.clone());
            let response = if abandonable {
                tokio::select! {
                    response = handling => response,
                    _ = send.stopped() => {
                        span.in_scope(|| debug!("caller abandoned the read"));
                        context.served.observe(op, Status::Timeout, started.elapsed());
                        return;
                    }
                }
            } else {
                handling.await
            };
            span.record("status", response.status.as_str());
            if let Some(tier) = response.tier {
                span.record("answered_by", tier.as_str());
            }
            span.in_scope(|| {
                debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "answered"
                );
            });
            response
        }
    };
    let status = response.status;
    let written = write_frame(&mut send, &Frame::Response(response)).await;
    context.served.observe(op, status, started.elapsed());
    if let Err(e) = written {
        debug!(error = %e, "could not write response");
        return;
    }
    let _ = send.finish();
    // Wait until the peer has the response (or gave up) before the stream is dropped.
    let _ = send.stopped().await;
}

enum Refusal {
    /// Answer with this error response.
    Answer(Response),
    /// The stream is gone; there is no one to answer.
    Stream,
}

/// What a stream opens with.
enum First {
    /// A request, to answer on the stream.
    Request(Request),
    /// A feed subscription, to serve on the stream until it ends.
    Subscribe(Subscribe),
}

async fn read_first(recv: &mut quinn::RecvStream) -> Result<First, Refusal> {
    let (kind, body) = match read_frame_of(recv, &[FrameKind::Request, FrameKind::Subscribe]).await
    {
        Ok(first) => first,
        Err(FrameReadError::Header(e)) => {
            return Err(Refusal::Answer(refuse(
                RequestId::default(),
                e.status(),
                &e.to_string(),
            )));
        }
        Err(e @ FrameReadError::UnexpectedKind { .. }) => {
            return Err(Refusal::Answer(refuse(
                RequestId::default(),
                Status::BadRequest,
                &e.to_string(),
            )));
        }
        Err(FrameReadError::Read(quinn::ReadExactError::FinishedEarly(n))) => {
            let message = format!("stream finished inside a frame after {n} bytes");
            return Err(Refusal::Answer(refuse(
                RequestId::default(),
                Status::BadRequest,
                &message,
            )));
        }
        Err(FrameReadError::Finished | FrameReadError::Read(_)) => return Err(Refusal::Stream),
    };
    if kind == FrameKind::Subscribe {
        return decode_subscribe(body).map(First::Subscribe).map_err(|e| {
            Refusal::Answer(refuse(RequestId::default(), e.status(), &e.to_string()))
        });
    }
    decode_request(body)
        .map(First::Request)
        .map_err(|rejected| {
            let id = rejected.id.unwrap_or_default();
            Refusal::Answer(refuse(
                id,
                rejected.error.status(),
                &rejected.error.to_string(),
            ))
        })
}

fn refuse(id: RequestId, status: Status, message: &str) -> Response {
    debug!(request_id = %id, %status, message, "request refused");
    Response::error(id, status, message)
}
