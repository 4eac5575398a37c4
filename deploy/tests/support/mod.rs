//! A whole tierkv stack as separate processes, the way operators run it
//! (two origins over one real S3-compatible server, two regional nodes, an
//! edge), and a real Prometheus scraping it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../../../kv-origin/tests/support/mod.rs"]
pub mod origin_support;

pub use origin_support::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, free_tcp_port};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("deploy/ has a parent")
        .to_path_buf()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process whose stderr lines are collected as they come.
pub struct Process {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `command` with stderr captured (stdout is dropped).
    pub fn start(name: &str, mut command: Command) -> Self {
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            name: name.to_string(),
            child,
            lines,
        }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line contains `text`, failing the test (with the log)
    /// if the process exits or `timeout` passes first.
    pub fn wait_for_line(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lines().iter().any(|l| l.contains(text)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {text:?}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {text:?} within {timeout:?}:\n{}",
                self.name,
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The JSON log lines (other lines are skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Addresses of a running stack.
pub struct Stack {
    pub origins: Vec<Process>,
    pub regionals: Vec<Process>,
    pub edge: Process,
    pub edge_http: SocketAddr,
    pub origin_metrics: Vec<SocketAddr>,
    pub regional_metrics: Vec<SocketAddr>,
    /// The origins' QUIC addresses as the regional nodes and the edge list
    /// them (`localhost:PORT`): the `peer` label of the feeds they follow.
    pub origin_peers: Vec<String>,
    /// The regional nodes' QUIC addresses as the edge lists them.
    pub regional_peers: Vec<String>,
    pub s3: Option<S3Server>,
    _dir: tempfile::TempDir,
}

/// Test-friendly knobs.
pub struct StackOptions {
    /// RUST_LOG for every process.
    pub rust_log: String,
    /// Regional cache TTL, seconds (short TTLs make stale lookups happen).
    pub regional_cache_ttl_secs: u64,
    /// Edge hot-cache TTL, seconds.
    pub edge_cache_ttl_secs: u64,
    /// Origin processes, sharing the bucket; every regional node and the
    /// edge list them all.
    pub origins: usize,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            rust_log: "info".into(),
            regional_cache_ttl_secs: 60,
            edge_cache_ttl_secs: 60,
            origins: 2,
        }
    }
}

const READY: Duration = Duration::from_secs(30);

impl Stack {
    /// Starts s3s-fs, the origins over it, two regional nodes and an edge,
    /// all with JSON logs and metrics, peers named `localhost:PORT` so that
    /// the DNS path of the links is the one in use.
    pub fn start(options: &StackOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let s3 = S3Server::start("tierkv");
        let common = |command: &mut Command| {
            command
                .env("RUST_LOG", &options.rust_log)
                .arg("--log-format")
                .arg("json")
                .arg("--dev-certs")
                .arg(&certs);
        };

        let mut origins = Vec::new();
        let mut origin_metrics = Vec::new();
        let mut origin_peers = Vec::new();
        for n in 0..options.origins {
            let quic = free_udp_port();
            let metrics: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
            let mut command = Command::new(env!("CARGO_BIN_EXE_tierkv-origin"));
            common(&mut command);
            command
                .args(["--listen", &format!("127.0.0.1:{quic}")])
                .args(["--metrics", &metrics.to_string()])
                .args(["--store", "s3://tierkv/data"])
                .args(["--s3-endpoint", &s3.endpoint])
                .args(["--s3-region", "us-east-1"])
                .args(["--s3-access-key-id", S3_ACCESS_KEY])
                .args(["--s3-secret-access-key", S3_SECRET_KEY])
                .args(["--s3-allow-http", "true"])
                // When the store dies mid-test, fail fast rather than retry.
                .args(["--store-timeout-ms", "1000", "--store-retries", "0"]);
            let mut origin = Process::start(&format!("origin-{n}"), command);
            origin.wait_for_line("kv-origin ready", READY);
            origins.push(origin);
            origin_metrics.push(metrics);
            origin_peers.push(format!("localhost:{quic}"));
        }
        let origin_list = origin_peers.join(",");

        let mut regionals = Vec::new();
        let mut regional_metrics = Vec::new();
        let mut regional_quic = Vec::new();
        for n in 0..2 {
            let quic = free_udp_port();
            let metrics: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
            let mut command = Command::new(env!("CARGO_BIN_EXE_tierkv-regional"));
            common(&mut command);
            command
                .args(["--listen", &format!("127.0.0.1:{quic}")])
                .args(["--metrics", &metrics.to_string()])
                .args(["--origins", &origin_list])
                .arg("--data-dir")
                .arg(dir.path().join(format!("regional-{n}")))
                .args(["--memory-mib", "16", "--disk-mib", "64"])
                .args([
                    "--cache-ttl-secs",
                    &options.regional_cache_ttl_secs.to_string(),
                ]);
            let mut regional = Process::start(&format!("regional-{n}"), command);
            regional.wait_for_line("kv-regional ready", READY);
            regionals.push(regional);
            regional_metrics.push(metrics);
            regional_quic.push(format!("localhost:{quic}"));
        }

        let edge_http: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tierkv-edge"));
        command.arg("serve");
        common(&mut command);
        command
            .args(["--http", &edge_http.to_string()])
            .args(["--regionals", &regional_quic.join(",")])
            .args(["--origins", &origin_list])
            .args(["--cache-ttl-secs", &options.edge_cache_ttl_secs.to_string()])
            .args(["--min-cache-ttl-secs", "1"]);
        let mut edge = Process::start("edge", command);
        edge.wait_for_line("kv-edge ready", READY);

        Self {
            origins,
            regionals,
            edge,
            edge_http,
            origin_metrics,
            regional_metrics,
            origin_peers,
            regional_peers: regional_quic,
            s3: Some(s3),
            _dir: dir,
        }
    }

    /// The edge's base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge_http)
    }

    /// Every process, for reading logs.
    pub fn processes(&self) -> Vec<&Process> {
        let mut all = vec![&self.edge];
        all.extend(self.regionals.iter());
        all.extend(self.origins.iter());
        all
    }

    /// Every process's metrics address (the edge serves them on its HTTP
    /// port), with the process's name.
    pub fn metrics_targets(&self) -> Vec<(String, SocketAddr)> {
        let mut all = vec![(self.edge.name.clone(), self.edge_http)];
        for (process, addr) in self.regionals.iter().zip(&self.regional_metrics) {
            all.push((process.name.clone(), *addr));
        }
        for (process, addr) in self.origins.iter().zip(&self.origin_metrics) {
            all.push((process.name.clone(), *addr));
        }
        all
    }

    /// Waits until every regional node follows the change feed of every
    /// origin, and the edge the feed of every regional node: each
    /// `tierkv_feed_connected` series of theirs reads 1.
    pub async fn wait_for_feeds(&self, client: &reqwest::Client) {
        let mut expected = Vec::new();
        for addr in &self.regional_metrics {
            for peer in &self.origin_peers {
                expected.push((*addr, feed_series("regional", peer)));
            }
        }
        for peer in &self.regional_peers {
            expected.push((self.edge_http, feed_series("edge", peer)));
        }
        wait_for_gauges(client, &expected, READY).await;
    }
}

/// Waits until each process's `/metrics` (at the address) has the line
/// `SERIES 1`, failing the test after `timeout` with the lines missing.
pub async fn wait_for_gauges(
    client: &reqwest::Client,
    expected: &[(SocketAddr, String)],
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut missing = Vec::new();
        for (addr, series) in expected {
            let text = scrape(client, *addr).await;
            if !text.lines().any(|l| l == format!("{series} 1")) {
                let feeds: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("tierkv_feed_connected"))
                    .collect();
                missing.push(format!("{addr}: {series} 1 (has {feeds:?})"));
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not reported within {timeout:?}:\n{}",
            missing.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `tierkv_feed_connected` series of a `tier` node following `peer`,
/// as the text format writes it (labels in order).
pub fn feed_series(tier: &str, peer: &str) -> String {
    format!(r#"tierkv_feed_connected{{peer="{peer}",tier="{tier}"}}"#)
}

/// The Prometheus text a process serves on `/metrics`.
pub async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> String {
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("scraping {addr}: {e}"));
    assert_eq!(response.status(), 200, "scraping {addr}");
    response.text().await.unwrap()
}

/// A real Prometheus server (Debian's `prometheus` package), killed on drop.
pub struct Prometheus {
    pub url: String,
    process: Process,
    _dir: tempfile::TempDir,
}

pub fn which(binary: &str) -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(binary))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{binary} is not installed; these tests need Prometheus: \
                 apt-get install prometheus (.ci/test does it)"
            )
        })
}

impl Prometheus {
    /// Starts Prometheus with `scrape_configs` (YAML, indented under
    /// `scrape_configs:`) and the repository's rule files, evaluating and
    /// scraping every second.
    pub fn start(scrape_configs: &str, rule_files: &[PathBuf]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules: String = rule_files
            .iter()
            .map(|p| format!("  - {}\n", p.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n{rules}scrape_configs:\n{scrape_configs}"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_tcp_port();
        let mut command = Command::new(which("prometheus"));
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle");
        let mut process = Process::start("prometheus", command);
        process.wait_for_line("Server is ready to receive web requests", READY);
        Self {
            url: format!("http://127.0.0.1:{port}"),
            process,
            _dir: dir,
        }
    }

    /// The log, for failure messages.
    pub fn log(&self) -> String {
        self.process.lines().join("\n")
    }
}

/// A `static_configs` scrape job.
pub fn scrape_job(job: &str, targets: &[SocketAddr]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}
