//! An S3 server whose conditional PUT is atomic: moto, run by
//! `s3_serialized.py` with every request serialized, on loopback.
//!
//! Include it with `#[path = "support/moto.rs"] mod moto;`; it stands alone.
//! It needs a Python with `moto[server]` installed: `TIERKV_MOTO_PYTHON`, else
//! `<workspace>/.venv/bin/python` (which `.ci/test` creates).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kv_origin::StoreConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};

/// Credentials for the server; moto accepts any.
pub const ACCESS_KEY: &str = "tierkv-test";
pub const SECRET_KEY: &str = "tierkv-test-secret";
pub const REGION: &str = "us-east-1";

/// How long the server gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/s3_serialized.py"
);

/// moto's S3 server with one bucket, killed on drop.
#[derive(Debug)]
pub struct MotoS3 {
    child: Child,
    /// Held open: the server exits when its stdin closes, so it does not
    /// outlive a test process that is killed before `Drop` runs.
    _stdin: Option<ChildStdin>,
    endpoint: String,
    bucket: String,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl MotoS3 {
    /// Starts the server with `bucket` created, and waits until it listens.
    pub fn start(bucket: &str) -> Self {
        let python = python();
        let mut child = Command::new(&python)
            .arg(SCRIPT)
            .args(["--port", "0", "--bucket", bucket])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));

        // Both pipes are drained for the server's whole life, so that it never
        // blocks on a full pipe: stdout lines go to the channel, stderr (quiet
        // unless something fails) is kept for the panic message.
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let _ = err.read_to_end(&mut kept);
            kept
        });
        let (lines, ready) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });

        let mut server = Self {
            _stdin: child.stdin.take(),
            child,
            endpoint: String::new(),
            bucket: bucket.to_owned(),
            stderr: Some(stderr),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready.recv_timeout(left) {
                Ok(line) => {
                    if let Some(endpoint) = line.strip_prefix("ready ") {
                        server.endpoint = endpoint.trim().to_owned();
                        return server;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    server.fail(&format!("did not report ready within {START_TIMEOUT:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => server.fail(&format!(
                    "exited before it was ready (does {} have moto[server]?)",
                    python.display()
                )),
            }
        }
    }

    /// Stops the server and panics with `what` and everything it wrote to stderr.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        panic!(
            "the moto S3 server ({SCRIPT}) {what}; status {status:?}, stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// A builder for a client of the bucket: path-style, plain HTTP,
    /// conditional put through `If-Match` / `If-None-Match`.
    pub fn s3_builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region(REGION)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
    }

    /// A client of the bucket, as [`Self::s3_builder`] describes.
    pub fn s3(&self) -> AmazonS3 {
        self.s3_builder().build().unwrap()
    }

    /// The tierkv store config for the whole bucket, `s3://BUCKET`.
    pub fn store_config(&self) -> StoreConfig {
        self.store_config_under("")
    }

    /// The tierkv store config for `s3://BUCKET/prefix`.
    pub fn store_config_under(&self, prefix: &str) -> StoreConfig {
        let url = match prefix.trim_matches('/') {
            "" => format!("s3://{}", self.bucket),
            prefix => format!("s3://{}/{prefix}", self.bucket),
        };
        StoreConfig {
            url,
            s3_endpoint: Some(self.endpoint.clone()),
            s3_region: Some(REGION.into()),
            s3_access_key_id: Some(ACCESS_KEY.into()),
            s3_secret_access_key: Some(SECRET_KEY.into()),
            s3_allow_http: true,
            ..StoreConfig::default()
        }
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python that has moto: `TIERKV_MOTO_PYTHON`, else the workspace's `.venv`.
fn python() -> PathBuf {
    let (path, from) = match std::env::var_os("TIERKV_MOTO_PYTHON") {
        Some(path) => (PathBuf::from(path), "TIERKV_MOTO_PYTHON"),
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            (root.join(".venv/bin/python"), "the workspace venv")
        }
    };
    if !path.is_file() {
        panic!(
            "no Python with moto for the S3 tests: {} ({from}) does not exist. \
             Run `bash .ci/test`, or at the workspace root \
             `python3 -m venv .venv && .venv/bin/pip install 'moto[server]==5.2.5'`, \
             or set TIERKV_MOTO_PYTHON to a python that has moto[server]",
            path.display()
        );
    }
    path
}
