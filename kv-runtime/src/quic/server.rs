//! The QUIC server loop shared by the origin and regional tiers.
//!
//! One task per connection accepts bidirectional streams; one task per stream
//! reads a request frame, asks the [`Handler`], and writes the response. A
//! malformed or oversized request gets a typed error response on its own
//! stream, and the connection keeps serving its other streams.
//!
//! Shutdown: stop accepting connections and streams, let in-flight requests
//! finish (up to a grace period), then close the endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_proto::{Frame, FrameKind, Request, RequestId, Response, Status, decode_request};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::frames::{FrameReadError, read_frame_body, write_frame};
use super::transport::TransportOptions;
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
    /// Keep-alive, idle timeout and stream limits.
    pub transport: TransportOptions,
    /// How long a client may take to send one whole request frame.
    pub request_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests before closing.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            transport: TransportOptions::default(),
            request_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
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
        Ok(Self { endpoint, options })
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
        info!(?addr, "serving QUIC");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let handler = handler.clone();
                    let stop = stop.clone();
                    let options = self.options.clone();
                    let requests = tracker.clone();
                    tracker.spawn(async move {
                        serve_connection(incoming, handler, stop, requests, options).await;
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
    handler: Arc<H>,
    stop: CancellationToken,
    requests: TaskTracker,
    options: ServerOptions,
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
    loop {
        let stream = tokio::select! {
            stream = connection.accept_bi() => stream,
            () = stop.cancelled() => break,
        };
        match stream {
            Ok((send, recv)) => {
                let handler = handler.clone();
                let timeout = options.request_read_timeout;
                requests.spawn(serve_stream(send, recv, handler, timeout));
            }
            Err(e) => {
                debug!(%remote, reason = %e, "peer disconnected");
                break;
            }
        }
    }
}

async fn serve_stream<H: Handler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    handler: Arc<H>,
    read_timeout: Duration,
) {
    let response = match tokio::time::timeout(read_timeout, read_request(&mut recv)).await {
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
        Ok(Ok(request)) => {
            let span = info_span!(
                "request",
                request_id = %request.id,
                op = request.op.name(),
                namespace = %request.op.namespace(),
                key_hash = request.op.key().map(|k| crate::telemetry::key_hash(k.as_str())),
            );
            handler.handle(request).instrument(span).await
        }
    };
    if let Err(e) = write_frame(&mut send, &Frame::Response(response)).await {
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

async fn read_request(recv: &mut quinn::RecvStream) -> Result<Request, Refusal> {
    let body = match read_frame_body(recv, FrameKind::Request).await {
        Ok(body) => body,
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
    decode_request(body).map_err(|rejected| {
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
