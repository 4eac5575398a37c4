//! `loadgen chaos`: a fault campaign against a real multi-process stack,
//! with a checker of the recorded history.
//!
//! 1. [`cluster`]: origins on one S3 bucket ([`s3`]: moto or the operator's
//!    own), regional nodes and edges as child processes, every QUIC link
//!    through a relay that can be cut or slowed.
//! 2. [`workload`]: writers and readers through every edge over a small
//!    keyspace; writes carry an `Idempotency-Key` and are retried with it
//!    when their outcome is unknown.
//! 3. [`faults`]: SIGKILLs of random processes of every tier, restarts, and
//!    link cuts and delays, on a seeded random schedule.
//! 4. [`history`]: every operation with its times, attempts and outcome.
//! 5. Quiescence: faults stop, everything is restarted and healthy, the
//!    staleness bound passes, and every key is read through every edge.
//! 6. [`checker`]: durability, real-time order of versions, no phantom
//!    reads, failed writes invisible, bounded staleness, idempotency.
//! 7. [`report`]: verdict, counts, latencies, first violation of each check.

pub mod checker;
pub mod cluster;
pub mod faults;
pub mod history;
pub mod report;
pub mod s3;
pub mod workload;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::{Mutex, watch};

use crate::delay::PathDelay;
use cluster::{Cluster, ClusterConfig, S3Target};
use faults::FaultConfig;
use history::Recorder;
use report::{ChaosReport, RunInfo};
use workload::ClientConfig;

/// Why a campaign could not run (a violation is not an error: it is in the
/// report).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// Bad options or a missing binary.
    #[error("{0}")]
    Setup(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A process did not become healthy.
    #[error("{0}")]
    Unhealthy(String),
    /// The S3 server.
    #[error("S3 server: {0}")]
    S3(String),
}

impl ChaosError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ChaosError::Io {
            what: what.into(),
            source,
        }
    }
}

/// `loadgen chaos`: starts a multi-process stack (origins on S3, regional
/// nodes, edges), runs writers and readers through every edge while killing
/// processes and cutting links, then checks the history.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Campaign length with faults on, seconds (quiescence and the final
    /// reads come after).
    #[arg(long, env = "LOADGEN_CHAOS_SECS", default_value_t = 60.0)]
    pub duration_secs: f64,
    /// Seeds the fault schedule and the clients [default: random, printed].
    #[arg(long, env = "LOADGEN_CHAOS_SEED")]
    pub seed: Option<u64>,
    /// Run directory: process logs, certificates, caches, history.jsonl
    /// [default: a new temporary directory, removed if the verdict passes].
    #[arg(long, env = "LOADGEN_CHAOS_DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary run directory even when the verdict passes.
    #[arg(long)]
    pub keep: bool,
    /// Directory with kv-origin, kv-regional and kv-edge [default: this
    /// executable's directory, then target/release, then target/debug].
    #[arg(long, env = "LOADGEN_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Origin processes, all on one bucket.
    #[arg(long, default_value_t = 3)]
    pub origins: usize,
    /// Regional nodes.
    #[arg(long, default_value_t = 2)]
    pub regionals: usize,
    /// Edges.
    #[arg(long, default_value_t = 3)]
    pub edges: usize,
    /// Writer tasks.
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// Reader tasks.
    #[arg(long, default_value_t = 8)]
    pub readers: usize,
    /// Keys (few, to force contention).
    #[arg(long, default_value_t = 20)]
    pub keys: usize,
    /// Share of writes that are DELETEs.
    #[arg(long, default_value_t = 0.1)]
    pub delete_share: f64,
    /// Share of acknowledged writes sent again through another edge with the
    /// same Idempotency-Key (must get the same version back).
    #[arg(long, default_value_t = 0.1)]
    pub replay_share: f64,
    /// A replay goes out up to this long after the acknowledgement, ms
    /// (uniform), so that other writes to the key may come in between.
    #[arg(long, default_value_t = 3000)]
    pub replay_delay_ms: u64,
    /// Most sends of one write whose outcome stays unknown.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// The edges' read and write deadline, ms.
    #[arg(long, default_value_t = 2000)]
    pub deadline_ms: u64,
    /// The clients' HTTP timeout, ms [default: deadline + 1000].
    #[arg(long)]
    pub client_timeout_ms: Option<u64>,
    /// Edge hot cache TTL (--cache-ttl-secs of every edge), seconds, ≥ 1.
    #[arg(long, default_value_t = 1)]
    pub edge_cache_ttl_secs: u64,
    /// Regional cache TTL, seconds, ≥ 1.
    #[arg(long, default_value_t = 1)]
    pub regional_cache_ttl_secs: u64,
    /// Negative (miss) cache TTL of every edge and regional node, seconds.
    #[arg(long, default_value_t = 1)]
    pub regional_negative_ttl_secs: u64,
    /// How long past its TTL a copy may be served, marked stale, when the
    /// upstream fails (--stale-if-error-secs of every edge and regional
    /// node), seconds; 0 turns it off.
    #[arg(long, default_value_t = 1)]
    pub stale_if_error_secs: u64,
    /// Slack added to the TTLs to make the default staleness bound, ms.
    #[arg(long, default_value_t = 1000)]
    pub staleness_slack_ms: u64,
    /// How long after an acknowledged write a read may still return an
    /// older version, ms [default: the longest TTL + slack: a copy's age
    /// counts from the origin's read at every tier, so TTLs do not add up.
    /// While the change feed is up, copies are replaced within milliseconds;
    /// the TTL bounds what a node cut off from its feeds serves]. A read the
    /// edge marked stale may be older by the stale-if-error grace.
    #[arg(long)]
    pub staleness_bound_ms: Option<u64>,
    /// Time between faults, ms, MIN-MAX (uniform).
    #[arg(long, default_value = "2000-5000", value_parser = parse_range)]
    pub fault_interval_ms: RangeInclusive<u64>,
    /// How long a killed process stays down, ms, MIN-MAX.
    #[arg(long, default_value = "200-1500", value_parser = parse_range)]
    pub down_ms: RangeInclusive<u64>,
    /// Do not kill processes (link faults only).
    #[arg(long)]
    pub no_kills: bool,
    /// Chance that a fault tick also cuts or slows a random link, or cuts
    /// an edge or regional node off from everything it dials, 0 to 1 (0: no
    /// link faults).
    #[arg(long, default_value_t = 0.4)]
    pub link_fault_share: f64,
    /// How long a link fault lasts, ms, MIN-MAX.
    #[arg(long, default_value = "1000-3000", value_parser = parse_range)]
    pub link_fault_ms: RangeInclusive<u64>,
    /// Delay a slowed link adds in each direction, ms.
    #[arg(long, default_value_t = 300)]
    pub link_delay_ms: u64,
    /// Delay of every link when no fault is on, ms each way.
    #[arg(long, default_value_t = 0.0)]
    pub base_link_delay_ms: f64,
    /// Your own S3 endpoint (e.g. http://127.0.0.1:9000) instead of moto;
    /// its conditional PUTs must be atomic. Needs --s3-bucket.
    #[arg(long, env = "LOADGEN_CHAOS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket (created by moto; must exist on your own S3). Each run
    /// writes under its own prefix.
    #[arg(long, env = "LOADGEN_CHAOS_S3_BUCKET", default_value = "tierkv-chaos")]
    pub s3_bucket: String,
    /// S3 region.
    #[arg(long, default_value = "us-east-1")]
    pub s3_region: String,
    /// S3 access key id.
    #[arg(
        long,
        env = "LOADGEN_CHAOS_S3_ACCESS_KEY_ID",
        default_value = "tierkv-chaos"
    )]
    pub s3_access_key_id: String,
    /// S3 secret access key.
    #[arg(
        long,
        env = "LOADGEN_CHAOS_S3_SECRET_ACCESS_KEY",
        default_value = "tierkv-chaos-secret",
        hide_env_values = true
    )]
    pub s3_secret_access_key: String,
    /// Python with `moto[server]`, to run the serialized moto S3 server
    /// [default: `WORKSPACE/.venv/bin/python`].
    #[arg(long, env = "TIERKV_MOTO_PYTHON")]
    pub moto_python: Option<PathBuf>,
    /// RUST_LOG of every process of the stack.
    #[arg(long, default_value = "info")]
    pub log_filter: String,
    /// How long the stack (and moto) may take to become healthy, seconds.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout_secs: u64,
    /// Tries of each final read (key × edge) until it answers.
    #[arg(long, default_value_t = 10)]
    pub final_read_tries: u32,
    /// Write the report as JSON here.
    #[arg(long, env = "LOADGEN_JSON")]
    pub json: Option<PathBuf>,
}

/// `MIN-MAX` (or one number) in ms.
fn parse_range(text: &str) -> Result<RangeInclusive<u64>, String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{text:?}: expected MIN-MAX in ms, e.g. 2000-5000"))
    };
    let (min, max) = match text.split_once(['-', ',']) {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let n = parse(text)?;
            (n, n)
        }
    };
    if min > max {
        return Err(format!("{text:?}: MIN is above MAX"));
    }
    Ok(min..=max)
}

impl ChaosArgs {
    /// The staleness bound the checker uses.
    pub fn staleness_bound(&self) -> Duration {
        let ms = self.staleness_bound_ms.unwrap_or_else(|| {
            let longest = self
                .edge_cache_ttl_secs
                .max(self.regional_cache_ttl_secs)
                .max(self.regional_negative_ttl_secs);
            longest * 1000 + self.staleness_slack_ms
        });
        Duration::from_millis(ms)
    }

    /// The staleness bounds the checker uses: the bound, and the grace a
    /// read marked stale has beyond it.
    pub fn staleness_bounds(&self) -> checker::StalenessBound {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        checker::StalenessBound {
            fresh_us: micros(self.staleness_bound()),
            stale_grace_us: micros(Duration::from_secs(self.stale_if_error_secs)),
        }
    }

    fn validate(&self) -> Result<(), ChaosError> {
        let bad = |m: String| Err(ChaosError::Setup(m));
        if !(self.duration_secs.is_finite() && self.duration_secs > 0.0) {
            return bad(format!(
                "--duration-secs must be > 0, not {}",
                self.duration_secs
            ));
        }
        if self.edges == 0 || self.origins == 0 || self.regionals == 0 {
            return bad("--origins, --regionals and --edges must each be at least 1".into());
        }
        if self.writers == 0 && self.readers == 0 {
            return bad("no clients: give --writers or --readers".into());
        }
        if self.keys == 0 {
            return bad("--keys must be at least 1".into());
        }
        if self.edge_cache_ttl_secs == 0 || self.regional_cache_ttl_secs == 0 {
            return bad("cache TTLs must be at least 1 s".into());
        }
        for (name, share) in [
            ("--delete-share", self.delete_share),
            ("--replay-share", self.replay_share),
            ("--link-fault-share", self.link_fault_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return bad(format!("{name} must be between 0 and 1, not {share}"));
            }
        }
        if *self.fault_interval_ms.start() == 0 {
            return bad("--fault-interval-ms must be above 0".into());
        }
        Ok(())
    }
}

/// What [`run`] hands back.
#[derive(Debug)]
pub struct Campaign {
    /// The report.
    pub report: ChaosReport,
    /// The run directory.
    pub dir: PathBuf,
    /// Whether the run directory is to be removed (a temporary one, verdict
    /// passed, no --keep).
    pub remove_dir: bool,
}

/// Runs a campaign. Progress goes to stderr.
pub async fn run(args: &ChaosArgs) -> Result<Campaign, ChaosError> {
    args.validate()?;
    let bin_dir = cluster::find_bin_dir(args.bin_dir.as_deref())?;
    let python = match &args.s3_endpoint {
        Some(_) => None,
        None => Some(s3::find_python(args.moto_python.as_deref())?),
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let (dir, temporary) = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| ChaosError::io(format!("creating {}", dir.display()), e))?;
            (dir.clone(), false)
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("tierkv-chaos-")
                .tempdir()
                .map_err(|e| ChaosError::io("creating a temporary directory", e))?
                .keep();
            (dir, true)
        }
    };
    eprintln!(
        "chaos: seed {seed}, binaries from {}, run directory {}",
        bin_dir.display(),
        dir.display()
    );
    let ready_timeout = Duration::from_secs(args.ready_timeout_secs.max(1));
    let run_id = format!("{:016x}", rand::random::<u64>());

    let moto = match &python {
        Some(python) => {
            let moto = s3::Moto::start(python, &dir, &args.s3_bucket, ready_timeout).await?;
            eprintln!("chaos: moto S3 at {}", moto.endpoint());
            Some(moto)
        }
        None => None,
    };
    let endpoint = match (&moto, &args.s3_endpoint) {
        (Some(moto), _) => moto.endpoint().to_owned(),
        (None, Some(endpoint)) => endpoint.clone(),
        (None, None) => return Err(ChaosError::Setup("no S3 endpoint".into())),
    };
    let cluster_config = ClusterConfig {
        bin_dir,
        dir: dir.clone(),
        origins: args.origins,
        regionals: args.regionals,
        edges: args.edges,
        s3: S3Target {
            endpoint,
            bucket: args.s3_bucket.clone(),
            prefix: format!("chaos-{run_id}"),
            region: args.s3_region.clone(),
            access_key_id: args.s3_access_key_id.clone(),
            secret_access_key: args.s3_secret_access_key.clone(),
        },
        edge_cache_ttl_secs: args.edge_cache_ttl_secs,
        regional_cache_ttl_secs: args.regional_cache_ttl_secs,
        regional_negative_ttl_secs: args.regional_negative_ttl_secs,
        stale_if_error_secs: args.stale_if_error_secs,
        deadline_ms: args.deadline_ms,
        log_filter: args.log_filter.clone(),
        ready_timeout,
        link_delay: PathDelay::fixed(Duration::from_secs_f64(
            args.base_link_delay_ms.max(0.0) / 1e3,
        )),
        seed,
    };
    let result = campaign(args, &cluster_config, seed, run_id, &dir).await;
    if let Some(moto) = moto {
        moto.stop().await;
    }
    let report = result?;
    let remove_dir = temporary && report.passed && !args.keep;
    Ok(Campaign {
        report,
        dir,
        remove_dir,
    })
}

async fn campaign(
    args: &ChaosArgs,
    cluster_config: &ClusterConfig,
    seed: u64,
    run_id: String,
    dir: &Path,
) -> Result<ChaosReport, ChaosError> {
    let started = Instant::now();
    let cluster = Cluster::start(cluster_config).await?;
    eprintln!(
        "chaos: {} processes healthy in {:.1} s; campaign of {} s",
        cluster.procs().len(),
        started.elapsed().as_secs_f64(),
        args.duration_secs
    );
    let clients = Arc::new(ClientConfig {
        edges: cluster.edge_urls().to_vec(),
        namespace: "chaos".into(),
        keys: args.keys,
        writers: args.writers,
        readers: args.readers,
        delete_share: args.delete_share,
        replay_share: args.replay_share,
        replay_delay: Duration::from_millis(args.replay_delay_ms),
        max_attempts: args.max_attempts,
        timeout: Duration::from_millis(args.client_timeout_ms.unwrap_or(args.deadline_ms + 1000)),
        run_id,
        seed: seed ^ 0x5eed,
    });
    let http = workload::http_client(&clients)
        .map_err(|e| ChaosError::Setup(format!("HTTP client: {e}")))?;
    let cluster = Arc::new(Mutex::new(cluster));
    let recorder = Arc::new(Recorder::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let fault_task = tokio::spawn(faults::run(
        cluster.clone(),
        FaultConfig {
            interval_ms: args.fault_interval_ms.clone(),
            down_ms: args.down_ms.clone(),
            kills: !args.no_kills,
            link_share: args.link_fault_share,
            link_fault_ms: args.link_fault_ms.clone(),
            link_delay_ms: args.link_delay_ms,
            seed,
            log_filter: args.log_filter.clone(),
        },
        recorder.clone(),
        stop_rx.clone(),
    ));
    let workload_task = tokio::spawn(workload::run(
        clients.clone(),
        http.clone(),
        recorder.clone(),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_secs_f64(args.duration_secs)).await;
    let _ = stop_tx.send(true);
    let fault_stats = fault_task
        .await
        .map_err(|e| ChaosError::Setup(format!("the fault schedule panicked: {e}")));
    let workload_done = workload_task.await;

    // Quiescence: everything up, caches expired, then read every key everywhere.
    let mut cluster = Arc::try_unwrap(cluster)
        .map_err(|_| ChaosError::Setup("the cluster is still shared".into()))?
        .into_inner();
    let outcome = async {
        let fault_stats = fault_stats??;
        if let Err(e) = workload_done {
            return Err(ChaosError::Setup(format!("a client panicked: {e}")));
        }
        let mut fault_stats = fault_stats;
        let exited = cluster.restore_all(&args.log_filter)?;
        for name in exited {
            fault_stats.crashes.push(format!("{name}: exited on its own"));
        }
        eprintln!("chaos: faults stopped; waiting until every process is healthy");
        cluster.wait_all_healthy().await?;
        let bound = args.staleness_bound();
        eprintln!(
            "chaos: healthy; waiting the staleness bound ({} ms), then reading every key through every edge",
            bound.as_millis()
        );
        tokio::time::sleep(bound).await;
        workload::final_reads(&clients, &http, &recorder, args.final_read_tries).await;
        Ok(fault_stats)
    }
    .await;
    cluster.shutdown().await;
    let fault_stats = outcome?;

    let history = recorder.snapshot();
    write_history(dir, &history)?;
    let bound = args.staleness_bound();
    let checks = checker::check_with(&history, args.staleness_bounds());
    Ok(ChaosReport::new(
        RunInfo {
            seed,
            run_dir: dir.display().to_string(),
            campaign_secs: args.duration_secs,
            staleness_bound_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
            topology: [args.origins, args.regionals, args.edges],
            clients: [args.writers, args.readers],
            keys: args.keys,
        },
        &history,
        fault_stats,
        checks,
    ))
}

/// Reads a `history.jsonl` that a campaign wrote.
pub fn read_history(path: &Path) -> Result<Vec<history::Op>, ChaosError> {
    let what = || format!("reading {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| ChaosError::io(what(), e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| ChaosError::Setup(format!("{}, line {}: {e}", path.display(), n + 1)))
        })
        .collect()
}

/// Checks a recorded history again, with another staleness bound, say.
pub fn recheck(path: &Path, staleness_bound: Duration) -> Result<ChaosReport, ChaosError> {
    let history = read_history(path)?;
    let bound_us = u64::try_from(staleness_bound.as_micros()).unwrap_or(u64::MAX);
    let checks = checker::check(&history, bound_us);
    let run = RunInfo {
        seed: 0,
        run_dir: path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        campaign_secs: history
            .iter()
            .filter(|op| op.phase == history::Phase::Campaign)
            .map(|op| op.end_us)
            .max()
            .unwrap_or(0) as f64
            / 1e6,
        staleness_bound_ms: u64::try_from(staleness_bound.as_millis()).unwrap_or(u64::MAX),
        topology: [0, 0, 0],
        clients: [0, 0],
        keys: history
            .iter()
            .map(|op| op.key.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
    };
    Ok(ChaosReport::new(
        run,
        &history,
        faults::FaultStats::default(),
        checks,
    ))
}

/// `history.jsonl`: one operation per line.
fn write_history(dir: &Path, history: &[history::Op]) -> Result<(), ChaosError> {
    use std::io::Write;
    let path = dir.join("history.jsonl");
    let what = || format!("writing {}", path.display());
    let file = std::fs::File::create(&path).map_err(|e| ChaosError::io(what(), e))?;
    let mut out = std::io::BufWriter::new(file);
    for op in history {
        let line = serde_json::to_string(op)
            .map_err(|e| ChaosError::io(what(), std::io::Error::other(e)))?;
        writeln!(out, "{line}").map_err(|e| ChaosError::io(what(), e))?;
    }
    out.flush().map_err(|e| ChaosError::io(what(), e))
}
