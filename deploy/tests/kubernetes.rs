//! The Kubernetes files against the real binaries: certificates made by
//! `make-certs.sh` and the tiers' TOML from the ConfigMap carry a write and a
//! read through edge, regional node and origin, with every TLS name checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Process, free_tcp_port, free_udp_port, repo_root};

/// The text of `key` (a `key: |` block) in a ConfigMap's YAML.
fn configmap_entry(yaml: &str, key: &str) -> String {
    let header = format!("  {key}: |");
    let mut lines = yaml.lines().skip_while(|l| l.trim_end() != header);
    assert!(lines.next().is_some(), "{key} not in the ConfigMap");
    lines
        .take_while(|l| l.trim().is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect()
}

fn tls_flags(command: &mut Command, certs: &Path) {
    command
        .arg("--ca")
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(certs.join("node.pem"))
        .arg("--key")
        .arg(certs.join("node.key"));
}

#[test]
fn configmap_entries_are_valid_tier_configs() {
    let yaml = std::fs::read_to_string(repo_root().join("deploy/kubernetes/config.yaml")).unwrap();
    let origin: kv_origin::OriginConfig =
        toml::from_str(&configmap_entry(&yaml, "origin.toml")).expect("origin.toml");
    origin.validate().unwrap();
    assert!(origin.store.url.starts_with("s3://"));
    let regional: kv_regional::RegionalConfig =
        toml::from_str(&configmap_entry(&yaml, "regional.toml")).expect("regional.toml");
    regional.validate().unwrap();
    let edge: kv_edge::EdgeConfig =
        toml::from_str(&configmap_entry(&yaml, "edge.toml")).expect("edge.toml");
    edge.validate().unwrap();
    // The edges name the StatefulSet's pods, as many as it has replicas.
    let statefulset =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/regional.yaml")).unwrap();
    let replicas: usize = statefulset
        .lines()
        .find_map(|l| l.trim().strip_prefix("replicas: "))
        .and_then(|n| n.parse().ok())
        .expect("replicas");
    assert_eq!(edge.regionals.len(), replicas);
    for (n, peer) in edge.regionals.iter().enumerate() {
        assert!(
            peer.host().starts_with(&format!("regional-{n}.regional.")),
            "{peer}"
        );
    }
    // Regional nodes and edges reach the origins through the origin Service
    // (any origin serves any key), on the port the origins listen on.
    for origins in [&regional.origins, &edge.origins] {
        assert!(!origins.is_empty());
        for peer in origins {
            assert!(peer.host().starts_with("origin.tierkv.svc"), "{peer}");
            assert_eq!(peer.port(), origin.listen.port(), "{peer}");
        }
    }
    // Several origins share the bucket, rolled one at a time: that takes a
    // store with compare-and-swap (a file:// store allows one origin only).
    let deployment =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/origin.yaml")).unwrap();
    let origin_replicas: usize = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("replicas: "))
        .and_then(|n| n.parse().ok())
        .expect("origin replicas");
    assert!(origin_replicas >= 2, "origin replicas: {origin_replicas}");
    assert!(deployment.contains("type: RollingUpdate"));
    assert!(!origin.store.url.starts_with("file:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_certs_and_the_configmap_carry_a_write_and_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = Command::new("bash")
        .arg(repo_root().join("deploy/kubernetes/make-certs.sh"))
        .arg(&certs)
        .output()
        .expect("make-certs.sh runs (it needs openssl)");
    assert!(
        made.status.success(),
        "make-certs.sh failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(String::from_utf8_lossy(&made.stdout).contains("create secret generic tierkv-tls"));

    let yaml = std::fs::read_to_string(repo_root().join("deploy/kubernetes/config.yaml")).unwrap();
    for name in ["origin", "regional", "edge"] {
        let text = configmap_entry(&yaml, &format!("{name}.toml"));
        std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
    }
    // The files as they are; flags put the addresses on loopback, the store
    // in memory and the certificates in the temp dir. The TLS names
    // (origin_name, regional_name) are the ConfigMap's own.
    let origin_quic = free_udp_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tierkv-origin"));
    command
        .arg("--config")
        .arg(dir.path().join("origin.toml"))
        .args(["--listen", &format!("127.0.0.1:{origin_quic}")])
        .args(["--metrics", &format!("127.0.0.1:{}", free_tcp_port())])
        .args(["--store", "memory:///"]);
    tls_flags(&mut command, &certs);
    let mut origin = Process::start("origin", command);
    origin.wait_for_line("kv-origin ready", Duration::from_secs(30));

    let regional_quic = free_udp_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tierkv-regional"));
    command
        .arg("--config")
        .arg(dir.path().join("regional.toml"))
        .args(["--listen", &format!("127.0.0.1:{regional_quic}")])
        .args(["--metrics", &format!("127.0.0.1:{}", free_tcp_port())])
        .args(["--origins", &format!("localhost:{origin_quic}")])
        .args(["--memory-mib", "16", "--disk-mib", "64"])
        .arg("--data-dir")
        .arg(dir.path().join("cache"));
    tls_flags(&mut command, &certs);
    let mut regional = Process::start("regional", command);
    regional.wait_for_line("kv-regional ready", Duration::from_secs(30));

    let http = format!("127.0.0.1:{}", free_tcp_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_tierkv-edge"));
    command
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("edge.toml"))
        .args(["--http", &http])
        .args(["--regionals", &format!("localhost:{regional_quic}")])
        .args(["--origins", &format!("localhost:{origin_quic}")]);
    tls_flags(&mut command, &certs);
    let mut edge = Process::start("edge", command);
    edge.wait_for_line("kv-edge ready", Duration::from_secs(30));

    let client = reqwest::Client::new();
    let ready = client
        .get(format!("http://{http}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "the edge reaches its upstream");
    let put = client
        .put(format!("http://{http}/v1/k8s/greeting"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    // A large value skips the edge's hot cache: the regional node answers.
    let large = vec![b'x'; 200 * 1024];
    let put = client
        .put(format!("http://{http}/v1/k8s/large"))
        .body(large.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let read = client
        .get(format!("http://{http}/v1/k8s/large"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["kv-tier"], "regional-memory");
    assert_eq!(read.bytes().await.unwrap().len(), large.len());
    // JSON logs, as the ConfigMap asks.
    assert!(
        edge.json_lines()
            .iter()
            .any(|l| l["message"] == "kv-edge ready"),
        "edge logs are JSON"
    );
}
