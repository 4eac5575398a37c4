//! The workload: a keyspace with fixed value sizes, Zipf-distributed key
//! popularity, a read/write mix and open-loop arrivals, all drawn from one
//! seed. The whole schedule is planned before a run starts, so every setup
//! replays exactly the same requests at the same offsets.

use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Zipf};
use serde::{Deserialize, Serialize};

/// The namespace loadgen reads and writes.
pub const NAMESPACE: &str = "loadgen";

/// Why a workload setting is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct WorkloadError(String);

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exponential gaps: independent clients, the usual model of traffic.
    #[default]
    Poisson,
    /// Evenly spaced.
    Uniform,
}

/// Value sizes: a log-normal body of small values and a tail of large ones.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValueSizes {
    /// Median of the small values, bytes.
    pub median_bytes: f64,
    /// Spread of the small values (sigma of the log).
    pub sigma: f64,
    /// Largest small value, bytes.
    pub small_max_bytes: usize,
    /// Share of keys with a large value.
    pub large_share: f64,
    /// Smallest large value, bytes.
    pub large_min_bytes: usize,
    /// Largest large value, bytes (log-uniform between the two).
    pub large_max_bytes: usize,
}

impl Default for ValueSizes {
    fn default() -> Self {
        Self {
            median_bytes: 2_048.0,
            sigma: 1.5,
            small_max_bytes: 100 * 1024,
            large_share: 0.02,
            large_min_bytes: 100 * 1024 + 1,
            large_max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What a run sends.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Keyspace size.
    pub keys: u32,
    /// Share of the keyspace counted as the head ("hot keys").
    pub head_fraction: f64,
    /// Share of reads the head receives; the Zipf exponent is solved from it.
    pub head_share: f64,
    /// Sets the Zipf exponent directly instead.
    pub zipf_exponent: Option<f64>,
    /// Share of requests that are reads; the rest are writes.
    pub read_share: f64,
    /// Target requests per second, all edges together.
    pub rate: f64,
    /// How arrivals are spaced.
    pub arrivals: Arrivals,
    /// Warm-up before measuring, seconds.
    pub warmup_secs: f64,
    /// Measured time, seconds.
    pub duration_secs: f64,
    /// Seeds everything random.
    pub seed: u64,
    /// Value sizes.
    pub values: ValueSizes,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            keys: 10_000,
            head_fraction: 0.0003,
            head_share: 0.5,
            zipf_exponent: None,
            read_share: 0.99,
            rate: 500.0,
            arrivals: Arrivals::Poisson,
            warmup_secs: 10.0,
            duration_secs: 40.0,
            seed: 2024,
            values: ValueSizes::default(),
        }
    }
}

impl WorkloadConfig {
    /// Checks every figure.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let fail = |m: String| Err(WorkloadError(m));
        let share = |v: f64| (0.0..=1.0).contains(&v);
        if self.keys == 0 {
            return fail("keys must be at least 1".into());
        }
        if !(self.head_fraction > 0.0 && self.head_fraction < 1.0) {
            return fail(format!(
                "head_fraction must be in (0, 1), not {}",
                self.head_fraction
            ));
        }
        if !(self.head_share > 0.0 && self.head_share < 1.0) {
            return fail(format!(
                "head_share must be in (0, 1), not {}",
                self.head_share
            ));
        }
        if let Some(s) = self.zipf_exponent
            && !(s.is_finite() && s > 0.0)
        {
            return fail(format!("zipf_exponent must be > 0, not {s}"));
        }
        if !share(self.read_share) {
            return fail(format!(
                "read_share must be in [0, 1], not {}",
                self.read_share
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return fail(format!("rate must be > 0, not {}", self.rate));
        }
        let times_ok = self.warmup_secs.is_finite()
            && self.warmup_secs >= 0.0
            && self.duration_secs.is_finite()
            && self.duration_secs > 0.0;
        if !times_ok {
            return fail("warmup_secs must be ≥ 0 and duration_secs > 0".into());
        }
        let v = &self.values;
        if !(v.median_bytes >= 1.0 && v.sigma >= 0.0 && share(v.large_share))
            || v.small_max_bytes == 0
            || v.large_min_bytes > v.large_max_bytes
            || v.large_max_bytes > kv_proto::limits::MAX_VALUE_LEN
        {
            return fail(
                "values: need median_bytes ≥ 1, sigma ≥ 0, large_share in [0, 1], \
                 large_min_bytes ≤ large_max_bytes ≤ 25 MiB"
                    .into(),
            );
        }
        Ok(())
    }

    /// The number of head keys: at least one.
    pub fn head_keys(&self) -> u32 {
        ((f64::from(self.keys) * self.head_fraction).round() as u32).clamp(1, self.keys)
    }

    /// The Zipf exponent: the configured one, or the one that gives the head
    /// its share of reads.
    pub fn exponent(&self) -> f64 {
        self.zipf_exponent
            .unwrap_or_else(|| solve_exponent(self.keys, self.head_keys(), self.head_share))
    }
}

/// The generalized harmonic number H(n, s) = Σ_{k=1..n} k^-s.
fn harmonic(n: u32, s: f64) -> f64 {
    (1..=n).map(|k| f64::from(k).powf(-s)).sum()
}

/// The share of Zipf(n, s) draws that land on the `head` most popular keys.
pub fn head_share(n: u32, head: u32, s: f64) -> f64 {
    harmonic(head.min(n), s) / harmonic(n, s)
}

/// The exponent `s` at which the top `head` of `n` keys get `share` of the
/// draws. The share grows with `s`, so bisection finds it.
pub fn solve_exponent(n: u32, head: u32, share: f64) -> f64 {
    if head >= n {
        return 1.0;
    }
    let (mut low, mut high) = (0.0_f64, 8.0_f64);
    for _ in 0..60 {
        let mid = (low + high) / 2.0;
        if head_share(n, head, mid) < share {
            low = mid;
        } else {
            high = mid;
        }
    }
    (low + high) / 2.0
}

/// Draws key ranks (0 = most popular) from a Zipf distribution.
#[derive(Debug, Clone, Copy)]
pub struct KeySampler {
    zipf: Zipf<f64>,
    keys: u32,
}

impl KeySampler {
    /// A sampler over `keys` keys with exponent `s`.
    pub fn new(keys: u32, s: f64) -> Result<Self, WorkloadError> {
        let zipf = Zipf::new(f64::from(keys), s).map_err(|e| WorkloadError(e.to_string()))?;
        Ok(Self { zipf, keys })
    }

    /// One key rank.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        // Zipf draws 1..=n as floats.
        (self.zipf.sample(rng) as u32).clamp(1, self.keys) - 1
    }
}

/// A key's name on the wire.
pub fn key_name(rank: u32) -> String {
    format!("key-{rank:08}")
}

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// GET.
    Read,
    /// PUT of a fresh value of the key's size.
    Write,
}

/// One planned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedOp {
    /// When it is due, from the start of the run.
    pub at: Duration,
    /// Read or write.
    pub kind: OpKind,
    /// The key's rank.
    pub key: u32,
    /// Which target (edge) it goes to.
    pub target: usize,
    /// Whether it counts (false during warm-up).
    pub measured: bool,
}

/// A keyspace and its schedule.
#[derive(Debug, Clone)]
pub struct Workload {
    config: WorkloadConfig,
    sizes: Vec<u32>,
    payload: Bytes,
    exponent: f64,
}

impl Workload {
    /// Draws every key's value size; the first few hundred values of
    /// randomness make the payload all values are cut from.
    pub fn new(config: WorkloadConfig) -> Result<Self, WorkloadError> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let head = config.head_keys();
        let v = config.values;
        let small = LogNormal::new(v.median_bytes.ln(), v.sigma)
            .map_err(|e| WorkloadError(e.to_string()))?;
        let sizes = (0..config.keys)
            .map(|rank| {
                // Nearly all hot keys are small (the write-up's figure), so
                // the head is always drawn from the small body.
                let large = rank >= head && rng.random::<f64>() < v.large_share;
                let bytes = if large {
                    let (lo, hi) = (v.large_min_bytes as f64, v.large_max_bytes as f64);
                    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
                } else {
                    small.sample(&mut rng).min(v.small_max_bytes as f64)
                };
                (bytes.round() as u32).max(1)
            })
            .collect::<Vec<u32>>();
        let largest = sizes.iter().copied().max().unwrap_or(1) as usize;
        let mut payload = vec![0u8; largest];
        rng.fill_bytes(&mut payload);
        let exponent = config.exponent();
        Ok(Self {
            config,
            sizes,
            payload: Bytes::from(payload),
            exponent,
        })
    }

    /// The settings.
    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// The Zipf exponent in use.
    pub fn exponent(&self) -> f64 {
        self.exponent
    }

    /// Keyspace size.
    pub fn keys(&self) -> u32 {
        self.config.keys
    }

    /// The value size of key `rank`.
    pub fn value_len(&self, rank: u32) -> usize {
        self.sizes.get(rank as usize).copied().unwrap_or(1) as usize
    }

    /// The value of key `rank`: a slice of the shared payload, so no value
    /// is copied.
    pub fn value(&self, rank: u32) -> Bytes {
        self.payload.slice(..self.value_len(rank))
    }

    /// Total bytes of the keyspace.
    pub fn total_bytes(&self) -> u64 {
        self.sizes.iter().map(|&s| u64::from(s)).sum()
    }

    /// The schedule: arrival offsets, op kinds, keys and targets for the
    /// warm-up and the measured time, spread over `targets` edges.
    pub fn plan(&self, targets: usize) -> Result<Vec<PlannedOp>, WorkloadError> {
        let c = &self.config;
        let sampler = KeySampler::new(c.keys, self.exponent)?;
        let gaps = Exp::new(c.rate).map_err(|e| WorkloadError(e.to_string()))?;
        // A stream of its own, so that the plan does not depend on how
        // many random numbers the value sizes took.
        let mut rng = StdRng::seed_from_u64(c.seed.wrapping_add(0x5eed));
        let warmup = c.warmup_secs;
        let end = c.warmup_secs + c.duration_secs;
        let mut ops = Vec::with_capacity((end * c.rate * 1.1) as usize);
        let mut t = 0.0;
        loop {
            t += match c.arrivals {
                Arrivals::Poisson => gaps.sample(&mut rng),
                Arrivals::Uniform => 1.0 / c.rate,
            };
            if t >= end {
                return Ok(ops);
            }
            let kind = if rng.random::<f64>() < c.read_share {
                OpKind::Read
            } else {
                OpKind::Write
            };
            ops.push(PlannedOp {
                at: Duration::from_secs_f64(t),
                kind,
                key: sampler.sample(&mut rng),
                target: rng.random_range(0..targets.max(1)),
                measured: t >= warmup,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solved_exponent_gives_the_head_its_share() {
        for (keys, head, share) in [(20_000, 6, 0.5), (5_000, 2, 0.5), (1_000_000, 300, 0.45)] {
            let s = solve_exponent(keys, head, share);
            let got = head_share(keys, head, s);
            assert!((got - share).abs() < 1e-6, "n={keys}: s={s} gives {got}");
        }
    }

    #[test]
    fn sampled_reads_hit_the_head_as_often_as_the_maths_says() {
        let config = WorkloadConfig {
            keys: 20_000,
            ..WorkloadConfig::default()
        };
        // 0.03% of 20,000 keys.
        assert_eq!(config.head_keys(), 6);
        let sampler = KeySampler::new(config.keys, config.exponent()).expect("a sampler");
        let mut rng = StdRng::seed_from_u64(1);
        let draws = 200_000;
        let head_hits = (0..draws)
            .filter(|_| sampler.sample(&mut rng) < config.head_keys())
            .count();
        let share = head_hits as f64 / f64::from(draws);
        // About half the reads go to 0.03% of the keys.
        assert!((0.48..0.52).contains(&share), "head share {share}");
    }

    #[test]
    fn every_rank_is_in_range_and_the_tail_is_reached() {
        let sampler = KeySampler::new(100, 1.1).expect("a sampler");
        let mut rng = StdRng::seed_from_u64(3);
        let ranks: Vec<u32> = (0..50_000).map(|_| sampler.sample(&mut rng)).collect();
        assert!(ranks.iter().all(|&r| r < 100));
        assert!(ranks.contains(&0) && ranks.contains(&99));
    }

    #[test]
    fn value_sizes_follow_the_config() {
        let workload = Workload::new(WorkloadConfig::default()).expect("a workload");
        let c = workload.config().clone();
        let sizes: Vec<usize> = (0..c.keys).map(|r| workload.value_len(r)).collect();
        let large = sizes
            .iter()
            .filter(|&&s| s > c.values.small_max_bytes)
            .count();
        let share = large as f64 / sizes.len() as f64;
        assert!((0.015..0.025).contains(&share), "large share {share}");
        assert!(
            sizes
                .iter()
                .all(|&s| s >= 1 && s <= c.values.large_max_bytes)
        );
        assert!(
            (0..c.head_keys()).all(|r| workload.value_len(r) <= c.values.small_max_bytes),
            "hot keys are small"
        );
        let mut small: Vec<usize> = sizes.iter().copied().filter(|&s| s <= 102_400).collect();
        small.sort_unstable();
        let median = small[small.len() / 2] as f64;
        assert!((1_500.0..2_800.0).contains(&median), "median {median}");
        assert_eq!(workload.value(0).len(), workload.value_len(0));
    }

    #[test]
    fn one_seed_gives_one_plan_and_another_seed_another() {
        let config = WorkloadConfig {
            keys: 1_000,
            warmup_secs: 1.0,
            duration_secs: 4.0,
            ..WorkloadConfig::default()
        };
        let plan = |seed| {
            Workload::new(WorkloadConfig {
                seed,
                ..config.clone()
            })
            .and_then(|w| w.plan(3))
            .expect("a plan")
        };
        assert_eq!(plan(1), plan(1));
        assert_ne!(plan(1), plan(2));

        let ops = plan(1);
        // About rate × (warm-up + duration) arrivals, in order.
        assert!((2_250..2_750).contains(&ops.len()), "{} ops", ops.len());
        assert!(ops.windows(2).all(|w| w[0].at <= w[1].at));
        let measured = ops.iter().filter(|o| o.measured).count();
        assert!((1_800..2_200).contains(&measured), "{measured} measured");
        assert!(
            ops.iter()
                .all(|o| o.measured == (o.at >= Duration::from_secs(1)))
        );
        let writes = ops.iter().filter(|o| o.kind == OpKind::Write).count();
        assert!((5..60).contains(&writes), "{writes} writes at 1%");
        assert!((0..3).all(|t| ops.iter().any(|o| o.target == t)));
    }

    #[test]
    fn bad_workloads_are_refused() {
        let base = WorkloadConfig::default();
        for bad in [
            WorkloadConfig {
                keys: 0,
                ..base.clone()
            },
            WorkloadConfig {
                rate: 0.0,
                ..base.clone()
            },
            WorkloadConfig {
                read_share: 1.5,
                ..base.clone()
            },
            WorkloadConfig {
                head_share: 1.0,
                ..base.clone()
            },
            WorkloadConfig {
                zipf_exponent: Some(-1.0),
                ..base.clone()
            },
            WorkloadConfig {
                duration_secs: 0.0,
                ..base.clone()
            },
        ] {
            assert!(Workload::new(bad.clone()).is_err(), "{bad:?} accepted");
        }
    }
}
