//! `loadgen chaos` end to end: a short fault campaign against a real
//! multi-process stack on moto's S3, which must pass with every tier killed
//! at least once.
//!
//! The campaign runs `kv-origin`, `kv-regional` and `kv-edge` from this
//! test's target directory (it builds them first with the same profile) and
//! needs a Python with moto[server]: `TIERKV_MOTO_PYTHON`, else
//! `<workspace>/.venv/bin/python`. Without one it fails with the install
//! hint. `LOADGEN_CHAOS_SECS` sets the campaign's length (default 40 s, about
//! 60 s in all); `LOADGEN_CHAOS_ARGS` adds options (whitespace-separated,
//! e.g. `--seed 3 --keys 6`), and `LOADGEN_CHAOS_SEED` sets the seed (7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The Python with moto, or a failure that says how to get one.
fn moto_python() -> PathBuf {
    let (path, from) = match std::env::var_os("TIERKV_MOTO_PYTHON") {
        Some(path) => (PathBuf::from(path), "TIERKV_MOTO_PYTHON"),
        None => (workspace().join(".venv/bin/python"), "the workspace venv"),
    };
    assert!(
        path.is_file(),
        "no Python with moto for the chaos campaign: {} ({from}) does not exist. \
         Run `bash .ci/test`, or at the workspace root \
         `python3 -m venv .venv && .venv/bin/pip install 'moto[server]==5.2.5'`, \
         or set TIERKV_MOTO_PYTHON to a python that has moto[server]",
        path.display()
    );
    path
}

/// Builds the three binaries with this test's profile, next to loadgen's.
fn build_stack_binaries(bin_dir: &Path) {
    let release = bin_dir.file_name().and_then(|n| n.to_str()) == Some("release");
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(workspace()).args([
        "build",
        "-p",
        "kv-origin",
        "-p",
        "kv-regional",
        "-p",
        "kv-edge",
    ]);
    if release {
        command.arg("--release");
    }
    let status = command.status().expect("running cargo build");
    assert!(
        status.success(),
        "cargo build -p kv-origin -p kv-regional -p kv-edge failed"
    );
    for binary in ["kv-origin", "kv-regional", "kv-edge"] {
        assert!(
            bin_dir.join(binary).is_file(),
            "{binary} is not in {} after the build",
            bin_dir.display()
        );
    }
}

#[test]
fn a_short_chaos_campaign_passes_with_every_tier_killed() {
    let python = moto_python();
    let loadgen = PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
    let bin_dir = loadgen.parent().unwrap().to_owned();
    build_stack_binaries(&bin_dir);

    let secs = std::env::var("LOADGEN_CHAOS_SECS").unwrap_or_else(|_| "40".into());
    let seed = std::env::var("LOADGEN_CHAOS_SEED").unwrap_or_else(|_| "7".into());
    let extra = std::env::var("LOADGEN_CHAOS_ARGS").unwrap_or_default();
    // Kept if the test fails, for the logs and the history.
    let dir = tempfile::Builder::new()
        .prefix("loadgen-chaos-test-")
        .tempdir()
        .unwrap()
        .keep();
    let json = dir.join("report.json");
    let run_dir = dir.join("run");
    let output = Command::new(&loadgen)
        .args(["chaos", "--duration-secs", &secs, "--seed", &seed])
        .args(extra.split_whitespace())
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--moto-python")
        .arg(&python)
        .arg("--dir")
        .arg(&run_dir)
        .arg("--json")
        .arg(&json)
        .env_remove("LOADGEN_CHAOS_SECS")
        .env_remove("LOADGEN_CHAOS_SEED")
        .output()
        .expect("running loadgen chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "loadgen chaos failed ({}); stdout:\n{stdout}\nstderr:\n{stderr}\nlogs in {}",
        output.status,
        run_dir.display()
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["verdict"], "pass", "{stdout}");
    for tier in ["origin", "regional", "edge"] {
        let kills = report["kills"][tier].as_u64().unwrap_or(0);
        assert!(kills >= 1, "no {tier} was killed:\n{stdout}");
    }
    let count = |kind: &str| report["ops"][kind]["ok"].as_u64().unwrap_or(0);
    assert!(
        count("put") + count("delete") > 0,
        "no acknowledged write:\n{stdout}"
    );
    assert!(count("get") > 0, "no successful read:\n{stdout}");
    assert!(
        report["final_reads"]["ok"].as_u64().unwrap_or(0) > 0,
        "no final read:\n{stdout}"
    );
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 6);
    assert!(checks.iter().all(|c| c["passed"] == true), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
