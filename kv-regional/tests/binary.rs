//! The `kv-regional` binary as an operator runs it: config errors, readiness, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::process::Command;

use support::{
    assert_help_lists, assert_refused, free_tcp_port, http_get, run_until_sigterm, while_serving,
};

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
            "--metrics",
            "--origins",
            "--origin-name",
            "--connect-timeout-ms",
            "--node-down-secs",
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
            "--otlp-endpoint",
        ],
    );
    assert!(help.contains("TIERKV_REGIONAL_DISK_MIB"));
}

#[test]
fn bad_configs_exit_nonzero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--disk-mib", "10"], "disk_mib must be at least 64"),
        (&["--memory-mib", "0"], "memory_mib must be at least 1"),
        (&["--cache-ttl-secs", "0"], "cache_ttl_secs"),
        (&["--origin", "nowhere"], "invalid value"),
        (
            &["--origin", "bad host:7400"],
            "neither an IP address nor a DNS name",
        ),
        (&["--metrics", "localhost"], "invalid value"),
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

#[test]
fn serves_its_own_and_foyers_metrics_on_the_metrics_address() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let mut command = regional(dir.path());
    command
        .args(["--listen", "127.0.0.1:0", "--origin", "localhost:9"])
        .args(["--metrics", &metrics.to_string(), "--disk-mib", "64"]);
    while_serving(command, "kv-regional ready", || {
        let (status, body) = http_get(metrics, "/metrics");
        assert_eq!(status, 200);
        for series in [
            r#"tierkv_build_info{tier="regional""#,
            r#"tierkv_cache_capacity_bytes{tier="regional-disk"} 67108864"#,
            r#"tierkv_cache_lookups_total{result="stale",tier="regional-memory"} 0"#,
            r#"tierkv_upstream_requests_total{from="regional",status="timeout",to="origin"} 0"#,
            r#"tierkv_quic_connections{direction="outbound",peer="localhost:9"} 0"#,
            r#"foyer_storage_block_engine_block_size_bytes{name="regional"}"#,
            "process_cpu_seconds_total ",
        ] {
            assert!(body.contains(series), "{series} missing from\n{body}");
        }
        let (status, _) = http_get(metrics, "/healthz");
        assert_eq!(status, 200);
    });
}
