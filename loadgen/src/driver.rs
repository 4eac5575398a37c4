//! The open-loop driver: sends each planned request at its due time over
//! HTTP, whatever earlier requests are doing, and times it from that due
//! time. A slow system therefore shows up as latency, not as fewer requests
//! (no coordinated omission).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use kv_proto::Tier;
use reqwest::StatusCode;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::{Outcome, Recorder};
use crate::workload::{NAMESPACE, OpKind, PlannedOp, Workload, key_name};

/// Driver settings.
#[derive(Debug, Clone, Copy)]
pub struct DriveOptions {
    /// Most requests in flight; past it, requests wait (and their wait
    /// counts as latency).
    pub max_in_flight: usize,
    /// Time limit of one request.
    pub request_timeout: Duration,
}

impl Default for DriveOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 1_024,
            request_timeout: Duration::from_secs(30),
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
    let last_done = Arc::new(Mutex::new(None::<Instant>));
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let start = Instant::now() + PACER_LEAD;
    let first_measured = plan.iter().find(|op| op.measured).map(|op| start + op.at);
    let mut due_ops = pace(plan.to_vec(), start);
    while let Some((op, due)) = due_ops.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let Some(base) = targets.get(op.target % targets.len().max(1)) else {
            break;
        };
        let url = format!("{base}/v1/{NAMESPACE}/{}", key_name(op.key));
        let (client, workload) = (client.clone(), workload.clone());
        let (recorder, last_done, progress) =
            (recorder.clone(), last_done.clone(), progress.clone());
        tasks.spawn(async move {
            let outcome = execute(&client, &workload, &url, op).await;
            let done = Instant::now();
            drop(permit);
            if let Ok(mut r) = recorder.lock() {
                r.add(op.measured, &outcome, done.saturating_duration_since(due));
            }
            if op.measured
                && let Ok(mut last) = last_done.lock()
            {
                *last = Some(last.map_or(done, |l| l.max(done)));
            }
            progress.inc(1);
        });
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let measured_time = match (first_measured, last_done.lock().ok().and_then(|l| *l)) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    let recorder = recorder
        .lock()
        .map(|r| r.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    Driven {
        recorder,
        measured_time,
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

/// Sends one request and reads its whole answer.
async fn execute(
    client: &reqwest::Client,
    workload: &Workload,
    url: &str,
    op: PlannedOp,
) -> Outcome {
    match op.kind {
        OpKind::Read => read(client, workload, url, op.key).await,
        OpKind::Write => write(client, workload, url, op.key).await,
    }
}

async fn read(client: &reqwest::Client, workload: &Workload, url: &str, key: u32) -> Outcome {
    let response = match client.get(url).send().await {
        Ok(response) => response,
        Err(e) => return Outcome::Failed(transport_error(&e)),
    };
    let status = response.status();
    let tier = response
        .headers()
        .get("kv-tier")
        .and_then(|v| v.to_str().ok())
        .and_then(tier_named);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return Outcome::Failed(transport_error(&e)),
    };
    if status != StatusCode::OK {
        return Outcome::Failed(format!(
            "GET answered {}{}",
            status.as_u16(),
            error_code(&body)
        ));
    }
    // Every value of a key has the key's size: a different length is a wrong answer.
    if body.len() != workload.value_len(key) {
        return Outcome::Failed("GET returned a value of the wrong length".into());
    }
    Outcome::Read(tier)
}

async fn write(client: &reqwest::Client, workload: &Workload, url: &str, key: u32) -> Outcome {
    match client.put(url).body(workload.value(key)).send().await {
        Ok(response) if response.status() == StatusCode::OK => {
            // Drain the small JSON answer so the connection is reused.
            match response.bytes().await {
                Ok(_) => Outcome::Written,
                Err(e) => Outcome::Failed(transport_error(&e)),
            }
        }
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            Outcome::Failed(format!("PUT answered {status}{}", error_code(&body)))
        }
        Err(e) => Outcome::Failed(transport_error(&e)),
    }
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
                let outcome = write(client, workload, &url, key).await;
                progress.inc(1);
                match outcome {
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
