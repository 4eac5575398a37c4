//! Checks a campaign's history against what tierkv promises. A pure
//! function of the history: no clocks, no I/O.
//!
//! Per key:
//! - **durability**: after quiescence every edge reads the highest
//!   acknowledged version or a later one, and the edges agree;
//! - **real-time order**: acknowledged writes get distinct versions, and a
//!   write that began after another ended has a higher version;
//! - **no phantom reads**: every value read was written (by a write that had
//!   begun), with the version its write was acknowledged with; every
//!   tombstone version read belongs to a delete;
//! - **failed writes invisible**: no read sees a write that was answered
//!   with a definite failure;
//! - **bounded staleness**: a read that starts more than the bound after an
//!   acknowledged write ended sees that write or a later one;
//! - **idempotency**: every acknowledgement of one write (retries and
//!   replays, through any edge) carries the same version.
//!
//! A write whose outcome is unknown may have been applied, or not.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::history::{Op, OpKind, Outcome, Phase};

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Short name.
    pub name: &'static str,
    /// What it verifies.
    pub description: &'static str,
    /// No violation.
    pub passed: bool,
    /// How many violations.
    pub violations: u64,
    /// The first violation, by time.
    pub first: Option<Violation>,
    /// The first few violations, by time (the first included).
    pub examples: Vec<Violation>,
}

/// Violations kept per check as examples.
pub const EXAMPLES: usize = 5;

/// One violation: what is wrong and the operations involved, one per line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The operations involved, as [`Op::line`] renders them.
    pub ops: Vec<String>,
    /// When it happened, µs since the campaign began.
    pub at_us: u64,
}

/// The names of the checks, in report order.
pub const CHECKS: [(&str, &str); 6] = [
    (
        "durability",
        "after quiescence every edge reads the highest acknowledged version or a later one, and all edges agree",
    ),
    (
        "real_time_order",
        "acknowledged writes have distinct versions; A ended before B began => version(A) < version(B)",
    ),
    (
        "no_phantom_reads",
        "every value read was written, with its acknowledged version; every tombstone version read is a delete's",
    ),
    (
        "failed_writes_invisible",
        "no read sees a write answered with a definite failure (503, 504 timeout, 4xx)",
    ),
    (
        "bounded_staleness",
        "a read starting more than the bound after an acknowledged write ended sees it or a later write",
    ),
    (
        "idempotency",
        "all acknowledgements of one write (one Idempotency-Key) carry the same version",
    ),
];

/// Runs every check over `history`; `staleness_bound_us` is how long after
/// an acknowledged write a cached older copy may still be served.
pub fn check(history: &[Op], staleness_bound_us: u64) -> Vec<CheckResult> {
    check_with(
        history,
        StalenessBound {
            fresh_us: staleness_bound_us,
            stale_grace_us: 0,
        },
    )
}

/// How stale a read may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalenessBound {
    /// How long after an acknowledged write a read may still return an
    /// older version, µs.
    pub fresh_us: u64,
    /// How much longer for a read the edge marked stale (`kv-cache-status:
    /// stale`: served past its TTL because the upstream failed), µs.
    pub stale_grace_us: u64,
}

/// Runs every check over `history`, with the staleness bound `bound`.
pub fn check_with(history: &[Op], bound: StalenessBound) -> Vec<CheckResult> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut found: Vec<Vec<Violation>> = vec![Vec::new(); CHECKS.len()];
    for (key, ops) in &by_key {
        let key_ops = KeyOps::new(key, ops);
        found[0].extend(key_ops.durability());
        found[1].extend(key_ops.real_time_order());
        found[2].extend(key_ops.phantom_reads());
        found[3].extend(key_ops.failed_writes_visible());
        found[4].extend(key_ops.staleness(bound));
        found[5].extend(key_ops.idempotency());
    }
    CHECKS
        .iter()
        .zip(found)
        .map(|(&(name, description), mut violations)| {
            violations.sort_by_key(|v| v.at_us);
            CheckResult {
                name,
                description,
                passed: violations.is_empty(),
                violations: violations.len() as u64,
                first: violations.first().cloned(),
                examples: violations.into_iter().take(EXAMPLES).collect(),
            }
        })
        .collect()
}

/// What a successful read saw, as a point in the key's version order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A value, or a tombstone, of this version.
    Version(u64),
    /// A 404 with no version: never written, or deleted with its tombstone
    /// version unknown.
    Absent,
}

impl Seen {
    fn of(read: &Op) -> Seen {
        match read.version {
            Some(v) => Seen::Version(v),
            None => Seen::Absent,
        }
    }

    fn describe(self) -> String {
        match self {
            Seen::Version(v) => format!("v={v}"),
            Seen::Absent => "404 without version".into(),
        }
    }

    /// Whether this is older than the acknowledged write `w`. A 404 without
    /// a version is older than any acknowledged PUT, and not older than a
    /// delete.
    fn older_than(self, w: &Op) -> bool {
        let wv = w.version.unwrap_or(0);
        match self {
            Seen::Version(v) => v < wv,
            Seen::Absent => w.kind == OpKind::Put,
        }
    }
}

/// One key's operations, sorted out.
struct KeyOps<'a> {
    key: &'a str,
    /// Acknowledged writes (all carry a version).
    acked: Vec<&'a Op>,
    /// Writes by value (PUTs only).
    puts_by_value: HashMap<&'a str, Vec<&'a Op>>,
    /// Deletes.
    deletes: Vec<&'a Op>,
    /// Successful reads.
    reads: Vec<&'a Op>,
    /// Final reads (successful or not).
    finals: Vec<&'a Op>,
}

fn violation(key: &str, at_us: u64, message: String, ops: &[&Op]) -> Violation {
    Violation {
        key: key.to_owned(),
        message,
        ops: ops.iter().map(|op| op.line()).collect(),
        at_us,
    }
}

impl<'a> KeyOps<'a> {
    fn new(key: &'a str, ops: &[&'a Op]) -> Self {
        let mut this = KeyOps {
            key,
            acked: Vec::new(),
            puts_by_value: HashMap::new(),
            deletes: Vec::new(),
            reads: Vec::new(),
            finals: Vec::new(),
        };
        for &op in ops {
            match op.kind {
                OpKind::Put | OpKind::Delete => {
                    if op.outcome == Outcome::Ok && op.version.is_some() {
                        this.acked.push(op);
                    }
                    if op.kind == OpKind::Put {
                        if let Some(value) = &op.value {
                            this.puts_by_value.entry(value).or_default().push(op);
                        }
                    } else {
                        this.deletes.push(op);
                    }
                }
                OpKind::Get => {
                    if op.phase == Phase::Final {
                        this.finals.push(op);
                    }
                    if op.outcome == Outcome::Ok {
                        this.reads.push(op);
                    }
                }
            }
        }
        this.acked.sort_by_key(|op| (op.start_us, op.id));
        this.reads.sort_by_key(|op| (op.start_us, op.id));
        this.finals.sort_by_key(|op| (op.start_us, op.id));
        this
    }

    /// The write whose value or tombstone `read` returned, if known.
    fn source_of(&self, read: &Op) -> Option<&'a Op> {
        match &read.value {
            Some(value) => self
                .puts_by_value
                .get(value.as_str())
                .and_then(|ws| ws.first())
                .copied(),
            None => {
                let v = read.version?;
                self.deletes.iter().find(|d| d.version == Some(v)).copied()
            }
        }
    }

    fn highest_acked(&self) -> Option<&'a Op> {
        self.acked.iter().copied().max_by_key(|op| op.version)
    }

    fn durability(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.finals.is_empty() {
            return out;
        }
        // The last successful final read through each edge.
        let mut last: BTreeMap<usize, &Op> = BTreeMap::new();
        let mut edges_tried: BTreeMap<usize, &Op> = BTreeMap::new();
        for &read in &self.finals {
            let Some(edge) = read.edge() else { continue };
            edges_tried.insert(edge, read);
            if read.outcome == Outcome::Ok {
                last.insert(edge, read);
            }
        }
        for (edge, read) in &edges_tried {
            if !last.contains_key(edge) {
                out.push(violation(
                    self.key,
                    read.start_us,
                    format!(
                        "no final read through edge e{} succeeded after quiescence",
                        edge + 1
                    ),
                    &[read],
                ));
            }
        }
        if let Some(highest) = self.highest_acked() {
            for read in last.values() {
                if Seen::of(read).older_than(highest) {
                    out.push(violation(
                        self.key,
                        read.start_us,
                        format!(
                            "lost acknowledged write: after quiescence edge e{} reads {}, below the highest acknowledged version {}",
                            read.edge().map_or(0, |e| e + 1),
                            Seen::of(read).describe(),
                            highest.version.unwrap_or(0),
                        ),
                        &[highest, read],
                    ));
                }
            }
        }
        let reads: Vec<&Op> = last.values().copied().collect();
        if let Some(first) = reads.first()
            && reads.iter().any(|r| Seen::of(r) != Seen::of(first))
        {
            out.push(violation(
                self.key,
                reads.iter().map(|r| r.start_us).max().unwrap_or(0),
                "edges disagree after quiescence".into(),
                &reads,
            ));
        }
        out
    }

    fn real_time_order(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut by_version: HashMap<u64, &Op> = HashMap::new();
        for &w in &self.acked {
            let v = w.version.unwrap_or(0);
            if let Some(other) = by_version.insert(v, w) {
                out.push(violation(
                    self.key,
                    w.end_us.max(other.end_us),
                    format!("two acknowledged writes got the same version {v}"),
                    &[other, w],
                ));
            }
        }
        // `acked` is by start: each B against every A that ended before B began.
        let mut by_end: Vec<&Op> = self.acked.clone();
        by_end.sort_by_key(|op| (op.end_us, op.id));
        for &b in &self.acked {
            let bv = b.version.unwrap_or(0);
            for &a in by_end.iter().take_while(|a| a.end_us < b.start_us) {
                if a.version.unwrap_or(0) >= bv {
                    out.push(violation(
                        self.key,
                        b.end_us,
                        format!(
                            "write #{} began after write #{} was acknowledged, yet its version {} is not above {}",
                            b.id,
                            a.id,
                            bv,
                            a.version.unwrap_or(0)
                        ),
                        &[a, b],
                    ));
                    break;
                }
            }
        }
        out
    }

    fn phantom_reads(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut version_of_value: HashMap<&str, &Op> = HashMap::new();
        for &read in &self.reads {
            match (&read.value, read.version) {
                (Some(value), version) => {
                    let writes = self.puts_by_value.get(value.as_str());
                    let Some(write) = writes
                        .and_then(|ws| ws.iter().find(|w| w.start_us <= read.end_us))
                        .copied()
                    else {
                        let mut ops = vec![read];
                        if let Some(w) = writes.and_then(|ws| ws.first()) {
                            ops.insert(0, w);
                        }
                        out.push(violation(
                            self.key,
                            read.start_us,
                            format!("read a value {value:?} that no write (begun by then) wrote"),
                            &ops,
                        ));
                        continue;
                    };
                    if version.is_none() {
                        out.push(violation(
                            self.key,
                            read.start_us,
                            "a 200 without kv-version".into(),
                            &[read],
                        ));
                        continue;
                    }
                    if write.outcome == Outcome::Ok && write.version != version {
                        out.push(violation(
                            self.key,
                            read.start_us,
                            format!(
                                "read {value:?} with version {}, but that write was acknowledged as version {}",
                                version.unwrap_or(0),
                                write.version.unwrap_or(0)
                            ),
                            &[write, read],
                        ));
                        continue;
                    }
                    if let Some(earlier) = version_of_value.get(value.as_str()) {
                        if earlier.version != version {
                            out.push(violation(
                                self.key,
                                read.start_us,
                                format!("one write's value {value:?} read with two versions"),
                                &[write, earlier, read],
                            ));
                        }
                    } else {
                        version_of_value.insert(value, read);
                    }
                    // Another write acknowledged with this version?
                    if let Some(v) = version
                        && let Some(other) = self
                            .acked
                            .iter()
                            .find(|w| w.version == Some(v) && w.value.as_deref() != Some(value))
                    {
                        out.push(violation(
                            self.key,
                            read.start_us,
                            format!(
                                "read {value:?} with version {v}, the version of another acknowledged write"
                            ),
                            &[other, write, read],
                        ));
                    }
                }
                (None, Some(v)) => {
                    if let Some(put) = self
                        .acked
                        .iter()
                        .find(|w| w.kind == OpKind::Put && w.version == Some(v))
                    {
                        out.push(violation(
                            self.key,
                            read.start_us,
                            format!("a 404 with version {v}, the version of an acknowledged PUT"),
                            &[put, read],
                        ));
                        continue;
                    }
                    let acked_delete = self.deletes.iter().any(|d| d.version == Some(v));
                    let maybe_delete = self.deletes.iter().any(|d| {
                        d.outcome == Outcome::Unknown
                            && d.version.is_none()
                            && d.start_us <= read.end_us
                    });
                    if !acked_delete && !maybe_delete {
                        out.push(violation(
                            self.key,
                            read.start_us,
                            format!("a 404 with tombstone version {v} that no delete produced"),
                            &[read],
                        ));
                    }
                }
                (None, None) => {}
            }
        }
        out
    }

    fn failed_writes_visible(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        for &read in &self.reads {
            let Some(value) = &read.value else { continue };
            let Some(writes) = self.puts_by_value.get(value.as_str()) else {
                continue;
            };
            if let Some(failed) = writes.iter().find(|w| w.outcome == Outcome::Fail) {
                out.push(violation(
                    self.key,
                    read.start_us,
                    format!("read {value:?}, a write answered with a definite failure"),
                    &[failed, read],
                ));
            }
        }
        out
    }

    fn staleness(&self, bound: StalenessBound) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.acked.is_empty() {
            return out;
        }
        // Acknowledged writes by end + bound; a running "newest so far".
        let mut by_end: Vec<&Op> = self.acked.clone();
        by_end.sort_by_key(|op| (op.end_us, op.id));
        let mut newest: Vec<&Op> = Vec::with_capacity(by_end.len());
        for &w in &by_end {
            let best = match newest.last() {
                Some(&prev) if prev.version >= w.version => prev,
                _ => w,
            };
            newest.push(best);
        }
        for &read in &self.reads {
            let marked_stale = read
                .attempts
                .iter()
                .any(|a| a.cache.as_deref() == Some("stale"));
            let bound_us = match marked_stale {
                true => bound.fresh_us.saturating_add(bound.stale_grace_us),
                false => bound.fresh_us,
            };
            // Writes that ended more than the bound before the read began.
            let n = by_end.partition_point(|w| w.end_us.saturating_add(bound_us) < read.start_us);
            if n == 0 {
                continue;
            }
            let w = newest[n - 1];
            let seen = Seen::of(read);
            if seen.older_than(w) {
                let mut ops = vec![w];
                if let Some(source) = self.source_of(read) {
                    ops.push(source);
                }
                ops.push(read);
                out.push(violation(
                    self.key,
                    read.start_us,
                    format!(
                        "stale read: began {:.3}s after write #{} (v={}) was acknowledged (bound {:.3}s{}), yet read {}",
                        (read.start_us - w.end_us) as f64 / 1e6,
                        w.id,
                        w.version.unwrap_or(0),
                        bound_us as f64 / 1e6,
                        if marked_stale { ", marked stale" } else { "" },
                        seen.describe(),
                    ),
                    &ops,
                ));
            }
        }
        out
    }

    fn idempotency(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let writes = self
            .puts_by_value
            .values()
            .flatten()
            .chain(self.deletes.iter());
        for &w in writes {
            let mut versions = w
                .attempts
                .iter()
                .filter(|a| a.outcome == Outcome::Ok)
                .filter_map(|a| a.version)
                .chain(w.version);
            let Some(first) = versions.next() else {
                continue;
            };
            if versions.any(|v| v != first) {
                let at = w.attempts.last().map_or(w.end_us, |a| a.end_us);
                out.push(violation(
                    self.key,
                    at,
                    format!(
                        "write with Idempotency-Key {} acknowledged with different versions",
                        w.idempotency_key.as_deref().unwrap_or("-")
                    ),
                    &[w],
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::chaos::history::Attempt;

    const S: u64 = 1_000_000;

    fn attempt(
        edge: usize,
        start: u64,
        end: u64,
        outcome: Outcome,
        version: Option<u64>,
    ) -> Attempt {
        Attempt {
            edge,
            start_us: start,
            end_us: end,
            outcome,
            status: None,
            code: None,
            version,
            tier: None,
            cache: None,
            replay: false,
        }
    }

    fn op(
        id: u64,
        kind: OpKind,
        value: Option<&str>,
        version: Option<u64>,
        span: (u64, u64),
        outcome: Outcome,
    ) -> Op {
        Op {
            id,
            client: "t".into(),
            phase: Phase::Campaign,
            kind,
            key: "k".into(),
            value: value.map(str::to_owned),
            version,
            start_us: span.0,
            end_us: span.1,
            outcome,
            idempotency_key: kind.is_write().then(|| format!("idem-{id}")),
            attempts: vec![attempt(0, span.0, span.1, outcome, version)],
        }
    }

    fn put(id: u64, value: &str, version: Option<u64>, span: (u64, u64), outcome: Outcome) -> Op {
        op(id, OpKind::Put, Some(value), version, span, outcome)
    }

    fn delete(id: u64, version: Option<u64>, span: (u64, u64), outcome: Outcome) -> Op {
        op(id, OpKind::Delete, None, version, span, outcome)
    }

    fn get(id: u64, value: Option<&str>, version: Option<u64>, span: (u64, u64)) -> Op {
        op(id, OpKind::Get, value, version, span, Outcome::Ok)
    }

    fn final_get(id: u64, edge: usize, value: Option<&str>, version: Option<u64>, at: u64) -> Op {
        let mut read = get(id, value, version, (at, at + 1000));
        read.phase = Phase::Final;
        read.client = "final".into();
        read.attempts[0].edge = edge;
        read
    }

    fn failed(results: &[CheckResult]) -> Vec<&'static str> {
        results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.name)
            .collect()
    }

    /// A history that obeys every rule, with unknowns, deletes and retries.
    fn good_history() -> Vec<Op> {
        let mut retried = put(3, "w1-2", Some(30), (3 * S, 4 * S), Outcome::Ok);
        retried.attempts = vec![
            attempt(0, 3 * S, 3 * S + 500, Outcome::Unknown, None),
            attempt(1, 3 * S + 600, 4 * S, Outcome::Ok, Some(30)),
            Attempt {
                replay: true,
                ..attempt(2, 5 * S, 5 * S + 100, Outcome::Ok, Some(30))
            },
        ];
        vec![
            put(1, "w1-0", Some(10), (0, S), Outcome::Ok),
            get(2, Some("w1-0"), Some(10), (S + 1, S + 2)),
            retried,
            // Concurrent with #3: may be ordered either way.
            put(4, "w2-0", Some(25), (3 * S + 1, 3 * S + 900), Outcome::Ok),
            put(5, "w2-1", None, (5 * S, 6 * S), Outcome::Unknown),
            put(6, "w2-2", None, (5 * S, 6 * S), Outcome::Fail),
            // Seen the unknown write: fine, it may have been applied.
            get(7, Some("w2-1"), Some(35), (6 * S, 6 * S + 10)),
            // Within the bound after #5/#3, an older copy: fine.
            get(8, Some("w2-1"), Some(35), (6 * S + 20, 6 * S + 30)),
            delete(9, Some(40), (7 * S, 8 * S), Outcome::Ok),
            get(10, None, Some(40), (8 * S + 1, 8 * S + 2)),
            get(11, None, None, (20 * S, 20 * S + 2)),
            final_get(12, 0, None, Some(40), 30 * S),
            final_get(13, 1, None, Some(40), 30 * S),
        ]
    }

    #[test]
    fn a_good_history_passes() {
        let results = check(&good_history(), 2 * S);
        assert!(failed(&results).is_empty(), "{results:#?}");
        assert_eq!(results.len(), CHECKS.len());
    }

    #[test]
    fn a_lost_write_fails_durability() {
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            put(2, "b", Some(20), (2 * S, 3 * S), Outcome::Ok),
            final_get(3, 0, Some("a"), Some(10), 30 * S),
        ];
        let results = check(&history, 2 * S);
        assert!(failed(&results).contains(&"durability"));
        let first = results[0].first.as_ref().unwrap();
        assert!(
            first.message.contains("lost acknowledged write"),
            "{first:?}"
        );
        assert_eq!(first.ops.len(), 2);
    }

    #[test]
    fn a_lost_delete_fails_durability() {
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            delete(2, Some(20), (2 * S, 3 * S), Outcome::Ok),
            final_get(3, 0, Some("a"), Some(10), 30 * S),
        ];
        assert!(failed(&check(&history, 2 * S)).contains(&"durability"));
        // A 404 with no version after an acknowledged delete is fine.
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            delete(2, Some(20), (2 * S, 3 * S), Outcome::Ok),
            final_get(3, 0, None, None, 30 * S),
        ];
        assert!(failed(&check(&history, 2 * S)).is_empty());
    }

    #[test]
    fn disagreeing_edges_and_failed_final_reads_fail_durability() {
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            put(2, "b", None, (2 * S, 3 * S), Outcome::Unknown),
            final_get(3, 0, Some("a"), Some(10), 30 * S),
            final_get(4, 1, Some("b"), Some(20), 30 * S),
        ];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["durability"]);
        let mut unanswered = final_get(3, 2, None, None, 30 * S);
        unanswered.outcome = Outcome::Fail;
        let history = vec![put(1, "a", Some(10), (0, S), Outcome::Ok), unanswered];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["durability"]);
    }

    #[test]
    fn versions_against_real_time_order_fail() {
        let history = vec![
            put(1, "a", Some(20), (0, S), Outcome::Ok),
            put(2, "b", Some(10), (2 * S, 3 * S), Outcome::Ok),
        ];
        assert!(failed(&check(&history, 2 * S)).contains(&"real_time_order"));
        // Overlapping writes may take either order.
        let history = vec![
            put(1, "a", Some(20), (0, 3 * S), Outcome::Ok),
            put(2, "b", Some(10), (2 * S, 4 * S), Outcome::Ok),
        ];
        assert!(failed(&check(&history, 2 * S)).is_empty());
        // ...but never the same version.
        let history = vec![
            put(1, "a", Some(20), (0, 3 * S), Outcome::Ok),
            delete(2, Some(20), (2 * S, 4 * S), Outcome::Ok),
        ];
        assert!(failed(&check(&history, 2 * S)).contains(&"real_time_order"));
    }

    #[test]
    fn a_delete_below_an_earlier_write_fails_order() {
        let history = vec![
            put(1, "a", Some(20), (0, S), Outcome::Ok),
            delete(2, Some(15), (2 * S, 3 * S), Outcome::Ok),
        ];
        assert!(failed(&check(&history, 2 * S)).contains(&"real_time_order"));
    }

    #[test]
    fn a_value_never_written_is_a_phantom() {
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            get(2, Some("zzz"), Some(11), (2 * S, 3 * S)),
        ];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["no_phantom_reads"]);
        // Read before its write began.
        let history = vec![
            get(1, Some("a"), Some(10), (0, S)),
            put(2, "a", Some(10), (2 * S, 3 * S), Outcome::Ok),
        ];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["no_phantom_reads"]);
        // The right value with another write's version.
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            get(2, Some("a"), Some(12), (2 * S, 3 * S)),
        ];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["no_phantom_reads"]);
        // A tombstone nobody wrote, and a 404 carrying a PUT's version.
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            get(2, None, Some(12), (2 * S, 3 * S)),
        ];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["no_phantom_reads"]);
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            get(2, None, Some(10), (2 * S, 3 * S)),
        ];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["no_phantom_reads"]);
    }

    #[test]
    fn an_unknown_write_read_with_two_versions_is_a_phantom() {
        let history = vec![
            put(1, "a", None, (0, S), Outcome::Unknown),
            get(2, Some("a"), Some(10), (2 * S, 3 * S)),
            get(3, Some("a"), Some(11), (4 * S, 5 * S)),
        ];
        assert_eq!(failed(&check(&history, 10 * S)), vec!["no_phantom_reads"]);
    }

    #[test]
    fn a_failed_write_must_stay_invisible() {
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            put(2, "b", None, (2 * S, 3 * S), Outcome::Fail),
            get(3, Some("b"), Some(20), (4 * S, 5 * S)),
        ];
        let results = check(&history, 2 * S);
        assert_eq!(failed(&results), vec!["failed_writes_invisible"]);
        let first = results[3].first.as_ref().unwrap();
        assert_eq!(first.ops.len(), 2);
        assert!(first.ops[0].contains("#2"), "{first:?}");
    }

    #[test]
    fn a_read_marked_stale_may_be_older_by_the_grace_and_no_more() {
        let marked = |mut op: Op| {
            op.attempts[0].cache = Some("stale".into());
            op
        };
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            put(2, "b", Some(20), (2 * S, 3 * S), Outcome::Ok),
            // 3 s after the write, marked stale: within bound + grace.
            marked(get(3, Some("a"), Some(10), (6 * S, 6 * S + 10))),
        ];
        let bounds = StalenessBound {
            fresh_us: 2 * S,
            stale_grace_us: 2 * S,
        };
        assert!(failed(&check_with(&history, bounds)).is_empty());
        // The same read, not marked: stale.
        assert_eq!(failed(&check(&history, 2 * S)), vec!["bounded_staleness"]);
        // Marked, but past bound + grace: stale.
        let mut late = history.clone();
        late.push(marked(get(4, Some("a"), Some(10), (8 * S, 8 * S + 10))));
        assert_eq!(
            failed(&check_with(&late, bounds)),
            vec!["bounded_staleness"]
        );
    }

    #[test]
    fn an_old_copy_past_the_bound_is_stale() {
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            put(2, "b", Some(20), (2 * S, 3 * S), Outcome::Ok),
            // Within the bound: fine.
            get(3, Some("a"), Some(10), (4 * S, 4 * S + 10)),
            // Past it: stale.
            get(4, Some("a"), Some(10), (6 * S, 6 * S + 10)),
        ];
        let results = check(&history, 2 * S);
        assert_eq!(failed(&results), vec!["bounded_staleness"]);
        assert_eq!(results[4].violations, 1);
        let first = results[4].first.as_ref().unwrap();
        assert!(first.ops.last().unwrap().contains("#4"), "{first:?}");
        // The write behind the stale copy is in the excerpt too.
        assert!(first.ops[1].contains("#1"), "{first:?}");
    }

    #[test]
    fn a_404_after_an_acknowledged_put_is_stale() {
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            get(2, None, None, (5 * S, 5 * S + 10)),
        ];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["bounded_staleness"]);
        // After a delete it is not.
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            delete(2, Some(20), (2 * S, 3 * S), Outcome::Ok),
            get(3, None, None, (6 * S, 6 * S + 10)),
        ];
        assert!(failed(&check(&history, 2 * S)).is_empty());
        // A value read after an acknowledged delete is stale.
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            delete(2, Some(20), (2 * S, 3 * S), Outcome::Ok),
            get(3, Some("a"), Some(10), (6 * S, 6 * S + 10)),
        ];
        assert_eq!(failed(&check(&history, 2 * S)), vec!["bounded_staleness"]);
    }

    #[test]
    fn two_versions_for_one_idempotency_key_fail() {
        let mut w = put(1, "a", Some(10), (0, S), Outcome::Ok);
        w.attempts.push(Attempt {
            replay: true,
            ..attempt(1, 2 * S, 2 * S + 10, Outcome::Ok, Some(11))
        });
        let results = check(&[w], 2 * S);
        assert_eq!(failed(&results), vec!["idempotency"]);
    }

    #[test]
    fn the_first_violation_is_the_earliest() {
        let history = vec![
            put(1, "a", Some(10), (0, S), Outcome::Ok),
            get(2, Some("x"), Some(1), (9 * S, 9 * S + 1)),
            get(3, Some("y"), Some(1), (5 * S, 5 * S + 1)),
        ];
        let results = check(&history, 2 * S);
        let phantom = &results[2];
        assert_eq!(phantom.violations, 2);
        assert!(phantom.first.as_ref().unwrap().ops[0].contains("#3"));
    }
}
