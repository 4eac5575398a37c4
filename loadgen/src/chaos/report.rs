//! The campaign's result: verdict, counts, latencies, every check with its
//! first violation, and the fault timeline; as text and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::checker::CheckResult;
use super::cluster::Tier;
use super::faults::{FaultEvent, FaultStats};
use super::history::{Op, OpKind, Outcome, Phase};

/// Latency percentiles of successful operations, ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// How many.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    fn of(micros: impl Iterator<Item = u64>) -> Self {
        let Ok(mut histogram) = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3) else {
            return Self::default();
        };
        for us in micros {
            histogram.saturating_record(us.max(1));
        }
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50_ms: histogram.value_at_quantile(0.5) as f64 / 1e3,
            p99_ms: histogram.value_at_quantile(0.99) as f64 / 1e3,
            max_ms: histogram.max() as f64 / 1e3,
        }
    }
}

/// The settings a report was produced with.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// The seed of the schedule and the clients.
    pub seed: u64,
    /// Where logs and the history are.
    pub run_dir: String,
    /// The campaign's length, faults on, seconds.
    pub campaign_secs: f64,
    /// The staleness bound the checker used, ms.
    pub staleness_bound_ms: u64,
    /// Origin processes, regional nodes, edges.
    pub topology: [usize; 3],
    /// Writer and reader tasks.
    pub clients: [usize; 2],
    /// Keys.
    pub keys: usize,
}

/// Everything a campaign found.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// `pass` or `fail`.
    pub verdict: &'static str,
    /// Every check passed.
    pub passed: bool,
    /// The settings.
    pub run: RunInfo,
    /// Operations of the campaign by kind, then outcome.
    pub ops: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Final reads after quiescence (tries included), by outcome.
    pub final_reads: BTreeMap<&'static str, u64>,
    /// Sends of writes (first sends, retries, replays).
    pub write_sends: u64,
    /// Retries of writes whose outcome was unknown.
    pub write_retries: u64,
    /// Replays of acknowledged writes.
    pub write_replays: u64,
    /// Answers to write sends that were not acknowledgements, by code.
    pub write_errors: BTreeMap<String, u64>,
    /// Failed reads, by code.
    pub read_errors: BTreeMap<String, u64>,
    /// SIGKILLs per tier.
    pub kills: BTreeMap<Tier, u64>,
    /// Links cut.
    pub link_cuts: u64,
    /// Links slowed.
    pub link_delays: u64,
    /// Processes cut off from every node they dial.
    pub isolations: u64,
    /// Processes that exited without being killed.
    pub crashes: Vec<String>,
    /// Successful reads during the campaign.
    pub read_latency: Latency,
    /// Acknowledging sends of writes during the campaign.
    pub write_latency: Latency,
    /// Every check.
    pub checks: Vec<CheckResult>,
    /// The fault timeline.
    pub faults: Vec<FaultEvent>,
}

impl ChaosReport {
    /// Puts the report together.
    pub fn new(run: RunInfo, history: &[Op], faults: FaultStats, checks: Vec<CheckResult>) -> Self {
        let mut ops: BTreeMap<&'static str, BTreeMap<&'static str, u64>> = BTreeMap::new();
        let mut final_reads = BTreeMap::new();
        let mut write_errors = BTreeMap::new();
        let mut read_errors = BTreeMap::new();
        let (mut sends, mut retries, mut replays) = (0, 0, 0);
        for op in history {
            if op.phase == Phase::Final {
                *final_reads.entry(op.outcome.name()).or_default() += 1;
                continue;
            }
            *ops.entry(op.kind.name())
                .or_default()
                .entry(op.outcome.name())
                .or_default() += 1;
            for (n, attempt) in op.attempts.iter().enumerate() {
                if op.kind.is_write() {
                    sends += 1;
                    if attempt.replay {
                        replays += 1;
                    } else if n > 0 {
                        retries += 1;
                    }
                }
                if attempt.outcome != Outcome::Ok {
                    let code = attempt.code.clone().unwrap_or_else(|| {
                        attempt
                            .status
                            .map_or_else(|| "none".to_string(), |s| s.to_string())
                    });
                    let map = if op.kind.is_write() {
                        &mut write_errors
                    } else {
                        &mut read_errors
                    };
                    *map.entry(code).or_default() += 1;
                }
            }
        }
        let campaign = || history.iter().filter(|op| op.phase == Phase::Campaign);
        let read_latency = Latency::of(
            campaign()
                .filter(|op| op.kind == OpKind::Get && op.outcome == Outcome::Ok)
                .map(|op| op.end_us.saturating_sub(op.start_us)),
        );
        let write_latency =
            Latency::of(campaign().filter(|op| op.kind.is_write()).flat_map(|op| {
                op.attempts
                    .iter()
                    .filter(|a| a.outcome == Outcome::Ok && !a.replay)
                    .map(|a| a.end_us.saturating_sub(a.start_us))
            }));
        let passed = checks.iter().all(|c| c.passed);
        Self {
            verdict: if passed { "pass" } else { "fail" },
            passed,
            run,
            ops,
            final_reads,
            write_sends: sends,
            write_retries: retries,
            write_replays: replays,
            write_errors,
            read_errors,
            kills: faults.kills,
            link_cuts: faults.link_cuts,
            link_delays: faults.link_delays,
            isolations: faults.isolations,
            crashes: faults.crashes,
            read_latency,
            write_latency,
            checks,
            faults: faults.events,
        }
    }

    /// Acknowledged writes during the campaign.
    pub fn acked_writes(&self) -> u64 {
        ["put", "delete"]
            .iter()
            .filter_map(|k| self.ops.get(k).and_then(|o| o.get("ok")))
            .sum()
    }

    /// Successful reads during the campaign.
    pub fn ok_reads(&self) -> u64 {
        self.ops
            .get("get")
            .and_then(|o| o.get("ok"))
            .copied()
            .unwrap_or(0)
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let r = &self.run;
        let _ = writeln!(
            out,
            "loadgen chaos · seed {} · {:.0} s · {} origins, {} regionals, {} edges · {} writers, {} readers, {} keys · staleness bound {} ms",
            r.seed,
            r.campaign_secs,
            r.topology[0],
            r.topology[1],
            r.topology[2],
            r.clients[0],
            r.clients[1],
            r.keys,
            r.staleness_bound_ms
        );
        let _ = writeln!(out, "run directory: {}", r.run_dir);
        let _ = writeln!(out, "\noperations (campaign):");
        for (kind, outcomes) in &self.ops {
            let parts: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            let total: u64 = outcomes.values().sum();
            let _ = writeln!(out, "  {kind:<7} {total:>7}  ({})", parts.join(", "));
        }
        let finals: Vec<String> = self
            .final_reads
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect();
        let _ = writeln!(out, "  final reads: {}", finals.join(", "));
        let _ = writeln!(
            out,
            "  write sends {} (retries {}, replays {})",
            self.write_sends, self.write_retries, self.write_replays
        );
        if !self.write_errors.is_empty() {
            let parts: Vec<String> = self
                .write_errors
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let _ = writeln!(out, "  write errors: {}", parts.join(", "));
        }
        if !self.read_errors.is_empty() {
            let parts: Vec<String> = self
                .read_errors
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let _ = writeln!(out, "  read errors: {}", parts.join(", "));
        }
        let kills: Vec<String> = self.kills.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let _ = writeln!(
            out,
            "\nfaults: kills {} · link cuts {} · link delays {} · isolations {}",
            kills.join(", "),
            self.link_cuts,
            self.link_delays,
            self.isolations
        );
        if !self.crashes.is_empty() {
            let _ = writeln!(out, "  exited on their own: {}", self.crashes.join("; "));
        }
        let _ = writeln!(out, "\nlatency (successful, campaign):");
        for (name, l) in [("read", &self.read_latency), ("write", &self.write_latency)] {
            let _ = writeln!(
                out,
                "  {name:<5} n={:<7} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
                l.count, l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        let _ = writeln!(out, "\nchecks:");
        for check in &self.checks {
            let _ = writeln!(
                out,
                "  {} {:<24} {}",
                if check.passed { "PASS" } else { "FAIL" },
                check.name,
                if check.passed {
                    String::new()
                } else {
                    format!("{} violation(s)", check.violations)
                }
            );
        }
        for check in self.checks.iter().filter(|c| !c.passed) {
            if let Some(v) = &check.first {
                let _ = writeln!(
                    out,
                    "\nfirst {} violation, key {}: {}",
                    check.name, v.key, v.message
                );
                for line in &v.ops {
                    let _ = writeln!(out, "    {line}");
                }
                let near: Vec<&FaultEvent> = self
                    .faults
                    .iter()
                    .filter(|f| f.at_us + 10_000_000 >= v.at_us && f.at_us <= v.at_us + 1_000_000)
                    .collect();
                if !near.is_empty() {
                    let _ = writeln!(out, "  faults in the 10 s before:");
                    for f in near {
                        let _ = writeln!(out, "    {}", f.line());
                    }
                }
            }
        }
        let _ = writeln!(out, "\nverdict: {}", self.verdict.to_uppercase());
        out
    }
}
