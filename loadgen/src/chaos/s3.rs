//! The S3 server of a campaign: the operator's own, or moto run by the
//! project's `s3_serialized.py` (embedded here and written to the run
//! directory), whose conditional PUTs are atomic.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::ChaosError;

/// The script, as shipped with kv-origin's tests.
const SCRIPT: &str = include_str!("../../../kv-origin/tests/support/s3_serialized.py");

/// How to get a Python with moto.
pub const INSTALL_HINT: &str = "give --moto-python (or set TIERKV_MOTO_PYTHON) to a python that has \
     moto[server], e.g. at the workspace root `python3 -m venv .venv && .venv/bin/pip install \
     'moto[server]==5.2.5'` (then .venv/bin/python is found by default), or point the campaign \
     at your own S3 with --s3-endpoint URL --s3-bucket NAME";

/// A running moto server; killed on drop (and it exits when its stdin closes).
#[derive(Debug)]
pub struct Moto {
    child: Child,
    _stdin: Option<ChildStdin>,
    endpoint: String,
}

/// The Python to run moto with: `explicit`, else `<workspace>/.venv/bin/python`.
pub fn find_python(explicit: Option<&Path>) -> Result<PathBuf, ChaosError> {
    let (path, from) = match explicit {
        Some(path) => (path.to_owned(), "--moto-python / TIERKV_MOTO_PYTHON"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join(".venv/bin/python"),
            "the workspace venv",
        ),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(ChaosError::S3(format!(
            "no Python with moto: {} ({from}) does not exist; {INSTALL_HINT}",
            path.display()
        )))
    }
}

impl Moto {
    /// Starts moto with `bucket`, its script and log in `dir`, and waits
    /// (up to `timeout`) until it listens.
    pub async fn start(
        python: &Path,
        dir: &Path,
        bucket: &str,
        timeout: Duration,
    ) -> Result<Self, ChaosError> {
        let script = dir.join("s3_serialized.py");
        std::fs::write(&script, SCRIPT)
            .map_err(|e| ChaosError::io(format!("writing {}", script.display()), e))?;
        let log_path = dir.join("logs").join("moto.log");
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ChaosError::io(format!("creating {}", parent.display()), e))?;
        }
        let log = std::fs::File::create(&log_path)
            .map_err(|e| ChaosError::io(format!("creating {}", log_path.display()), e))?;
        let mut child = Command::new(python)
            .arg(&script)
            .args(["--port", "0", "--bucket", bucket])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ChaosError::io(format!("starting {}", python.display()), e))?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            return Err(ChaosError::S3("moto's stdout is not a pipe".into()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(endpoint) = line.strip_prefix("ready ") {
                    return Some(endpoint.trim().to_owned());
                }
            }
            None
        })
        .await;
        let endpoint = match ready {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => {
                let _ = child.wait().await;
                return Err(ChaosError::S3(format!(
                    "moto ({}) exited before it was ready (does {} have moto[server]? {INSTALL_HINT}); its log:\n{}",
                    script.display(),
                    python.display(),
                    super::cluster::log_tail(&log_path, 30)
                )));
            }
            Err(_) => {
                let _ = child.start_kill();
                return Err(ChaosError::S3(format!(
                    "moto did not report ready within {timeout:?}; its log:\n{}",
                    super::cluster::log_tail(&log_path, 30)
                )));
            }
        };
        // Keep draining stdout so that the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            _stdin: stdin,
            endpoint,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
