//! `glitchtip-exporter doctor`, run in-process through [`doctor::run`] against the stub
//! GlitchTip replaying the recorded answers (5.x healthy, backend-only, 6.x by its version
//! and trailing-slash health path), a plain web server that is not GlitchTip, a port that
//! accepts and never answers, a closed port, and a real redis-server holding Celery's or
//! django-vtasks' keys; plus the real binary's exit codes.
//!
//! Every suggested config is written to a file and loaded with the loader `--check-config`
//! uses; no token or DSN key may appear anywhere in a report.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use glitchtip_exporter::checks::ProbeEnv;
use glitchtip_exporter::clock::{ManualClock, SystemClock};
use glitchtip_exporter::config::ConfigSource;
use glitchtip_exporter::doctor::{self, Exit, Line, Options, Report, Row, TARGET_NAME};
use glitchtip_exporter::net::resolver::StaticResolver;
use glitchtip_exporter::net::tls::provider;
use tokio::time::Instant;
use url::Url;

use crate::helpers::{CLOCK_START, TEST_HOST, send};
use crate::queue::{self, Redis};
use crate::stub::{Behavior, Scenario, StubGlitchTip, refused_addr, start_silent_server};
use crate::stub_ingest::{self, StubIngest};
use crate::tls::{Leaf, leaf, root_ca};

const TIMEOUT: Duration = Duration::from_secs(2);
const BIN: &str = env!("CARGO_BIN_EXE_glitchtip-exporter");

fn env() -> ProbeEnv {
    ProbeEnv {
        resolver: Arc::new(StaticResolver::new().with(TEST_HOST, [127, 0, 0, 1].into())),
        clock: Arc::new(SystemClock),
    }
}

fn options(target: &str) -> Options {
    Options {
        target: Url::parse(target).unwrap(),
        token_file: None,
        dsn_file: None,
        redis_url: None,
        redis_password_file: None,
        send_test_event: false,
        ca_file: None,
        timeout: TIMEOUT,
    }
}

fn row<'r>(report: &'r Report, probe: &str) -> &'r Row {
    report
        .rows
        .iter()
        .find(|r| r.probe == probe)
        .unwrap_or_else(|| panic!("no row {probe:?} in\n{}", report.text))
}

/// Asserts a row's status, usability and description.
fn assert_row(report: &Report, probe: &str, status: Option<u16>, usable: &str, says: &str) {
    let r = row(report, probe);
    assert_eq!(
        (r.status, r.usable, r.says.as_str()),
        (status, usable, says),
        "row {probe} in\n{}",
        report.text
    );
}

/// Asserts a healthy report whose `/_health/` row is GlitchTip's.
fn assert_healthy(report: &Report) {
    assert_eq!(report.exit, Exit::Healthy, "{}", report.text);
    assert_row(
        report,
        "/_health/",
        Some(200),
        "yes: health",
        "web process answers \"ok\"",
    );
}

/// Loads the suggested section with the loader `--check-config` uses; answers the check
/// names of its target.
fn load_suggested(report: &Report, dir: &Path) -> Vec<String> {
    let suggested = report.suggested.as_deref().expect("a suggested section");
    let file = dir.join("exporter.toml");
    std::fs::write(&file, suggested).unwrap();
    let config = ConfigSource {
        file: Some(file),
        env: Some(HashMap::new()),
        ..ConfigSource::default()
    }
    .load()
    .unwrap_or_else(|e| panic!("suggested config rejected: {e}\n{suggested}"));
    let target = config.target(TARGET_NAME).expect("the suggested target");
    target.checks.iter().map(|c| c.name.clone()).collect()
}

/// The password of the exporter's read-only Redis user: it must appear nowhere in a report.
const REDIS_PASSWORD: &str = queue::EXPORTER_PASSWORD;

/// A Redis holding `keys`, with the exporter's read-only ACL user, and that user's URL
/// (without the password).
async fn redis_with(keys: &[&str]) -> (Redis, String) {
    let redis = Redis::start().await;
    for key in keys {
        redis.run(&["RPUSH", key, "task"]).await;
    }
    redis.acl_user(queue::EXPORTER_ACL).await;
    let url = format!(
        "redis://{}@127.0.0.1:{}/0",
        queue::EXPORTER_USER,
        redis.port
    );
    (redis, url)
}

fn redis_password_file(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("redis-password");
    std::fs::write(&file, REDIS_PASSWORD).unwrap();
    file
}

#[tokio::test]
async fn recorded_5x_is_healthy_and_its_redis_says_celery() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let (_redis, redis_url) = redis_with(&["celery"]).await;
    let dir = tempfile::tempdir().unwrap();
    let password = redis_password_file(dir.path());
    let mut opts = options(&stub.url());
    opts.redis_url = Some(redis_url.clone());
    opts.redis_password_file = Some(password.clone());
    let report = doctor::run(&opts, &env()).await;
    assert!(!report.text.contains(REDIS_PASSWORD));

    assert_healthy(&report);
    assert_row(
        &report,
        "/api/settings/",
        Some(200),
        "yes: database",
        "version 0.0.0-unknown; answers only with PostgreSQL up",
    );
    assert_row(
        &report,
        "/api/0/organizations/",
        Some(401),
        "yes: api",
        "401 without a token: routing and auth alive",
    );
    assert_row(
        &report,
        "/",
        Some(200),
        "yes: dashboard",
        "front end served",
    );
    assert_row(
        &report,
        "/.well-known/healthz",
        Some(404),
        "no",
        "GlitchTip's 404 page: no such endpoint",
    );
    assert_row(
        &report,
        "/api/0/internal/health",
        Some(200),
        "yes: like health",
        "fixed answer (5.1 and later)",
    );
    assert_row(
        &report,
        "/api/0/internal/health/",
        Some(404),
        "no",
        "absent in this version",
    );
    assert_row(
        &report,
        "/metrics",
        Some(404),
        "no",
        "GlitchTip's own /metrics is off",
    );
    // The source install reports no version: the keys tell the line.
    assert_eq!(report.line, Line::Celery);
    assert_eq!(report.version.as_deref(), Some("0.0.0-unknown"));
    assert!(
        report.text.contains("queue: layout celery (celery=1)"),
        "{}",
        report.text
    );
    assert!(report.text.contains("result: healthy"), "{}", report.text);

    let checks = load_suggested(&report, dir.path());
    assert_eq!(checks, ["api", "dashboard", "database", "health"]);
    let suggested = report.suggested.as_deref().unwrap();
    assert!(
        suggested.contains(&format!(
            "url = \"{redis_url}\"\nlayout = \"celery\"\npassword = {{ file = \"{}\" }}\n",
            password.display()
        )),
        "{suggested}"
    );
}

#[tokio::test]
async fn backend_only_install_gets_no_dashboard_check() {
    let stub = StubGlitchTip::start(Scenario::BackendOnly).await;
    let report = doctor::run(&options(&stub.url()), &env()).await;

    assert_eq!(report.exit, Exit::Healthy, "{}", report.text);
    assert_row(
        &report,
        "/",
        Some(500),
        "no",
        "500: backend-only install (no front end)",
    );
    assert!(
        report.text.contains("front end: not served"),
        "{}",
        report.text
    );
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        load_suggested(&report, dir.path()),
        ["api", "database", "health"]
    );
    assert!(
        report
            .suggested
            .as_deref()
            .unwrap()
            .contains("[targets.glitchtip.checks.dashboard]\nenabled = false\n")
    );
}

#[tokio::test]
async fn six_x_is_told_by_its_version_slash_path_metrics_and_keys() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    stub.set_behavior(
        "/api/settings/",
        Behavior::Status {
            status: 200,
            content_type: "application/json",
            body: r#"{"version": "6.2.6", "serverTimeZone": "UTC", "enabledFeatures": []}"#
                .to_owned(),
        },
    );
    stub.set_behavior(
        "/api/0/internal/health/",
        Behavior::Status {
            status: 200,
            content_type: "application/json",
            body: r#"{"healthy": {}, "problems": []}"#.to_owned(),
        },
    );
    stub.set_behavior(
        "/metrics",
        Behavior::Status {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: "# HELP glitchtip_projects_total Projects\n# TYPE glitchtip_projects_total gauge\nglitchtip_projects_total 1\n".to_owned(),
        },
    );
    let (_redis, redis_url) = redis_with(&["{vt}:q:default", "{vt}:q:ingest"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&stub.url());
    opts.redis_url = Some(redis_url);
    opts.redis_password_file = Some(redis_password_file(dir.path()));
    let report = doctor::run(&opts, &env()).await;

    assert_eq!(report.exit, Exit::Healthy, "{}", report.text);
    assert_eq!(report.line, Line::Vtasks);
    assert_eq!(report.version.as_deref(), Some("6.2.6"));
    assert!(
        report
            .text
            .contains("GlitchTip version: 6.2.6 — line 6.x (own task runner on Valkey)"),
        "{}",
        report.text
    );
    assert_row(
        &report,
        "/api/0/internal/health/",
        Some(200),
        "yes: like health",
        "trailing slash served (6.0.9 and later)",
    );
    assert_row(
        &report,
        "/metrics",
        Some(200),
        "no: inside view",
        "Prometheus text: ENABLE_OBSERVABILITY_API on",
    );
    assert!(
        report.text.contains("(ENABLE_OBSERVABILITY_API): on"),
        "{}",
        report.text
    );
    assert!(
        report.text.contains("queue: layout vtasks"),
        "{}",
        report.text
    );
    load_suggested(&report, dir.path());
    assert!(report.suggested.unwrap().contains("layout = \"vtasks\""));
}

/// A web server that is not GlitchTip: every path answers `status` with the same page.
async fn plain_server(status: StatusCode) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new().fallback(move || async move {
        (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>Welcome to nginx!</title></head><body>ok</body></html>",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test]
async fn a_plain_web_server_is_not_glitchtip() {
    for status in [StatusCode::OK, StatusCode::NOT_FOUND] {
        let (addr, task) = plain_server(status).await;
        let report = doctor::run(&options(&format!("http://{addr}")), &env()).await;
        task.abort();
        assert_eq!(report.exit, Exit::Unreachable, "{status}: {}", report.text);
        assert_eq!(
            report.text,
            format!(
                "http://{addr}/: answers, but not like GlitchTip (no version at /api/settings/, no API root at /api/0/, no 401 at /api/0/organizations/)\n"
            )
        );
        assert!(report.suggested.is_none());
    }
}

#[tokio::test]
async fn a_port_that_accepts_and_hangs_is_unreachable_within_the_timeout() {
    let (addr, task) = start_silent_server().await;
    let mut opts = options(&format!("http://{addr}"));
    opts.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let report = doctor::run(&opts, &env()).await;
    let took = started.elapsed();
    task.abort();
    assert_eq!(report.exit, Exit::Unreachable);
    assert_eq!(
        report.text,
        format!("http://{addr}/: cannot reach it: no answer before the timeout\n")
    );
    // Every probe runs at once: the whole run takes one timeout, not one per probe.
    assert!(took >= opts.timeout && took < opts.timeout * 3, "{took:?}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let addr = refused_addr();
    let report = doctor::run(&options(&format!("http://{addr}")), &env()).await;
    assert_eq!(report.exit, Exit::Unreachable);
    assert_eq!(
        report.text,
        format!("http://{addr}/: cannot reach it: no usable answer (connect)\n")
    );
}

#[tokio::test]
async fn a_rejected_token_fails_and_is_never_printed() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", stub_ingest::TOKEN)).unwrap();
    let mut opts = options(&stub.url());
    opts.token_file = Some(token_file.clone());
    let report = doctor::run(&opts, &env()).await;

    assert_eq!(report.exit, Exit::Failing, "{}", report.text);
    assert_row(
        &report,
        "token: /api/0/organizations/",
        Some(401),
        "no",
        "token rejected (401)",
    );
    assert!(
        report.text.contains("result: failing: token"),
        "{}",
        report.text
    );
    assert_no_secret(&report);
}

fn assert_no_secret(report: &Report) {
    for secret in [stub_ingest::TOKEN, stub_ingest::KEY] {
        assert!(!report.text.contains(secret), "{}", report.text);
        assert!(!format!("{report:?}").contains(secret));
    }
}

/// In front of the stub GlitchTip and the stub ingest: the organizations seen with the
/// stub's token (the recorded answer), an issue list that needs `event:read`, the canary's
/// ingest and polls (to the ingest stub); everything else to the stub GlitchTip.
#[derive(Clone)]
struct Front {
    glitchtip: SocketAddr,
    ingest: SocketAddr,
    event_read: bool,
}

async fn front(State(front): State<Front>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path().to_owned();
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", stub_ingest::TOKEN));
    let issues = path.starts_with("/api/0/organizations/") && path.ends_with("/issues/");
    let poll = parts.uri.query().is_some_and(|q| q.starts_with("query="));
    let answer = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap()
    };
    if path == "/api/0/organizations/" && bearer {
        return answer(200, recorded_body("healthy__get_organizations_token"));
    }
    if issues && !poll {
        return match (bearer, front.event_read) {
            (true, true) => answer(200, "[]".to_owned()),
            (true, false) => answer(
                403,
                r#"{"detail": "You do not have permission to perform this action."}"#.to_owned(),
            ),
            (false, _) => answer(401, r#"{"detail": "Unauthorized"}"#.to_owned()),
        };
    }
    let to = if issues || parts.method == Method::POST {
        front.ingest
    } else {
        front.glitchtip
    };
    forward(to, &parts.method, &parts.uri, &parts.headers, body).await
}

async fn forward(
    to: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| *name != header::HOST)
        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let got = send(to, method.as_str(), path, &refs, body.to_vec()).await;
    let mut response = Response::builder().status(got.status);
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(value) = got.headers.get(&name) {
            response = response.header(name, value);
        }
    }
    response.body(got.body.into()).unwrap()
}

fn recorded_body(name: &str) -> String {
    let file = format!(
        "{}/tests/fixtures/recorded/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    doc["response"]["body"].as_str().unwrap().to_owned()
}

async fn start_front(event_read: bool) -> (SocketAddr, StubGlitchTip, StubIngest) {
    let glitchtip = StubGlitchTip::start(Scenario::Healthy).await;
    let ingest = StubIngest::start(stub_ingest::Mode::Healthy {
        visible_after: Duration::from_millis(200),
    })
    .await;
    let state = Front {
        glitchtip: glitchtip.addr(),
        ingest: ingest.addr,
        event_read,
    };
    let app = Router::new().fallback(front).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, glitchtip, ingest)
}

/// The token and the DSN of the stubs, in files; the DSN on the front's port.
fn secret_files(dir: &Path, front: SocketAddr) -> (std::path::PathBuf, std::path::PathBuf) {
    let token = dir.join("token");
    std::fs::write(&token, stub_ingest::TOKEN).unwrap();
    let dsn = dir.join("dsn");
    let text = format!(
        "http://{}@127.0.0.1:{}/{}\n",
        stub_ingest::KEY,
        front.port(),
        stub_ingest::PROJECT_ID
    );
    std::fs::write(&dsn, text).unwrap();
    (token, dsn)
}

#[tokio::test]
async fn token_and_dsn_give_a_canary_section_and_send_nothing_unless_asked() {
    let (addr, _glitchtip, ingest) = start_front(true).await;
    let dir = tempfile::tempdir().unwrap();
    let (token, dsn) = secret_files(dir.path(), addr);
    let mut opts = options(&format!("http://{addr}"));
    opts.token_file = Some(token.clone());
    opts.dsn_file = Some(dsn.clone());
    let report = doctor::run(&opts, &env()).await;

    assert_eq!(report.exit, Exit::Healthy, "{}", report.text);
    assert_row(
        &report,
        "token: /api/0/organizations/",
        Some(200),
        "yes: canary",
        "token accepted",
    );
    assert_row(
        &report,
        "token: issues of the organization",
        Some(200),
        "yes: canary",
        "token has event:read",
    );
    assert!(
        report.text.contains(&format!(
            "DSN: project 1 at 127.0.0.1:{} (no event sent: --send-test-event sends one)",
            addr.port()
        )),
        "{}",
        report.text
    );
    // Nothing reached ingest: no event stored, no key sent.
    assert!(ingest.seen().is_empty(), "{:?}", ingest.seen());
    assert_no_secret(&report);

    let suggested = report.suggested.as_deref().unwrap();
    assert!(
        suggested.contains(&format!(
            "[targets.glitchtip.canary]\ndsn = {{ file = \"{}\" }}\ntoken = {{ file = \"{}\" }}\norganization = \"lab-org\"\n",
            dsn.display(),
            token.display()
        )),
        "{suggested}"
    );
    let checks = load_suggested(&report, dir.path());
    assert_eq!(checks, ["api", "canary", "dashboard", "database", "health"]);

    // Asked: one canary event, accepted and visible.
    opts.send_test_event = true;
    let report = doctor::run(&opts, &env()).await;
    assert_eq!(report.exit, Exit::Healthy, "{}", report.text);
    assert_row(
        &report,
        "canary event",
        Some(200),
        "yes: canary",
        "test event accepted and visible through the API",
    );
    let order: Vec<&str> = report.rows[9..].iter().map(|r| r.probe.as_str()).collect();
    assert_eq!(
        order,
        [
            "token: /api/0/organizations/",
            "token: issues of the organization",
            "canary event"
        ]
    );
    let sent = ingest.seen().iter().filter(|s| s.kind != "poll").count();
    assert_eq!(sent, 1, "{:?}", ingest.seen());
    assert!(ingest.violations().is_empty(), "{:?}", ingest.violations());
    assert_no_secret(&report);
}

#[tokio::test]
async fn a_token_without_event_read_fails() {
    let (addr, _glitchtip, _ingest) = start_front(false).await;
    let dir = tempfile::tempdir().unwrap();
    let (token, _) = secret_files(dir.path(), addr);
    let mut opts = options(&format!("http://{addr}"));
    opts.token_file = Some(token);
    let report = doctor::run(&opts, &env()).await;
    assert_eq!(report.exit, Exit::Failing, "{}", report.text);
    assert_row(
        &report,
        "token: issues of the organization",
        Some(403),
        "no",
        "token lacks event:read (the canary needs it)",
    );
    assert!(
        report.text.contains("result: failing: event:read"),
        "{}",
        report.text
    );
    assert_no_secret(&report);
}

#[tokio::test]
async fn a_malformed_dsn_fails_without_repeating_it() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let dir = tempfile::tempdir().unwrap();
    let dsn = dir.path().join("dsn");
    std::fs::write(
        &dsn,
        format!("http://{}@127.0.0.1/not-a-project", stub_ingest::KEY),
    )
    .unwrap();
    let mut opts = options(&stub.url());
    opts.dsn_file = Some(dsn.clone());
    let report = doctor::run(&opts, &env()).await;
    assert_eq!(report.exit, Exit::Failing, "{}", report.text);
    assert!(
        report.text.contains(&format!(
            "DSN: not usable: {}: the path does not end with a numeric project id",
            dsn.display()
        )),
        "{}",
        report.text
    );
    assert_no_secret(&report);
}

#[tokio::test]
async fn the_binary_exits_0_healthy_and_2_unreachable() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let closed = refused_addr();
    for (target, code) in [(stub.url(), 0), (format!("http://{closed}"), 2)] {
        let out = tokio::time::timeout(
            Duration::from_secs(15),
            tokio::process::Command::new(BIN)
                .env_clear()
                .args(["doctor", "--target", &target, "--timeout", "2s"])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the binary finishes")
        .expect("the binary starts");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{target}: {stdout}");
        if code == 0 {
            assert!(
                stdout.contains("# Suggested exporter.toml section:"),
                "{stdout}"
            );
        }
    }
}

/// Terminates TLS with `leaf` for the stub GlitchTip at `to`: every connection is relayed.
async fn tls_front(leaf: &Leaf, to: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf.key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (Ok(mut tls), Ok(mut plain)) = (
                    acceptor.accept(stream).await,
                    tokio::net::TcpStream::connect(to).await,
                ) else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn https_gets_a_certificate_row_and_the_ca_file_in_the_suggestion() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let ca = root_ca("Doctor Test CA", 400);
    // Valid since long before the manual clock's time, so that the HTTP probes, which
    // verify at the system's time, accept it too.
    let (addr, task) = tls_front(&leaf(&[TEST_HOST], -1000, 90, &ca), stub.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let mut opts = options(&format!("https://{TEST_HOST}:{}", addr.port()));
    opts.ca_file = Some(ca_file.clone());
    // Certificates are judged at the manual clock's time, which their validity counts from.
    let env = ProbeEnv {
        clock: Arc::new(ManualClock::at_unix(CLOCK_START)),
        ..env()
    };
    let report = doctor::run(&opts, &env).await;
    task.abort();

    assert_healthy(&report);
    assert_row(
        &report,
        "certificate",
        None,
        "yes: tls",
        "certificate valid, expires in 90 days",
    );
    assert!(
        report.suggested.as_deref().unwrap().contains(&format!(
            "[targets.glitchtip.tls]\nca_file = \"{}\"\n",
            ca_file.display()
        )),
        "{}",
        report.text
    );
    assert_eq!(
        load_suggested(&report, dir.path()),
        ["api", "dashboard", "database", "health", "tls"]
    );

    // Without the CA, nothing verifies: the doctor says so in one line.
    opts.ca_file = None;
    let (addr, task) = tls_front(&leaf(&[TEST_HOST], -1000, 90, &ca), stub.addr()).await;
    opts.target = Url::parse(&format!("https://{TEST_HOST}:{}", addr.port())).unwrap();
    let report = doctor::run(&opts, &env).await;
    task.abort();
    assert_eq!(report.exit, Exit::Unreachable, "{}", report.text);
    assert_eq!(
        report.text,
        format!("{}: cannot reach it: no usable answer (tls)\n", opts.target)
    );
}

#[tokio::test]
async fn postgres_down_is_failing_not_unreachable() {
    // /api/settings/ holds the request ~30 s, as a real GlitchTip with PostgreSQL down does.
    let stub = StubGlitchTip::start(Scenario::PostgresDownHang).await;
    let mut opts = options(&stub.url());
    opts.timeout = Duration::from_millis(500);
    let report = doctor::run(&opts, &env()).await;
    assert_eq!(report.exit, Exit::Failing, "{}", report.text);
    assert_row(
        &report,
        "/api/settings/",
        None,
        "no",
        "no answer before the timeout",
    );
    assert!(
        report.text.contains("result: failing: database\n"),
        "{}",
        report.text
    );
}

#[tokio::test]
async fn a_dsn_on_another_host_gets_its_health_probed_and_no_event() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let ingest = StubGlitchTip::start(Scenario::Healthy).await;
    let dir = tempfile::tempdir().unwrap();
    let dsn = dir.path().join("dsn");
    let text = format!(
        "http://{}@{TEST_HOST}:{}/1",
        stub_ingest::KEY,
        ingest.addr().port()
    );
    std::fs::write(&dsn, text).unwrap();
    let mut opts = options(&stub.url());
    opts.dsn_file = Some(dsn);
    opts.send_test_event = true;
    let report = doctor::run(&opts, &env()).await;

    assert_healthy(&report);
    assert_row(
        &report,
        "DSN host: /_health/",
        Some(200),
        "-",
        "the DSN's ingest host answers",
    );
    assert!(
        report.text.contains(&format!(
            "DSN: project 1 at {TEST_HOST}:{} (no event sent: that needs a token that sees the organization)",
            ingest.addr().port()
        )),
        "{}",
        report.text
    );
    // Only the health path was asked: nothing that carries the key.
    assert_eq!(ingest.total_hits(), ingest.hits("/_health/"));
    assert_eq!(ingest.hits("/_health/"), 1);
    assert_no_secret(&report);
}
