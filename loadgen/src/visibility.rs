//! How fresh the edges are: write-to-visible lag on every other edge, and
//! stale reads.
//!
//! # Write-to-visible lag
//!
//! After a write is acknowledged (its answer's headers arrive, with the
//! version in `kv-version`), every *other* edge of the setup is polled, one
//! request at a time per edge, until it serves that version or a newer one.
//! A poll is a `HEAD` of the key: the edge answers it through the same read
//! path as a `GET` (cache, upstream and all) but sends no body, so a
//! multi-MiB value is not downloaded a thousand times a second.
//!
//! The lag of one (write, edge) pair is the time from the acknowledgement to
//! the moment the first poll that saw the new version was **sent**: a read
//! sent then is answered with the new version. The previous poll, sent one
//! interval earlier, still saw an old one, so the figure is exact to within
//! the poll interval plus the previous poll's own duration. An edge with no
//! cache (or whose copy was dropped) is read through to the origin, which
//! has the new version: its lag is about zero, and what the freshness costs
//! shows up in read latency instead. An edge that keeps serving a cached
//! copy until the change feed replaces it shows the feed's delay; one with
//! no feed shows its cache TTL.
//!
//! Polls start every `poll_interval` (1 ms by default) and back off to 5%
//! of the time waited so far, so a long wait costs few requests and the
//! figure stays within 5% (a wait of 40 ms is still polled every 2 ms).
//! Each wait is bounded (`max_wait`, by default twice the cache TTL): a
//! wait that reaches the bound is counted as a timeout, and recorded in the
//! histogram at the bound, so the percentiles cannot hide it. At most
//! `max_watched` writes are watched at a time; a write over that cap is
//! counted as unwatched.
//!
//! When the workload writes less often than `probe_rate`, a probe writer
//! adds writes of one probe key of its own at that rate, through each edge
//! in turn, and they are watched the same way. The polls cache the probe
//! key on every edge, so each later probe write has a cached copy to
//! replace: the probes measure the change feed, not a cold read.
//!
//! # Stale reads
//!
//! A read is stale if it returned a version older than the newest version of
//! its key whose write was acknowledged before the read was sent. Its
//! staleness is how long before the read was sent the first such newer write
//! was acknowledged. Both instants are taken by this process: the write's
//! acknowledgement as its answer arrived, the read as it was sent, so a
//! read counted stale certainly started after the acknowledgement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::{curve, histogram, percentile_ms, record};

/// The header that carries a value's version, on reads and writes.
pub const VERSION_HEADER: &str = "kv-version";

/// The edges' cache TTL when nothing says otherwise (`kv-edge`'s default).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

/// How write-to-visible lag is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagOptions {
    /// The shortest time between two polls of one edge.
    pub poll_interval: Duration,
    /// How long to wait for a write to show on an edge before counting a
    /// timeout; `None` is twice the cache TTL.
    pub max_wait: Option<Duration>,
    /// The probe writer's rate, writes per second; it runs when the workload
    /// writes less often than this (0: never).
    pub probe_rate: f64,
    /// Most writes watched at once.
    pub max_watched: usize,
}

impl Default for LagOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(1),
            max_wait: None,
            probe_rate: 2.0,
            max_watched: 64,
        }
    }
}

impl LagOptions {
    /// The bound on one wait, where the cache TTL is `cache_ttl`.
    pub fn max_wait_for(&self, cache_ttl: Duration) -> Duration {
        self.max_wait.unwrap_or(cache_ttl.saturating_mul(2))
    }

    /// The pause before the next poll, after `waited` since the
    /// acknowledgement: the poll interval, or 5% of the wait so far.
    pub fn backoff(&self, waited: Duration) -> Duration {
        self.poll_interval.max(waited / 20)
    }
}

/// How one wait for a write to show on one edge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The edge served the write (or a newer one) to a poll sent this long
    /// after the acknowledgement.
    Visible(Duration),
    /// The edge still served an older version when the wait's bound ran out.
    TimedOut,
}

/// One edge's waits.
#[derive(Debug, Clone)]
struct EdgeWaits {
    /// Lags in µs; timeouts at the bound.
    lag: Histogram<u64>,
    timeouts: u64,
}

/// Every wait of one run, by edge.
#[derive(Debug, Clone)]
pub struct LagRecorder {
    max_wait: Duration,
    poll_interval: Duration,
    edges: Vec<EdgeWaits>,
    /// Acknowledged measured writes that were watched.
    pub writes: u64,
    /// Of those, the probe writer's.
    pub probe_writes: u64,
    /// Acknowledged measured writes not watched: over the cap, or answered
    /// without a version.
    pub unwatched: u64,
    /// Probe writes that failed.
    pub probe_errors: u64,
    /// Polls that failed (transport errors, error statuses); the wait went on.
    pub poll_errors: u64,
}

impl LagRecorder {
    /// A recorder for `edges` edges, each wait bounded by `max_wait`.
    pub fn new(edges: usize, max_wait: Duration, poll_interval: Duration) -> Self {
        Self {
            max_wait,
            poll_interval,
            edges: (0..edges)
                .map(|_| EdgeWaits {
                    lag: histogram(),
                    timeouts: 0,
                })
                .collect(),
            writes: 0,
            probe_writes: 0,
            unwatched: 0,
            probe_errors: 0,
            poll_errors: 0,
        }
    }

    /// Records how the wait on edge `edge` ended. A timeout goes into the
    /// histogram at the bound, and is counted.
    pub fn record(&mut self, edge: usize, waited: Waited) {
        let Some(waits) = self.edges.get_mut(edge) else {
            return;
        };
        match waited {
            Waited::Visible(lag) => record(&mut waits.lag, lag.min(self.max_wait)),
            Waited::TimedOut => {
                waits.timeouts += 1;
                record(&mut waits.lag, self.max_wait);
            }
        }
    }

    /// Every edge's lags in one histogram.
    pub fn all(&self) -> Histogram<u64> {
        let mut all = histogram();
        for edge in &self.edges {
            // Both have the same bounds, so adding cannot fail.
            let _ = all.add(&edge.lag);
        }
        all
    }

    /// The summary, with `targets` naming the edges.
    pub fn report(&self, targets: &[String]) -> VisibilityReport {
        let all = self.all();
        let edges = self
            .edges
            .iter()
            .enumerate()
            .map(|(i, e)| EdgeLag {
                edge: i,
                target: targets.get(i).cloned().unwrap_or_default(),
                samples: e.lag.len(),
                timeouts: e.timeouts,
                lag_ms: LagMs::of(&e.lag),
            })
            .collect::<Vec<_>>();
        VisibilityReport {
            writes: self.writes,
            probe_writes: self.probe_writes,
            unwatched: self.unwatched,
            samples: all.len(),
            timeouts: edges.iter().map(|e| e.timeouts).sum(),
            probe_errors: self.probe_errors,
            poll_errors: self.poll_errors,
            poll_interval_ms: self.poll_interval.as_secs_f64() * 1e3,
            max_wait_ms: self.max_wait.as_secs_f64() * 1e3,
            lag_ms: LagMs::of(&all),
            curve: if all.is_empty() {
                Vec::new()
            } else {
                curve(&all)
            },
            edges,
        }
    }
}

/// A lag distribution's summary, ms.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
pub struct LagMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl LagMs {
    /// The summary of `histogram` (µs); zeros when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: percentile_ms(histogram, 50.0),
            p99: percentile_ms(histogram, 99.0),
            max: percentile_ms(histogram, 100.0),
        }
    }
}

/// One edge's write-to-visible lag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeLag {
    /// The edge's index among the targets, from 0.
    pub edge: usize,
    /// Its base URL.
    pub target: String,
    /// Waits on this edge (timeouts included).
    pub samples: u64,
    /// Waits that reached the bound.
    pub timeouts: u64,
    /// The lag; timeouts count at the bound.
    pub lag_ms: LagMs,
}

/// A setup's write-to-visible lag on the other edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisibilityReport {
    /// Acknowledged measured writes that were watched.
    pub writes: u64,
    /// Of those, the probe writer's.
    pub probe_writes: u64,
    /// Acknowledged measured writes not watched (over the cap of writes
    /// watched at once, or answered without a version).
    pub unwatched: u64,
    /// (write, other edge) waits, timeouts included.
    pub samples: u64,
    /// Waits that reached `max_wait_ms`.
    pub timeouts: u64,
    /// Probe writes that failed.
    pub probe_errors: u64,
    /// Polls that failed; their waits went on.
    pub poll_errors: u64,
    /// The shortest time between two polls of one edge, ms.
    pub poll_interval_ms: f64,
    /// The bound on one wait, ms.
    pub max_wait_ms: f64,
    /// The lag over every edge; timeouts count at the bound.
    pub lag_ms: LagMs,
    /// The same, as [percentile, ms] points (empty without samples).
    pub curve: Vec<(f64, f64)>,
    /// Per edge.
    pub edges: Vec<EdgeLag>,
}

impl VisibilityReport {
    /// The edges that were waited on at least once.
    pub fn sampled_edges(&self) -> impl Iterator<Item = &EdgeLag> {
        self.edges.iter().filter(|e| e.samples > 0)
    }

    /// The highest p99 of any edge, and that edge.
    pub fn worst_edge_p99(&self) -> Option<&EdgeLag> {
        self.sampled_edges()
            .max_by(|a, b| a.lag_ms.p99.total_cmp(&b.lag_ms.p99))
    }

    /// Whether `ms` is at the bound (a timeout, to the histogram's
    /// precision).
    pub fn at_bound(&self, ms: f64) -> bool {
        self.timeouts > 0 && ms >= self.max_wait_ms * 0.999
    }
}

/// A setup's stale reads.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StaleReads {
    /// Measured successful reads whose answer named a version.
    pub checked: u64,
    /// Of those, reads of a version older than one acknowledged before they
    /// were sent.
    pub stale: u64,
    /// The longest staleness: from the first newer write's acknowledgement
    /// to the stale read's sending, ms.
    pub max_staleness_ms: f64,
}

/// A read, as judged for staleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadSeen {
    key: u32,
    version: u64,
    sent: Instant,
}

/// The acknowledged writes and the measured reads of one run, per key, to
/// find the stale reads once the run is over.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    acked: HashMap<u32, Vec<(u64, Instant)>>,
    reads: Vec<ReadSeen>,
    unversioned: u64,
}

impl Freshness {
    /// A write of `version` to `key`, acknowledged `at` (warm-up included:
    /// a measured read may still be judged against it).
    pub fn acknowledged(&mut self, key: u32, version: u64, at: Instant) {
        self.acked.entry(key).or_default().push((version, at));
    }

    /// A measured read of `key`, sent at `sent`, answered with `version`
    /// (`None`: the answer named none, so it cannot be judged).
    pub fn read(&mut self, key: u32, version: Option<u64>, sent: Instant) {
        match version {
            Some(version) => self.reads.push(ReadSeen { key, version, sent }),
            None => self.unversioned += 1,
        }
    }

    /// How long before `sent` a version of `key` newer than `version` was
    /// first acknowledged; `None` if no newer version was acknowledged
    /// before `sent` (the read was fresh).
    pub fn staleness(&self, key: u32, version: u64, sent: Instant) -> Option<Duration> {
        self.acked
            .get(&key)?
            .iter()
            .filter(|&&(v, at)| v > version && at <= sent)
            .map(|&(_, at)| sent.saturating_duration_since(at))
            .max()
    }

    /// Every read recorded, judged.
    pub fn judge(&self) -> StaleReads {
        let mut out = StaleReads {
            checked: self.reads.len() as u64,
            ..StaleReads::default()
        };
        let mut longest = Duration::ZERO;
        for read in &self.reads {
            if let Some(staleness) = self.staleness(read.key, read.version, read.sent) {
                out.stale += 1;
                longest = longest.max(staleness);
            }
        }
        out.max_staleness_ms = longest.as_secs_f64() * 1e3;
        out
    }
}

/// The version an answer names in its `kv-version` header.
pub fn version_of(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Watches writes until every other edge serves them; one per run.
#[derive(Debug)]
pub struct Watcher {
    client: reqwest::Client,
    targets: Vec<String>,
    options: LagOptions,
    max_wait: Duration,
    request_timeout: Duration,
    watching: Arc<Semaphore>,
    lag: Mutex<LagRecorder>,
}

impl Watcher {
    /// A watcher over `targets` (edge base URLs) that sends with `client`,
    /// each wait bounded by `max_wait`; no poll or probe write takes longer
    /// than `request_timeout`.
    pub fn new(
        client: reqwest::Client,
        targets: &[String],
        options: LagOptions,
        max_wait: Duration,
        request_timeout: Duration,
    ) -> Self {
        Self {
            client,
            targets: targets.to_vec(),
            options,
            max_wait,
            request_timeout,
            watching: Arc::new(Semaphore::new(options.max_watched.max(1))),
            lag: Mutex::new(LagRecorder::new(
                targets.len(),
                max_wait,
                options.poll_interval,
            )),
        }
    }

    /// The options.
    pub fn options(&self) -> &LagOptions {
        &self.options
    }

    /// What was recorded so far.
    pub fn recorded(&self) -> LagRecorder {
        match self.lag.lock() {
            Ok(lag) => lag.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn with_lag(&self, f: impl FnOnce(&mut LagRecorder)) {
        match self.lag.lock() {
            Ok(mut lag) => f(&mut lag),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Waits until every target but `writer` serves `version` of the key at
    /// `path` (`/v1/{namespace}/{key}`) or a newer one; the write was
    /// acknowledged at `acked`. With `measured`, the waits are recorded
    /// (warm-up writes are watched too, so that the load is the same, but
    /// not counted). `version: None` (an answer without one) is counted as
    /// unwatched.
    pub async fn watch(
        &self,
        path: &str,
        writer: usize,
        version: Option<u64>,
        acked: Instant,
        measured: bool,
        probe: bool,
    ) {
        let unwatched = || {
            if measured {
                self.with_lag(|lag| lag.unwatched += 1);
            }
        };
        let Some(version) = version else {
            return unwatched();
        };
        let Ok(_watching) = self.watching.clone().try_acquire_owned() else {
            return unwatched();
        };
        let deadline = acked + self.max_wait;
        let polls = self
            .targets
            .iter()
            .enumerate()
            .filter(|&(edge, _)| edge != writer)
            .map(|(edge, base)| {
                let url = format!("{base}{path}");
                async move {
                    let (waited, errors) = self.poll(&url, version, acked, deadline).await;
                    (edge, waited, errors)
                }
            });
        let results = futures::future::join_all(polls).await;
        self.with_lag(|lag| {
            for &(edge, waited, errors) in &results {
                lag.poll_errors += errors;
                if measured {
                    lag.record(edge, waited);
                }
            }
            if measured {
                lag.writes += 1;
                if probe {
                    lag.probe_writes += 1;
                }
            }
        });
    }

    /// Polls `url` until it serves `version` or newer, or `deadline`;
    /// returns how the wait ended and how many polls failed.
    async fn poll(
        &self,
        url: &str,
        version: u64,
        acked: Instant,
        deadline: Instant,
    ) -> (Waited, u64) {
        let mut errors = 0;
        loop {
            let sent = Instant::now();
            if sent >= deadline {
                return (Waited::TimedOut, errors);
            }
            let timeout = (deadline - sent).min(self.request_timeout);
            match self.client.head(url).timeout(timeout).send().await {
                Ok(answer) if answer.status().is_success() => {
                    if version_of(answer.headers()).is_some_and(|seen| seen >= version) {
                        return (
                            Waited::Visible(sent.saturating_duration_since(acked)),
                            errors,
                        );
                    }
                }
                // A 404 may name the version of a delete; anything else
                // is a failed poll.
                Ok(answer) if answer.status() == reqwest::StatusCode::NOT_FOUND => {}
                Ok(_) | Err(_) => errors += 1,
            }
            let next = sent + self.options.backoff(sent.saturating_duration_since(acked));
            tokio::time::sleep_until(next.min(deadline)).await;
        }
    }

    /// Writes the probe key (at `path`) through each target in turn, every
    /// `1 / probe_rate` seconds from `start` until `end`, and watches each
    /// write; writes due before `measured_from` are watched but not counted.
    /// Returns when the last wait has ended.
    pub async fn probe(
        self: Arc<Self>,
        path: String,
        start: Instant,
        measured_from: Instant,
        end: Instant,
    ) {
        let rate = self.options.probe_rate;
        if !(rate.is_finite() && rate > 0.0) || self.targets.is_empty() {
            return;
        }
        let Ok(every) = Duration::try_from_secs_f64(1.0 / rate) else {
            return;
        };
        let mut waits = JoinSet::new();
        let mut due = start;
        let mut n: u64 = 0;
        while due < end {
            tokio::time::sleep_until(due).await;
            let writer = (n as usize) % self.targets.len();
            let measured = due >= measured_from;
            let url = format!("{}{path}", self.targets[writer]);
            let value = Bytes::from(format!("lag probe {n:010}"));
            let written = self
                .client
                .put(&url)
                .body(value)
                .timeout(self.request_timeout)
                .send()
                .await;
            let acked = Instant::now();
            match written {
                Ok(answer) if answer.status().is_success() => {
                    let version = version_of(answer.headers());
                    let watcher = self.clone();
                    let path = path.clone();
                    waits.spawn(async move {
                        watcher
                            .watch(&path, writer, version, acked, measured, true)
                            .await;
                    });
                }
                Ok(_) | Err(_) => {
                    if measured {
                        self.with_lag(|lag| lag.probe_errors += 1);
                    }
                }
            }
            while waits.try_join_next().is_some() {}
            n += 1;
            due += every;
        }
        while waits.join_next().await.is_some() {}
    }

    /// Deletes the probe key at `path` (through the first target), so that
    /// a run leaves nothing behind; failures are only logged.
    pub async fn remove_probe(&self, path: &str) {
        let Some(base) = self.targets.first() else {
            return;
        };
        let removed = self
            .client
            .delete(format!("{base}{path}"))
            .timeout(self.request_timeout)
            .send()
            .await;
        match removed {
            Ok(answer) if answer.status().is_success() => {}
            Ok(answer) => {
                tracing::warn!(status = %answer.status(), "cannot delete the lag probe key")
            }
            Err(e) => tracing::warn!(error = %e, "cannot delete the lag probe key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn lags_are_summarized_per_edge_and_overall() {
        let mut lag = LagRecorder::new(3, Duration::from_secs(10), MS);
        // Edge 0: 1..=100 ms; edge 1: 100 × 2 ms; edge 2 never waited on.
        for ms in 1..=100u64 {
            lag.record(0, Waited::Visible(Duration::from_millis(ms)));
            lag.record(1, Waited::Visible(2 * MS));
        }
        let report = lag.report(&["a".into(), "b".into(), "c".into()]);
        assert_eq!(report.samples, 200);
        assert_eq!(report.timeouts, 0);
        let e0 = &report.edges[0];
        assert_eq!((e0.edge, e0.target.as_str(), e0.samples), (0, "a", 100));
        assert!((e0.lag_ms.p50 - 50.0).abs() < 0.05, "{:?}", e0.lag_ms);
        assert!((e0.lag_ms.p99 - 99.0).abs() < 0.1, "{:?}", e0.lag_ms);
        assert!((e0.lag_ms.max - 100.0).abs() < 0.1, "{:?}", e0.lag_ms);
        assert!((report.edges[1].lag_ms.max - 2.0).abs() < 0.01);
        assert_eq!(report.edges[2].samples, 0);
        assert_eq!(report.edges[2].lag_ms, LagMs::default());
        // Overall: half the samples are 2 ms, the other half 1..=100 ms.
        assert!(
            (report.lag_ms.p50 - 2.0).abs() < 0.01,
            "{:?}",
            report.lag_ms
        );
        assert!(
            (report.lag_ms.p99 - 98.0).abs() < 0.1,
            "{:?}",
            report.lag_ms
        );
        assert_eq!(report.sampled_edges().count(), 2);
        assert_eq!(report.worst_edge_p99().map(|e| e.edge), Some(0));
        assert_eq!(report.curve.last().map(|p| p.0), Some(100.0));
        // Out-of-range edges are ignored rather than panicking.
        lag.record(7, Waited::TimedOut);
        assert_eq!(lag.report(&[]).samples, 200);
    }

    #[test]
    fn timeouts_are_counted_and_sit_at_the_bound() {
        let bound = Duration::from_secs(120);
        let mut lag = LagRecorder::new(2, bound, MS);
        for _ in 0..98 {
            lag.record(1, Waited::Visible(3 * MS));
        }
        lag.record(1, Waited::TimedOut);
        lag.record(1, Waited::TimedOut);
        // A lag past the bound (a slow last poll) is clamped to it.
        lag.record(0, Waited::Visible(bound * 2));
        let report = lag.report(&[]);
        assert_eq!(report.timeouts, 2);
        assert_eq!(report.edges[1].timeouts, 2);
        assert_eq!(report.edges[1].samples, 100);
        assert_eq!(report.max_wait_ms, 120_000.0);
        // 2% of the waits timed out: p99 is the bound, not 3 ms.
        let p99 = report.edges[1].lag_ms.p99;
        assert!(report.at_bound(p99), "p99 {p99}");
        assert!(!report.at_bound(report.lag_ms.p50));
        assert!((report.edges[0].lag_ms.max - 120_000.0).abs() < 120.0);
    }

    #[test]
    fn no_samples_is_all_zeros_and_no_curve() {
        let report = LagRecorder::new(2, Duration::from_secs(1), MS).report(&[]);
        assert_eq!(report.samples, 0);
        assert_eq!(report.lag_ms, LagMs::default());
        assert!(report.curve.is_empty());
        assert!(report.worst_edge_p99().is_none());
    }

    #[test]
    fn polls_back_off_to_a_twentieth_of_the_wait() {
        let options = LagOptions::default();
        assert_eq!(options.backoff(Duration::ZERO), MS);
        assert_eq!(options.backoff(10 * MS), MS);
        assert_eq!(options.backoff(Duration::from_secs(2)), 100 * MS);
        assert_eq!(
            options.max_wait_for(DEFAULT_CACHE_TTL),
            Duration::from_secs(120)
        );
        let fixed = LagOptions {
            max_wait: Some(Duration::from_secs(5)),
            ..options
        };
        assert_eq!(
            fixed.max_wait_for(DEFAULT_CACHE_TTL),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_read_is_stale_only_after_a_newer_acknowledgement() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut f = Freshness::default();
        f.acknowledged(1, 10, at(100));
        f.acknowledged(1, 20, at(200));
        f.acknowledged(1, 30, at(300));
        // v10 read before v20 was acknowledged: fresh.
        assert_eq!(f.staleness(1, 10, at(150)), None);
        // v10 read after v20 and v30: stale since v20's acknowledgement.
        assert_eq!(
            f.staleness(1, 10, at(350)),
            Some(Duration::from_millis(150))
        );
        // v20 read after v30: stale since v30.
        assert_eq!(f.staleness(1, 20, at(310)), Some(Duration::from_millis(10)));
        // The newest, or a version newer than any acknowledged: fresh.
        assert_eq!(f.staleness(1, 30, at(400)), None);
        assert_eq!(f.staleness(1, 31, at(400)), None);
        // At the acknowledgement's own instant the read is late already.
        assert_eq!(f.staleness(1, 20, at(300)), Some(Duration::ZERO));
        // Another key, or a key never written: fresh.
        assert_eq!(f.staleness(2, 1, at(400)), None);
    }

    #[test]
    fn acknowledgements_out_of_version_order_are_judged_by_time() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut f = Freshness::default();
        // Two writes through different edges: v8 answered after v9.
        f.acknowledged(5, 9, at(100));
        f.acknowledged(5, 8, at(120));
        assert_eq!(f.staleness(5, 7, at(130)), Some(Duration::from_millis(30)));
        assert_eq!(f.staleness(5, 8, at(130)), Some(Duration::from_millis(30)));
        assert_eq!(f.staleness(5, 9, at(130)), None);
    }

    #[test]
    fn judging_counts_stale_reads_and_the_longest_staleness() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut f = Freshness::default();
        f.acknowledged(1, 2, at(10));
        f.acknowledged(3, 5, at(50));
        f.read(1, Some(1), at(5)); // before the write: fresh
        f.read(1, Some(1), at(12)); // 2 ms stale
        f.read(1, Some(2), at(20)); // fresh
        f.read(3, Some(4), at(90)); // 40 ms stale
        f.read(4, Some(1), at(90)); // never written: fresh
        f.read(1, None, at(90)); // no version: not judged
        let judged = f.judge();
        assert_eq!(judged.checked, 5);
        assert_eq!(judged.stale, 2);
        assert!((judged.max_staleness_ms - 40.0).abs() < 1e-9, "{judged:?}");
        assert_eq!(Freshness::default().judge(), StaleReads::default());
    }

    #[test]
    fn versions_are_read_from_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(version_of(&headers), None);
        headers.insert(VERSION_HEADER, "42".parse().expect("a header value"));
        assert_eq!(version_of(&headers), Some(42));
        headers.insert(VERSION_HEADER, "forty-two".parse().expect("a header value"));
        assert_eq!(version_of(&headers), None);
    }
}
