//! A real multi-process tierkv stack on loopback: origins on one S3 bucket,
//! regional nodes and edges, each a child process of its binary, with every
//! QUIC link through a [`Relay`] that the fault schedule can cut or slow.
//!
//! ```text
//! edge i ──relay──▶ regional j ──relay──▶ origin k ──▶ S3
//!    └─────────────relay (fallback)─────────▶ origin k
//! ```
//!
//! Each link has a relay of its own, so one edge's path to one regional node
//! can be cut while the others work. (Edges place keys by rendezvous hashing
//! over the addresses they dial, so with a relay per link they do not agree
//! on each key's home regional node; the contract does not depend on it.)
//!
//! Every process keeps its ports across restarts. Its stdout and stderr go
//! to `logs/NAME.log` in the run directory, appended at each start.

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::process::{Child, Command};

use super::ChaosError;
use crate::delay::PathDelay;
use crate::relay::{Relay, RelayControl};

/// A tier of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// `kv-origin`.
    Origin,
    /// `kv-regional`.
    Regional,
    /// `kv-edge serve`.
    Edge,
}

impl Tier {
    /// All tiers, bottom up.
    pub const ALL: [Tier; 3] = [Tier::Origin, Tier::Regional, Tier::Edge];

    /// `origin`, `regional` or `edge`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Origin => "origin",
            Tier::Regional => "regional",
            Tier::Edge => "edge",
        }
    }

    fn letter(self) -> char {
        match self {
            Tier::Origin => 'o',
            Tier::Regional => 'r',
            Tier::Edge => 'e',
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Tier::Origin => "kv-origin",
            Tier::Regional => "kv-regional",
            Tier::Edge => "kv-edge",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the origins keep their data.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// A prefix inside it, so that runs do not meet.
    pub prefix: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// The shape and settings of the stack.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where `kv-origin`, `kv-regional` and `kv-edge` are.
    pub bin_dir: PathBuf,
    /// The run directory: logs, certificates, disk caches.
    pub dir: PathBuf,
    /// Origin processes.
    pub origins: usize,
    /// Regional nodes.
    pub regionals: usize,
    /// Edges.
    pub edges: usize,
    /// The object store.
    pub s3: S3Target,
    /// Edge hot cache TTL, seconds.
    pub edge_cache_ttl_secs: u64,
    /// Regional cache TTL, seconds.
    pub regional_cache_ttl_secs: u64,
    /// Negative cache TTL of edges and regional nodes, seconds.
    pub regional_negative_ttl_secs: u64,
    /// Stale-if-error grace of edges and regional nodes, seconds.
    pub stale_if_error_secs: u64,
    /// The edges' read and write deadline, ms.
    pub deadline_ms: u64,
    /// `RUST_LOG` of every process.
    pub log_filter: String,
    /// How long a process may take to become healthy.
    pub ready_timeout: Duration,
    /// Delay of every link when no fault is on.
    pub link_delay: PathDelay,
    /// Seeds the relays' jitter and loss.
    pub seed: u64,
}

/// One process of the stack.
#[derive(Debug)]
struct Proc {
    name: String,
    tier: Tier,
    program: PathBuf,
    args: Vec<String>,
    health: String,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// Killed by [`Proc::kill`] (not exited on its own).
    killed: bool,
}

/// One relayed link.
#[derive(Debug)]
pub struct Link {
    /// `e1→r2`, `r1→o3`.
    pub name: String,
    relay: Relay,
}

impl Link {
    /// The link's fault switches.
    pub fn control(&self) -> &std::sync::Arc<RelayControl> {
        self.relay.control()
    }
}

/// A process, named for faults and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcId {
    /// Its tier.
    pub tier: Tier,
    /// `o1`, `r2`, `e3`.
    pub name: String,
    /// Its position in the cluster's list.
    pub index: usize,
}

/// The running stack.
#[derive(Debug)]
pub struct Cluster {
    procs: Vec<Proc>,
    links: Vec<Link>,
    edge_urls: Vec<String>,
    http: reqwest::Client,
    ready_timeout: Duration,
}

/// Finds the directory with all three binaries: `explicit` if given, else
/// the running executable's directory, then `target/release`, then
/// `target/debug` of the workspace.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf, ChaosError> {
    let has_all = |dir: &Path| Tier::ALL.iter().all(|t| dir.join(t.binary()).is_file());
    if let Some(dir) = explicit {
        if has_all(dir) {
            return Ok(dir.to_owned());
        }
        return Err(ChaosError::Setup(format!(
            "--bin-dir {}: kv-origin, kv-regional and kv-edge are not all there \
             (build them: cargo build --release -p kv-origin -p kv-regional -p kv-edge)",
            dir.display()
        )));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    {
        candidates.push(dir.clone());
        // Test executables live in target/PROFILE/deps.
        if dir.ends_with("deps")
            && let Some(parent) = dir.parent()
        {
            candidates.push(parent.to_owned());
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    candidates.push(workspace.join("target/release"));
    candidates.push(workspace.join("target/debug"));
    candidates
        .iter()
        .find(|dir| has_all(dir))
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
            ChaosError::Setup(format!(
                "kv-origin, kv-regional and kv-edge not found (looked in {}); build them with \
                 `cargo build --release -p kv-origin -p kv-regional -p kv-edge` or give --bin-dir",
                looked.join(", ")
            ))
        })
}

/// Free ports, held until all are chosen so that none is handed out twice.
#[derive(Debug, Default)]
struct Ports {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Ports {
    fn udp(&mut self) -> Result<SocketAddr, ChaosError> {
        let socket =
            UdpSocket::bind("127.0.0.1:0").map_err(|e| ChaosError::io("choosing a UDP port", e))?;
        let addr = socket
            .local_addr()
            .map_err(|e| ChaosError::io("choosing a UDP port", e))?;
        self.udp.push(socket);
        Ok(addr)
    }

    fn tcp(&mut self) -> Result<SocketAddr, ChaosError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| ChaosError::io("choosing a TCP port", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ChaosError::io("choosing a TCP port", e))?;
        self.tcp.push(listener);
        Ok(addr)
    }
}

/// A relay from `from` to `to`, listening on a new loopback port.
async fn start_link(
    from: String,
    to: String,
    target: SocketAddr,
    path: PathDelay,
    seed: u64,
) -> Result<Link, ChaosError> {
    let relay = Relay::start(target, path, seed)
        .await
        .map_err(|e| ChaosError::io(format!("starting the relay {from}→{to}"), e))?;
    Ok(Link {
        name: format!("{from}→{to}"),
        relay,
    })
}

fn name(tier: Tier, index: usize) -> String {
    format!("{}{}", tier.letter(), index + 1)
}

impl Cluster {
    /// Starts the relays and every process, bottom tier first, and waits
    /// until all are healthy.
    pub async fn start(config: &ClusterConfig) -> Result<Self, ChaosError> {
        if config.origins == 0 || config.regionals == 0 || config.edges == 0 {
            return Err(ChaosError::Setup(
                "the stack needs at least one origin, one regional node and one edge".into(),
            ));
        }
        let logs = config.dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| ChaosError::io(format!("creating {}", logs.display()), e))?;
        let certs = config.dir.join("certs");

        let mut ports = Ports::default();
        let origin_quic: Vec<SocketAddr> = (0..config.origins)
            .map(|_| ports.udp())
            .collect::<Result<_, _>>()?;
        let origin_metrics: Vec<SocketAddr> = (0..config.origins)
            .map(|_| ports.tcp())
            .collect::<Result<_, _>>()?;
        let regional_quic: Vec<SocketAddr> = (0..config.regionals)
            .map(|_| ports.udp())
            .collect::<Result<_, _>>()?;
        let regional_metrics: Vec<SocketAddr> = (0..config.regionals)
            .map(|_| ports.tcp())
            .collect::<Result<_, _>>()?;
        let edge_http: Vec<SocketAddr> = (0..config.edges)
            .map(|_| ports.tcp())
            .collect::<Result<_, _>>()?;
        drop(ports);

        let mut links = Vec::new();
        let mut next_seed = config.seed;
        let mut relay_to = |from: String, to: String, target: SocketAddr| {
            next_seed = next_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            start_link(from, to, target, config.link_delay, next_seed)
        };
        let common = vec!["--dev-certs".to_string(), certs.display().to_string()];

        let mut procs = Vec::new();
        for (i, (quic, metrics)) in origin_quic.iter().zip(&origin_metrics).enumerate() {
            let s3 = &config.s3;
            let store = match s3.prefix.trim_matches('/') {
                "" => format!("s3://{}", s3.bucket),
                prefix => format!("s3://{}/{prefix}", s3.bucket),
            };
            let mut args = vec![
                "--listen".into(),
                quic.to_string(),
                "--metrics".into(),
                metrics.to_string(),
                "--store".into(),
                store,
                "--s3-endpoint".into(),
                s3.endpoint.clone(),
                "--s3-allow-http".into(),
                "true".into(),
                "--s3-region".into(),
                s3.region.clone(),
                "--s3-access-key-id".into(),
                s3.access_key_id.clone(),
                "--s3-secret-access-key".into(),
                s3.secret_access_key.clone(),
            ];
            args.extend(common.clone());
            procs.push(Proc::new(
                config,
                &logs,
                Tier::Origin,
                i,
                args,
                format!("http://{metrics}/healthz"),
            ));
        }
        for (i, (quic, metrics)) in regional_quic.iter().zip(&regional_metrics).enumerate() {
            let mut origins = Vec::new();
            for (k, origin) in origin_quic.iter().enumerate() {
                let link =
                    relay_to(name(Tier::Regional, i), name(Tier::Origin, k), *origin).await?;
                origins.push(link.relay.local_addr().to_string());
                links.push(link);
            }
            let data = config.dir.join(format!("regional-{}", i + 1));
            let mut args = vec![
                "--listen".into(),
                quic.to_string(),
                "--metrics".into(),
                metrics.to_string(),
                "--origins".into(),
                origins.join(","),
                "--data-dir".into(),
                data.display().to_string(),
                "--memory-mib".into(),
                "16".into(),
                "--disk-mib".into(),
                "64".into(),
                "--cache-ttl-secs".into(),
                config.regional_cache_ttl_secs.to_string(),
                "--negative-ttl-secs".into(),
                config.regional_negative_ttl_secs.to_string(),
                "--stale-if-error-secs".into(),
                config.stale_if_error_secs.to_string(),
            ];
            args.extend(common.clone());
            procs.push(Proc::new(
                config,
                &logs,
                Tier::Regional,
                i,
                args,
                format!("http://{metrics}/healthz"),
            ));
        }
        let mut edge_urls = Vec::new();
        for (i, http) in edge_http.iter().enumerate() {
            let mut regionals = Vec::new();
            for (j, regional) in regional_quic.iter().enumerate() {
                let link =
                    relay_to(name(Tier::Edge, i), name(Tier::Regional, j), *regional).await?;
                regionals.push(link.relay.local_addr().to_string());
                links.push(link);
            }
            let mut origins = Vec::new();
            for (k, origin) in origin_quic.iter().enumerate() {
                let link = relay_to(name(Tier::Edge, i), name(Tier::Origin, k), *origin).await?;
                origins.push(link.relay.local_addr().to_string());
                links.push(link);
            }
            let mut args = vec![
                "serve".into(),
                "--http".into(),
                http.to_string(),
                "--regionals".into(),
                regionals.join(","),
                "--origins".into(),
                origins.join(","),
                "--cache-ttl-secs".into(),
                config.edge_cache_ttl_secs.to_string(),
                "--negative-ttl-secs".into(),
                config.regional_negative_ttl_secs.to_string(),
                "--stale-if-error-secs".into(),
                config.stale_if_error_secs.to_string(),
                "--read-deadline-ms".into(),
                config.deadline_ms.to_string(),
                "--write-deadline-ms".into(),
                config.deadline_ms.to_string(),
            ];
            args.extend(common.clone());
            edge_urls.push(format!("http://{http}"));
            procs.push(Proc::new(
                config,
                &logs,
                Tier::Edge,
                i,
                args,
                format!("http://{http}/readyz"),
            ));
        }

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .no_proxy()
            .build()
            .map_err(|e| ChaosError::Setup(format!("HTTP client: {e}")))?;
        let mut cluster = Cluster {
            procs,
            links,
            edge_urls,
            http,
            ready_timeout: config.ready_timeout,
        };
        // Bottom up: each tier finds the one below it running.
        for tier in Tier::ALL {
            let indexes: Vec<usize> = (0..cluster.procs.len())
                .filter(|&i| cluster.procs[i].tier == tier)
                .collect();
            for &i in &indexes {
                cluster.procs[i].spawn(&config.log_filter)?;
            }
            cluster.wait_healthy(&indexes).await?;
        }
        Ok(cluster)
    }

    /// The edges' base URLs.
    pub fn edge_urls(&self) -> &[String] {
        &self.edge_urls
    }

    /// Every process.
    pub fn procs(&self) -> Vec<ProcId> {
        self.procs
            .iter()
            .enumerate()
            .map(|(index, p)| ProcId {
                tier: p.tier,
                name: p.name.clone(),
                index,
            })
            .collect()
    }

    /// Every relayed link.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The log file of process `index`.
    pub fn log_of(&self, index: usize) -> Option<&Path> {
        self.procs.get(index).map(|p| p.log.as_path())
    }

    /// SIGKILLs process `index` and reaps it.
    pub async fn kill(&mut self, index: usize) -> Result<(), ChaosError> {
        let Some(proc) = self.procs.get_mut(index) else {
            return Err(ChaosError::Setup(format!("no process {index}")));
        };
        proc.kill().await
    }

    /// Starts process `index` again if it is not running.
    pub fn restart(&mut self, index: usize, log_filter: &str) -> Result<(), ChaosError> {
        let Some(proc) = self.procs.get_mut(index) else {
            return Err(ChaosError::Setup(format!("no process {index}")));
        };
        if proc.running() {
            return Ok(());
        }
        proc.spawn(log_filter)
    }

    /// Restarts every process that is down (killed, or exited on its own;
    /// those are named in the answer) and clears every link fault.
    pub fn restore_all(&mut self, log_filter: &str) -> Result<Vec<String>, ChaosError> {
        for link in &self.links {
            link.control().clear();
        }
        let mut exited = Vec::new();
        for proc in &mut self.procs {
            if !proc.running() {
                if proc.child.is_some() && !proc.killed {
                    exited.push(proc.name.clone());
                }
                proc.spawn(log_filter)?;
            }
        }
        Ok(exited)
    }

    /// Processes that exited without being killed, with their status.
    pub fn exited(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for proc in &mut self.procs {
            if let Some(child) = &mut proc.child
                && !proc.killed
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push((proc.name.clone(), status.to_string()));
            }
        }
        out
    }

    /// Waits until every process answers its health check.
    pub async fn wait_all_healthy(&mut self) -> Result<(), ChaosError> {
        let all: Vec<usize> = (0..self.procs.len()).collect();
        self.wait_healthy(&all).await
    }

    /// Polls the health endpoints of `indexes` until all answer 200, or
    /// fails naming the ones that did not (with the end of their logs).
    async fn wait_healthy(&mut self, indexes: &[usize]) -> Result<(), ChaosError> {
        let deadline = Instant::now() + self.ready_timeout;
        let mut pending: Vec<usize> = indexes.to_vec();
        loop {
            let mut still = Vec::new();
            for &i in &pending {
                let proc = &mut self.procs[i];
                if let Some(child) = &mut proc.child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(ChaosError::Unhealthy(format!(
                        "{} exited with {status} while starting; end of {}:\n{}",
                        proc.name,
                        proc.log.display(),
                        log_tail(&proc.log, 30)
                    )));
                }
                let healthy = match self.http.get(&proc.health).send().await {
                    Ok(response) => response.status().is_success(),
                    Err(_) => false,
                };
                if !healthy {
                    still.push(i);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let report: Vec<String> = still
                    .iter()
                    .map(|&i| {
                        let p = &self.procs[i];
                        format!(
                            "{} ({}), end of {}:\n{}",
                            p.name,
                            p.health,
                            p.log.display(),
                            log_tail(&p.log, 15)
                        )
                    })
                    .collect();
                return Err(ChaosError::Unhealthy(format!(
                    "not healthy within {:?}: {}",
                    self.ready_timeout,
                    report.join("\n")
                )));
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills every process and stops the relays.
    pub async fn shutdown(mut self) {
        for proc in &mut self.procs {
            let _ = proc.kill().await;
        }
        for link in self.links.drain(..) {
            link.relay.stop();
        }
    }
}

impl Proc {
    fn new(
        config: &ClusterConfig,
        logs: &Path,
        tier: Tier,
        index: usize,
        args: Vec<String>,
        health: String,
    ) -> Self {
        let name = name(tier, index);
        Proc {
            log: logs.join(format!("{name}.log")),
            name,
            tier,
            program: config.bin_dir.join(tier.binary()),
            args,
            health,
            child: None,
            starts: 0,
            killed: false,
        }
    }

    fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn(&mut self, log_filter: &str) -> Result<(), ChaosError> {
        use std::io::Write;
        let what = || format!("opening {}", self.log.display());
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| ChaosError::io(what(), e))?;
        self.starts += 1;
        writeln!(
            log,
            "=== loadgen chaos: start {} of {}: {} {}",
            self.starts,
            self.name,
            self.program.display(),
            self.args.join(" ")
        )
        .map_err(|e| ChaosError::io(what(), e))?;
        let stderr = log.try_clone().map_err(|e| ChaosError::io(what(), e))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .env("RUST_LOG", log_filter)
            .env("TIERKV_LOG_FORMAT", "text")
            .kill_on_drop(true);
        // The operator's own settings must not change the stack under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TIERKV_") && key != "TIERKV_LOG_FORMAT" {
                command.env_remove(&key);
            }
        }
        let child = command
            .spawn()
            .map_err(|e| ChaosError::io(format!("starting {}", self.program.display()), e))?;
        self.child = Some(child);
        self.killed = false;
        Ok(())
    }

    async fn kill(&mut self) -> Result<(), ChaosError> {
        let Some(child) = &mut self.child else {
            return Ok(());
        };
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        self.killed = true;
        // `start_kill` sends SIGKILL on Unix.
        child
            .start_kill()
            .map_err(|e| ChaosError::io(format!("killing {}", self.name), e))?;
        child
            .wait()
            .await
            .map_err(|e| ChaosError::io(format!("reaping {}", self.name), e))?;
        Ok(())
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}
