//! loadgen drives tierkv with an open-loop workload and reproduces the
//! "Faster Workers KV" picture: read latency by percentile, one curve per
//! setup, all measured in one run on one machine.
//!
//! `loadgen compare` starts four real stacks in this process, one after the
//! other, and sends each the same planned requests:
//!
//! | setup | path of a read |
//! |---|---|
//! | `untiered` | front-line proxy → edge → front-line proxy ⇢ origin |
//! | `direct` | edge ⇢ origin |
//! | `direct+regional` | edge ⇢ regional ⇢ origin |
//! | `tiered` | edge (hot cache) ⇢ regional ⇢ origin |
//!
//! `⇢` is an emulated wide-area path: a UDP relay that delays QUIC's
//! datagrams. Central storage is a local directory behind `object_store`'s
//! `ThrottledStore`. `loadgen run --target URL` drives running edges with
//! the same workload.
//!
//! # Freshness
//!
//! Both commands also measure how soon a write shows everywhere
//! ([`visibility`]). After each write (warm-up included, measured ones
//! counted), every *other* edge is polled with `HEAD` (the read path
//! without the body), every `--lag-poll-ms` (1 ms), until it serves the
//! written version or a newer one; when the workload writes less often
//! than `--lag-probe-rate` (2/s), a probe writer adds writes of a probe key
//! of its own, through each edge in turn. The table's
//! "write-to-visible lag on the other edges" section has, per setup:
//!
//! | column | meaning |
//! |---|---|
//! | `p50`, `p99`, `max` | time from a write's acknowledgement until a read sent to another edge got the new version, over every (write, edge) pair, ms |
//! | `worst p99` | the highest p99 of any one edge |
//! | `writes` | measured writes watched (probe writes included) |
//! | `waits` | (write, other edge) pairs waited on |
//! | `timeouts` | waits that reached the bound (`--lag-max-wait-secs`, by default twice the cache TTL); they count at the bound in the percentiles, shown as `≥` |
//! | `stale reads` | measured reads answered with a version older than one whose write was acknowledged before the read was sent, and their share |
//! | `max stale` | the longest such staleness: from the newer write's acknowledgement to the stale read, ms |
//!
//! In `untiered` and `direct` no tier caches: a read sent after the
//! acknowledgement goes through to the origin, so their lag is about zero
//! and freshness costs them read latency instead. `direct+regional` and
//! `tiered` cache, and their copies are replaced or dropped by the change
//! feed; without it their lag would be bounded only by the cache TTL
//! (`topology.cache_ttl_secs` in the profile) and show as such, or as
//! timeouts. The JSON has the same figures per edge (`visibility.edges`),
//! and `--plot` draws the lag curves into a second file, `-visibility`
//! added to its name. With `cloudflare-2024`, a check requires the tiered
//! setup's p99 lag on every edge to stay within twice the one-way
//! origin-to-edge delay (regional tier included, time-scaled) plus 50 ms.
//!
//! # Layout
//! - [`profile`]: the TOML profile (every delay, the topology, the default
//!   workload); `cloudflare-2024` is built in.
//! - [`delay`]: one path's delay, jitter and loss, sampled.
//! - [`relay`]: the UDP relay that applies a path to real datagrams.
//! - [`front_line`]: the untiered path's proxies (HTTP and QUIC).
//! - [`workload`]: keyspace, value sizes, Zipf popularity, the planned schedule.
//! - [`dataset`]: writes the keyspace through the origin's write path.
//! - [`stack`]: one setup as running nodes, relays and proxies.
//! - [`driver`]: open-loop HTTP requests timed from their due time.
//! - [`stats`]: HdrHistograms, percentiles, tier shares.
//! - [`visibility`]: write-to-visible lag on every other edge (polls, the
//!   probe writer, the per-edge bookkeeping) and stale reads.
//! - [`report`]: table, JSON, CSV and the checks (tiered against untiered,
//!   write-to-visible lag).
//! - [`plot`]: the latency-by-percentile and lag-by-percentile charts.
//! - [`runner`]: `compare` and `run` put together.
//! - [`chaos`]: `loadgen chaos`, a fault campaign against a multi-process
//!   stack (origins on S3, regional nodes, edges) with a history checker.

pub mod chaos;
pub mod dataset;
pub mod delay;
pub mod driver;
pub mod front_line;
pub mod plot;
pub mod profile;
pub mod relay;
pub mod report;
pub mod runner;
pub mod stack;
pub mod stats;
pub mod visibility;
pub mod workload;
