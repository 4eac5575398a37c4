//! The change feed: every acknowledged write, pushed down every tier.
//!
//! Each origin process publishes the writes and deletes it makes; each
//! regional node follows every origin and republishes what it applies; each
//! edge follows the regional nodes it routes to (or the origins, when there
//! is no regional tier). A feed runs over the QUIC link the tiers already
//! share: the subscriber opens a stream and sends a `Subscribe` frame, and
//! the publisher answers on it with the events (see `kv_proto::feed`).
//!
//! - [`publisher`]: [`Publisher`], numbered events in a bounded backlog.
//! - [`serve`]: writing one subscription's events to its stream.
//! - [`subscriber`]: [`follow`], one task per upstream node, reconnecting and
//!   resuming, and the [`FeedSink`] each tier implements.
//! - [`trust`]: [`TrustFloor`], the moment before which cached copies must be
//!   checked upstream, raised at every gap.

pub mod publisher;
pub mod serve;
pub mod subscriber;
pub mod trust;

pub use publisher::{DEFAULT_BACKLOG, Published, Publisher, Subscription};
pub use serve::serve_subscription;
pub use subscriber::{FeedSink, follow};
pub use trust::TrustFloor;
