//! The Kubernetes files against the real binaries: certificates made by
//! `make-certs.sh` and the tiers' TOML from the ConfigMap carry a write and a
//! read through edge, regional node and origin, with every TLS name checked
//! and every change feed followed. The peer lists name every replica of the
//! StatefulSets, and every workload keeps its safety properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Process, feed_series, free_tcp_port, free_udp_port, repo_root, wait_for_gauges};

fn manifest(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("deploy/kubernetes").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The YAML documents of a manifest, split at `---`.
fn documents(yaml: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            out.push(String::new());
        } else {
            let last = out.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    out
}

/// The value of the first `key: value` line of a document (comments
/// skipped), without quotes.
fn field<'a>(document: &'a str, key: &str) -> Option<&'a str> {
    document
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim().trim_matches('"'))
}

/// The names a StatefulSet's pods have behind its headless Service, one per
/// replica in ordinal order, as `host:port`: what a peer list must hold.
fn statefulset_peers(file: &str, port: u16) -> Vec<String> {
    let documents = documents(&manifest(file));
    let statefulset = documents
        .iter()
        .find(|d| field(d, "kind") == Some("StatefulSet"))
        .unwrap_or_else(|| panic!("{file}: no StatefulSet"));
    let value = |key| field(statefulset, key).unwrap_or_else(|| panic!("{file}: no {key}"));
    let (name, namespace, service) = (value("name"), value("namespace"), value("serviceName"));
    let replicas: usize = value("replicas").parse().expect("replicas");
    let headless = documents
        .iter()
        .find(|d| field(d, "kind") == Some("Service") && field(d, "name") == Some(service));
    assert_eq!(
        headless.and_then(|d| field(d, "clusterIP")),
        Some("None"),
        "{file}: Service {service} must be headless, to give each pod its name"
    );
    (0..replicas)
        .map(|n| format!("{name}-{n}.{service}.{namespace}.svc.cluster.local:{port}"))
        .collect()
}

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
    // Peers by the StatefulSets' pod names, every replica in ordinal order:
    // the edges list the regional nodes (each key's home comes from these
    // names), and regional nodes and edges list the origins. Each origin
    // publishes only the writes it commits on its own change feed, and a
    // regional node follows the feed of every origin it lists: an origin
    // left out is one whose writes it misses until its copies expire.
    let listed = |peers: &[kv_runtime::quic::PeerAddr]| -> Vec<String> {
        peers.iter().map(ToString::to_string).collect()
    };
    assert_eq!(
        listed(&edge.regionals),
        statefulset_peers("regional.yaml", regional.listen.port()),
        "edge.toml: regionals must name every regional replica"
    );
    let origins = statefulset_peers("origin.yaml", origin.listen.port());
    assert!(origins.len() >= 2, "origin replicas: {origins:?}");
    assert_eq!(
        listed(&regional.origins),
        origins,
        "regional.toml: origins must name every origin replica"
    );
    assert_eq!(
        listed(&edge.origins),
        origins,
        "edge.toml: origins must name every origin replica"
    );
    // Several origins share the bucket, rolled one at a time: that takes a
    // store with compare-and-swap (a file:// store allows one origin only).
    let origin_yaml = manifest("origin.yaml");
    assert!(!origin.store.url.starts_with("file:"));
    assert!(
        documents(&origin_yaml)
            .iter()
            .all(|d| field(d, "kind") != Some("Deployment")),
        "origin.yaml: the origins are a StatefulSet only"
    );
    assert_eq!(
        field(&origin_yaml, "type"),
        Some("RollingUpdate"),
        "origin.yaml: rolled one at a time"
    );
}

/// What every workload keeps: no service-account token, pods spread over
/// machines, probes, a locked-down container, and a rolling update.
#[test]
fn workloads_keep_their_safety_properties() {
    for file in ["origin.yaml", "regional.yaml", "edge.yaml"] {
        let yaml = manifest(file);
        for property in [
            "automountServiceAccountToken: false",
            "podAntiAffinity:",
            "topologyKey: kubernetes.io/hostname",
            "readinessProbe:",
            "livenessProbe:",
            "runAsNonRoot: true",
            "seccompProfile: {type: RuntimeDefault}",
            "allowPrivilegeEscalation: false",
            "readOnlyRootFilesystem: true",
            "capabilities: {drop: [ALL]}",
            "secret: {secretName: tierkv-tls, defaultMode: 0440}",
            "prometheus.io/scrape: \"true\"",
        ] {
            assert!(yaml.contains(property), "{file}: lost {property:?}");
        }
        // The default update strategy of both kinds is a rolling update:
        // nothing may ask for another.
        assert!(
            !yaml.contains("OnDelete") && !yaml.contains("Recreate"),
            "{file}"
        );
    }
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
    let regional_metrics: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tierkv-regional"));
    command
        .arg("--config")
        .arg(dir.path().join("regional.toml"))
        .args(["--listen", &format!("127.0.0.1:{regional_quic}")])
        .args(["--metrics", &regional_metrics.to_string()])
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
    // The change feeds, over the same mutual TLS: the regional node follows
    // the origin's, the edge the regional node's.
    let followed = [
        (
            regional_metrics,
            feed_series("regional", &format!("localhost:{origin_quic}")),
        ),
        (
            http.parse().unwrap(),
            feed_series("edge", &format!("localhost:{regional_quic}")),
        ),
    ];
    wait_for_gauges(&client, &followed, Duration::from_secs(30)).await;
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
