//! Where an edge sends what its hot cache cannot answer.
//!
//! Each key has a home regional node, chosen by rendezvous hashing over the
//! regional nodes, so every edge of a region agrees on it and a region
//! shares one upper tier. If the home node cannot answer, the request goes
//! to the next node in the key's order, then to the origin processes (any of
//! them can serve any key), all within the request's deadline: see
//! [`kv_runtime::quic::failover`] for how failures become one answer. With
//! no regional nodes the edge talks to the origins directly: the untiered
//! set-up.

use kv_proto::{Request, Response};
use kv_runtime::deadline::Deadline;
use kv_runtime::metrics::Metrics;
use kv_runtime::quic::{Attempts, Peers};
use prometheus::IntCounter;

/// The regional nodes and the origins.
#[derive(Debug)]
pub struct Upstream {
    regionals: Peers,
    origins: Peers,
    failovers: [IntCounter; 5],
}

impl Upstream {
    /// Regional nodes (in any order) and origin processes, counting
    /// failovers in `metrics`.
    pub fn new(regionals: Peers, origins: Peers, metrics: &Metrics) -> Self {
        Self {
            regionals,
            origins,
            failovers: metrics.failovers("edge"),
        }
    }

    /// The nodes whose change feeds this edge follows: the regional nodes
    /// (each relays every origin's changes), or the origins when there is
    /// no regional tier.
    pub fn feed_sources(&self) -> &[kv_runtime::quic::Link] {
        match self.regionals.is_empty() {
            true => self.origins.links(),
            false => self.regionals.links(),
        }
    }

    /// Whether there is a regional tier.
    pub fn is_tiered(&self) -> bool {
        !self.regionals.is_empty()
    }

    /// The address of `routing_key`'s home regional node, if one is up.
    pub fn home(&self, routing_key: &str) -> Option<String> {
        self.regionals
            .home(routing_key)
            .map(|link| link.peer().to_string())
    }

    /// Sends `request` to the key's home regional node, failing over to the
    /// next nodes and then the origins, until `deadline`. Always answers:
    /// when no tier could, with the failure that says why.
    pub async fn request(
        &self,
        routing_key: &str,
        request: &Request,
        deadline: &Deadline,
    ) -> Response {
        let mut attempts = Attempts::new(request, *deadline);
        let mut answer = attempts.send_to(&self.regionals, routing_key).await;
        if answer.is_none() && !deadline.is_expired() {
            answer = attempts.send_to(&self.origins, routing_key).await;
        }
        attempts.count_failovers(&self.failovers);
        answer.unwrap_or_else(|| attempts.failure())
    }

    /// Whether some upstream can be reached now (dialling it if need be).
    pub async fn reachable(&self) -> bool {
        self.regionals.reachable().await || self.origins.reachable().await
    }
}
