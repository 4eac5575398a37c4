//! The open-loop driver: sends each planned request at its due time over
//! HTTP, whatever earlier requests are doing, and times it from that due
//! time. A slow system therefore shows up as latency, not as fewer requests
//! (no coordinated omission).
//!
//! Alongside, it keeps what [`crate::visibility`] needs: every acknowledged
//! write's version and every measured read's, and, after each write, a
//! watch of the other edges until they serve it (plus the probe writer,
//! when the workload writes too rarely).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use kv_proto::Tier;
use reqwest::StatusCode;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::{Outcome, Recorder};
use crate::visibility::{Freshness, LagOptions, LagRecorder, StaleReads, Watcher, version_of};
use crate::workload::{NAMESPACE, OpKind, PlannedOp, Workload, key_name};

/// Driver settings.
#[derive(Debug, Clone, Copy)]
pub struct DriveOptions {
    /// Most requests in flight; past it, requests wait (and their wait
    /// counts as latency).
    pub max_in_flight: usize,
    /// Time limit of one request.
    pub request_timeout: Duration,
    /// How write-to-visible lag is measured; `None` turns it off.
    pub lag: Option<LagOptions>,
}

impl Default for DriveOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 1_024,
            request_timeout: Duration::from_secs(30),
            lag: Some(LagOptions::default()),
        }
    }
}

/// What a drive measured.
#[derive(Debug, Clone)]
pub struct Driven {
    /// Counts and histograms of the measured requests.
    pub recorder: Recorder,
    /// From the first measured request's due time to the last measured
    /// request's completion.
    pub measured_time: Duration,
    /// Write-to-visible lag on the other edges; `None` when it was not
    /// measured.
    pub lag: Option<LagRecorder>,
    /// The measured reads, judged for staleness.
    pub stale: StaleReads,
}

/// An HTTP client suited to driving load.
pub fn http_client(options: &DriveOptions) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(options.max_in_flight)
        .timeout(options.request_timeout)
        .build()
}

/// Sends `plan` to `targets` (edge base URLs, `http://host:port`).
pub async fn drive(
    client: &reqwest::Client,
    workload: &Arc<Workload>,
    plan: &[PlannedOp],
    targets: &[String],
    options: DriveOptions,
    progress: &ProgressBar,
) -> Driven {
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let freshness = Arc::new(Mutex::new(Freshness::default()));
    let last_done = Arc::new(Mutex::new(None::<Instant>));
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let start = Instant::now() + PACER_LEAD;
    let first_measured = plan.iter().find(|op| op.measured).map(|op| start + op.at);
    let watcher = options.lag.map(|lag| {
        let max_wait = lag.max_wait_for(crate::visibility::DEFAULT_CACHE_TTL);
        Arc::new(Watcher::new(
            client.clone(),
            targets,
            lag,
            max_wait,
            options.request_timeout,
        ))
    });
    let probe = watcher.as_ref().and_then(|watcher| {
        let c = workload.config();
        let rate = watcher.options().probe_rate;
        let measured_writes = plan
            .iter()
            .filter(|op| op.measured && op.kind == OpKind::Write)
            .count();
        let write_rate = measured_writes as f64 / c.duration_secs.max(f64::MIN_POSITIVE);
        if targets.len() < 2 || write_rate >= rate {
            return None;
        }
        let path = format!("/v1/{NAMESPACE}/lag-probe-{:016x}", rand::random::<u64>());
        let (warmup, end) = (
            Duration::try_from_secs_f64(c.warmup_secs).unwrap_or_default(),
            Duration::try_from_secs_f64(c.warmup_secs + c.duration_secs).unwrap_or_default(),
        );
        let task = tokio::spawn(watcher.clone().probe(
            path.clone(),
            start,
            start + warmup,
            start + end,
        ));
        Some((path, task))
    });
    let mut due_ops = pace(plan.to_vec(), start);
    while let Some((op, due)) = due_ops.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let target = op.target % targets.len().max(1);
        let Some(base) = targets.get(target) else {
            break;
        };
        let path = format!("/v1/{NAMESPACE}/{}", key_name(op.key));
        let url = format!("{base}{path}");
        let (client, workload, watcher) = (client.clone(), workload.clone(), watcher.clone());
        let (recorder, freshness, last_done, progress) = (
            recorder.clone(),
            freshness.clone(),
            last_done.clone(),
            progress.clone(),
        );
        tasks.spawn(async move {
            let sent = Instant::now();
            let answer = execute(&client, &workload, &url, op).await;
            let done = Instant::now();
            drop(permit);
            if let Ok(mut r) = recorder.lock() {
                r.add(
                    op.measured,
                    &answer.outcome,
                    done.saturating_duration_since(due),
                );
            }
            if let Ok(mut f) = freshness.lock() {
                match answer.outcome {
                    Outcome::Read(_) if op.measured => f.read(op.key, answer.version, sent),
                    Outcome::Written => {
                        if let Some(version) = answer.version {
                            f.acknowledged(op.key, version, answer.at);
                        }
                    }
                    _ => {}
                }
            }
            if op.measured
                && let Ok(mut last) = last_done.lock()
            {
                *last = Some(last.map_or(done, |l| l.max(done)));
            }
            progress.inc(1);
            if let (Some(watcher), Outcome::Written) = (watcher, &answer.outcome) {
                watcher
                    .watch(&path, target, answer.version, answer.at, op.measured, false)
                    .await;
            }
        });
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    if let (Some((path, task)), Some(watcher)) = (probe, &watcher) {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "the lag probe writer failed");
        }
        watcher.remove_probe(&path).await;
    }
    let measured_time = match (first_measured, last_done.lock().ok().and_then(|l| *l)) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    let recorder = recorder
        .lock()
        .map(|r| r.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    let stale = match freshness.lock() {
        Ok(f) => f.judge(),
        Err(poisoned) => poisoned.into_inner().judge(),
    };
    Driven {
        recorder,
        measured_time,
        lag: watcher.map(|w| w.recorded()),
        stale,
    }
}

/// How far ahead of the first request the pacer starts.
const PACER_LEAD: Duration = Duration::from_millis(20);

/// Releases each op at its due time from a thread of its own. tokio's timers
/// tick in milliseconds, which would add up to a millisecond of the
/// driver's own lateness to every latency (they are timed from the due
/// time); a thread's sleep is precise to tens of microseconds.
fn pace(plan: Vec<PlannedOp>, start: Instant) -> mpsc::UnboundedReceiver<(PlannedOp, Instant)> {
    let (release, released) = mpsc::unbounded_channel();
    let start = start.into_std();
    std::thread::spawn(move || {
        for op in plan {
            let due = start + op.at;
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if release.send((op, Instant::from_std(due))).is_err() {
                return;
            }
        }
    });
    released
}

/// How a request ended, with what freshness needs.
#[derive(Debug)]
struct Answer {
    outcome: Outcome,
    /// The version the answer named (`kv-version`).
    version: Option<u64>,
    /// When the answer's headers arrived: a write's acknowledgement.
    at: Instant,
}

impl Answer {
    fn failed(message: String) -> Self {
        Self {
            outcome: Outcome::Failed(message),
            version: None,
            at: Instant::now(),
        }
    }
}

/// Sends one request and reads its whole answer.
async fn execute(
    client: &reqwest::Client,
    workload: &Workload,
    url: &str,
    op: PlannedOp,
) -> Answer {
    match op.kind {
        OpKind::Read => read(client, workload, url, op.key).await,
        OpKind::Write => write(client, workload, url, op.key).await,
    }
}

async fn read(client: &reqwest::Client, workload: &Workload, url: &str, key: u32) -> Answer {
    let response = match client.get(url).send().await {
        Ok(response) => response,
        Err(e) => return Answer::failed(transport_error(&e)),
    };
    let at = Instant::now();
    let status = response.status();
    let version = version_of(response.headers());
    let tier = response
        .headers()
        .get("kv-tier")
        .and_then(|v| v.to_str().ok())
        .and_then(tier_named);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return Answer::failed(transport_error(&e)),
    };
    if status != StatusCode::OK {
        return Answer::failed(format!(
            "GET answered {}{}",
            status.as_u16(),
            error_code(&body)
        ));
    }
    // Every value of a key has the key's size: a different length is a wrong answer.
    if body.len() != workload.value_len(key) {
        return Answer::failed("GET returned a value of the wrong length".into());
    }
    Answer {
        outcome: Outcome::Read(tier),
        version,
        at,
    }
}

async fn write(client: &reqwest::Client, workload: &Workload, url: &str, key: u32) -> Answer {
    match client.put(url).body(workload.value(key)).send().await {
        Ok(response) if response.status() == StatusCode::OK => {
            let at = Instant::now();
            let header = version_of(response.headers());
            // Drain the small JSON answer so the connection is reused; it
            // names the version too.
            match response.bytes().await {
                Ok(body) => Answer {
                    outcome: Outcome::Written,
                    version: header.or_else(|| body_version(&body)),
                    at,
                },
                Err(e) => Answer::failed(transport_error(&e)),
            }
        }
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            Answer::failed(format!("PUT answered {status}{}", error_code(&body)))
        }
        Err(e) => Answer::failed(transport_error(&e)),
    }
}

/// The `version` of a write's JSON answer, `{"version": N}`.
fn body_version(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("version")?
        .as_u64()
}

/// The `error` code of a JSON error body, as ` (code)`; the message is left
/// out, since it may name the key and would make every failure distinct.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.as_str())
                .map(|e| format!(" ({e})"))
        })
        .unwrap_or_default()
}

/// A short, stable description of a transport failure, for counting.
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        format!("transport: {e}")
    }
}

/// The tier a `kv-tier` header names.
pub fn tier_named(name: &str) -> Option<Tier> {
    crate::stats::TIERS.into_iter().find(|t| t.as_str() == name)
}

/// Writes every key of `workload` through the HTTP API of `target`, `width`
/// at a time; for `loadgen run` against a deployment. Returns the first
/// failure.
pub async fn preload_http(
    client: &reqwest::Client,
    workload: &Workload,
    target: &str,
    width: usize,
    progress: &ProgressBar,
) -> Result<(), String> {
    use futures::StreamExt;
    let mut puts = futures::stream::iter(0..workload.keys())
        .map(|key| {
            let url = format!("{target}/v1/{NAMESPACE}/{}", key_name(key));
            async move {
                let answer = write(client, workload, &url, key).await;
                progress.inc(1);
                match answer.outcome {
                    Outcome::Failed(message) => Err(format!("{}: {message}", key_name(key))),
                    _ => Ok(()),
                }
            }
        })
        .buffer_unordered(width.max(1));
    while let Some(result) = puts.next().await {
        result?;
    }
    Ok(())
}
