//! The history of a campaign: every operation a client ran, with when it
//! started and ended (microseconds of the monotonic clock since the
//! campaign began), what it asked and what it was told.
//!
//! A write is one operation however many times it was sent: each send is an
//! [`Attempt`], and the operation's outcome sums them up. The checker reads
//! nothing else.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// `PUT /v1/{ns}/{key}`.
    Put,
    /// `DELETE /v1/{ns}/{key}`.
    Delete,
    /// `GET /v1/{ns}/{key}`.
    Get,
}

impl OpKind {
    /// `put`, `delete` or `get`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Delete => "delete",
            OpKind::Get => "get",
        }
    }

    /// Whether it writes.
    pub fn is_write(self) -> bool {
        self != OpKind::Get
    }
}

/// How an operation (or one attempt of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged (a write) or answered 200/404 (a read).
    Ok,
    /// A definite failure: a write so answered was not applied.
    Fail,
    /// A write that may or may not have been applied.
    Unknown,
}

impl Outcome {
    /// `ok`, `fail` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        }
    }
}

/// When an operation ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// While faults were injected.
    Campaign,
    /// The reads of every key through every edge after quiescence.
    Final,
}

/// One send of an operation to one edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The edge, from 0.
    pub edge: usize,
    /// Sent, µs since the campaign began.
    pub start_us: u64,
    /// Answered or given up on, µs since the campaign began.
    pub end_us: u64,
    /// What this send alone says.
    pub outcome: Outcome,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The error's code (`unavailable`, `outcome_unknown`, ...), or the
    /// client's own (`client_timeout`, `connect`, `bad_answer`).
    pub code: Option<String>,
    /// The `kv-version` answered.
    pub version: Option<u64>,
    /// The tier that answered a read (`kv-tier`: edge, regional, origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// How a read's answer related to the edge's cache (`kv-cache-status`:
    /// hit, miss, revalidated, stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// A deliberate repeat of an acknowledged write, to check that it is
    /// answered with the same version and not applied again.
    #[serde(default)]
    pub replay: bool,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique in the history.
    pub id: u64,
    /// The client that ran it: `w3`, `r5`, `final`.
    pub client: String,
    /// When it ran.
    pub phase: Phase,
    /// What it does.
    pub kind: OpKind,
    /// The key.
    pub key: String,
    /// A PUT's value, or the value a GET read (None: a 404).
    pub value: Option<String>,
    /// A write's acknowledged version; a GET's `kv-version` (200, or a 404
    /// of a deleted key).
    pub version: Option<u64>,
    /// First send, µs since the campaign began.
    pub start_us: u64,
    /// When the outcome was known (the acknowledging send's answer), µs.
    pub end_us: u64,
    /// The sum of the attempts: acknowledged by one, definitely failed
    /// (every attempt definite), or unknown.
    pub outcome: Outcome,
    /// A write's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// Every send, replays included.
    pub attempts: Vec<Attempt>,
}

impl Op {
    /// The edge of the last attempt that decided the outcome.
    pub fn edge(&self) -> Option<usize> {
        self.attempts
            .iter()
            .rev()
            .find(|a| !a.replay)
            .map(|a| a.edge)
    }

    /// One line for an excerpt.
    pub fn line(&self) -> String {
        let mut line = format!(
            "#{:<6} [{:>9.3}s → {:>9.3}s] {:<6} {:<6} {:<6} {}",
            self.id,
            self.start_us as f64 / 1e6,
            self.end_us as f64 / 1e6,
            self.client,
            self.kind.name(),
            self.key,
            self.outcome.name(),
        );
        match (self.kind, &self.value) {
            (OpKind::Get, Some(v)) => line.push_str(&format!(" value={v}")),
            (OpKind::Get, None) if self.outcome == Outcome::Ok => line.push_str(" 404"),
            (_, Some(v)) => line.push_str(&format!(" value={v}")),
            _ => {}
        }
        if let Some(v) = self.version {
            line.push_str(&format!(" v={v}"));
        }
        if let Some(key) = &self.idempotency_key {
            line.push_str(&format!(" idem={key}"));
        }
        let sends: Vec<String> = self
            .attempts
            .iter()
            .map(|a| {
                let mut s = format!(
                    "e{}{}:{}",
                    a.edge + 1,
                    if a.replay { "(replay)" } else { "" },
                    a.status.map_or("-".to_string(), |s| s.to_string())
                );
                if let Some(code) = &a.code {
                    s.push_str(&format!("/{code}"));
                }
                if let Some(v) = a.version {
                    s.push_str(&format!(" v={v}"));
                }
                if let Some(tier) = &a.tier {
                    s.push_str(&format!(" from {tier}"));
                }
                if let Some(cache) = &a.cache {
                    s.push_str(&format!(" ({cache})"));
                }
                s.push_str(&format!(
                    " @{:.3}-{:.3}",
                    a.start_us as f64 / 1e6,
                    a.end_us as f64 / 1e6
                ));
                s
            })
            .collect();
        line.push_str(&format!(" [{}]", sends.join("; ")));
        line
    }
}

/// Collects operations from many tasks.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    next_id: AtomicU64,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A recorder whose clock started at `origin`.
    pub fn starting_at(origin: Instant) -> Self {
        Self {
            origin,
            next_id: AtomicU64::new(1),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Microseconds since the campaign began.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A fresh operation id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a finished operation.
    pub fn record(&self, op: Op) {
        // A poisoned lock only means another task panicked while pushing;
        // the vector itself is intact.
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        ops.push(op);
    }

    /// Every operation so far, by start time.
    pub fn snapshot(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ops.sort_by_key(|op| (op.start_us, op.id));
        ops
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}
