//! What every tierkv process shares: mutually authenticated QUIC links that
//! carry [`kv_proto`] frames, certificates, request coalescing, configuration
//! loading, logging and shutdown.
//!
//! # Layout
//!
//! - [`tls`]: loading PEM files into rustls configs that require and verify
//!   certificates on both sides of every link.
//! - [`dev_certs`]: a CA and node certificate generated for local use (`--dev-certs DIR`).
//! - [`quic`]: the transport settings, the [`quic::QuicServer`] accept loop that
//!   dispatches one request per stream to a [`quic::Handler`], and the client
//!   [`quic::Link`] that keeps one reconnecting connection to a peer.
//! - [`feed`]: the change feed that pushes every write down the tiers: its
//!   publisher, its subscriber task, and the trust floor a gap raises.
//! - [`freshness`]: when a cached copy is fresh, due for a background
//!   refresh, or usable stale on error; and the cache status each answer reports.
//! - [`deadline`]: a request's deadline, from the budget it carries, and the
//!   smaller budget it passes upstream.
//! - [`singleflight`]: concurrent calls for one key share one execution.
//! - [`config`]: TOML config files for the binaries; [`cli`]: the flags they share.
//! - [`metrics`]: the Prometheus registry and the handles each tier counts with;
//!   [`metrics_server`]: the `/metrics` endpoint.
//! - [`telemetry`]: `tracing` subscriber set-up (`RUST_LOG`, text or JSON).
//! - [`shutdown`]: a future that resolves on SIGINT or SIGTERM.
//! - [`time`]: wall-clock helpers in unix seconds and milliseconds.
//! - [`watermarks`]: the highest version seen of each recent key, which only rises.

pub mod cli;
pub mod config;
pub mod deadline;
pub mod dev_certs;
pub mod feed;
pub mod freshness;
pub mod metrics;
pub mod metrics_server;
pub mod quic;
pub mod shutdown;
pub mod singleflight;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod watermarks;
