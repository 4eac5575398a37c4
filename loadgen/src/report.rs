//! A run's results and their renderings: the table, JSON, CSV, and the
//! checks that say whether the tiered curve beat the untiered one and
//! whether writes reached every edge in time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::{LatencyMs, Recorder, TIERS, curve};
use crate::visibility::{StaleReads, VisibilityReport};

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
    /// Write-to-visible lag on the other edges (absent when not measured);
    /// see [`crate::visibility`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<VisibilityReport>,
    /// Measured reads answered with a version older than one whose write
    /// was acknowledged before they were sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_reads: Option<StaleReads>,
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
            visibility: None,
            stale_reads: None,
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
    /// The fixed one-way delay from the origin to an edge through the
    /// regional tier, time-scaled, ms (absent for `run --target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_to_edge_ms: Option<f64>,
    /// The stacks' cache TTL, seconds (absent for `run --target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_secs: Option<u64>,
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
        self.freshness_table(&mut out);
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

    /// The write-to-visible lag and stale reads of every setup.
    fn freshness_table(&self, out: &mut String) {
        let measured: Vec<&SetupReport> = self
            .setups
            .iter()
            .filter(|s| s.visibility.is_some() || s.stale_reads.is_some())
            .collect();
        let Some(first) = measured.iter().find_map(|s| s.visibility.as_ref()) else {
            if measured.is_empty() {
                return;
            }
            let _ = writeln!(out, "\nstale reads");
            for s in measured {
                let _ = writeln!(out, "{:<16} {}", s.name, stale_columns(s.stale_reads));
            }
            return;
        };
        let mut heading = format!(
            "\nwrite-to-visible lag on the other edges (ms) · polled every {} ms · waits bounded at {} s",
            first.poll_interval_ms,
            first.max_wait_ms / 1e3
        );
        if let Some(ttl) = self.cache_ttl_secs {
            let _ = write!(heading, " · cache TTL {ttl} s");
        }
        let _ = writeln!(out, "{heading}");
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7} {:>8}  {:>16} {:>9}",
            "setup",
            "p50",
            "p99",
            "max",
            "worst p99",
            "writes",
            "waits",
            "timeouts",
            "stale reads",
            "max stale"
        );
        for s in measured {
            let _ = write!(out, "{:<16}", s.name);
            match &s.visibility {
                Some(v) if v.samples > 0 => {
                    let lag = |ms: f64| {
                        if v.at_bound(ms) {
                            format!("≥{}", self::ms(v.max_wait_ms))
                        } else {
                            self::ms(ms)
                        }
                    };
                    let worst = v.worst_edge_p99().map_or(0.0, |e| e.lag_ms.p99);
                    let _ = write!(
                        out,
                        " {:>8} {:>8} {:>8} {:>10} {:>7} {:>7} {:>8}",
                        lag(v.lag_ms.p50),
                        lag(v.lag_ms.p99),
                        lag(v.lag_ms.max),
                        lag(worst),
                        v.writes,
                        v.samples,
                        v.timeouts
                    );
                }
                Some(v) => {
                    let _ = write!(
                        out,
                        " {:>8} {:>8} {:>8} {:>10} {:>7} {:>7} {:>8}",
                        "-", "-", "-", "-", v.writes, 0, v.timeouts
                    );
                }
                None => {
                    let _ = write!(
                        out,
                        " {:>8} {:>8} {:>8} {:>10} {:>7} {:>7} {:>8}",
                        "-", "-", "-", "-", "-", "-", "-"
                    );
                }
            }
            let _ = writeln!(out, "  {}", stale_columns(s.stale_reads));
        }
        for s in &self.setups {
            let Some(v) = &s.visibility else { continue };
            let mut notes = Vec::new();
            if v.probe_writes > 0 {
                notes.push(format!(
                    "{} of the writes by the probe writer",
                    v.probe_writes
                ));
            }
            if v.unwatched > 0 {
                notes.push(format!("{} writes not watched", v.unwatched));
            }
            if v.probe_errors > 0 {
                notes.push(format!("{} probe writes failed", v.probe_errors));
            }
            if v.poll_errors > 0 {
                notes.push(format!("{} polls failed", v.poll_errors));
            }
            if v.samples == 0 && v.edges.len() < 2 {
                notes.push("one edge only: no other edge to watch".into());
            }
            if !notes.is_empty() {
                let _ = writeln!(out, "  {}: {}", s.name, notes.join(", "));
            }
        }
    }

    /// The figures the tiered architecture should produce, checked.
    pub fn checks(&self) -> Vec<Check> {
        let mut checks = self.tiering_checks();
        checks.extend(self.visibility_check());
        checks
    }

    /// With the `cloudflare-2024` profile: the tiered setup's p99
    /// write-to-visible lag, on every edge, within twice the one-way
    /// origin-to-edge delay plus 50 ms. `None` when it does not apply (another
    /// profile, no tiered setup, lag not measured).
    fn visibility_check(&self) -> Option<Check> {
        if self.profile != "cloudflare-2024" {
            return None;
        }
        let one_way = self.origin_to_edge_ms?;
        let visibility = self.setup("tiered")?.visibility.as_ref()?;
        let bound = 2.0 * one_way + VISIBILITY_SLACK_MS;
        let name =
            "tiered p99 write-to-visible lag on every edge within 2 × origin-to-edge delay + 50 ms";
        if visibility.samples == 0 {
            return Some(Check {
                name,
                passed: false,
                detail: format!(
                    "no samples: {} writes watched on {} edges",
                    visibility.writes,
                    visibility.edges.len()
                ),
            });
        }
        let mut over = Vec::new();
        for edge in &visibility.edges {
            if edge.samples == 0 {
                over.push(format!("edge {}: no samples", edge.edge));
            } else if edge.lag_ms.p99 > bound {
                over.push(format!(
                    "edge {}: p99 {} ms ({} timeouts)",
                    edge.edge,
                    ms(edge.lag_ms.p99),
                    edge.timeouts
                ));
            }
        }
        let worst = visibility.worst_edge_p99().map_or(0.0, |e| e.lag_ms.p99);
        let detail = if over.is_empty() {
            format!(
                "worst edge p99 {} ms ≤ {} ms (2 × {} + 50), {} edges, {} timeouts",
                ms(worst),
                ms(bound),
                ms(one_way),
                visibility.sampled_edges().count(),
                visibility.timeouts
            )
        } else {
            format!("over {} ms: {}", ms(bound), over.join(", "))
        };
        Some(Check {
            name,
            passed: over.is_empty(),
            detail,
        })
    }

    /// Tiered against untiered: latency, tier shares, errors.
    fn tiering_checks(&self) -> Vec<Check> {
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

/// What the visibility check allows on top of twice the one-way delay, ms.
pub const VISIBILITY_SLACK_MS: f64 = 50.0;

/// `stale / checked (share) · max staleness`, or dashes.
fn stale_columns(stale: Option<StaleReads>) -> String {
    match stale {
        Some(s) if s.checked > 0 => {
            let share = 100.0 * s.stale as f64 / s.checked as f64;
            let longest = if s.stale > 0 {
                ms(s.max_staleness_ms)
            } else {
                "-".into()
            };
            format!(
                "{:>16} {:>9}",
                format!("{} ({share:.2}%)", s.stale),
                longest
            )
        }
        _ => format!("{:>16} {:>9}", "-", "-"),
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::visibility::{LagRecorder, Waited};

    const CHECK: &str =
        "tiered p99 write-to-visible lag on every edge within 2 × origin-to-edge delay + 50 ms";

    /// A visibility report of `edges` edges, with edge `e` waited on 100
    /// times with lags of 1..=100 × `scale[e]` ms.
    fn visibility(scale: &[f64]) -> VisibilityReport {
        let mut lag = LagRecorder::new(
            scale.len(),
            Duration::from_secs(120),
            Duration::from_millis(1),
        );
        for (edge, &s) in scale.iter().enumerate() {
            for i in 1..=100u32 {
                lag.record(
                    edge,
                    Waited::Visible(Duration::from_secs_f64(f64::from(i) * s / 1e3)),
                );
            }
        }
        lag.writes = 100;
        lag.report(&[])
    }

    fn report(profile: &str, tiered: Option<VisibilityReport>) -> RunReport {
        let mut setup = SetupReport::new("tiered", &Recorder::default(), 1.0);
        setup.visibility = tiered;
        setup.stale_reads = Some(StaleReads {
            checked: 1000,
            stale: 3,
            max_staleness_ms: 4.5,
        });
        RunReport {
            profile: profile.into(),
            seed: 1,
            time_scale: 1.0,
            workload: serde_json::Value::Null,
            origin_to_edge_ms: Some(37.0),
            cache_ttl_secs: Some(60),
            setups: vec![setup],
        }
    }

    fn lag_check(report: &RunReport) -> Option<Check> {
        report.checks().into_iter().find(|c| c.name == CHECK)
    }

    #[test]
    fn lag_within_twice_the_one_way_delay_plus_50_ms_passes() {
        // p99 of 1..=100 × 1.2 ms is 118.8 ms; the bound is 2 × 37 + 50 = 124.
        let check = lag_check(&report("cloudflare-2024", Some(visibility(&[0.1, 1.2]))))
            .expect("the check applies");
        assert!(check.passed, "{check:?}");
        assert!(check.detail.contains("124.0"), "{}", check.detail);
    }

    #[test]
    fn one_slow_edge_fails_the_lag_check() {
        // Edge 1's p99 is 1.3 × 99 = 128.7 ms > 124 ms; the overall p99 is not.
        let check = lag_check(&report("cloudflare-2024", Some(visibility(&[0.1, 1.3]))))
            .expect("the check applies");
        assert!(!check.passed, "{check:?}");
        assert!(
            check.detail.contains("edge 1: p99 128.7"),
            "{}",
            check.detail
        );
        assert!(!check.detail.contains("edge 0"), "{}", check.detail);
    }

    #[test]
    fn timeouts_fail_the_lag_check() {
        let mut lag = LagRecorder::new(2, Duration::from_secs(120), Duration::from_millis(1));
        for _ in 0..95 {
            lag.record(0, Waited::Visible(Duration::from_millis(2)));
            lag.record(1, Waited::Visible(Duration::from_millis(2)));
        }
        for _ in 0..5 {
            lag.record(1, Waited::TimedOut);
        }
        let report = report("cloudflare-2024", Some(lag.report(&[])));
        let check = lag_check(&report).expect("the check applies");
        assert!(!check.passed, "{check:?}");
        assert!(check.detail.contains("5 timeouts"), "{}", check.detail);
        // The table shows the timeouts, and the p99 at the bound as such.
        let table = report.table();
        assert!(table.contains("≥120000"), "{table}");
    }

    #[test]
    fn an_edge_never_waited_on_or_no_samples_fails_the_lag_check() {
        let mut partial = visibility(&[0.1, 0.1]);
        partial.edges.push(crate::visibility::EdgeLag {
            edge: 2,
            target: String::new(),
            samples: 0,
            timeouts: 0,
            lag_ms: Default::default(),
        });
        let check = lag_check(&report("cloudflare-2024", Some(partial))).expect("applies");
        assert!(!check.passed);
        assert!(
            check.detail.contains("edge 2: no samples"),
            "{}",
            check.detail
        );

        let none = visibility(&[]);
        let check = lag_check(&report("cloudflare-2024", Some(none))).expect("applies");
        assert!(!check.passed);
        assert!(check.detail.contains("no samples"), "{}", check.detail);
    }

    #[test]
    fn the_lag_check_is_scaled_with_the_delays_and_only_for_cloudflare_2024() {
        // At time scale 0.1 the one-way delay is 3.7 ms: the bound is 57.4 ms.
        let mut scaled = report("cloudflare-2024", Some(visibility(&[0.5])));
        scaled.origin_to_edge_ms = Some(3.7);
        scaled.time_scale = 0.1;
        assert!(lag_check(&scaled).is_some_and(|c| c.passed));
        let mut slower = report("cloudflare-2024", Some(visibility(&[0.6])));
        slower.origin_to_edge_ms = Some(3.7);
        assert!(lag_check(&slower).is_some_and(|c| !c.passed));

        assert!(lag_check(&report("my-profile", Some(visibility(&[0.1])))).is_none());
        // Not measured (--no-lag), or `run --target`: nothing to check.
        assert!(lag_check(&report("cloudflare-2024", None)).is_none());
        let mut target = report("cloudflare-2024", Some(visibility(&[0.1])));
        target.origin_to_edge_ms = None;
        assert!(lag_check(&target).is_none());
    }

    #[test]
    fn the_table_shows_lag_and_stale_reads_and_json_round_trips() {
        let report = report("cloudflare-2024", Some(visibility(&[0.1, 1.2])));
        let table = report.table();
        assert!(
            table.contains("write-to-visible lag on the other edges (ms)"),
            "{table}"
        );
        assert!(table.contains("cache TTL 60 s"), "{table}");
        let row = table
            .lines()
            .find(|l| l.starts_with("tiered ") && l.contains("(0.30%)"))
            .unwrap_or_else(|| panic!("no lag row in {table}"));
        // p50, p99, max, worst edge p99, writes, waits, timeouts, stale,
        // longest. Overall, the 100th of 200 lags is 9.3 ms (93 of edge 0's
        // and 7 of edge 1's are at or below it), the 198th 117.6 ms; edge
        // 1's p99 is 118.8 ms. HdrHistogram rounds 120 ms up to 120.063.
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "tiered", "9.303", "117.6", "120.1", "118.8", "100", "200", "0", "3", "(0.30%)",
                "4.500"
            ],
            "{row}"
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["setups"][0]["visibility"]["edges"][1]["samples"], 100);
        assert_eq!(json["setups"][0]["stale_reads"]["stale"], 3);
        let back: RunReport = serde_json::from_value(json).expect("a report");
        assert_eq!(back, report);
    }

    #[test]
    fn reports_without_the_new_fields_still_load() {
        let mut json = serde_json::to_value(report("x", None)).expect("json");
        let object = json.as_object_mut().expect("an object");
        object.remove("origin_to_edge_ms");
        object.remove("cache_ttl_secs");
        let back: RunReport = serde_json::from_value(json).expect("a report");
        assert_eq!(back.origin_to_edge_ms, None);
        assert!(back.setups[0].visibility.is_none());
    }
}
