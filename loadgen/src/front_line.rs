//! The emulated front-line proxy ("FL") of the untiered path: a real proxy
//! that holds every request for its processing time, then forwards it.
//!
//! - [`HttpProxy`] sits between the application and the edge's HTTP API.
//! - [`QuicProxy`] sits between the edge and storage: it terminates the
//!   edge's QUIC link (mutual TLS) and re-originates each request on its own
//!   link, as FL terminated and re-issued the KV worker's cache lookups.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use futures::TryStreamExt;
use kv_proto::{Response as KvResponse, Status};
use kv_runtime::quic::{Handler, Link};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running HTTP front-line proxy; dropping it stops it.
#[derive(Debug)]
pub struct HttpProxy {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

#[derive(Debug, Clone)]
struct Forward {
    client: reqwest::Client,
    target: String,
    delay: Duration,
}

impl HttpProxy {
    /// Starts a proxy on a loopback port that forwards to `target` (an
    /// `http://host:port` base) after holding each request for `delay`.
    pub async fn start(target: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(target.ip(), 0)).await?;
        let local_addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .map_err(std::io::Error::other)?;
        let forward = Forward {
            client,
            target: format!("http://{target}"),
            delay,
        };
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(Arc::new(forward));
        let task = tokio::spawn(async move {
            let listener = listener.tap_io(|stream| {
                let _ = stream.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "front-line proxy stopped");
            }
        });
        Ok(Self { local_addr, task })
    }

    /// The address applications send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

async fn proxy(State(forward): State<Arc<Forward>>, request: Request) -> Response {
    tokio::time::sleep(forward.delay).await;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let (parts, body) = request.into_parts();
    let upstream = forward
        .client
        .request(parts.method, format!("{}{path}", forward.target))
        .headers(end_to_end(&parts.headers))
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    match upstream {
        Ok(answer) => {
            let status = answer.status();
            let headers = end_to_end(answer.headers());
            let body = Body::from_stream(answer.bytes_stream().map_err(std::io::Error::other));
            let mut response = (status, body).into_response();
            *response.headers_mut() = headers;
            response
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            // The edge's error shape, so clients parse both alike.
            axum::Json(serde_json::json!({
                "error": {"code": "bad_gateway", "message": format!("front-line proxy: {e}")},
            })),
        )
            .into_response(),
    }
}

/// The QUIC front-line hop: answers each request by holding it for `delay`
/// and forwarding it over its own link.
#[derive(Debug)]
pub struct QuicProxy {
    link: Link,
    delay: Duration,
}

impl QuicProxy {
    /// A proxy forwarding over `link` after `delay`.
    pub fn new(link: Link, delay: Duration) -> Self {
        Self { link, delay }
    }
}

impl Handler for QuicProxy {
    async fn handle(&self, request: kv_proto::Request) -> KvResponse {
        let deadline = kv_runtime::deadline::Deadline::of(&request);
        tokio::time::sleep(self.delay).await;
        let request = kv_proto::Request {
            budget: deadline.upstream_budget(),
            ..request
        };
        match self.link.request(&request).await {
            Ok(response) => response,
            Err(e) => KvResponse::error(
                request.id,
                Status::Unavailable,
                format!("front-line proxy: {e}"),
            ),
        }
    }
}
