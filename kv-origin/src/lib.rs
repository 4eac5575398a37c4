//! The tierkv origin: the source of truth. It is the only tier that talks to
//! object storage (S3, GCS, Azure, local files or memory, through the
//! `object_store` crate), and it serves kv-proto over QUIC to regional nodes
//! and edges.
//!
//! - **Writes** are acknowledged only once the object store holds the new
//!   object. Each gets a version from a hybrid logical clock ([`hlc`]), and
//!   writes to one key are serialized, so the stored object always carries
//!   the highest version: the last write wins.
//! - **Reads** of an expired value answer not found. Concurrent reads of one
//!   key make one object-store read.
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
//! - [`store`]: building the object store from a URL; timeouts, retries, counters.
//! - [`hlc`]: versions from a hybrid logical clock.
//! - [`config`]: the service config; [`server`]: binding it to a QUIC endpoint.
//! - [`error`]: errors and their statuses.

pub mod config;
pub mod envelope;
pub mod error;
pub mod hlc;
pub mod layout;
pub mod origin;
pub mod server;
pub mod store;

pub use config::OriginConfig;
pub use error::OriginError;
pub use origin::Origin;
pub use server::{OriginServer, StartError};
pub use store::{Store, StoreConfig, StoreError};
