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
//! - [`report`]: table, JSON, CSV and the tiered-vs-untiered checks.
//! - [`plot`]: the latency-by-percentile chart.
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
pub mod workload;
