//! The campaign's clients: writers and readers over a small keyspace,
//! through every edge, recording every operation.
//!
//! A writer PUTs unique values (`w{client}-{seq}`) and sometimes DELETEs,
//! each write with its own `Idempotency-Key`. When the outcome is unknown
//! (504 `outcome_unknown`, 500/502, a client timeout, a connection error) it
//! sends the same write again with the same key, through another edge, a
//! bounded number of times. Now and then it replays an acknowledged write
//! through another edge, a while later (as a client whose answer was lost
//! would), which must answer with the same version and change nothing.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use tokio::sync::watch;

use super::history::{Attempt, Op, OpKind, Outcome, Phase, Recorder};

/// The clients' settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The edges' base URLs.
    pub edges: Vec<String>,
    /// The namespace.
    pub namespace: String,
    /// Keys `k00`, `k01`, ...
    pub keys: usize,
    /// Writer tasks.
    pub writers: usize,
    /// Reader tasks.
    pub readers: usize,
    /// Share of writes that are DELETEs.
    pub delete_share: f64,
    /// Share of acknowledged writes replayed through another edge.
    pub replay_share: f64,
    /// A replay is sent up to this long after the acknowledgement (other
    /// writes to the key may come in between).
    pub replay_delay: Duration,
    /// Most sends of one write.
    pub max_attempts: u32,
    /// Client timeout of one request.
    pub timeout: Duration,
    /// Names the run in idempotency keys.
    pub run_id: String,
    /// Seeds every client.
    pub seed: u64,
}

impl ClientConfig {
    /// Key number `i`.
    pub fn key(&self, i: usize) -> String {
        format!("k{i:02}")
    }

    fn url(&self, edge: usize, key: &str) -> String {
        format!("{}/v1/{}/{}", self.edges[edge], self.namespace, key)
    }
}

/// Builds the HTTP client every task shares.
pub fn http_client(config: &ClientConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
}

/// Runs the writers and readers until `stop` turns true.
pub async fn run(
    config: Arc<ClientConfig>,
    http: reqwest::Client,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..config.writers {
        let rng =
            StdRng::seed_from_u64(config.seed ^ (w as u64 + 1).wrapping_mul(0x1000_0000_01b3));
        tasks.spawn(writer(
            config.clone(),
            http.clone(),
            recorder.clone(),
            stop.clone(),
            w,
            rng,
        ));
    }
    for r in 0..config.readers {
        let rng = StdRng::seed_from_u64(
            config.seed.rotate_left(29) ^ (r as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        tasks.spawn(reader(
            config.clone(),
            http.clone(),
            recorder.clone(),
            stop.clone(),
            r,
            rng,
        ));
    }
    while tasks.join_next().await.is_some() {}
}

fn other_edge(rng: &mut StdRng, edges: usize, not: usize) -> usize {
    if edges <= 1 {
        return 0;
    }
    (not + rng.random_range(1..edges)) % edges
}

async fn writer(
    config: Arc<ClientConfig>,
    http: reqwest::Client,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
    index: usize,
    mut rng: StdRng,
) {
    let client = format!("w{}", index + 1);
    let mut seq = 0u64;
    // Acknowledged writes waiting for their replay: (due, edge, op).
    let mut deferred: Vec<(u64, usize, Op)> = Vec::new();
    while !*stop.borrow() {
        seq += 1;
        let key = config.key(rng.random_range(0..config.keys));
        let kind = if rng.random::<f64>() < config.delete_share {
            OpKind::Delete
        } else {
            OpKind::Put
        };
        let value = (kind == OpKind::Put).then(|| format!("{client}-{seq}"));
        let idempotency_key = format!("chaos-{}-{client}-{seq}", config.run_id);
        let mut op = Op {
            id: recorder.next_id(),
            client: client.clone(),
            phase: Phase::Campaign,
            kind,
            key,
            value,
            version: None,
            start_us: recorder.now_us(),
            end_us: 0,
            outcome: Outcome::Unknown,
            idempotency_key: Some(idempotency_key),
            attempts: Vec::new(),
        };
        let mut edge = rng.random_range(0..config.edges.len());
        let mut saw_unknown = false;
        for n in 0..config.max_attempts.max(1) {
            if n > 0 {
                edge = other_edge(&mut rng, config.edges.len(), edge);
                tokio::time::sleep(Duration::from_millis(50 * u64::from(n))).await;
            }
            let attempt = send_write(&http, &config, &recorder, &op, edge, false).await;
            let outcome = attempt.outcome;
            op.end_us = attempt.end_us;
            if outcome == Outcome::Ok {
                op.version = attempt.version;
            }
            op.attempts.push(attempt);
            match outcome {
                Outcome::Ok => {
                    op.outcome = Outcome::Ok;
                    break;
                }
                Outcome::Fail => {
                    // A definite failure of this send; an earlier unknown
                    // one may still have been applied.
                    op.outcome = if saw_unknown {
                        Outcome::Unknown
                    } else {
                        Outcome::Fail
                    };
                    break;
                }
                Outcome::Unknown => {
                    saw_unknown = true;
                    op.outcome = Outcome::Unknown;
                }
            }
        }
        if op.outcome == Outcome::Ok && rng.random::<f64>() < config.replay_share {
            let delay_us = u64::try_from(config.replay_delay.as_micros()).unwrap_or(u64::MAX);
            let due_us = recorder.now_us() + rng.random_range(0..=delay_us);
            let replay_edge = other_edge(&mut rng, config.edges.len(), edge);
            deferred.push((due_us, replay_edge, op));
        } else {
            recorder.record(op);
        }
        replay_due(&http, &config, &recorder, &mut deferred, false).await;
    }
    // Stopping: the replays still due go out now.
    replay_due(&http, &config, &recorder, &mut deferred, true).await;
}

/// Sends the deferred replays that are due (all of them if `all`), and
/// records their operations.
async fn replay_due(
    http: &reqwest::Client,
    config: &ClientConfig,
    recorder: &Recorder,
    deferred: &mut Vec<(u64, usize, Op)>,
    all: bool,
) {
    let now = recorder.now_us();
    let (due, later): (Vec<_>, Vec<_>) = deferred
        .drain(..)
        .partition(|(due_us, _, _)| all || *due_us <= now);
    *deferred = later;
    for (_, edge, mut op) in due {
        let attempt = send_write(http, config, recorder, &op, edge, true).await;
        op.attempts.push(attempt);
        recorder.record(op);
    }
}

/// Sends `op` (a PUT or DELETE) once through `edge`.
async fn send_write(
    http: &reqwest::Client,
    config: &ClientConfig,
    recorder: &Recorder,
    op: &Op,
    edge: usize,
    replay: bool,
) -> Attempt {
    let url = config.url(edge, &op.key);
    let request = match op.kind {
        OpKind::Put => http.put(&url).body(op.value.clone().unwrap_or_default()),
        _ => http.delete(&url),
    };
    let request = match &op.idempotency_key {
        Some(key) => request.header("idempotency-key", key),
        None => request,
    };
    let start_us = recorder.now_us();
    let answer = request.send().await;
    let mut attempt = Attempt {
        edge,
        start_us,
        end_us: 0,
        outcome: Outcome::Unknown,
        status: None,
        code: None,
        version: None,
        tier: None,
        cache: None,
        replay,
    };
    match answer {
        Ok(response) => {
            let status = response.status();
            attempt.status = Some(status.as_u16());
            attempt.version = version_header(&response);
            let acked = match op.kind {
                OpKind::Put => status == StatusCode::OK,
                _ => status == StatusCode::NO_CONTENT,
            };
            if acked {
                // The body (a PUT's `{"version": N}`) adds nothing to the header.
                let body = response.bytes().await;
                if attempt.version.is_some() && body.is_ok() {
                    attempt.outcome = Outcome::Ok;
                } else {
                    attempt.code = Some("bad_answer".into());
                }
            } else {
                let code = error_code(response).await;
                attempt.outcome = write_failure(status, code.as_deref());
                attempt.code = code;
            }
        }
        Err(e) => attempt.code = Some(client_error(&e).into()),
    }
    attempt.end_us = recorder.now_us();
    attempt
}

/// What an error answer to a write says about it. A 503 and a 504
/// `timeout` were not applied, nor was anything refused as a bad request;
/// a 504 `outcome_unknown`, a 500 or a 502 may have been.
pub fn write_failure(status: StatusCode, code: Option<&str>) -> Outcome {
    match (status.as_u16(), code) {
        (503, _) => Outcome::Fail,
        (504, Some("timeout")) => Outcome::Fail,
        (400..=499, _) => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

fn client_error(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "client_timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    }
}

fn version_header(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("kv-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The `error.code` of an error answer's JSON body.
async fn error_code(response: reqwest::Response) -> Option<String> {
    let body = response.bytes().await.ok()?;
    let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
    json.get("error")?.get("code")?.as_str().map(str::to_owned)
}

async fn reader(
    config: Arc<ClientConfig>,
    http: reqwest::Client,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
    index: usize,
    mut rng: StdRng,
) {
    let client = format!("r{}", index + 1);
    while !*stop.borrow() {
        let key = config.key(rng.random_range(0..config.keys));
        let edge = rng.random_range(0..config.edges.len());
        let op = read(
            &http,
            &config,
            &recorder,
            &client,
            Phase::Campaign,
            key,
            edge,
        )
        .await;
        recorder.record(op);
    }
}

/// One GET through `edge`, as an operation.
pub async fn read(
    http: &reqwest::Client,
    config: &ClientConfig,
    recorder: &Recorder,
    client: &str,
    phase: Phase,
    key: String,
    edge: usize,
) -> Op {
    let start_us = recorder.now_us();
    let answer = http.get(config.url(edge, &key)).send().await;
    let mut attempt = Attempt {
        edge,
        start_us,
        end_us: 0,
        outcome: Outcome::Fail,
        status: None,
        code: None,
        version: None,
        tier: None,
        cache: None,
        replay: false,
    };
    let mut value = None;
    match answer {
        Ok(response) => {
            let status = response.status();
            attempt.status = Some(status.as_u16());
            attempt.version = version_header(&response);
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            attempt.tier = header("kv-tier");
            attempt.cache = header("kv-cache-status");
            match status {
                StatusCode::OK => match response.bytes().await {
                    Ok(body) => {
                        value = Some(String::from_utf8_lossy(&body).into_owned());
                        attempt.outcome = Outcome::Ok;
                    }
                    Err(e) => attempt.code = Some(client_error(&e).into()),
                },
                StatusCode::NOT_FOUND => {
                    // A key 404 says `not_found`; anything else is no answer.
                    let code = error_code(response).await;
                    if code.as_deref() == Some("not_found") {
                        attempt.outcome = Outcome::Ok;
                    }
                    attempt.code = code;
                }
                _ => attempt.code = error_code(response).await,
            }
        }
        Err(e) => attempt.code = Some(client_error(&e).into()),
    }
    attempt.end_us = recorder.now_us();
    Op {
        id: recorder.next_id(),
        client: client.to_owned(),
        phase,
        kind: OpKind::Get,
        key,
        value,
        version: attempt.version,
        start_us,
        end_us: attempt.end_us,
        outcome: attempt.outcome,
        idempotency_key: None,
        attempts: vec![attempt],
    }
}

/// After quiescence: reads every key through every edge, trying each up to
/// `tries` times until it answers.
pub async fn final_reads(
    config: &ClientConfig,
    http: &reqwest::Client,
    recorder: &Recorder,
    tries: u32,
) {
    for k in 0..config.keys {
        for edge in 0..config.edges.len() {
            for n in 0..tries.max(1) {
                if n > 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let op = read(
                    http,
                    config,
                    recorder,
                    "final",
                    Phase::Final,
                    config.key(k),
                    edge,
                )
                .await;
                let ok = op.outcome == Outcome::Ok;
                recorder.record(op);
                if ok {
                    break;
                }
            }
        }
    }
}
