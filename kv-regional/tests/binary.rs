//! The `kv-regional` binary as an operator runs it: config errors, readiness, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::process::Command;

use support::{assert_help_lists, assert_refused, run_until_sigterm};

fn regional(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kv-regional"));
    command
        .env("RUST_LOG", "info")
        .arg("--data-dir")
        .arg(dir.join("cache"))
        .arg("--dev-certs")
        .arg(dir.join("certs"));
    command
}

#[test]
fn help_documents_every_option() {
    let dir = tempfile::tempdir().unwrap();
    let help = assert_help_lists(
        regional(dir.path()),
        &[
            "--config",
            "--listen",
            "--origin",
            "--origin-name",
            "--origin-timeout-ms",
            "--memory-mib",
            "--disk-mib",
            "--data-dir",
            "--cache-ttl-secs",
            "--negative-ttl-secs",
            "--ca",
            "--cert",
            "--key",
            "--dev-certs",
            "--log-format",
        ],
    );
    assert!(help.contains("TIERKV_REGIONAL_DISK_MIB"));
}

#[test]
fn bad_configs_exit_nonzero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--disk-mib", "10"], "disk_mib must be at least 64"),
        (&["--memory-mib", "0"], "memory_mib must be at least 1"),
        (&["--cache-ttl-secs", "0"], "cache_ttl_secs"),
        (&["--origin", "nowhere"], "invalid value"),
        (&["--origin-name", ""], "origin_name"),
    ];
    for (args, expected) in cases {
        let mut command = regional(dir.path());
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        assert_refused(command, expected);
    }
}

#[test]
fn serves_until_sigterm_then_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = regional(dir.path());
    // No origin is running: the regional node starts anyway and dials lazily.
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "127.0.0.1:9",
        "--disk-mib",
        "64",
    ]);
    let after = run_until_sigterm(command, "kv-regional ready");
    assert!(
        after.iter().any(|l| l.contains("QUIC server stopped")),
        "{after:?}"
    );
    assert!(
        dir.path()
            .join("cache")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "the disk cache exists"
    );
}
