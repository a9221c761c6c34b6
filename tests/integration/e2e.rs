//! End to end with the real servers on loopback: the exporter (interval mode, shipped
//! defaults) watching a stub GlitchTip over TLS (a test CA) with a heartbeat configured, an
//! ingest canary against a stub of the ingest pipeline, and a real Redis with GlitchTip
//! 6.x's keys;
//! Prometheus with the bundled rules and the example scrape timing (15 s); Alertmanager
//! with the example routes sending to a local webhook receiver.
//!
//! Shows that every series the rules and the dashboard use is really exported, that every
//! dashboard query returns data, that one failed probe fires nothing, and that a broken
//! health endpoint reaches the webhook as `GlitchTipCheckDown` — printing how long that took.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::alerting::{Daemon, free_port, http, start_alertmanager, wait_ready};
use crate::helpers::{self, TEST_HOST};
use crate::queue::{ADMIN_PASSWORD, Redis};
use crate::stub::{Behavior, Scenario, StubGlitchTip};
use crate::stub_ingest::{self, Mode as IngestMode, StubIngest};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A test CA and a leaf for [`TEST_HOST`]: (CA PEM, leaf chain PEM, leaf key PEM).
fn test_pki() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "glitchtip-exporter e2e CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![TEST_HOST.to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// Terminates TLS on 127.0.0.1:0 and forwards the plain bytes to `backend`.
async fn tls_front(backend: SocketAddr, chain_pem: &str, key_pem: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<_> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// A webhook receiver: every POST body, with the time it arrived.
async fn start_webhook() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(Instant, serde_json::Value)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .fallback(
            |State(tx): State<mpsc::UnboundedSender<(Instant, serde_json::Value)>>,
             body: String| async move {
                let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                let _ = tx.send((Instant::now(), value));
                "ok"
            },
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, rx)
}

async fn start_prometheus(
    dir: &Path,
    exporter: SocketAddr,
    alertmanager: SocketAddr,
) -> (Daemon, SocketAddr) {
    // The example config, pointed at this run's ports.
    let example =
        std::fs::read_to_string(Path::new(REPO).join("alerts/prometheus.example.yml")).unwrap();
    let config = example
        .replace("127.0.0.1:9093", &alertmanager.to_string())
        .replace("127.0.0.1:10099", &exporter.to_string())
        .replace(
            "  - glitchtip.rules.yml",
            &format!("  - {REPO}/alerts/glitchtip.rules.yml"),
        );
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (scripts/test-all.sh installs it)");
    let daemon = Daemon(child);
    wait_ready(addr, "/-/ready").await;
    (daemon, addr)
}

/// An instant query; answers the result vector.
async fn query(prometheus: SocketAddr, expr: &str) -> Vec<serde_json::Value> {
    let encoded: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let (status, body) = http(
        prometheus,
        "GET",
        &format!("/api/v1/query?query={encoded}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{expr}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    match &v["data"]["result"] {
        serde_json::Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// Waits (bounded) until `expr` returns at least one series.
async fn wait_for(prometheus: SocketAddr, expr: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !query(prometheus, expr).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{expr} returned nothing within {within:?}");
}

/// Metric names used in `text` (rules, dashboard).
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b(glitchtip_[a-z_]+|process_[a-z_]+)").unwrap();
    re.find_iter(text)
        .map(|m| m.as_str().to_owned())
        // Alert names and label values are not metrics.
        .filter(|n| !n.ends_with('_'))
        .collect()
}

/// The dashboard's queries with variables substituted, from the validator.
fn dashboard_queries() -> Vec<(String, String)> {
    let out = Command::new("node")
        .arg(Path::new(REPO).join("scripts/validate-dashboard.mjs"))
        .arg("--print-queries")
        .output()
        .expect("node (scripts/test-all.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["panel"].as_str().unwrap().to_owned(),
                v["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_health_endpoint_reaches_the_webhook_after_two_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, chain_pem, key_pem) = test_pki();
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.path().join("heartbeat-token"), "e2e-heartbeat-token\n").unwrap();

    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    // The ingest pipeline (canary) and GlitchTip 6.x's Valkey keys (queue reader).
    let ingest = StubIngest::start(IngestMode::Healthy {
        visible_after: Duration::from_millis(200),
    })
    .await;
    std::fs::write(dir.path().join("dsn"), ingest.dsn()).unwrap();
    std::fs::write(dir.path().join("canary-token"), stub_ingest::TOKEN).unwrap();
    let redis = Arc::new(Redis::start().await);
    std::fs::write(dir.path().join("redis-password"), ADMIN_PASSWORD).unwrap();
    redis.run(&["RPUSH", "{vt}:q:default", "t1", "t2"]).await;
    redis.run(&["RPUSH", "{vt}:q:ingest", "e1"]).await;
    redis.run(&["RPUSH", "{vt}:q:failed", "f1"]).await;
    // The scheduler runs uptime-dispatch-checks every second (6.x): keep doing so.
    let scheduler = {
        let redis = redis.clone();
        tokio::spawn(async move {
            loop {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
                for task in ["uptime-dispatch-checks", "send-alert-notifications"] {
                    let key = format!("{{vt}}:scheduler:vtasks_last_run:{task}");
                    redis.run(&["SET", &key, &now.to_string()]).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    redis
        .run(&["SET", "{vt}:alive:worker-1-101", "1", "EX", "600"])
        .await;
    let front = tls_front(stub.addr(), &chain_pem, &key_pem).await;
    let toml = format!(
        r#"
[server]
state_file = "{state}"

[targets.gt]
url = "https://{TEST_HOST}:{port}"
[targets.gt.tls]
ca_file = "{ca}"

[targets.gt.queue]
url = "redis://127.0.0.1:{redis_port}/0"
password = {{ file = "{redis_password}" }}
layout = "vtasks"
workers = true

[targets.ingest]
url = "{ingest_url}"
default_checks = false
[targets.ingest.canary]
dsn = {{ file = "{dsn}" }}
token = {{ file = "{canary_token}" }}
organization = "{org}"

[heartbeats.worker]
target = "gt"
interval = "5m"
token = {{ file = "{token}" }}
"#,
        port = front.port(),
        ca = dir.path().join("ca.pem").display(),
        token = dir.path().join("heartbeat-token").display(),
        state = dir.path().join("state.json").display(),
        redis_port = redis.port,
        redis_password = dir.path().join("redis-password").display(),
        ingest_url = ingest.url(),
        dsn = dir.path().join("dsn").display(),
        canary_token = dir.path().join("canary-token").display(),
        org = stub_ingest::ORG,
    );
    // Real wall clock: Prometheus compares the exporter's timestamps with its own.
    let (mut deps, _manual) = helpers::deps();
    deps.clock = Arc::new(glitchtip_exporter::clock::SystemClock);
    let exporter = helpers::start(&toml, deps).await;
    let ping = exporter
        .get("/heartbeat/worker?token=e2e-heartbeat-token")
        .await;
    assert_eq!(ping.status, 200, "{}", ping.body);

    let (webhook, mut notifications) = start_webhook().await;
    let am_config =
        std::fs::read_to_string(Path::new(REPO).join("alerts/alertmanager.example.yml"))
            .unwrap()
            .replace("127.0.0.1:5001", &webhook.to_string());
    let am_file = dir.path().join("alertmanager.yml");
    std::fs::write(&am_file, am_config).unwrap();
    let (_am, am) = start_alertmanager(&am_file, dir.path()).await;
    let (_prom, prom) = start_prometheus(dir.path(), exporter.addr, am).await;

    // Healthy first: every check up, as Prometheus sees it.
    wait_for(
        prom,
        r#"glitchtip_up{check="dashboard"} == 1"#,
        Duration::from_secs(60),
    )
    .await;
    wait_for(
        prom,
        r#"glitchtip_up{check="tls"} == 1"#,
        Duration::from_secs(30),
    )
    .await;
    wait_for(
        prom,
        r#"glitchtip_heartbeat_up == 1"#,
        Duration::from_secs(30),
    )
    .await;
    wait_for(prom, r#"glitchtip_queue_up == 1"#, Duration::from_secs(30)).await;
    // The canary runs every 30 s, its first run spread within that.
    wait_for(prom, r#"glitchtip_ingest_up == 1"#, Duration::from_secs(75)).await;

    // Every metric the rules and the dashboard use is in the exporter's output.
    let exported = exporter.get("/metrics").await.body;
    let rules =
        std::fs::read_to_string(Path::new(REPO).join("alerts/glitchtip.rules.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(Path::new(REPO).join("grafana/dashboards/glitchtip-exporter.json"))
            .unwrap();
    for name in metric_names(&rules).union(&metric_names(&dashboard)) {
        assert!(
            exported.lines().any(|l| l.starts_with(name.as_str())),
            "{name} is used by the rules or dashboard but not exported"
        );
    }
    // Every dashboard query returns data from this Prometheus: rate() and increase()
    // need two samples of a series, so wait for the second scrape first.
    wait_for(
        prom,
        r#"count_over_time(process_cpu_seconds_total{job="glitchtip-exporter"}[5m]) >= 2"#,
        Duration::from_secs(40),
    )
    .await;
    // Every dashboard query returns data from this Prometheus.
    // A series that appeared with the last scrape (the canary's counter after its first
    // run) needs one more scrape for increase(): give each query up to 40 s.
    for (panel, expr) in dashboard_queries() {
        let deadline = Instant::now() + Duration::from_secs(40);
        while query(prom, &expr).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "dashboard panel {panel:?}: {expr} returned nothing"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // A healthy installation fires nothing at all: no false alarm.
    let firing = query(prom, r#"ALERTS{alertstate="firing"}"#).await;
    assert!(firing.is_empty(), "alerts firing while healthy: {firing:?}");

    // One failed probe fires nothing: break /_health/ for exactly one probe.
    stub.set_behavior(
        "/_health/",
        Behavior::Status {
            status: 503,
            content_type: "text/plain",
            body: "down".into(),
        },
    );
    let failed_once = |m: &crate::helpers::Samples| {
        m.find(
            "glitchtip_probes_total",
            &[("check", "health"), ("result", "failure")],
        )
        .first()
        .is_some_and(|(_, v)| *v >= 1.0)
    };
    let until = Instant::now() + Duration::from_secs(30);
    while !failed_once(&exporter.metrics().await) {
        assert!(
            Instant::now() < until,
            "the health check never probed the broken endpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Healthy again before the quick re-probe, 3 s later.
    stub.clear_behavior("/_health/");
    // Two evaluation rounds (and the quick re-probe in between) later, nothing fired.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let failures = query(
        prom,
        r#"max(glitchtip_probes_total{check="health",result="failure"})"#,
    )
    .await;
    assert_eq!(
        failures[0]["value"][1], "1",
        "exactly one failed probe happened"
    );
    assert!(
        query(prom, r#"ALERTS{alertname="GlitchTipCheckDown"}"#)
            .await
            .is_empty(),
        "a single failure must not fire"
    );
    assert_eq!(
        query(prom, r#"max(glitchtip_check_down_total{check="health"})"#).await[0]["value"][1],
        "0"
    );
    while let Ok((_, n)) = notifications.try_recv() {
        assert!(
            !n.to_string().contains("GlitchTipCheckDown"),
            "no notification for one failure: {n}"
        );
    }

    // Now break it for good, and time the way to the webhook.
    let broken_at = Instant::now();
    stub.set_behavior(
        "/_health/",
        Behavior::Status {
            status: 503,
            content_type: "text/plain",
            body: "down".into(),
        },
    );
    let (arrived, body) = loop {
        let (at, body) = tokio::time::timeout(Duration::from_secs(120), notifications.recv())
            .await
            .expect("the alert reaches the webhook within 120 s")
            .unwrap();
        if body.to_string().contains("GlitchTipCheckDown") {
            break (at, body);
        }
    };
    let elapsed = arrived - broken_at;
    println!(
        "e2e: health endpoint broken → GlitchTipCheckDown at the webhook in {:.1} s",
        elapsed.as_secs_f64()
    );
    assert_eq!(body["status"], "firing");
    let alert = &body["alerts"][0];
    assert_eq!(alert["labels"]["target"], "gt");
    assert_eq!(alert["labels"]["check"], "health");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("reason: status"),
        "{alert}"
    );
    assert!(
        elapsed < Duration::from_secs(75),
        "60 s budget + 10 s group_wait: {elapsed:?}"
    );
    scheduler.abort();
    exporter.stop().await;
}
