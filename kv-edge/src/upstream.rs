//! Where an edge sends what its hot cache cannot answer.
//!
//! Each key has a home regional node, chosen by rendezvous (highest random
//! weight) hashing over the healthy nodes, so every edge of a region agrees
//! on it and a region shares one upper tier. If the home node fails or times
//! out, the request goes to the next node in the key's order, then to the
//! origin. A node that failed is skipped for a while. With no regional nodes
//! the edge talks to the origin directly: the untiered set-up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kv_proto::{Request, Response, Status};
use kv_runtime::quic::{Link, LinkError};
use kv_runtime::time::unix_millis;

/// One regional node.
#[derive(Debug)]
struct Node {
    /// Its identity in the hash: its address, as every edge writes it.
    id: String,
    link: Link,
    down_until_ms: AtomicU64,
}

/// The regional nodes and the origin.
#[derive(Debug)]
pub struct Upstream {
    regionals: Vec<Node>,
    origin: Link,
    down_for: Duration,
}

/// No tier could answer.
#[derive(Debug, thiserror::Error)]
#[error("no upstream answered; last error: {last}")]
pub struct UpstreamError {
    /// The last failure seen.
    pub last: String,
}

impl Upstream {
    /// Regional links (in any order) and the origin link. A node that fails
    /// is skipped for `down_for`.
    pub fn new(regionals: Vec<Link>, origin: Link, down_for: Duration) -> Self {
        let regionals = regionals
            .into_iter()
            .map(|link| Node {
                id: link.peer().to_string(),
                link,
                down_until_ms: AtomicU64::new(0),
            })
            .collect();
        Self {
            regionals,
            origin,
            down_for,
        }
    }

    /// Whether there is a regional tier.
    pub fn is_tiered(&self) -> bool {
        !self.regionals.is_empty()
    }

    /// Healthy regional nodes in `routing_key`'s order: its home node first.
    fn order(&self, routing_key: &str) -> Vec<&Node> {
        let now = unix_millis();
        let mut nodes: Vec<_> = self
            .regionals
            .iter()
            .filter(|n| n.down_until_ms.load(Ordering::Relaxed) <= now)
            .map(|n| (rendezvous_score(&n.id, routing_key), n))
            .collect();
        nodes.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
        nodes.into_iter().map(|(_, n)| n).collect()
    }

    /// The address of `routing_key`'s home regional node, if any is healthy.
    pub fn home(&self, routing_key: &str) -> Option<String> {
        self.order(routing_key).first().map(|n| n.id.clone())
    }

    /// Sends `request` to the key's home node, failing over to the next
    /// healthy nodes and then the origin. An `unavailable` answer also fails
    /// over: the node could not reach its own upstream.
    pub async fn request(
        &self,
        routing_key: &str,
        request: &Request,
    ) -> Result<Response, UpstreamError> {
        let mut last = String::from("no upstream configured");
        for node in self.order(routing_key) {
            match node.link.request(request).await {
                Ok(response) if response.status != Status::Unavailable => return Ok(response),
                Ok(response) => {
                    last = format!(
                        "{}: {}",
                        node.id,
                        response.message().unwrap_or("unavailable")
                    );
                    tracing::warn!(node = %node.id, "regional node answered unavailable; failing over");
                }
                Err(e) => {
                    last = e.to_string();
                    self.mark_down(node, &e);
                }
            }
        }
        match self.origin.request(request).await {
            Ok(response) => Ok(response),
            Err(e) => {
                tracing::warn!(error = %e, "origin unreachable");
                let last = match self.regionals.is_empty() {
                    true => e.to_string(),
                    false => format!("{last}; origin: {e}"),
                };
                Err(UpstreamError { last })
            }
        }
    }

    fn mark_down(&self, node: &Node, error: &LinkError) {
        tracing::warn!(node = %node.id, %error, down_for = ?self.down_for, "regional node failed; skipping it");
        let until = unix_millis()
            .saturating_add(u64::try_from(self.down_for.as_millis()).unwrap_or(u64::MAX));
        node.down_until_ms.store(until, Ordering::Relaxed);
    }

    /// Whether some upstream can be reached now (dialling it if need be).
    pub async fn reachable(&self) -> bool {
        for node in &self.regionals {
            if node.link.connect().await.is_ok() {
                return true;
            }
        }
        self.origin.connect().await.is_ok()
    }
}

/// The weight of `node` for `key`: FNV-1a over both, then a 64-bit finalizer
/// (from splitmix64) so that similar node names spread well. Fixed, so every
/// edge, whatever its build, computes the same order.
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
