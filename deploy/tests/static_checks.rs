//! Checks of the deployment files that need no running stack: promtool on the
//! Prometheus config and rules (with the rules' unit tests), the dashboards'
//! JSON, and every flag and variable the manifests pass to the binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{repo_root, which};

fn promtool(args: &[&str], dir: &Path) {
    let output = Command::new(which("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let dir = repo_root().join("deploy/prometheus");
    promtool(&["check", "config", "prometheus.yml"], &dir);
    promtool(&["check", "rules", "rules.yml"], &dir);
    // Each alert fires on a bad series and stays quiet on a healthy one.
    promtool(&["test", "rules", "rules.test.yml"], &dir);
}

fn files_under(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dashboards_are_valid_with_unique_ids() {
    let dashboards = files_under(&repo_root().join("deploy/grafana/dashboards"), "json");
    assert!(
        dashboards.len() >= 4,
        "expected the overview and one dashboard per tier"
    );
    let mut uids = HashSet::new();
    for path in dashboards {
        let name = path.display().to_string();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
        let uid = dashboard["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no uid"));
        assert!(uids.insert(uid.to_string()), "{name}: uid {uid} used twice");
        assert!(dashboard["title"].is_string(), "{name}: no title");
        let mut ids = HashSet::new();
        let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
        assert!(!panels.is_empty(), "{name}: no panels");
        while let Some(panel) = panels.pop() {
            if let Some(nested) = panel["panels"].as_array() {
                panels.extend(nested.iter());
            }
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: a panel without an integer id: {panel}"));
            assert!(ids.insert(id), "{name}: panel id {id} used twice");
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array();
            assert!(
                targets.is_some_and(|t| t.iter().all(|t| t["expr"].is_string())),
                "{name}: panel {id} has no PromQL targets"
            );
            let source = &panel["datasource"];
            assert!(
                source.is_null()
                    || source["uid"] == "prometheus"
                    || source["uid"] == "${datasource}",
                "{name}: panel {id} uses datasource {source}"
            );
        }
    }
}

/// The `--help` text of every binary (and of `kv-edge serve` and `dev`).
fn help_texts() -> String {
    let runs: [(&str, &[&str]); 4] = [
        (env!("CARGO_BIN_EXE_tierkv-origin"), &["--help"]),
        (env!("CARGO_BIN_EXE_tierkv-regional"), &["--help"]),
        (env!("CARGO_BIN_EXE_tierkv-edge"), &["serve", "--help"]),
        (env!("CARGO_BIN_EXE_tierkv-edge"), &["dev", "--help"]),
    ];
    runs.iter()
        .map(|(binary, args)| {
            let output = Command::new(binary).args(*args).output().unwrap();
            assert!(output.status.success());
            String::from_utf8(output.stdout).unwrap()
        })
        .collect()
}

/// Tokens that start with `prefix` and continue with characters `keep` allows.
fn tokens(text: &str, prefix: &str, keep: impl Fn(char) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at + prefix.len()..];
        let len = tail.find(|c: char| !keep(c)).unwrap_or(tail.len());
        if len > 0 {
            out.insert(format!("{prefix}{}", &tail[..len]));
        }
        rest = &tail[len..];
    }
    out
}

#[test]
fn manifests_pass_only_flags_and_variables_the_binaries_know() {
    let help = help_texts();
    let deploy = repo_root().join("deploy");
    let mut files = vec![deploy.join("docker-compose.yml")];
    files.extend(files_under(&deploy.join("kubernetes"), "yaml"));
    files.extend(files_under(&deploy.join("kubernetes"), "toml"));
    let mut unknown = Vec::new();
    let mut checked = 0;
    for path in files {
        // Comments may quote other tools' flags (curl, kubectl): skip them.
        let text: String = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .map(|line| format!("{line}\n"))
            .collect();
        // `--` then a word: YAML's `---` and PEM's `-----` are not flags.
        let flags: BTreeSet<String> = tokens(&text, "--", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })
        .into_iter()
        .filter(|t| t.as_bytes().get(2).is_some_and(u8::is_ascii_lowercase))
        .collect();
        let variables = tokens(&text, "TIERKV_", |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
        });
        for token in flags.iter().chain(variables.iter()) {
            // Flags of other programs (minio, prometheus, grafana) take a dot or
            // an equals sign; ours are plain words.
            let ours = token.starts_with("TIERKV_") || !text.contains(&format!("{token}."));
            if !ours {
                continue;
            }
            checked += 1;
            let known = help.contains(&format!("{token} "))
                || help.contains(&format!("{token}\n"))
                || help.contains(&format!("{token}="))
                || help.contains(&format!("{token}]"))
                || help.contains(&format!("{token},"));
            if !known && !OTHER_PROGRAMS_FLAGS.contains(&token.as_str()) {
                unknown.push(format!("{}: {token}", path.display()));
            }
        }
    }
    assert!(checked > 10, "too few flags found to check: {checked}");
    assert!(
        unknown.is_empty(),
        "flags or variables no binary knows:\n{}",
        unknown.join("\n")
    );
}

/// Flags in the manifests that belong to the third-party containers.
const OTHER_PROGRAMS_FLAGS: &[&str] = &["--console-address", "--config", "--web", "--storage"];

/// The values of every `--flag=a,b` (comma-separated) in `text`.
fn flag_lists(text: &str, flag: &str) -> Vec<BTreeSet<String>> {
    let prefix = format!("{flag}=");
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix(&prefix))
        .map(|v| v.split(',').map(|p| p.trim().to_string()).collect())
        .collect()
}

/// The compose command list that runs `binary`: its lines from `- binary`
/// to the end of the list.
fn command_of(compose: &str, binary: &str) -> String {
    compose
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != format!("- {binary}"))
        .take_while(|l| l.starts_with("- "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The port of `--flag=HOST:PORT` in the command that runs `binary`.
fn port_of(compose: &str, binary: &str, flag: &str) -> String {
    flag_lists(&command_of(compose, binary), flag)
        .first()
        .and_then(|v| v.first()?.rsplit_once(':').map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| panic!("{binary}: no {flag}"))
}

/// Compose lists every origin in each regional node's and edge's
/// `--origins` (a regional node follows the change feed of each origin it
/// lists, and each origin publishes only its own writes), every regional
/// node in each edge's `--regionals`, and Prometheus scrapes them all.
#[test]
fn compose_lists_every_origin_and_regional_node() {
    let deploy = repo_root().join("deploy");
    let compose = std::fs::read_to_string(deploy.join("docker-compose.yml")).unwrap();
    let prometheus = std::fs::read_to_string(deploy.join("prometheus/prometheus.yml")).unwrap();
    // Services: the keys indented once under `services:`.
    let services: Vec<&str> = compose
        .lines()
        .skip_while(|l| *l != "services:")
        .take_while(|l| l.is_empty() || l.starts_with(' ') || *l == "services:")
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|name| !name.starts_with([' ', '#']))
        .collect();
    let named = |prefix: &str| -> Vec<&str> {
        services
            .iter()
            .copied()
            .filter(|s| s.starts_with(prefix))
            .collect()
    };
    let (origins, regionals) = (named("origin-"), named("regional-"));
    assert!(
        origins.len() >= 2,
        "compose runs several origins: {services:?}"
    );
    assert!(
        !regionals.is_empty(),
        "compose runs regional nodes: {services:?}"
    );
    let peers = |names: &[&str], binary| -> BTreeSet<String> {
        let port = port_of(&compose, binary, "--listen");
        names.iter().map(|n| format!("{n}:{port}")).collect()
    };
    for (binary, flag, expected) in [
        ("kv-regional", "--origins", peers(&origins, "kv-origin")),
        ("kv-edge", "--origins", peers(&origins, "kv-origin")),
        ("kv-edge", "--regionals", peers(&regionals, "kv-regional")),
    ] {
        let lists = flag_lists(&command_of(&compose, binary), flag);
        assert_eq!(lists, [expected], "{binary} {flag} must name every node");
    }
    for (names, binary) in [(&origins, "kv-origin"), (&regionals, "kv-regional")] {
        let port = port_of(&compose, binary, "--metrics");
        for name in names {
            assert!(
                prometheus.contains(&format!("'{name}:{port}'")),
                "prometheus.yml does not scrape {name}:{port}"
            );
        }
    }
}
