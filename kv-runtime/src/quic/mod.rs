//! QUIC links between tiers.
//!
//! - [`transport`]: keep-alive and idle timeout, so a dead peer is noticed within seconds.
//! - [`frames`]: reading and writing one kv-proto frame on a QUIC stream.
//! - [`server`]: [`QuicServer`], one task per connection and one per request stream.
//! - [`peer`]: [`PeerAddr`], `host:port` resolved at each dial.
//! - [`client`]: [`Connector`] (one client endpoint) and [`Link`] (one peer, reconnecting).
//! - [`failover`]: [`Peers`] (interchangeable nodes in a key's rendezvous order) and
//!   [`Attempts`] (one request through them, within its deadline, to one answer).

pub mod client;
pub mod failover;
pub mod frames;
pub mod peer;
pub mod server;
pub mod transport;

pub use client::{Connector, ConnectorError, Link, LinkError};
pub use failover::{Attempts, Peers, rendezvous_score};
pub use peer::{PeerAddr, PeerAddrError};
pub use server::{Handler, QuicServer, ServerError, ServerOptions};
pub use transport::TransportOptions;
