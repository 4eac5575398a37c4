//! The tierkv origin: the source of truth. It is the only tier that talks to
//! object storage (S3, GCS, Azure, local files or memory, through the
//! `object_store` crate), and it serves kv-proto over QUIC to regional nodes
//! and edges.
//!
//! - **Writes** are acknowledged only once the object store holds the new
//!   object. Each is a compare-and-swap against the object it read, with a
//!   version above the stored one and a hybrid logical clock ([`hlc`]): so
//!   versions of a key strictly increase, and several origin processes can
//!   share one bucket. A write's id is kept with the key, so a retry is
//!   applied at most once; a delete leaves a tombstone ([`origin`] tells the
//!   whole story). A local directory, which cannot compare and swap, is
//!   locked by its one origin process.
//! - **The change feed**: every write and delete this process applies is
//!   published, with its version and commit time (and its value, when
//!   small), to every regional node that follows this process
//!   (`kv_runtime::feed`).
//! - **Reads** of an expired value answer not found. Concurrent reads of one
//!   key make one object-store read. A read naming a minimum version never
//!   gets an older one (`version_unavailable` instead); a read naming the
//!   version it holds (`unless_version`) is answered `not_modified` from the
//!   object's head alone when that version is current.
//! - **LIST** returns keys by prefix in lexicographic order, with an opaque
//!   cursor, on every backend ([`layout`] says how).
//! - **Failures** of the store reach callers as `unavailable`; every store
//!   call has a timeout and bounded retries ([`store`]).
//! - **Metrics**: every object-store call (each attempt) by operation and
//!   outcome, with its duration, and coalesced reads; served on `--metrics`.
//!
//! # The stored object
//!
//! Each key is one object: a self-describing, checksummed envelope with a
//! format version. See [`envelope`] for the byte layout and [`layout`] for
//! how keys map to paths.
//!
//! # Layout
//!
//! - [`origin`]: the service: GET, PUT, DELETE, LIST.
//! - [`envelope`]: the object format.
//! - [`layout`]: key ↔ path mapping and LIST cursors.
//! - [`store`]: building the object store from a URL; conditional writes, deadlines,
//!   retries, counters, and the lock file of a local directory.
//! - `conditional_delete` (with S3): deleting an object only if it is unchanged.
//! - [`sweep`]: removing expired values and old tombstones, at a bounded rate.
//! - [`hlc`]: versions from a hybrid logical clock.
//! - [`config`]: the service config; [`server`]: binding it to a QUIC endpoint.
//! - [`error`]: errors and their statuses.

#[cfg(feature = "aws")]
pub mod conditional_delete;
pub mod config;
pub mod envelope;
pub mod error;
pub mod hlc;
pub mod layout;
pub mod origin;
pub mod server;
pub mod store;
pub mod sweep;

pub use config::OriginConfig;
pub use error::OriginError;
pub use origin::{Applied, Found, Origin, OriginOptions};
pub use server::{OriginServer, StartError};
pub use store::{DeleteOutcome, Store, StoreConfig, StoreError};
pub use sweep::{SweepOptions, SweepReport};
