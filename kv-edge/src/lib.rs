//! The tierkv edge: the tier next to applications.
//!
//! - An HTTP API ([`http`]) for get, put, delete and list.
//! - An in-process hot cache ([`hot`]) that answers the hottest small values
//!   without leaving the process.
//! - Upstream routing ([`upstream`]): each key's home regional node by
//!   rendezvous hashing over the nodes, failing over to the next node and
//!   then the origin processes, all over direct QUIC links.
//! - Deadlines: every request gets one ([`http::Deadlines`]), carried
//!   upstream as the time that remains; a failure says what kind it is, who
//!   is to blame and whether a retry helps, and a write that was sent but not
//!   confirmed is `outcome_unknown` (504), never a plain failure.
//! - Write ids: a PUT or DELETE carries its `Idempotency-Key` (or a fresh id)
//!   to the origin, which applies it at most once, however often it is retried.
//! - Concurrent misses of one key make one upstream request, and a write
//!   through an edge is visible on that edge at once ([`edge`]).
//! - Freshness ([`read`]): a read may name its cache TTL (up to a maximum)
//!   and a minimum version (`kv-min-version`: read-your-writes on any edge);
//!   hot copies are refreshed in the background before they expire, and
//!   served stale, within a grace period, when the upstream fails. Every
//!   answer says which (`kv-cache-status`) and how old it is (`age`).
//! - The change feed ([`feed`]): the edge follows the feeds of the regional
//!   nodes it routes to (or of the origins, untiered), so a write through
//!   any edge replaces or drops this edge's copy within a network trip of
//!   the origin; after a gap in a feed, copies fetched before it are checked
//!   upstream before they are served.
//! - [`dev`]: the one-process local stack (origin, regional node and edge).
//! - Metrics on `GET /metrics` (requests, hot-cache lookups and size, which
//!   tier answered each read, upstream calls, coalescing); a span per request
//!   with its id, key hash, hot-cache result and answering tier.
//!
//! # Layout
//!
//! - [`edge`]: the service and its writes; [`read`]: its read path;
//!   [`hot`]: the hot cache; [`upstream`]: routing; [`feed`]: applying the
//!   upstream feeds.
//! - [`http`]: routes, limits and JSON errors.
//! - [`config`]: the service config; [`server`]: binding it; [`dev`]: the local stack.

pub mod config;
pub mod dev;
pub mod edge;
pub mod feed;
pub mod hot;
pub mod http;
pub mod read;
pub mod server;
pub mod upstream;

pub use config::EdgeConfig;
pub use edge::{Edge, EdgeError, Written};
pub use read::{Read, ReadOptions};
pub use server::{EdgeServer, StartError};
