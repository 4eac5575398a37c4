//! Every dashboard panel and every rule, evaluated by a real Prometheus that
//! scrapes a real stack under load: each expression, and each series
//! selector in it, must return data, so no dashboard or alert can refer to a
//! series the binaries do not export. Every series they export is documented
//! in docs/metrics.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Prometheus, Stack, StackOptions, repo_root, scrape, scrape_job};

/// Every dashboard JSON file.
fn dashboards() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
}

/// Every panel target expression of a dashboard, with where it is.
fn panel_exprs(path: &PathBuf) -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested.iter());
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?");
                out.push((format!("{name} / {title}"), expr.to_string()));
            }
        }
    }
    out
}

/// Grafana's variables, replaced as Grafana would with "All" selected.
fn substitute_variables(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "1m")
        .replace("${__interval}", "1m")
        .replace("$__range", "5m")
        .replace("${__range}", "5m");
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr.as_str();
    while let Some(at) = rest.find(['$', '[']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let name_len = |s: &str| {
            s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len())
        };
        if let Some(inner) = tail.strip_prefix("${") {
            let end = inner.find('}').map_or(tail.len(), |e| e + 3);
            out.push_str(".*");
            rest = &tail[end.min(tail.len())..];
        } else if let Some(inner) = tail.strip_prefix("[[")
            && let Some(end) = inner.find("]]")
            && name_len(inner) == end
        {
            out.push_str(".*");
            rest = &inner[end + 2..];
        } else if let Some(inner) = tail.strip_prefix('$')
            && name_len(inner) > 0
        {
            out.push_str(".*");
            rest = &inner[name_len(inner)..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// `X > 0.05` becomes `X > bool 0.05`: an alert's expression then returns
/// data whenever its inputs exist, firing or not.
fn with_bool_comparisons(expr: &str) -> String {
    let bytes = expr.as_bytes();
    let mut out = String::with_capacity(expr.len() + 16);
    let (mut i, mut depth, mut quoted) = (0, 0i32, false);
    while i < bytes.len() {
        let c = bytes[i] as char;
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ => {}
        }
        let op_len = if quoted || depth > 0 {
            0
        } else if expr[i..].starts_with(">=")
            || expr[i..].starts_with("<=")
            || expr[i..].starts_with("==")
            || expr[i..].starts_with("!=")
        {
            2
        } else if c == '>' || c == '<' {
            1
        } else {
            0
        };
        if op_len > 0 {
            let after = expr[i + op_len..].trim_start();
            let numeric = after
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '-');
            out.push_str(&expr[i..i + op_len]);
            if numeric && !after.starts_with("bool") {
                out.push_str(" bool");
            }
            i += op_len;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Names of the series tierkv's processes export (and recording rules).
const SERIES_PREFIXES: [&str; 4] = ["tierkv_", "tierkv:", "foyer_", "process_"];

/// The vector selectors of `expr` whose metric names are tierkv's, foyer's,
/// the process's or a recording rule's: each name with its `{...}` matchers.
fn selectors(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let (mut i, mut quoted) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            _ if !quoted
                && (i == 0 || !word(bytes[i - 1]))
                && SERIES_PREFIXES.iter().any(|p| expr[i..].starts_with(p)) =>
            {
                let mut end = i + expr[i..]
                    .bytes()
                    .position(|c| !word(c))
                    .unwrap_or(expr.len() - i);
                if bytes.get(end) == Some(&b'{') {
                    let mut in_value = false;
                    end += 1;
                    while end < bytes.len() && (in_value || bytes[end] != b'}') {
                        match bytes[end] {
                            b'\\' if in_value => end += 1,
                            b'"' => in_value = !in_value,
                            _ => {}
                        }
                        end += 1;
                    }
                    end = (end + 1).min(bytes.len());
                }
                out.push(expr[i..end].to_string());
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[test]
fn selectors_are_found_outside_strings() {
    assert_eq!(
        selectors(concat!(
            r#"sum by (tier, le) (rate(tierkv_feed_lag_seconds_bucket{tier=~"regional|edge",x="}"}[5m]))"#,
            " / ignoring (tier) tierkv:edge_hit_ratio:rate5m and on () process_open_fds == 0",
        )),
        [
            r#"tierkv_feed_lag_seconds_bucket{tier=~"regional|edge",x="}"}"#,
            "tierkv:edge_hit_ratio:rate5m",
            "process_open_fds",
        ]
    );
    assert_eq!(
        selectors(r#"foyer_hybrid_op_total{name="regional", op="tierkv_x"}"#),
        [r#"foyer_hybrid_op_total{name="regional", op="tierkv_x"}"#]
    );
    assert!(selectors(r#"sum by (tier) (x{tier="tierkv_edge"})"#).is_empty());
}

#[test]
fn variables_and_comparisons_are_rewritten_as_intended() {
    assert_eq!(
        substitute_variables(
            r#"sum(rate(x{instance=~"$instance",job=~"${job}"}[$__rate_interval])) [[v]]"#
        ),
        r#"sum(rate(x{instance=~".*",job=~".*"}[1m])) .*"#
    );
    assert_eq!(substitute_variables("a[5m] offset 1h"), "a[5m] offset 1h");
    assert_eq!(
        with_bool_comparisons(r#"a{s!="ok"} > 0.05 and b >= 10 and c > d"#),
        r#"a{s!="ok"} > bool 0.05 and b >= bool 10 and c > d"#
    );
    assert_eq!(with_bool_comparisons("a < bool 1"), "a < bool 1");
}

/// Runs an instant query; `Ok(true)` when it returned at least one sample.
async fn has_data(client: &reqwest::Client, prometheus: &str, query: &str) -> Result<bool, String> {
    let response = client
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    let data = &body["data"];
    Ok(match data["resultType"].as_str() {
        Some("scalar" | "string") => true,
        _ => data["result"].as_array().is_some_and(|r| !r.is_empty()),
    })
}

/// Drives reads, writes, deletes, lists, misses, bad requests and coalesced
/// reads through the edge, for `duration`.
async fn drive_load(client: &reqwest::Client, stack: &Stack, duration: Duration) {
    let small = vec![b's'; 512];
    // Over the hot cache's 100 KiB limit: answered by the regional tier.
    let large = vec![b'l'; 150 * 1024];
    for i in 0..30 {
        let value = if i % 5 == 0 { &large } else { &small };
        let response = client
            .put(stack.url(&format!("/v1/app/key-{i}")))
            .body(value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "put key-{i}");
    }
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < duration {
        round += 1;
        for i in 0..30 {
            let response = client
                .get(stack.url(&format!("/v1/app/key-{i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "get key-{i}");
        }
        // Concurrent misses of one large key: coalesced at the edge.
        let key = format!("/v1/app/key-{}", (round % 6) * 5);
        let reads: Vec<_> = (0..8).map(|_| client.get(stack.url(&key)).send()).collect();
        for read in futures::future::join_all(reads).await {
            assert_eq!(read.unwrap().status(), 200);
        }
        let missing = client
            .get(stack.url(&format!("/v1/app/missing-{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let listed = client
            .get(stack.url("/v1/app?prefix=key-1&limit=3"))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
        let deleted = client
            .delete(stack.url(&format!("/v1/app/gone-{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
        for (request, expected) in [
            (client.get(stack.url("/v1/app?limit=0")), 400),
            (client.get(stack.url("/no/such/route")), 404),
            (client.put(stack.url("/v1/app/bad?expiration_ttl=1")), 400),
        ] {
            assert_eq!(request.send().await.unwrap().status(), expected);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every rule Prometheus loaded, as (name, query as evaluated here, health).
async fn loaded_rules(client: &reqwest::Client, prometheus: &str) -> Vec<(String, String, String)> {
    let body: Value = client
        .get(format!("{prometheus}/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rules = Vec::new();
    for group in body["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let query = rule["query"].as_str().unwrap_or_default();
            let (name, query) = match rule["type"].as_str() {
                Some("alerting") => (
                    format!("alert {}", rule["name"].as_str().unwrap_or("?")),
                    with_bool_comparisons(query),
                ),
                _ => (
                    format!("record {}", rule["name"].as_str().unwrap_or("?")),
                    query.to_string(),
                ),
            };
            let health = rule["health"].as_str().unwrap_or("?").to_string();
            rules.push((name, query, health));
        }
    }
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_and_rule_returns_data_from_a_live_stack() {
    let mut stack = Stack::start(&StackOptions {
        // Short TTLs, so that stale entries are found and refetched.
        regional_cache_ttl_secs: 2,
        edge_cache_ttl_secs: 2,
        ..StackOptions::default()
    });
    let scrape_configs = [
        scrape_job("tierkv-edge", &[stack.edge_http]),
        scrape_job("tierkv-regional", &stack.regional_metrics),
        scrape_job("tierkv-origin", &stack.origin_metrics),
    ]
    .concat();
    let rules = repo_root().join("deploy/prometheus/rules.yml");
    let prometheus = Prometheus::start(&scrape_configs, &[rules]);
    let client = reqwest::Client::new();

    // Every regional node follows both origins' change feeds, and the edge
    // both regional nodes': the writes below reach every cache that way.
    stack.wait_for_feeds(&client).await;
    drive_load(&client, &stack, Duration::from_secs(8)).await;

    // Then the object store dies: writes and cold reads fail at every tier.
    drop(stack.s3.take());
    for i in 0..10 {
        let write = client
            .put(stack.url(&format!("/v1/app/after-{i}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(write.status(), 503, "a write with no object store");
        let read = client
            .get(stack.url(&format!("/v1/app/cold-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 503, "a cold read with no object store");
    }
    // A cached key outlives the store: once its copies are past their TTL
    // (2 s here), they are served stale (stale-if-error) rather than failing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = client.get(stack.url("/v1/app/key-1")).send().await.unwrap();
        let status = read.status();
        let cache = read.headers().get("kv-cache-status").cloned();
        if status == 200 && cache.as_ref().is_some_and(|c| c == "stale") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stale answer of a cached key with the store gone: last {status}, {cache:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And one origin dies: the regional nodes stop following its feed.
    let live_origin = stack.origin_peers[0].clone();
    let dead_origin = stack.origin_peers[1].clone();
    stack.origins[1].kill();
    let regionals = stack.regional_metrics.len();

    // Every target up and the errors scraped; then every expression must
    // return data. Recording rules need a few evaluations, so retry until a
    // deadline rather than guess a delay.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut expressions: Vec<(String, String)> = Vec::new();
    for path in dashboards() {
        for (place, expr) in panel_exprs(&path) {
            expressions.push((place, substitute_variables(&expr)));
        }
    }
    assert!(
        expressions.len() >= 20,
        "too few panels: {}",
        expressions.len()
    );
    let mut failures: BTreeMap<String, String>;
    let mut selector_count;
    loop {
        failures = BTreeMap::new();
        let rules = loaded_rules(&client, &prometheus.url).await;
        if rules.is_empty() {
            failures.insert("rules".into(), "Prometheus loaded no rules".into());
        }
        let alerts = rules
            .iter()
            .filter(|(n, ..)| n.starts_with("alert"))
            .count();
        assert!(
            rules.is_empty() || alerts >= 3,
            "expected at least 3 alerts, got {alerts}"
        );
        let mut all = expressions.clone();
        for (name, query, health) in rules {
            if health != "ok" && health != "unknown" {
                failures.insert(name.clone(), format!("rule health {health}"));
            }
            all.push((name, query));
        }
        all.push((
            "edge 5xx scraped".into(),
            r#"tierkv_requests_total{tier="edge",status="unavailable"} > 0"#.into(),
        ));
        // With the store gone, the key's home regional node answers
        // `unavailable` and the edge tries the next node, then the origin.
        all.push((
            "edge failovers scraped".into(),
            r#"tierkv_failovers_total{tier="edge"} > 0"#.into(),
        ));
        // The change feed and freshness, as the new panels and alerts see them.
        all.push((
            "every regional node lost the dead origin's feed".into(),
            format!(
                r#"count(tierkv_feed_connected{{tier="regional", peer="{dead_origin}"}} == 0) == {regionals}"#
            ),
        ));
        all.push((
            "every regional node still follows the live origin's feed".into(),
            format!(
                r#"count(tierkv_feed_connected{{tier="regional", peer="{live_origin}"}} == 1) == {regionals}"#
            ),
        ));
        all.push((
            "changes applied at the regional and edge tiers".into(),
            r#"count(sum by (tier) (tierkv_feed_lag_seconds_count{tier=~"regional|edge"}) > 0) == 2"#
                .into(),
        ));
        all.push((
            "stale answers scraped".into(),
            r#"sum(tierkv_cache_status_total{status="stale"}) > 0"#.into(),
        ));
        all.push((
            "background refreshes scraped".into(),
            "sum(tierkv_refreshes_total) > 0".into(),
        ));
        // Each series selector on its own: `A or B`, `X == 0` and the like
        // must not hide a selector that matches nothing.
        let selected: BTreeSet<String> = all.iter().flat_map(|(_, q)| selectors(q)).collect();
        selector_count = selected.len();
        for selector in selected {
            all.push((format!("selector {selector}"), selector));
        }
        for (place, query) in all {
            match has_data(&client, &prometheus.url, &query).await {
                Ok(true) => {}
                Ok(false) => {
                    failures.insert(place, format!("no data: {query}"));
                }
                Err(e) => {
                    failures.insert(place, format!("{e}: {query}"));
                }
            }
        }
        if failures.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "evaluated {} dashboard expressions, every rule and {selector_count} selectors; {} returned no data",
        expressions.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} expressions returned no data:\n{}\n\nPrometheus log:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(k, v)| format!("  {k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        prometheus.log()
    );
    every_exported_family_is_documented(&client, &stack).await;
    stack.edge.kill();
}

/// Every `tierkv_*` metric family the live processes export has its row in
/// docs/metrics.md's series table, with the type it is exported as.
async fn every_exported_family_is_documented(client: &reqwest::Client, stack: &Stack) {
    let docs = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    let mut families = BTreeMap::new();
    // The dead origin's families are the live one's.
    for (name, addr) in stack.metrics_targets() {
        if name == stack.origins[1].name {
            continue;
        }
        for line in scrape(client, addr).await.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ")
                && let Some((family, kind)) = rest.split_once(' ')
                && family.starts_with("tierkv_")
            {
                families.insert(family.to_string(), kind.to_string());
            }
        }
    }
    assert!(
        families.contains_key("tierkv_feed_lag_seconds")
            && families.contains_key("tierkv_cache_status_total"),
        "the feed and freshness families are exported: {families:?}"
    );
    let undocumented: Vec<String> = families
        .iter()
        .filter(|(family, kind)| {
            !docs
                .lines()
                .any(|l| l.starts_with(&format!("| `{family}` | {kind}")))
        })
        .map(|(family, kind)| format!("{family} ({kind})"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/metrics.md's series table with their type:\n{}",
        undocumented.join("\n")
    );
}
