//! The tierkv regional tier: a foyer hybrid cache (memory, then disk) in
//! front of the origin, served over QUIC to edges.
//!
//! - **GET** reads memory, then disk, then the origin (read-through).
//!   Concurrent misses of one key make one origin request, which stops when
//!   no reader waits for it any more. A cached answer, misses included (a
//!   deleted key's at its delete's version), is fresh for the cache TTL (the
//!   read's own, up to the node's maximum, or its default of 60 s) counted
//!   from the origin's read, and never past the value's expiration; it is
//!   refreshed in the background in the last part of its TTL, and served
//!   stale within a grace period when the origin fails. The response names
//!   the tier that answered and the age of its copy.
//! - **PUT and DELETE** go to the origin processes (any serves any key, in
//!   the key's rendezvous order, with failover and the same write id); before
//!   the node answers, its cache holds the acknowledged value, or a cached
//!   miss for a delete. Versions of recent writes are remembered so a read
//!   racing with a write cannot put the old value back.
//! - **LIST** goes to the origins.
//! - **The change feed**: the node follows every origin's feed, applies each
//!   change to its cache (replacing the copy when the value travelled
//!   inline or the key was deleted, dropping it otherwise) and relays it to
//!   the edges that follow this node. After a gap in an origin's feed (the
//!   origin restarted, or this node fell behind its backlog), copies fetched
//!   before it are checked with the origin before they are served again.
//! - **Deadlines**: every request is answered within the budget its caller
//!   sent, less a margin; an origin that merely times out is not counted down.
//! - **Restarts** recover the disk cache (deletes too, through foyer's
//!   tombstone log). foyer checksums each disk entry, and a damaged one is
//!   read as a miss.
//! - **Observability**: cache lookups per tier (`regional-memory`, then
//!   `regional-disk`), coalesced fills, failovers, cache sizes, the origin
//!   links and foyer's own metrics, in the registry `/metrics` serves (`--metrics`);
//!   each request's span records its cache result.
//!
//! # Layout
//!
//! - [`regional`]: the service and its writes; [`read`]: its read path.
//! - [`cache`]: opening the hybrid cache.
//! - [`cached`]: what is cached per key, and its disk encoding.
//! - [`feed`]: applying the origins' feeds to the cache, and relaying them.
//! - [`config`]: the service config; [`server`]: binding it.

pub mod cache;
pub mod cached;
pub mod config;
pub mod feed;
pub mod read;
pub mod regional;
pub mod server;

pub use config::RegionalConfig;
pub use regional::{Regional, RegionalStats};
pub use server::{RegionalServer, StartError};
