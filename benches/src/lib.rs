//! Criterion benchmarks of tierkv's hot paths live in `benches/`; this
//! library holds what they share.

use std::time::Duration;

/// The runtime every bench runs its servers and clients on: 2 workers, as
/// on the 2-core machines the figures are quoted from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The nearest-rank percentile `p` (0 < p <= 100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One line describing a latency distribution: n, p50, p90, p99, p99.9, max (µs).
pub fn summary(name: &str, mut latencies: Vec<Duration>) -> String {
    latencies.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "{name}: n={} p50={:.1} µs p90={:.1} µs p99={:.1} µs p99.9={:.1} µs max={:.1} µs",
        latencies.len(),
        us(percentile(&latencies, 50.0)),
        us(percentile(&latencies, 90.0)),
        us(percentile(&latencies, 99.0)),
        us(percentile(&latencies, 99.9)),
        us(latencies.last().copied().unwrap_or_default()),
    )
}

/// How many sequential samples to take: the full count under `cargo bench`
/// (which passes `--bench`), a smoke test's worth under `cargo test --benches`,
/// none when criterion only lists benchmarks.
pub fn sample_count(full: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    match (
        args.iter().any(|a| a == "--list"),
        args.iter().any(|a| a == "--bench"),
    ) {
        (true, _) => 0,
        (false, true) => full,
        (false, false) => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<_> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&samples[..1], 99.9), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
