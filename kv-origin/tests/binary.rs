//! The `kv-origin` binary as an operator runs it: config errors, readiness, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{assert_help_lists, assert_refused, run_until_sigterm};

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
            "--store",
            "--s3-endpoint",
            "--s3-region",
            "--s3-access-key-id",
            "--s3-secret-access-key",
            "--s3-allow-http",
            "--store-timeout-ms",
            "--store-retries",
            "--ca",
            "--cert",
            "--key",
            "--dev-certs",
            "--log-format",
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
