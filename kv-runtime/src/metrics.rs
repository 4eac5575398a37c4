//! Prometheus metrics, shared by every tier. `docs/metrics.md` lists them.
//!
//! One [`Metrics`] is one Prometheus registry: a node has its own, and the
//! tiers of a one-process stack share one, which their `tier` labels keep
//! apart. Components take small handles ([`Served`], [`CacheLookups`],
//! [`Upstream`], [`StoreCalls`]) whose label combinations are all created up
//! front: the hot path then bumps a counter without a label lookup, and every
//! series exists from the start (an error rate reads 0, not "no data").
//!
//! Gauges that mirror state held elsewhere (cache sizes, QUIC connections)
//! are filled in just before each scrape by callbacks ([`Metrics::on_scrape`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kv_proto::{Status, Tier};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Request duration buckets, seconds: 50 µs to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// How a caching tier's answers related to its cache.
#[derive(Debug, Clone)]
pub struct CacheAnswers {
    by_status: [IntCounter; 4],
    /// Background refreshes started.
    pub refreshes: IntCounter,
}

impl CacheAnswers {
    /// Counts one answer.
    pub fn count(&self, status: crate::freshness::CacheStatus) {
        let index = crate::freshness::CacheStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or(0);
        self.by_status[index].inc();
    }

    /// Answers counted with `status`.
    pub fn get(&self, status: crate::freshness::CacheStatus) -> u64 {
        let index = crate::freshness::CacheStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or(0);
        self.by_status[index].get()
    }
}

/// Feed lag buckets, seconds: 100 µs to 2 minutes (a feed that is down
/// leaves the TTL as the bound, so the tail is long).
pub const FEED_LAG_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The change-feed handles of one tier.
#[derive(Debug, Clone)]
pub struct FeedMetrics {
    tier: String,
    /// Commit-to-applied time of each change applied here.
    pub lag: Histogram,
    /// Events published to this tier's subscribers.
    pub published: IntCounter,
    /// Changes applied from upstream feeds.
    pub applied: IntCounter,
    /// Subscribers following this tier now.
    pub subscribers: IntGauge,
    connected: IntGaugeVec,
    following: Arc<std::sync::atomic::AtomicUsize>,
    /// Subscriptions that could not resume.
    pub gaps: IntCounter,
    /// Subscribers that fell behind this tier's backlog.
    pub overrun: IntCounter,
    /// Times this tier stopped trusting its cached copies.
    pub resyncs: IntCounter,
    /// Reads that checked a distrusted copy upstream.
    pub revalidations: IntCounter,
}

impl FeedMetrics {
    /// The gauge that is 1 while this tier follows `peer`'s feed.
    pub fn connected(&self, peer: &str) -> FollowingGauge {
        let gauge = self.connected.with_label_values(&[&self.tier, peer]);
        gauge.set(0);
        FollowingGauge {
            gauge,
            following: self.following.clone(),
        }
    }

    /// How many upstream feeds this tier follows right now.
    pub fn connected_count(&self) -> usize {
        self.following.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Whether this tier follows one upstream node's feed: the gauge, and the
/// tier's count of feeds followed.
#[derive(Debug)]
pub struct FollowingGauge {
    gauge: IntGauge,
    following: Arc<std::sync::atomic::AtomicUsize>,
}

impl FollowingGauge {
    /// Records whether the feed is followed now.
    pub fn set(&self, connected: bool) {
        use std::sync::atomic::Ordering;
        let was = self.gauge.get() == 1;
        self.gauge.set(i64::from(connected));
        match (was, connected) {
            (false, true) => {
                self.following.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.following.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }
}

/// The `op` label values; `other` is an unknown route or an unreadable request.
pub const OPS: [&str; 5] = ["get", "put", "delete", "list", "other"];

/// The index of an op name in [`OPS`] (unknown names count as `other`).
pub fn op_index(op: &str) -> usize {
    OPS.iter().position(|o| *o == op).unwrap_or(OPS.len() - 1)
}

/// What happened to a call to the next tier, beyond the statuses it can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// The peer answered with this status.
    Answered(Status),
    /// No answer within the time limit.
    Timeout,
    /// The link failed: no connection, a broken stream or an undecodable answer.
    LinkError,
}

/// What the origin's sweep did, by result.
#[derive(Debug, Clone)]
pub struct Swept {
    /// Expired values replaced by tombstones.
    pub expired: IntCounter,
    /// Tombstones deleted.
    pub removed: IntCounter,
    /// Tombstones past their retention kept, on a shared store.
    pub kept: IntCounter,
}

/// The object-store operations tierkv makes.
pub const STORE_OPS: [&str; 5] = ["get", "get_range", "put", "delete", "list"];
/// The outcomes of one object-store call.
pub const STORE_STATUSES: [&str; 4] = ["ok", "not_found", "error", "timeout"];

type Refresh = Box<dyn Fn() -> bool + Send + Sync>;

/// One registry and the metric families of every tier.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    in_flight: IntGaugeVec,
    cache_lookups: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
    cache_capacity: IntGaugeVec,
    answered_by: IntCounterVec,
    upstream_requests: IntCounterVec,
    upstream_duration: HistogramVec,
    coalesced: IntCounterVec,
    write_conflicts: IntCounter,
    write_replays: IntCounter,
    failovers: IntCounterVec,
    swept: IntCounterVec,
    store_requests: IntCounterVec,
    store_duration: HistogramVec,
    quic_connections: IntGaugeVec,
    quic_rtt: GaugeVec,
    cache_status: IntCounterVec,
    refreshes: IntCounterVec,
    feed_lag: HistogramVec,
    feed_events: IntCounterVec,
    feed_subscribers: IntGaugeVec,
    feed_connected: IntGaugeVec,
    feed_gaps: IntCounterVec,
    feed_overruns: IntCounterVec,
    feed_resyncs: IntCounterVec,
    feed_revalidations: IntCounterVec,
    build_info: IntGaugeVec,
    refreshers: Mutex<Vec<Refresh>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(vec.clone()))
        .expect("metric registered once");
    vec
}

fn plain_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric definition");
    registry
        .register(Box::new(counter.clone()))
        .expect("metric registered once");
    counter
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(vec.clone()))
        .expect("metric registered once");
    vec
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    let vec = HistogramVec::new(opts, labels).expect("valid metric definition");
    registry
        .register(Box::new(vec.clone()))
        .expect("metric registered once");
    vec
}

impl Metrics {
    /// A registry with every tierkv family and the process metrics (RSS, CPU,
    /// open file descriptors) of this process.
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registered once");
        let quic_rtt = GaugeVec::new(
            Opts::new(
                "tierkv_quic_rtt_seconds",
                "QUIC's smoothed round-trip time estimate, per connection",
            ),
            &["peer", "direction"],
        )
        .expect("valid metric definition");
        r.register(Box::new(quic_rtt.clone()))
            .expect("metric registered once");
        Arc::new(Self {
            requests: counter(
                &r,
                "tierkv_requests_total",
                "Requests served, by tier, operation and outcome",
                &["tier", "op", "status"],
            ),
            request_duration: histogram(
                &r,
                "tierkv_request_duration_seconds",
                "Time to answer a request",
                &["tier", "op"],
            ),
            in_flight: gauge(
                &r,
                "tierkv_requests_in_flight",
                "Requests being served right now",
                &["tier"],
            ),
            cache_lookups: counter(
                &r,
                "tierkv_cache_lookups_total",
                "Cache lookups by cache tier and result (hit, miss, stale)",
                &["tier", "result"],
            ),
            cache_bytes: gauge(&r, "tierkv_cache_bytes", "Bytes held by a cache", &["tier"]),
            cache_entries: gauge(
                &r,
                "tierkv_cache_entries",
                "Entries held by a cache",
                &["tier"],
            ),
            cache_capacity: gauge(
                &r,
                "tierkv_cache_capacity_bytes",
                "Configured capacity of a cache",
                &["tier"],
            ),
            answered_by: counter(
                &r,
                "tierkv_answered_by_total",
                "Reads through the edge, by the tier that answered them",
                &["tier"],
            ),
            upstream_requests: counter(
                &r,
                "tierkv_upstream_requests_total",
                "Requests sent to the next tier, by outcome",
                &["from", "to", "status"],
            ),
            upstream_duration: histogram(
                &r,
                "tierkv_upstream_duration_seconds",
                "Round trip of a request to the next tier",
                &["from", "to"],
            ),
            coalesced: counter(
                &r,
                "tierkv_coalesced_total",
                "Reads that waited on another read's fetch instead of making their own",
                &["tier"],
            ),
            write_conflicts: plain_counter(
                &r,
                "tierkv_write_conflicts_total",
                "Origin writes that lost a compare-and-swap race and read the key again",
            ),
            write_replays: plain_counter(
                &r,
                "tierkv_write_replays_total",
                "Writes whose id the origin had already applied: retries answered with the first version",
            ),
            swept: counter(
                &r,
                "tierkv_swept_total",
                "Objects the origin's sweep dealt with: expired values turned into tombstones, tombstones removed, or tombstones kept on a shared store",
                &["result"],
            ),
            failovers: counter(
                &r,
                "tierkv_failovers_total",
                "Requests sent on to another node after one failed, by tier and operation",
                &["tier", "op"],
            ),
            store_requests: counter(
                &r,
                "tierkv_object_store_requests_total",
                "Object-store calls (each attempt), by operation and outcome",
                &["op", "status"],
            ),
            store_duration: histogram(
                &r,
                "tierkv_object_store_duration_seconds",
                "Duration of one object-store call",
                &["op"],
            ),
            quic_connections: gauge(
                &r,
                "tierkv_quic_connections",
                "Open QUIC connections, by peer and direction",
                &["peer", "direction"],
            ),
            quic_rtt,
            cache_status: counter(
                &r,
                "tierkv_cache_status_total",
                "Reads answered by a caching tier, by cache status: hit (fresh), miss, revalidated (checked upstream), stale (served past its TTL because the upstream failed)",
                &["tier", "status"],
            ),
            refreshes: counter(
                &r,
                "tierkv_refreshes_total",
                "Background refreshes of copies read in the last part of their TTL (stale-while-revalidate)",
                &["tier"],
            ),
            feed_lag: {
                let opts = HistogramOpts::new(
                    "tierkv_feed_lag_seconds",
                    "Time from the origin's acknowledgement of a write to its change being applied at this tier",
                )
                .buckets(FEED_LAG_BUCKETS.to_vec());
                let vec = HistogramVec::new(opts, &["tier"]).expect("valid metric definition");
                r.register(Box::new(vec.clone()))
                    .expect("metric registered once");
                vec
            },
            feed_events: counter(
                &r,
                "tierkv_feed_events_total",
                "Change-feed events, by tier and direction (published to this tier's subscribers, applied from upstream)",
                &["tier", "direction"],
            ),
            feed_subscribers: gauge(
                &r,
                "tierkv_feed_subscribers",
                "Subscribers following this tier's feed right now",
                &["tier"],
            ),
            feed_connected: gauge(
                &r,
                "tierkv_feed_connected",
                "1 while this tier follows the feed of an upstream node, by peer",
                &["tier", "peer"],
            ),
            feed_gaps: counter(
                &r,
                "tierkv_feed_gaps_total",
                "Subscriptions that could not resume where they left off (the publisher restarted, or dropped events not yet read)",
                &["tier"],
            ),
            feed_overruns: counter(
                &r,
                "tierkv_feed_overruns_total",
                "Subscribers of this tier that fell behind its backlog and were told of the gap",
                &["tier"],
            ),
            feed_resyncs: counter(
                &r,
                "tierkv_feed_resyncs_total",
                "Times this tier stopped trusting its cached copies: its own feed gaps and resyncs relayed from upstream",
                &["tier"],
            ),
            feed_revalidations: counter(
                &r,
                "tierkv_feed_revalidations_total",
                "Reads that found a copy cached before a resync and checked it upstream",
                &["tier"],
            ),
            build_info: gauge(
                &r,
                "tierkv_build_info",
                "Always 1: the version and the tiers this process runs",
                &["version", "tier"],
            ),
            registry: r,
            refreshers: Mutex::new(Vec::new()),
        })
    }

    /// The registry, for libraries that register their own metrics (foyer).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs `refresh` before each scrape, for as long as it returns `true`.
    pub fn on_scrape(&self, refresh: impl Fn() -> bool + Send + Sync + 'static) {
        self.refreshers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(refresh));
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.quic_connections.reset();
        self.quic_rtt.reset();
        self.refreshers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|refresh| refresh());
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Marks this process as running `tier` (`tierkv_build_info`).
    pub fn announce(&self, tier: &str) {
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), tier])
            .set(1);
    }

    /// Request counters and durations of a serving tier.
    pub fn served(&self, tier: &str) -> Served {
        self.announce(tier);
        ServedInner {
            counts: OPS
                .iter()
                .map(|op| {
                    Status::ALL
                        .iter()
                        .map(|status| {
                            self.requests
                                .with_label_values(&[tier, op, status.as_str()])
                        })
                        .collect()
                })
                .collect(),
            durations: OPS
                .iter()
                .map(|op| self.request_duration.with_label_values(&[tier, op]))
                .collect(),
            in_flight: self.in_flight.with_label_values(&[tier]),
        }
        .into()
    }

    /// Lookup counters and size gauges of a cache tier.
    pub fn cache(&self, tier: &str) -> CacheLookups {
        let lookup = |result| self.cache_lookups.with_label_values(&[tier, result]);
        CacheLookups {
            hit: lookup("hit"),
            miss: lookup("miss"),
            stale: lookup("stale"),
            bytes: self.cache_bytes.with_label_values(&[tier]),
            entries: self.cache_entries.with_label_values(&[tier]),
            capacity: self.cache_capacity.with_label_values(&[tier]),
        }
    }

    /// The counter of reads of `tier` that waited on another read's fetch.
    pub fn coalesced(&self, tier: &str) -> IntCounter {
        self.coalesced.with_label_values(&[tier])
    }

    /// Origin writes that lost a compare-and-swap race.
    pub fn write_conflicts(&self) -> IntCounter {
        self.write_conflicts.clone()
    }

    /// Writes recognised as retries of one already applied.
    pub fn write_replays(&self) -> IntCounter {
        self.write_replays.clone()
    }

    /// The sweep's counters.
    pub fn swept(&self) -> Swept {
        let result = |r| self.swept.with_label_values(&[r]);
        Swept {
            expired: result("expired"),
            removed: result("removed"),
            kept: result("kept"),
        }
    }

    /// The cache-status counters of the answers of `tier`.
    pub fn cache_answers(&self, tier: &str) -> CacheAnswers {
        CacheAnswers {
            by_status: crate::freshness::CacheStatus::ALL.map(|status| {
                self.cache_status
                    .with_label_values(&[tier, status.as_str()])
            }),
            refreshes: self.refreshes.with_label_values(&[tier]),
        }
    }

    /// The change-feed handles of `tier`.
    pub fn feed(&self, tier: &str) -> FeedMetrics {
        let events = |direction| self.feed_events.with_label_values(&[tier, direction]);
        FeedMetrics {
            tier: tier.to_owned(),
            lag: self.feed_lag.with_label_values(&[tier]),
            published: events("published"),
            applied: events("applied"),
            subscribers: self.feed_subscribers.with_label_values(&[tier]),
            connected: self.feed_connected.clone(),
            following: Arc::default(),
            gaps: self.feed_gaps.with_label_values(&[tier]),
            overrun: self.feed_overruns.with_label_values(&[tier]),
            resyncs: self.feed_resyncs.with_label_values(&[tier]),
            revalidations: self.feed_revalidations.with_label_values(&[tier]),
        }
    }

    /// The failover counters of `tier`, one per operation in [`OPS`] order.
    pub fn failovers(&self, tier: &str) -> [IntCounter; 5] {
        OPS.map(|op| self.failovers.with_label_values(&[tier, op]))
    }

    /// The counters of which tier answered the reads through an edge.
    pub fn answered_by(&self) -> AnsweredBy {
        AnsweredBy(
            Tier::ALL
                .iter()
                .map(|tier| (*tier, self.answered_by.with_label_values(&[tier.as_str()])))
                .collect(),
        )
    }

    /// Counters and durations of requests from tier `from` to tier `to`.
    pub fn upstream(&self, from: &str, to: &str) -> Upstream {
        let count = |status: &str| {
            self.upstream_requests
                .with_label_values(&[from, to, status])
        };
        Upstream {
            answered: Status::ALL.iter().map(|s| count(s.as_str())).collect(),
            timeout: count("timeout"),
            link_error: count("link_error"),
            duration: self.upstream_duration.with_label_values(&[from, to]),
        }
    }

    /// Counters and durations of object-store calls.
    pub fn store_calls(&self) -> StoreCalls {
        StoreCalls {
            counts: STORE_OPS
                .iter()
                .map(|op| {
                    STORE_STATUSES
                        .iter()
                        .map(|status| self.store_requests.with_label_values(&[op, status]))
                        .collect()
                })
                .collect(),
            durations: STORE_OPS
                .iter()
                .map(|op| self.store_duration.with_label_values(&[op]))
                .collect(),
        }
    }

    /// Adds `open` connections to `peer` (in `direction`) with this RTT to
    /// the gauges. Called by scrape callbacks: the gauges start empty at each
    /// scrape, so a peer that is gone disappears, and two links to one peer
    /// (two tiers of one process) add up.
    pub fn record_quic(&self, peer: &str, direction: &str, open: i64, rtt: Option<Duration>) {
        self.quic_connections
            .with_label_values(&[peer, direction])
            .add(open);
        if let Some(rtt) = rtt {
            self.quic_rtt
                .with_label_values(&[peer, direction])
                .set(rtt.as_secs_f64());
        }
    }
}

/// Request counters of one serving tier, by op and status.
#[derive(Debug, Clone)]
pub struct Served(Arc<ServedInner>);

#[derive(Debug)]
struct ServedInner {
    counts: Vec<Vec<IntCounter>>,
    durations: Vec<Histogram>,
    in_flight: IntGauge,
}

impl From<ServedInner> for Served {
    fn from(inner: ServedInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl Served {
    /// Counts a request as in flight until the returned guard is dropped.
    pub fn start(&self) -> InFlight {
        self.0.in_flight.inc();
        InFlight(self.0.in_flight.clone())
    }

    /// Counts one request of `op` (an [`OPS`] name) that ended with `status`
    /// after `elapsed`.
    pub fn observe(&self, op: &str, status: Status, elapsed: Duration) {
        let op = op_index(op);
        let status = usize::from(status.code());
        if let Some(counter) = self.0.counts[op].get(status) {
            counter.inc();
        }
        self.0.durations[op].observe(elapsed.as_secs_f64());
    }
}

/// A request in flight; dropping it (however the request ends) counts it out.
#[derive(Debug)]
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Lookup counters and size gauges of one cache tier.
#[derive(Debug, Clone)]
pub struct CacheLookups {
    /// Found, and fresh enough to serve.
    pub hit: IntCounter,
    /// Not found.
    pub miss: IntCounter,
    /// Found, but too old to serve.
    pub stale: IntCounter,
    /// Bytes held.
    pub bytes: IntGauge,
    /// Entries held.
    pub entries: IntGauge,
    /// Configured capacity, bytes.
    pub capacity: IntGauge,
}

/// Which tier answered each read through an edge.
#[derive(Debug, Clone)]
pub struct AnsweredBy(Vec<(Tier, IntCounter)>);

impl AnsweredBy {
    /// Counts one read answered by `tier`.
    pub fn inc(&self, tier: Tier) {
        if let Some((_, counter)) = self.0.iter().find(|(t, _)| *t == tier) {
            counter.inc();
        }
    }
}

/// Requests from one tier to the next.
#[derive(Debug, Clone)]
pub struct Upstream {
    answered: Vec<IntCounter>,
    timeout: IntCounter,
    link_error: IntCounter,
    duration: Histogram,
}

impl Upstream {
    /// Counts one request and its round trip.
    pub fn observe(&self, outcome: UpstreamOutcome, elapsed: Duration) {
        match outcome {
            UpstreamOutcome::Answered(status) => {
                if let Some(counter) = self.answered.get(usize::from(status.code())) {
                    counter.inc();
                }
            }
            UpstreamOutcome::Timeout => self.timeout.inc(),
            UpstreamOutcome::LinkError => self.link_error.inc(),
        }
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// Object-store calls, by op and outcome.
#[derive(Debug, Clone)]
pub struct StoreCalls {
    counts: Vec<Vec<IntCounter>>,
    durations: Vec<Histogram>,
}

impl StoreCalls {
    /// Counts one call of `op` (a [`STORE_OPS`] name) with `status` (a
    /// [`STORE_STATUSES`] name) that took `elapsed`.
    pub fn observe(&self, op: &str, status: &str, elapsed: Duration) {
        let Some(op) = STORE_OPS.iter().position(|o| *o == op) else {
            return;
        };
        if let Some(status) = STORE_STATUSES.iter().position(|s| *s == status) {
            self.counts[op][status].inc();
        }
        self.durations[op].observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(series))
    }

    #[test]
    fn every_label_combination_exists_from_the_start() {
        let metrics = Metrics::new();
        let _served = metrics.served("regional");
        let _up = metrics.upstream("regional", "origin");
        let _store = metrics.store_calls();
        let text = metrics.render();
        for series in [
            r#"tierkv_requests_total{op="get",status="internal",tier="regional"} 0"#,
            r#"tierkv_requests_total{op="other",status="bad_request",tier="regional"} 0"#,
            r#"tierkv_upstream_requests_total{from="regional",status="timeout",to="origin"} 0"#,
            r#"tierkv_object_store_requests_total{op="list",status="timeout"} 0"#,
            r#"tierkv_build_info{tier="regional",version="#,
        ] {
            assert!(line(&text, series).is_some(), "{series} missing in\n{text}");
        }
    }

    #[test]
    fn observations_land_in_their_series_and_buckets() {
        let metrics = Metrics::new();
        let served = metrics.served("edge");
        let in_flight = served.start();
        assert!(
            metrics
                .render()
                .contains(r#"tierkv_requests_in_flight{tier="edge"} 1"#)
        );
        drop(in_flight);
        served.observe("get", Status::NotFound, Duration::from_micros(70));
        served.observe("nonsense", Status::BadRequest, Duration::from_secs(20));
        metrics
            .upstream("edge", "regional")
            .observe(UpstreamOutcome::LinkError, Duration::from_millis(3));
        let text = metrics.render();
        for series in [
            r#"tierkv_requests_total{op="get",status="not_found",tier="edge"} 1"#,
            r#"tierkv_requests_total{op="other",status="bad_request",tier="edge"} 1"#,
            r#"tierkv_request_duration_seconds_bucket{op="get",tier="edge",le="0.00005"} 0"#,
            r#"tierkv_request_duration_seconds_bucket{op="get",tier="edge",le="0.0001"} 1"#,
            r#"tierkv_request_duration_seconds_bucket{op="other",tier="edge",le="10"} 0"#,
            r#"tierkv_request_duration_seconds_bucket{op="other",tier="edge",le="+Inf"} 1"#,
            r#"tierkv_upstream_requests_total{from="edge",status="link_error",to="regional"} 1"#,
            r#"tierkv_requests_in_flight{tier="edge"} 0"#,
        ] {
            assert!(line(&text, series).is_some(), "{series} missing in\n{text}");
        }
    }

    #[test]
    fn scrape_callbacks_run_until_they_retire() {
        let metrics = Metrics::new();
        let cache = metrics.cache("edge");
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        metrics.on_scrape(move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            cache.bytes.set(100 + n as i64);
            n == 0
        });
        assert!(
            metrics
                .render()
                .contains("tierkv_cache_bytes{tier=\"edge\"} 100")
        );
        assert!(
            metrics
                .render()
                .contains("tierkv_cache_bytes{tier=\"edge\"} 101")
        );
        // It returned false on its second run, so it is gone.
        metrics.render();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exported() {
        let text = Metrics::new().render();
        for name in [
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_open_fds ",
        ] {
            assert!(line(&text, name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn quic_gauges_hold_only_what_the_last_scrape_saw() {
        let metrics = Metrics::new();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        for _ in 0..2 {
            let open = open.clone();
            let m = Arc::downgrade(&metrics);
            metrics.on_scrape(move || {
                if let (Some(m), true) =
                    (m.upgrade(), open.load(std::sync::atomic::Ordering::SeqCst))
                {
                    m.record_quic(
                        "10.0.0.1:7401",
                        "outbound",
                        1,
                        Some(Duration::from_millis(2)),
                    );
                }
                true
            });
        }
        let text = metrics.render();
        assert!(
            text.contains(
                r#"tierkv_quic_connections{direction="outbound",peer="10.0.0.1:7401"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tierkv_quic_rtt_seconds{direction="outbound",peer="10.0.0.1:7401"} 0.002"#
            ),
            "{text}"
        );
        open.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(!metrics.render().contains("10.0.0.1:7401"));
    }
}
