//! The `kv-origin` binary as an operator runs it: config errors, readiness, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{
    assert_help_lists, assert_refused, free_tcp_port, http_get, run_until_sigterm, while_serving,
};

fn origin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kv-origin"));
    command
        .env("RUST_LOG", "info")
        .env_remove("TIERKV_ORIGIN_STORE");
    command
}

#[test]
fn help_documents_every_option() {
    let help = assert_help_lists(
        origin(),
        &[
            "--config",
            "--listen",
            "--metrics",
            "--store",
            "--s3-endpoint",
            "--s3-region",
            "--s3-access-key-id",
            "--s3-secret-access-key",
            "--s3-allow-http",
            "--store-timeout-ms",
            "--store-retries",
            "--write-id-window-secs",
            "--sweep-retention-secs",
            "--sweep-interval-secs",
            "--sweep-max-per-sec",
            "--ca",
            "--cert",
            "--key",
            "--dev-certs",
            "--log-format",
            "--otlp-endpoint",
        ],
    );
    assert!(
        help.contains("TIERKV_ORIGIN_STORE"),
        "--help names the environment variables"
    );
}

#[test]
fn bad_configs_exit_nonzero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(dir.path().join("typo.toml"), "listne = \"127.0.0.1:1\"\n").unwrap();
    std::fs::write(dir.path().join("broken.toml"), "listen = [\n").unwrap();
    let certs = path("certs");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--store".into(),
                "ftp://nowhere".into(),
                "--dev-certs".into(),
                certs.clone(),
            ],
            "unsupported store scheme",
        ),
        (
            vec!["--listen".into(), "not-an-address".into()],
            "invalid value",
        ),
        (
            vec![
                "--sweep-retention-secs".into(),
                "60".into(),
                "--dev-certs".into(),
                certs.clone(),
            ],
            "sweep_retention_secs",
        ),
        (
            vec![
                "--write-id-window-secs".into(),
                "0".into(),
                "--dev-certs".into(),
                certs.clone(),
            ],
            "write_id_window_secs",
        ),
        (
            vec![
                "--store-retries".into(),
                "99".into(),
                "--dev-certs".into(),
                certs.clone(),
            ],
            "store.retries",
        ),
        (
            vec!["--config".into(), path("missing.toml")],
            "cannot read config file",
        ),
        (vec!["--config".into(), path("typo.toml")], "unknown field"),
        (
            vec!["--config".into(), path("broken.toml")],
            "invalid config file",
        ),
        (
            vec!["--log-format".into(), "xml".into()],
            "unknown log format",
        ),
        (vec!["--metrics".into(), "nowhere".into()], "invalid value"),
        (
            vec![
                "--ca".into(),
                path("none.pem"),
                "--cert".into(),
                path("none.pem"),
                "--key".into(),
                path("none.key"),
            ],
            "none.pem",
        ),
        (
            vec!["--ca".into(), path("none.pem")],
            "--ca, --cert and --key",
        ),
    ];
    for (args, expected) in cases {
        let mut command = origin();
        // The environment supplies a store; a flag overrides it.
        command.env("TIERKV_ORIGIN_STORE", "memory:///").args(&args);
        if !args.contains(&"--listen".to_string()) {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        assert_refused(command, expected);
    }
}

#[test]
fn serves_until_sigterm_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = origin();
    command
        .args(["--listen", "127.0.0.1:0", "--store", "memory:///"])
        .arg("--dev-certs")
        .arg(dir.path().join("certs"));
    let after = run_until_sigterm(command, "kv-origin ready");
    assert!(
        after.iter().any(|l| l.contains("QUIC server stopped")),
        "{after:?}"
    );
}

#[test]
fn serves_prometheus_metrics_on_the_metrics_address() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let mut command = origin();
    command
        .args(["--listen", "127.0.0.1:0", "--store", "memory:///"])
        .args(["--metrics", &metrics.to_string()])
        .arg("--dev-certs")
        .arg(dir.path().join("certs"));
    while_serving(command, "kv-origin ready", || {
        let (status, body) = http_get(metrics, "/metrics");
        assert_eq!(status, 200);
        for series in [
            r#"tierkv_build_info{tier="origin""#,
            r#"tierkv_requests_total{op="get",status="ok",tier="origin"} 0"#,
            r#"tierkv_object_store_requests_total{op="put",status="ok"} 0"#,
            r#"tierkv_coalesced_total{tier="origin"} 0"#,
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(body.contains(series), "{series} missing from\n{body}");
        }
        let (status, body) = http_get(metrics, "/nope");
        assert_eq!(status, 404);
        assert!(body.contains(r#""code":"not_found""#), "{body}");
    });
}

#[test]
fn a_taken_metrics_address_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = origin();
    command
        .args(["--listen", "127.0.0.1:0", "--store", "memory:///"])
        .args(["--metrics", &taken.local_addr().unwrap().to_string()])
        .arg("--dev-certs")
        .arg(dir.path().join("certs"));
    assert_refused(command, "cannot bind metrics");
}
