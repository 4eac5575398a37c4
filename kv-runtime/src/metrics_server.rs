//! The `/metrics` endpoint: an HTTP listener for the nodes that serve no
//! HTTP of their own (origin, regional), and the handler the edge mounts on
//! its API port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `metrics` as an HTTP answer.
pub fn render(metrics: &Metrics) -> Response {
    let mut response = metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// `GET /metrics` and `GET /healthz`; anything else is a JSON 404.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(move || async move { render(&metrics) }))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .fallback(|| async {
            let body = serde_json::json!({
                "error": { "code": "not_found", "message": "no such route: try /metrics" }
            });
            (StatusCode::NOT_FOUND, axum::Json(body))
        })
}

/// The metrics address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind metrics on {addr}: {source}")]
pub struct MetricsBindError {
    /// The address.
    pub addr: SocketAddr,
    /// The cause.
    pub source: std::io::Error,
}

/// A bound metrics listener. Binding is synchronous, so a server's own
/// (synchronous) bind can report a taken port before anything starts.
#[derive(Debug)]
pub struct MetricsServer {
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
}

impl MetricsServer {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener, metrics })
    }

    /// Binds `addr` when a node is configured to serve metrics.
    pub fn bind_if_configured(
        addr: Option<SocketAddr>,
        metrics: &Arc<Metrics>,
    ) -> Result<Option<Self>, MetricsBindError> {
        addr.map(|addr| {
            Self::bind(addr, metrics.clone()).map_err(|source| MetricsBindError { addr, source })
        })
        .transpose()
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let addr = self.listener.local_addr().ok();
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "metrics listener unusable");
                return;
            }
        };
        tracing::info!(?addr, "serving metrics");
        if let Err(e) = axum::serve(listener, router(self.metrics))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics listener failed");
        }
    }

    /// Serves in a task of its own until the returned guard is dropped.
    pub fn spawn(self) -> StopOnDrop {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(self.serve(stop.clone().cancelled_owned()));
        StopOnDrop(stop)
    }
}

/// Stops a spawned metrics listener when dropped.
#[derive(Debug)]
pub struct StopOnDrop(tokio_util::sync::CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
