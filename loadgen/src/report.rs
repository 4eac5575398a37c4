//! A run's results and their renderings: the table, JSON, CSV, and the
//! checks that say whether the tiered curve beat the untiered one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::{LatencyMs, Recorder, TIERS, curve};

/// One setup's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupReport {
    /// `untiered`, `direct`, `direct+regional`, `tiered`, or `target`.
    pub name: String,
    /// Measured requests (reads and writes).
    pub requests: u64,
    /// Measured requests that failed.
    pub errors: u64,
    /// Completed measured requests per second.
    pub throughput_rps: f64,
    /// Read latency.
    pub latency_ms: LatencyMs,
    /// Share of reads each tier answered; sums to 1.
    pub answered_by: BTreeMap<String, f64>,
    /// Successful reads.
    pub reads: u64,
    /// Successful writes.
    pub writes: u64,
    /// Write latency.
    pub write_latency_ms: LatencyMs,
    /// The read latency curve: [percentile, ms] points.
    pub curve: Vec<(f64, f64)>,
    /// The distinct failures and how often each happened.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_kinds: BTreeMap<String, u64>,
    /// Counters read off the stack under test (absent for `run --target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<serde_json::Value>,
}

impl SetupReport {
    /// Summarizes a recorder; `seconds` is the measured time.
    pub fn new(name: &str, recorder: &Recorder, seconds: f64) -> Self {
        let shares = recorder.shares();
        let answered_by = TIERS
            .iter()
            .zip(shares)
            .map(|(tier, share)| (tier.as_str().to_owned(), share))
            .collect();
        let completed = recorder.reads.len() + recorder.writes.len();
        Self {
            name: name.into(),
            requests: recorder.requests,
            errors: recorder.errors,
            throughput_rps: if seconds > 0.0 {
                completed as f64 / seconds
            } else {
                0.0
            },
            latency_ms: LatencyMs::of(&recorder.reads),
            answered_by,
            reads: recorder.reads.len(),
            writes: recorder.writes.len(),
            write_latency_ms: LatencyMs::of(&recorder.writes),
            curve: curve(&recorder.reads),
            error_kinds: recorder.error_kinds.clone(),
            stack: None,
        }
    }

    fn share(&self, tier: &str) -> f64 {
        self.answered_by.get(tier).copied().unwrap_or(0.0)
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The profile's name.
    pub profile: String,
    /// The workload's seed.
    pub seed: u64,
    /// The delay multiplier.
    pub time_scale: f64,
    /// The workload as run.
    pub workload: serde_json::Value,
    /// The setups, in run order.
    pub setups: Vec<SetupReport>,
}

impl RunReport {
    /// The setup called `name`.
    pub fn setup(&self, name: &str) -> Option<&SetupReport> {
        self.setups.iter().find(|s| s.name == name)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "profile {} · seed {} · time scale {}",
            self.profile, self.seed, self.time_scale
        );
        let _ = writeln!(out, "\nread latency (ms)");
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  {:>8} {:>7} {:>7}",
            "setup", "p50", "p75", "p90", "p95", "p99", "p99.9", "max", "req/s", "reqs", "errors"
        );
        for s in &self.setups {
            let _ = write!(out, "{:<16}", s.name);
            for (_, v) in s.latency_ms.labelled() {
                let _ = write!(out, " {:>8}", ms(v));
            }
            let _ = writeln!(
                out,
                "  {:>8.1} {:>7} {:>7}",
                s.throughput_rps, s.requests, s.errors
            );
        }
        let _ = writeln!(out, "\nreads answered by");
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>16} {:>14} {:>8}",
            "setup", "edge", "regional-memory", "regional-disk", "origin"
        );
        for s in &self.setups {
            let _ = writeln!(
                out,
                "{:<16} {:>7.1}% {:>15.1}% {:>13.1}% {:>7.1}%",
                s.name,
                100.0 * s.share("edge"),
                100.0 * s.share("regional-memory"),
                100.0 * s.share("regional-disk"),
                100.0 * s.share("origin"),
            );
        }
        if let (Some(tiered), Some(untiered)) = (self.setup("tiered"), self.setup("untiered")) {
            let _ = writeln!(out, "\ntiered / untiered");
            let _ = write!(out, "{:<16}", "ratio");
            for ((_, t), (_, u)) in tiered
                .latency_ms
                .labelled()
                .iter()
                .zip(untiered.latency_ms.labelled())
            {
                let _ = write!(out, " {:>8}", ratio(*t, u));
            }
            let _ = writeln!(out);
        }
        let writes: Vec<&SetupReport> = self.setups.iter().filter(|s| s.writes > 0).collect();
        if !writes.is_empty() {
            let _ = writeln!(out, "\nwrite latency (ms)");
            for s in writes {
                let l = &s.write_latency_ms;
                let _ = writeln!(
                    out,
                    "{:<16} p50 {} · p99 {} · max {} · {} writes",
                    s.name,
                    ms(l.p50),
                    ms(l.p99),
                    ms(l.max),
                    s.writes
                );
            }
        }
        for s in self.setups.iter().filter(|s| !s.error_kinds.is_empty()) {
            let _ = writeln!(out, "\nerrors in {}:", s.name);
            for (message, count) in &s.error_kinds {
                let _ = writeln!(out, "  {count} × {message}");
            }
        }
        let checks = self.checks();
        if !checks.is_empty() {
            let _ = writeln!(out, "\nchecks");
            for check in checks {
                let mark = if check.passed { "pass" } else { "FAIL" };
                let _ = writeln!(out, "  [{mark}] {}: {}", check.name, check.detail);
            }
        }
        out
    }

    /// The curves as CSV: `setup,percentile,latency_ms`, one row per point.
    pub fn csv(&self) -> String {
        let mut out = String::from("setup,percentile,latency_ms\n");
        for s in &self.setups {
            for (p, v) in &s.curve {
                let _ = writeln!(out, "{},{p},{v:.3}", s.name);
            }
        }
        out
    }

    /// The figures the tiered architecture should produce, checked.
    pub fn checks(&self) -> Vec<Check> {
        let (Some(tiered), Some(untiered)) = (self.setup("tiered"), self.setup("untiered")) else {
            return Vec::new();
        };
        // Every labelled percentile and every point of the curves.
        let labelled = tiered
            .latency_ms
            .labelled()
            .into_iter()
            .zip(untiered.latency_ms.labelled())
            .map(|((label, t), (_, u))| (label.to_owned(), t, u));
        let curve = tiered
            .curve
            .iter()
            .zip(&untiered.curve)
            .filter(|((tp, _), (up, _))| tp == up && *tp < 100.0)
            .map(|((p, t), (_, u))| (format!("p{p}"), *t, *u));
        let mut above: Vec<String> = Vec::new();
        for (label, t, u) in labelled.chain(curve).filter(|(_, t, u)| t >= u) {
            let line = format!("{label} {} ≥ {}", ms(t), ms(u));
            if !above.contains(&line) {
                above.push(line);
            }
        }
        let speedup = if tiered.latency_ms.p50 > 0.0 {
            untiered.latency_ms.p50 / tiered.latency_ms.p50
        } else {
            f64::INFINITY
        };
        let edge = tiered.share("edge");
        let regional = tiered.share("regional-memory") + tiered.share("regional-disk");
        let edge_misses = 1.0 - edge;
        let regional_of_misses = if edge_misses > 0.0 {
            regional / edge_misses
        } else {
            1.0
        };
        let errors: u64 = self.setups.iter().map(|s| s.errors).sum();
        vec![
            Check {
                name: "tiered below untiered at every percentile",
                passed: above.is_empty(),
                detail: if above.is_empty() {
                    "every point of the curve, p1 through max".into()
                } else {
                    above.join(", ")
                },
            },
            Check {
                name: "tiered p50 at least 3x lower than untiered p50",
                passed: speedup >= 3.0,
                detail: format!(
                    "{} vs {} ms: {speedup:.1}x",
                    ms(tiered.latency_ms.p50),
                    ms(untiered.latency_ms.p50)
                ),
            },
            Check {
                name: "edge answers at least 40% of reads",
                passed: edge >= 0.4,
                detail: format!("{:.1}%", edge * 100.0),
            },
            Check {
                name: "regional tier answers most edge misses",
                passed: regional_of_misses > 0.5,
                detail: format!("{:.1}% of misses", regional_of_misses * 100.0),
            },
            Check {
                name: "no errors",
                passed: errors == 0,
                detail: format!("{errors} errors"),
            },
        ]
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The figures behind it.
    pub detail: String,
}

/// Milliseconds with precision to match their size.
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(t: f64, u: f64) -> String {
    if u > 0.0 {
        format!("{:.3}", t / u)
    } else {
        "-".into()
    }
}
