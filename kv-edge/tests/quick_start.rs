//! The README's quick start, run as a new user would: start `kv-edge dev`,
//! then PUT and GET with curl; stop it with Ctrl-C (SIGINT) and start it
//! again over the same data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kv-origin/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::assert_help_lists;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `kv-edge dev`, returning it once it prints that it is ready.
fn start_dev(data_dir: &std::path::Path, port: u16) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv-edge"))
        .args(["dev", "--http", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let ready = received
        .recv_timeout(Duration::from_secs(30))
        .expect("dev prints a line when ready");
    assert!(
        ready.contains(&format!("http://127.0.0.1:{port}")),
        "{ready}"
    );
    (child, received)
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn interrupt_and_wait(mut child: Child, received: &mpsc::Receiver<String>) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (done, exited) = mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let Ok(status) = exited.recv_timeout(Duration::from_secs(30)) else {
        let _ = Command::new("kill")
            .args(["-KILL", &id.to_string()])
            .status();
        panic!("dev did not stop after Ctrl-C");
    };
    assert!(status.unwrap().success());
    let said: Vec<String> = received.try_iter().collect();
    assert!(said.iter().any(|l| l.contains("stopped")), "{said:?}");
}

#[test]
fn the_quick_start_works_and_a_second_start_reuses_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".tierkv");
    let port = free_port();
    let (child, received) = start_dev(&data, port);
    let base = format!("http://127.0.0.1:{port}");

    let put = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        "hello",
        &format!("{base}/v1/demo/greeting"),
    ]);
    assert!(put.contains("\"version\""), "{put}");
    let got = curl(&["-i", &format!("{base}/v1/demo/greeting")]);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.to_lowercase().contains("kv-tier: edge"), "{got}");
    assert!(got.ends_with("hello"), "{got}");
    interrupt_and_wait(child, &received);

    let (child, received) = start_dev(&data, port);
    let got = curl(&["-i", &format!("{base}/v1/demo/greeting")]);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        got.ends_with("hello"),
        "the value survived a restart: {got}"
    );
    let tier = got
        .lines()
        .find(|l| l.to_lowercase().starts_with("kv-tier:"))
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        tier.contains("regional-disk") || tier.contains("origin"),
        "{tier}"
    );
    interrupt_and_wait(child, &received);
}

#[test]
fn serve_help_documents_every_option_and_bad_configs_fail() {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_kv-edge"));
    serve.arg("serve");
    assert_help_lists(
        serve,
        &[
            "--config",
            "--http",
            "--regionals",
            "--regional-name",
            "--origins",
            "--origin-name",
            "--read-deadline-ms",
            "--write-deadline-ms",
            "--write-deadline-per-mib-ms",
            "--connect-timeout-ms",
            "--node-down-secs",
            "--hot-cache-mib",
            "--hot-max-value-kib",
            "--cache-ttl-secs",
            "--min-cache-ttl-secs",
            "--min-expiration-ttl-secs",
            "--ca",
            "--cert",
            "--key",
            "--dev-certs",
            "--log-format",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (vec!["--read-deadline-ms", "0"], "read_deadline_ms"),
        (vec!["--connect-timeout-ms", "0"], "connect_timeout_ms"),
        (vec!["--origins", "127.0.0.1:1,nowhere"], "invalid value"),
        (vec!["--hot-max-value-kib", "99999999"], "hot_max_value_kib"),
        (vec!["--regionals", "nowhere"], "invalid value"),
        (vec!["--regionals", "127.0.0.1:1,nowhere"], "invalid value"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kv-edge"))
            .arg("serve")
            .args(["--http", "127.0.0.1:0"])
            .arg("--dev-certs")
            .arg(dir.path().join("certs"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
