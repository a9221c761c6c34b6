//! The shipped alert rules and Alertmanager routes, proven with the real tools: `promtool`
//! (rule syntax and unit tests), `amtool` (config check and routing), and a running
//! Alertmanager (inhibition). The tools come from Debian's `prometheus` and
//! `prometheus-alertmanager` packages, which `scripts/test-all.sh` installs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts");

fn alerts(file: &str) -> PathBuf {
    Path::new(ALERTS).join(file)
}

/// Runs a tool and answers its combined output; panics with it when the tool fails.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(ALERTS)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (scripts/test-all.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} {args:?} failed:\n{text}");
    text
}

#[test]
fn rules_are_valid() {
    let out = run("promtool", &["check", "rules", "glitchtip.rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn rule_unit_tests_pass() {
    // Single failure silent, second fires; flapping; heartbeat; every certificate tier;
    // invalid certificate without a duplicate HTTP alert; scheduler stalled; exporter down;
    // recovery resolves. See alerts/tests/glitchtip.rules.test.yml.
    let out = run(
        "promtool",
        &["test", "rules", "tests/glitchtip.rules.test.yml"],
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn example_prometheus_config_is_valid() {
    let out = run("promtool", &["check", "config", "prometheus.example.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn example_alertmanager_config_is_valid() {
    let out = run("amtool", &["check-config", "alertmanager.example.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn dashboard_validates_against_grafanas_schema() {
    // Types generated from Grafana's schema (npm @grafana/schema, pinned in
    // grafana/package.json; `npm ci --prefix grafana` installs them) plus the checks a
    // schema cannot make. See grafana/README.md.
    let out = Command::new("node")
        .arg("../scripts/validate-dashboard.mjs")
        .current_dir(ALERTS)
        .output()
        .expect("node (scripts/test-all.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dashboard validation failed:\n{text}");
    assert!(text.contains("0 error(s)"), "{text}");
}

/// `labels → receiver`, as `amtool config routes test` resolves them.
macro_rules! route_cases {
    ($($name:ident: [$($label:literal),*] => $receiver:literal;)*) => {$(
        #[test]
        fn $name() {
            let mut args = vec!["config", "routes", "test", "--config.file=alertmanager.example.yml"];
            args.extend([$($label),*]);
            let out = run("amtool", &args);
            let receiver = out.lines().filter(|l| !l.starts_with("Warning")).collect::<Vec<_>>().join("\n");
            assert_eq!(receiver.trim(), $receiver);
        }
    )*};
}

route_cases! {
    route_check_down_pages: ["severity=critical", "alertname=GlitchTipCheckDown", "target=prod"] => "glitchtip-pager";
    route_instance_unreachable_pages: ["severity=critical", "alertname=GlitchTipInstanceUnreachable", "target=prod"] => "glitchtip-pager";
    route_heartbeat_missed_pages: ["severity=critical", "alertname=GlitchTipHeartbeatMissed", "heartbeat=worker"] => "glitchtip-pager";
    route_exporter_down_pages: ["severity=critical", "alertname=GlitchTipExporterDown"] => "glitchtip-pager";
    route_exporter_out_of_resources_pages: ["severity=critical", "alertname=GlitchTipExporterOutOfResources"] => "glitchtip-pager";
    route_flapping_to_chat: ["severity=warning", "alertname=GlitchTipCheckFlapping", "target=prod"] => "glitchtip-chat";
    route_scheduler_stalled_to_chat: ["severity=warning", "alertname=GlitchTipSchedulerStalled"] => "glitchtip-chat";
    route_certificate_30d_to_chat: ["severity=info", "tier=30d", "alertname=GlitchTipCertificateExpiresIn30Days"] => "glitchtip-chat";
    route_certificate_7d_to_chat: ["severity=warning", "tier=7d", "alertname=GlitchTipCertificateExpiresIn7Days"] => "glitchtip-chat";
    route_certificate_1d_pages: ["severity=critical", "tier=1d", "alertname=GlitchTipCertificateExpiresIn1Day"] => "glitchtip-pager";
    route_certificate_invalid_pages: ["severity=critical", "alertname=GlitchTipCertificateInvalid"] => "glitchtip-pager";
    route_info_to_tickets: ["severity=info", "alertname=SomethingElse"] => "glitchtip-tickets";
}

/// A free port on 127.0.0.1, chosen at run time.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Alertmanager with `config` on a loopback port, off the cluster network.
pub async fn start_alertmanager(config: &Path, dir: &Path) -> (Daemon, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (scripts/test-all.sh installs it)");
    let daemon = Daemon(child);
    wait_ready(addr, "/-/ready").await;
    (daemon, addr)
}

/// Polls `path` until it answers 200 (bounded: 20 s).
pub async fn wait_ready(addr: SocketAddr, path: &str) {
    for _ in 0..200 {
        if let Ok(Ok(status)) =
            tokio::time::timeout(Duration::from_secs(1), http(addr, "GET", path, None)).await
            && status.0 == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr}{path} never became ready");
}

/// One HTTP request with an optional JSON body; answers (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<String>,
) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if json.is_some() {
        req = req.header("content-type", "application/json");
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(json.unwrap_or_default())))?)
        .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn instance_unreachable_inhibits_the_per_check_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (_am, addr) = start_alertmanager(&alerts("alertmanager.example.yml"), dir.path()).await;
    let alerts = serde_json::json!([
        {"labels": {"alertname": "GlitchTipInstanceUnreachable", "severity": "critical", "target": "prod"}},
        {"labels": {"alertname": "GlitchTipCheckDown", "severity": "critical", "target": "prod", "check": "health"}},
        {"labels": {"alertname": "GlitchTipCheckDown", "severity": "critical", "target": "staging", "check": "health"}},
    ]);
    let (status, body) = http(addr, "POST", "/api/v2/alerts", Some(alerts.to_string()))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Inhibition is computed when alerts are listed; wait until all three are there.
    let mut listed = serde_json::Value::Null;
    for _ in 0..50 {
        let (_, body) = http(addr, "GET", "/api/v2/alerts", None).await.unwrap();
        listed = serde_json::from_str(&body).unwrap();
        if listed.as_array().map_or(0, Vec::len) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = |name: &str, target: &str| -> (String, usize) {
        let alert = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["alertname"] == name && a["labels"]["target"] == target)
            .unwrap_or_else(|| panic!("{name}/{target} listed: {listed}"));
        (
            alert["status"]["state"].as_str().unwrap().to_owned(),
            alert["status"]["inhibitedBy"].as_array().unwrap().len(),
        )
    };
    assert_eq!(
        state("GlitchTipCheckDown", "prod"),
        ("suppressed".to_owned(), 1)
    );
    assert_eq!(
        state("GlitchTipInstanceUnreachable", "prod"),
        ("active".to_owned(), 0)
    );
    assert_eq!(
        state("GlitchTipCheckDown", "staging"),
        ("active".to_owned(), 0),
        "another target is not inhibited"
    );
    // amtool sees the same.
    let url = format!("--alertmanager.url=http://{addr}");
    let out = run(
        "amtool",
        &[
            "alert",
            "query",
            "--inhibited",
            "-o",
            "simple",
            &url,
            "alertname=GlitchTipCheckDown",
        ],
    );
    assert!(out.contains("GlitchTipCheckDown"), "{out}");
}

/// The anchor GitHub gives a Markdown heading: lower case, punctuation other than `-` and
/// `_` dropped, spaces as `-`; a repeated heading gets `-1`, `-2`, ….
fn github_anchors(markdown: &str) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut anchors = std::collections::HashSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let heading = line.trim_start_matches('#');
        if fenced || heading.len() == line.len() || !heading.starts_with(' ') {
            continue;
        }
        let base: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(base.clone()).or_default();
        anchors.insert(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    anchors
}

#[test]
fn github_anchor_rules() {
    let anchors = github_anchors("# A b\n## A b\n```\n# not\n```\n### GlitchTipX (1, 2)\n#no\n");
    let mut anchors: Vec<_> = anchors.into_iter().collect();
    anchors.sort();
    assert_eq!(anchors, ["a-b", "a-b-1", "glitchtipx-1-2"]);
}

#[test]
fn every_alert_links_to_its_runbook_section() {
    let runbook = std::fs::read_to_string(alerts("../docs/runbook.md")).unwrap();
    let alerts: Vec<(String, serde_json::Map<String, serde_json::Value>)> = rules_as_json()
        .into_iter()
        .map(|(name, _, annotations)| (name, annotations))
        .collect();
    assert!(alerts.len() >= 20, "{alerts:?}");
    let anchors = github_anchors(&runbook);
    let base =
        "https://github.com/glitchtip-exporter/glitchtip-exporter/blob/main/docs/runbook.md#";
    for (alert, annotations) in &alerts {
        assert!(
            !annotations.contains_key("runbook"),
            "{alert}: inline runbook text instead of runbook_url"
        );
        let url = annotations
            .get("runbook_url")
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
        let anchor = url
            .strip_prefix(base)
            .unwrap_or_else(|| panic!("{alert}: runbook_url {url} does not start with {base}"));
        assert!(
            anchors.contains(anchor),
            "{alert}: docs/runbook.md has no section #{anchor}"
        );
        assert!(
            anchor == alert.to_lowercase() || alert.to_lowercase().starts_with(anchor),
            "{alert}: runbook_url points at #{anchor}, another alert's section"
        );
    }
}

/// The alert rules as JSON through PyYAML (which resolves the rules' YAML anchors):
/// `[name, expr, annotations]` per rule.
fn rules_as_json() -> Vec<(String, String, serde_json::Map<String, serde_json::Value>)> {
    let script = "import json, yaml\n\
        rules = yaml.safe_load(open('glitchtip.rules.yml'))\n\
        print(json.dumps([[r['alert'], r['expr'], r.get('annotations', {})] for g in rules['groups'] for r in g['rules']]))";
    serde_json::from_str(run("python3", &["-c", script]).trim()).expect("the script prints JSON")
}

#[test]
fn dashboard_threshold_lines_are_the_thresholds_of_their_alerts() {
    // Panel → (alert that watches its series, the comparison in that alert's expression).
    let watched: &[(&str, &str, &str)] = &[
        ("Consecutive failures", "GlitchTipCheckDown", ">= 2"),
        ("Scheduler lag", "GlitchTipSchedulerStalled", "> 300"),
        ("Ingest lag", "GlitchTipIngestLagHigh", "> 10"),
        ("Queue length", "GlitchTipQueueBacklogGrowing", ">= 10"),
        (
            "Scheduler last run (6.x)",
            "GlitchTipQueueSchedulerStalled",
            "> 60",
        ),
    ];
    let rules = rules_as_json();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(alerts("../grafana/dashboards/glitchtip-exporter.json")).unwrap(),
    )
    .unwrap();
    let red = |thresholds: &serde_json::Value| -> Vec<f64> {
        thresholds["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["color"] == "red")
            .filter_map(|s| s["value"].as_f64())
            .collect()
    };
    let mut lines = 0;
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("");
        let defaults = &panel["fieldConfig"]["defaults"];
        if defaults["custom"]["thresholdsStyle"]["mode"] != "line" {
            continue;
        }
        lines += 1;
        let (_, alert, comparison) = watched
            .iter()
            .find(|(t, _, _)| *t == title)
            .unwrap_or_else(|| panic!("panel {title:?} draws a threshold line no alert watches"));
        let value: f64 = comparison.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(red(&defaults["thresholds"]), [value], "panel {title:?}");
        let (_, expr, _) = rules.iter().find(|(name, _, _)| name == alert).unwrap();
        assert!(
            expr.contains(comparison),
            "{alert} no longer compares {comparison}: change panel {title:?} with it"
        );
        // Overrides: each red line must also be a comparison in the alert.
        for o in panel["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for p in o["properties"].as_array().unwrap() {
                if p["id"] == "thresholds" {
                    for v in red(&p["value"]) {
                        assert!(
                            expr.contains(&format!("> {v}")),
                            "panel {title:?}: override line {v} is not in {alert}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(lines, watched.len(), "every watched panel draws its line");
}
