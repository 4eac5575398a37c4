//! What a run records: latencies in HdrHistograms (microseconds, three
//! significant digits), error counts and which tier answered each read.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use kv_proto::Tier;
use serde::{Deserialize, Serialize};

/// The tiers in report order.
pub const TIERS: [Tier; 4] = [
    Tier::Edge,
    Tier::RegionalMemory,
    Tier::RegionalDisk,
    Tier::Origin,
];

/// Percentiles the curves and CSV are drawn through: dense toward 100,
/// where the tiers part.
pub const CURVE_PERCENTILES: [f64; 22] = [
    1.0, 10.0, 25.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.0, 98.0, 99.0, 99.5,
    99.7, 99.8, 99.9, 99.95, 99.99, 100.0,
];

/// A fresh latency histogram: 1 µs to an hour, three significant digits.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the constructor's rules.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

/// Records one latency, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// A latency distribution's summary, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    /// Largest.
    pub max: f64,
}

impl LatencyMs {
    /// The summary of `histogram` (in µs); all zeros when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let at = |p: f64| percentile_ms(histogram, p);
        Self {
            p50: at(50.0),
            p75: at(75.0),
            p90: at(90.0),
            p95: at(95.0),
            p99: at(99.0),
            p99_9: at(99.9),
            max: at(100.0),
        }
    }

    /// (label, value) pairs in report order.
    pub fn labelled(&self) -> [(&'static str, f64); 7] {
        [
            ("p50", self.p50),
            ("p75", self.p75),
            ("p90", self.p90),
            ("p95", self.p95),
            ("p99", self.p99),
            ("p99.9", self.p99_9),
            ("max", self.max),
        ]
    }
}

/// The latency at percentile `p` (0 to 100) in ms: the smallest recorded
/// value that at least `p`% of samples are at or below (nearest rank), to
/// the histogram's precision. 100 gives the maximum; an empty histogram 0.
pub fn percentile_ms(histogram: &Histogram<u64>, p: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    if p >= 100.0 {
        return histogram.max() as f64 / 1e3;
    }
    // The rank is computed here rather than by `value_at_quantile`, whose
    // float product rounds up at exact ranks (0.999 × 1000 > 999).
    let n = histogram.len();
    let rank = ((p.max(0.0) / 100.0 * n as f64) - 1e-9).ceil().max(1.0) as u64;
    let mut seen = 0;
    for bucket in histogram.iter_recorded() {
        seen += bucket.count_at_value();
        if seen >= rank {
            return histogram.highest_equivalent(bucket.value_iterated_to()) as f64 / 1e3;
        }
    }
    histogram.max() as f64 / 1e3
}

/// The (percentile, ms) points of a curve.
pub fn curve(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    CURVE_PERCENTILES
        .iter()
        .map(|&p| (p, percentile_ms(histogram, p)))
        .collect()
}

/// Everything one run of one setup records, for measured requests only.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Read latencies, µs.
    pub reads: Histogram<u64>,
    /// Write latencies, µs.
    pub writes: Histogram<u64>,
    /// Measured requests sent.
    pub requests: u64,
    /// Measured requests that failed (transport error, non-2xx, wrong length).
    pub errors: u64,
    /// Successful reads per answering tier, in [`TIERS`] order.
    pub answered_by: [u64; 4],
    /// Successful reads that named no tier.
    pub unattributed: u64,
    /// How often each error message was seen (at most 16 distinct).
    pub error_kinds: BTreeMap<String, u64>,
    /// Requests of the warm-up, not counted above.
    pub warmup_requests: u64,
    /// Warm-up requests that failed.
    pub warmup_errors: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            reads: histogram(),
            writes: histogram(),
            requests: 0,
            errors: 0,
            answered_by: [0; 4],
            unattributed: 0,
            error_kinds: BTreeMap::new(),
            warmup_requests: 0,
            warmup_errors: 0,
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read, answered by this tier (if the answer said).
    Read(Option<Tier>),
    /// A write.
    Written,
    /// A failure, described.
    Failed(String),
}

impl Recorder {
    /// Adds one request.
    pub fn add(&mut self, measured: bool, outcome: &Outcome, latency: Duration) {
        if !measured {
            self.warmup_requests += 1;
            if matches!(outcome, Outcome::Failed(_)) {
                self.warmup_errors += 1;
            }
            return;
        }
        self.requests += 1;
        match outcome {
            Outcome::Read(tier) => {
                record(&mut self.reads, latency);
                match tier.and_then(|t| TIERS.iter().position(|&x| x == t)) {
                    Some(i) => self.answered_by[i] += 1,
                    None => self.unattributed += 1,
                }
            }
            Outcome::Written => record(&mut self.writes, latency),
            Outcome::Failed(message) => {
                self.errors += 1;
                if let Some(count) = self.error_kinds.get_mut(message) {
                    *count += 1;
                } else if self.error_kinds.len() < 16 {
                    self.error_kinds.insert(message.clone(), 1);
                }
            }
        }
    }

    /// The share of successful reads each tier answered, in [`TIERS`]
    /// order; they sum to 1 (all zero if there were no reads).
    pub fn shares(&self) -> [f64; 4] {
        let total: u64 = self.answered_by.iter().sum::<u64>() + self.unattributed;
        if total == 0 {
            return [0.0; 4];
        }
        // Reads without a tier (a proxy that dropped the header) are
        // counted as origin reads: the slowest, so no setup gains by it.
        let mut counts = self.answered_by;
        counts[3] += self.unattributed;
        counts.map(|c| c as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform_1_to_10000_micros() -> Histogram<u64> {
        let mut h = histogram();
        for us in 1..=10_000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        h
    }

    #[test]
    fn percentiles_are_nearest_rank_to_three_digits() {
        let h = uniform_1_to_10000_micros();
        // Exact nearest-rank answers: p% of 10,000 samples of 1..=10,000 µs.
        for (p, exact_us) in [
            (50.0, 5_000.0),
            (75.0, 7_500.0),
            (90.0, 9_000.0),
            (99.0, 9_900.0),
            (99.9, 9_990.0),
            (100.0, 10_000.0),
        ] {
            let got_us = percentile_ms(&h, p) * 1e3;
            let error = (got_us - exact_us).abs() / exact_us;
            assert!(error <= 0.001, "p{p}: {got_us} µs, exact {exact_us} µs");
        }
        let summary = LatencyMs::of(&h);
        let values: Vec<f64> = summary.labelled().iter().map(|(_, v)| *v).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    }

    #[test]
    fn a_single_slow_request_sets_the_top_percentiles_only() {
        let mut h = histogram();
        for _ in 0..999 {
            record(&mut h, Duration::from_millis(1));
        }
        record(&mut h, Duration::from_millis(500));
        let s = LatencyMs::of(&h);
        assert!((s.p99 - 1.0).abs() < 0.01, "p99 {}", s.p99);
        // 999 of 1000 samples are 1 ms: p99.9 is still 1 ms by nearest rank.
        assert!((s.p99_9 - 1.0).abs() < 0.01, "p99.9 {}", s.p99_9);
        assert!((s.max - 500.0).abs() < 0.5, "max {}", s.max);
    }

    #[test]
    fn empty_histograms_summarize_to_zero() {
        assert_eq!(LatencyMs::of(&histogram()), LatencyMs::default());
        assert!(curve(&histogram()).iter().all(|&(_, ms)| ms == 0.0));
    }

    #[test]
    fn the_curve_rises_and_ends_at_the_max() {
        let h = uniform_1_to_10000_micros();
        let points = curve(&h);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(points.last().map(|p| p.1), Some(percentile_ms(&h, 100.0)));
    }

    #[test]
    fn shares_sum_to_one_and_warmup_is_not_counted() {
        let mut r = Recorder::default();
        let ms = Duration::from_millis(1);
        r.add(false, &Outcome::Read(Some(Tier::Origin)), ms);
        r.add(false, &Outcome::Failed("x".into()), ms);
        for _ in 0..6 {
            r.add(true, &Outcome::Read(Some(Tier::Edge)), ms);
        }
        r.add(true, &Outcome::Read(Some(Tier::RegionalMemory)), ms);
        r.add(true, &Outcome::Read(Some(Tier::RegionalDisk)), ms);
        r.add(true, &Outcome::Read(None), ms);
        r.add(true, &Outcome::Written, ms);
        r.add(true, &Outcome::Failed("HTTP 503".into()), ms);
        assert_eq!((r.requests, r.errors), (11, 1));
        assert_eq!((r.warmup_requests, r.warmup_errors), (2, 1));
        assert_eq!(r.reads.len(), 9);
        assert_eq!(r.writes.len(), 1);
        let shares = r.shares();
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(shares, [6.0 / 9.0, 1.0 / 9.0, 1.0 / 9.0, 1.0 / 9.0]);
        assert_eq!(r.error_kinds.get("HTTP 503"), Some(&1));
    }
}
