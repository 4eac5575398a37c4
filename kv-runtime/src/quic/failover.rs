//! Sending a request to one of several peers, in a key's order, with failover.
//!
//! [`Peers`] is a set of links to interchangeable nodes (regional nodes, or
//! origin processes). Each key has an order over them by rendezvous
//! (highest random weight) hashing, so every caller agrees on a key's home
//! node. Nodes whose link is down ([`Link::is_down`]) go to the back of the
//! order rather than out of it: when every node is down, trying them beats
//! refusing at once.
//!
//! [`Attempts`] carries one request through any number of nodes, within its
//! deadline, and turns what went wrong into one answer:
//!
//! - an answer that is not a retryable failure ends the request;
//! - a retryable failure (the node could not reach its own upstream, or
//!   could not confirm a write) moves on to the next node. A write goes with
//!   the same write id, so the origin applies it at most once;
//! - a write that may have been applied anywhere, and was not confirmed
//!   later, ends as `outcome_unknown`, never as a plain failure;
//! - a deadline that ran out ends as `timeout`.

use std::time::Duration;

use kv_proto::{ErrorSource, Op, Request, Response, Status};

use super::client::{Link, LinkError};
use crate::deadline::Deadline;

/// Interchangeable peers, each with its own link.
#[derive(Debug, Clone)]
pub struct Peers {
    role: &'static str,
    links: Vec<Link>,
}

impl Peers {
    /// Peers playing `role` (a tier's name, for messages), reached over
    /// `links`; a link that fails counts as down for `down_for`.
    pub fn new(role: &'static str, links: Vec<Link>, down_for: Duration) -> Self {
        for link in &links {
            link.set_down_for(down_for);
        }
        Self { role, links }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Every link, in the order given.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The links in `routing_key`'s order: by rendezvous weight, with the
    /// links that are down after the others.
    pub fn order(&self, routing_key: &str) -> Vec<&Link> {
        let mut links: Vec<_> = self
            .links
            .iter()
            .map(|link| {
                let weight = rendezvous_score(&link.peer().to_string(), routing_key);
                ((link.is_down(), std::cmp::Reverse(weight)), link)
            })
            .collect();
        links.sort_by_key(|(rank, _)| *rank);
        links.into_iter().map(|(_, link)| link).collect()
    }

    /// `routing_key`'s home: the first of its order that is not down.
    pub fn home(&self, routing_key: &str) -> Option<&Link> {
        self.order(routing_key)
            .into_iter()
            .find(|link| !link.is_down())
    }

    /// Whether some peer can be reached now (dialling it if need be).
    pub async fn reachable(&self) -> bool {
        for link in &self.links {
            if link.connect().await.is_ok() {
                return true;
            }
        }
        false
    }
}

/// One request's way through any number of peers.
#[derive(Debug)]
pub struct Attempts<'a> {
    request: &'a Request,
    deadline: Deadline,
    sent: usize,
    /// A write may have been applied by an attempt that was not confirmed.
    in_doubt: bool,
    timed_out: bool,
    /// The last retryable failure a peer answered with.
    last_answer: Option<Response>,
    /// What went wrong, peer by peer, for the final message.
    trail: Vec<String>,
}

impl<'a> Attempts<'a> {
    /// Starts carrying `request`, which must be answered by `deadline`.
    pub fn new(request: &'a Request, deadline: Deadline) -> Self {
        Self {
            request,
            deadline,
            sent: 0,
            in_doubt: false,
            timed_out: false,
            last_answer: None,
            trail: Vec::new(),
        }
    }

    /// How many times the request was sent.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Counts every send after the first as a failover of the request's
    /// operation; `failovers` holds one counter per operation, in
    /// [`crate::metrics::OPS`] order ([`crate::metrics::Metrics::failovers`]).
    pub fn count_failovers(&self, failovers: &[prometheus::IntCounter; 5]) {
        if self.sent > 1 {
            let extra = u64::try_from(self.sent - 1).unwrap_or(u64::MAX);
            failovers[crate::metrics::op_index(self.request.op.name())].inc_by(extra);
        }
    }

    /// Sends the request to each of `peers` in `routing_key`'s order until
    /// one answers with something other than a retryable failure, and
    /// returns that answer. `None` when none did, or the deadline ran out
    /// first: then [`Attempts::failure`] is the answer.
    pub async fn send_to(&mut self, peers: &Peers, routing_key: &str) -> Option<Response> {
        let role = peers.role;
        for link in peers.order(routing_key) {
            let budget = self.deadline.upstream_budget();
            if budget.is_zero() {
                self.timed_out = true;
                return None;
            }
            let request = Request {
                budget,
                ..self.request.clone()
            };
            self.sent += 1;
            match link.request(&request).await {
                Ok(response) if !response.status.is_failure() || !response.is_retryable() => {
                    return Some(response.relayed());
                }
                Ok(response) => {
                    let message = response.message().unwrap_or_default();
                    self.trail
                        .push(format!("{role} {}: {message}", link.peer()));
                    match response.status {
                        Status::OutcomeUnknown => self.in_doubt = true,
                        Status::Timeout => self.timed_out = true,
                        _ => {}
                    }
                    tracing::debug!(peer = %link.peer(), status = %response.status, "peer answered with a retryable failure; trying the next");
                    self.last_answer = Some(response.relayed());
                }
                Err(e) => {
                    self.trail.push(format!("{role}: {e}"));
                    self.in_doubt |= e.may_have_applied();
                    self.timed_out |= matches!(e, LinkError::Timeout { .. });
                    tracing::debug!(peer = %link.peer(), error = %e, "request to peer failed; trying the next");
                }
            }
        }
        None
    }

    /// The answer when no peer gave one: `outcome_unknown` for a write that
    /// may have been applied, `timeout` when the deadline ran out, else the
    /// last failure a peer answered with, else `unavailable`.
    pub fn failure(self) -> Response {
        let id = self.request.id;
        let trail = match self.trail.is_empty() {
            true => "no peer to send it to".to_string(),
            false => self.trail.join("; "),
        };
        let is_write = matches!(self.request.op, Op::Put(_) | Op::Delete(_));
        if is_write && self.in_doubt {
            return Response::failure(
                id,
                Status::OutcomeUnknown,
                ErrorSource::Upstream,
                true,
                format!(
                    "the write was sent but not confirmed, so it may or may not be applied; \
                     retrying it with the same write id is safe ({trail})"
                ),
            );
        }
        if self.timed_out || self.deadline.is_expired() {
            return Response::failure(
                id,
                Status::Timeout,
                ErrorSource::Upstream,
                true,
                format!("no answer within the request's deadline ({trail})"),
            );
        }
        if let Some(answer) = self.last_answer {
            return answer;
        }
        Response::failure(
            id,
            Status::Unavailable,
            ErrorSource::Upstream,
            true,
            format!("no upstream reachable ({trail})"),
        )
    }
}

/// The weight of `node` for `key`: FNV-1a over both, then a 64-bit finalizer
/// (from splitmix64) so that similar node names spread well. Fixed, so every
/// caller, whatever its build, computes the same order.
pub fn rendezvous_score(node: &str, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes().chain([0xff]).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(nodes: &[&str], key: &str) -> String {
        nodes
            .iter()
            .max_by_key(|n| rendezvous_score(n, key))
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn keys_spread_evenly_over_nodes() {
        let nodes = ["10.0.0.1:7401", "10.0.0.2:7401", "10.0.0.3:7401"];
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            let h = home(&nodes, &format!("key-{i}"));
            counts[nodes.iter().position(|n| *n == h).unwrap_or(0)] += 1;
        }
        for count in counts {
            assert!(
                (8_000..12_000).contains(&count),
                "uneven spread: {counts:?}"
            );
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let all = ["a:1", "b:1", "c:1", "d:1"];
        let without_c = ["a:1", "b:1", "d:1"];
        for i in 0..5_000 {
            let key = format!("k{i}");
            let before = home(&all, &key);
            let after = home(&without_c, &key);
            if before != "c:1" {
                assert_eq!(before, after, "key {key} moved though its node stayed");
            }
        }
    }
}
