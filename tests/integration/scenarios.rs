//! The recorded GlitchTip failure scenarios, replayed by the stub: the value of every core
//! metric for each. Scrape mode, so that one scrape runs every check once.

use crate::helpers::{self, CLOCK_START, Samples, TEST_HOST};
use crate::stub::{Scenario, StubGlitchTip};

const CHECKS: [&str; 4] = ["health", "database", "api", "dashboard"];

fn config(stub: &StubGlitchTip, timeout: &str) -> String {
    format!(
        r#"
[server]
mode = "scrape"
[defaults]
timeout = "{timeout}"
[targets.gt]
url = "http://{TEST_HOST}:{port}"
"#,
        port = stub.addr().port()
    )
}

async fn scrape(scenario: Scenario, timeout: &str) -> (Samples, StubGlitchTip) {
    let stub = StubGlitchTip::start(scenario).await;
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&config(&stub, timeout), deps).await;
    let samples = exporter.metrics().await;
    exporter.stop().await;
    (samples, stub)
}

/// Expected (up, status, reason) per check, in `CHECKS` order.
fn assert_checks(m: &Samples, expected: [(f64, f64, &str); 4]) {
    for (check, (up, status, reason)) in CHECKS.iter().zip(expected) {
        assert_eq!(m.check("glitchtip_up", "gt", check), up, "up of {check}");
        assert_eq!(
            m.check("glitchtip_http_status_code", "gt", check),
            status,
            "status of {check}"
        );
        assert_eq!(m.reason("gt", check), reason, "reason of {check}");
        let failures = if up == 1.0 { 0.0 } else { 1.0 };
        assert_eq!(
            m.check("glitchtip_consecutive_failures", "gt", check),
            failures,
            "failures of {check}"
        );
        assert_eq!(
            m.check("glitchtip_probe_last_run_timestamp_seconds", "gt", check),
            CLOCK_START as f64
        );
        let result = if up == 1.0 { "success" } else { "failure" };
        assert_eq!(
            m.get(
                "glitchtip_probes_total",
                &[("target", "gt"), ("check", check), ("result", result)]
            ),
            1.0
        );
        assert_eq!(m.check("glitchtip_check_down_total", "gt", check), 0.0);
        let duration = m.check("glitchtip_probe_duration_seconds", "gt", check);
        assert!(
            duration > 0.0 && duration < 2.0,
            "duration of {check}: {duration}"
        );
        let phases: f64 = ["resolve", "connect", "tls", "processing", "transfer"]
            .iter()
            .map(|p| {
                m.get(
                    "glitchtip_probe_phase_seconds",
                    &[("target", "gt"), ("check", check), ("phase", p)],
                )
            })
            .sum();
        assert!(
            phases <= duration + 1e-6,
            "phases {phases} within duration {duration} of {check}"
        );
        if up == 1.0 {
            assert_eq!(
                m.check("glitchtip_last_success_timestamp_seconds", "gt", check),
                CLOCK_START as f64
            );
        } else {
            assert!(!m.has(
                "glitchtip_last_success_timestamp_seconds",
                &[("check", check)]
            ));
        }
    }
    // Keyword match only for checks with a keyword, regex or JSON expectation.
    assert!(!m.has("glitchtip_keyword_match", &[("check", "api")]));
}

#[tokio::test]
async fn healthy_instance_is_up_on_every_check() {
    let (m, stub) = scrape(Scenario::Healthy, "2s").await;
    assert_checks(
        &m,
        [
            (1.0, 200.0, "none"),
            (1.0, 200.0, "none"),
            (1.0, 401.0, "none"),
            (1.0, 200.0, "none"),
        ],
    );
    for check in ["health", "database", "dashboard"] {
        assert_eq!(
            m.check("glitchtip_keyword_match", "gt", check),
            1.0,
            "{check}"
        );
    }
    assert_eq!(m.get("glitchtip_version_info", &[("target", "gt")]), 1.0);
    assert!(m.has(
        "glitchtip_version_info",
        &[("target", "gt"), ("version", "0.0.0-unknown")]
    ));
    // The phases are real: a fresh connection per probe, the request took some time.
    let processing = m.get(
        "glitchtip_probe_phase_seconds",
        &[("check", "health"), ("phase", "processing")],
    );
    assert!(processing > 0.0);
    assert_eq!(stub.hits("/_health/"), 1);
    // Exporter-level series.
    assert!(m.has(
        "glitchtip_exporter_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    ));
    assert!(
        m.names().iter().any(|n| n.starts_with("process_")),
        "process metrics present"
    );
    assert_eq!(
        m.get("glitchtip_exporter_config_last_reload_successful", &[]),
        1.0
    );
}

#[tokio::test]
async fn backend_only_install_fails_only_the_dashboard() {
    let (m, _stub) = scrape(Scenario::BackendOnly, "2s").await;
    assert_checks(
        &m,
        [
            (1.0, 200.0, "none"),
            (1.0, 200.0, "none"),
            (1.0, 401.0, "none"),
            (0.0, 500.0, "status"),
        ],
    );
    assert_eq!(m.check("glitchtip_keyword_match", "gt", "dashboard"), 0.0);
}

#[tokio::test]
async fn stopped_worker_is_invisible_to_http_checks() {
    // docs/glitchtip-facts.md: every endpoint stays 200 while no event is stored; only the ingest canary
    // can see this. The HTTP checks must at least not raise a false alarm.
    let (m, _stub) = scrape(Scenario::WorkerStopped, "2s").await;
    assert_checks(
        &m,
        [
            (1.0, 200.0, "none"),
            (1.0, 200.0, "none"),
            (1.0, 401.0, "none"),
            (1.0, 200.0, "none"),
        ],
    );
}

#[tokio::test]
async fn redis_down_is_invisible_to_http_checks() {
    let (m, _stub) = scrape(Scenario::RedisDown, "2s").await;
    assert_checks(
        &m,
        [
            (1.0, 200.0, "none"),
            (1.0, 200.0, "none"),
            (1.0, 401.0, "none"),
            (1.0, 200.0, "none"),
        ],
    );
}

#[tokio::test]
async fn postgres_just_stopped_fails_the_database_check_with_status() {
    let (m, _stub) = scrape(Scenario::PostgresDownFast, "2s").await;
    assert_checks(
        &m,
        [
            (1.0, 200.0, "none"),
            (0.0, 500.0, "status"),
            (1.0, 401.0, "none"),
            (1.0, 200.0, "none"),
        ],
    );
    assert_eq!(m.check("glitchtip_keyword_match", "gt", "database"), 0.0);
    assert!(
        !m.has("glitchtip_version_info", &[]),
        "no version before a successful read"
    );
}

#[tokio::test]
async fn postgres_down_steady_state_fails_the_database_check_with_timeout() {
    let (m, _stub) = scrape(Scenario::PostgresDownHang, "300ms").await;
    assert_checks(
        &m,
        [
            (1.0, 200.0, "none"),
            (0.0, 0.0, "timeout"),
            (1.0, 401.0, "none"),
            (1.0, 200.0, "none"),
        ],
    );
    let duration = m.check("glitchtip_probe_duration_seconds", "gt", "database");
    assert!(
        (0.3..1.5).contains(&duration),
        "ends at the deadline, not after 30 s: {duration}"
    );
    // The time went into waiting for the answer.
    let processing = m.get(
        "glitchtip_probe_phase_seconds",
        &[("check", "database"), ("phase", "processing")],
    );
    assert!(processing >= 0.25, "{processing}");
}

#[tokio::test]
async fn probe_endpoint_counts_consecutive_failures_across_requests() {
    let stub = StubGlitchTip::start(Scenario::BackendOnly).await;
    let (deps, clock) = helpers::deps();
    let exporter = helpers::start(&config(&stub, "2s"), deps).await;
    let first = exporter.probe("gt").await;
    assert_eq!(
        first.check("glitchtip_consecutive_failures", "gt", "dashboard"),
        1.0
    );
    assert_eq!(
        first.check("glitchtip_check_down_total", "gt", "dashboard"),
        0.0
    );
    clock.advance(std::time::Duration::from_secs(15));
    let second = exporter.probe("gt").await;
    assert_eq!(
        second.check("glitchtip_consecutive_failures", "gt", "dashboard"),
        2.0
    );
    assert_eq!(
        second.check("glitchtip_check_down_total", "gt", "dashboard"),
        1.0
    );
    assert_eq!(
        second.get(
            "glitchtip_probes_total",
            &[("check", "dashboard"), ("result", "failure")]
        ),
        2.0
    );
    assert_eq!(
        second.check("glitchtip_consecutive_failures", "gt", "health"),
        0.0
    );
    assert_eq!(
        second.check("glitchtip_last_success_timestamp_seconds", "gt", "health"),
        (CLOCK_START + 15) as f64
    );
    // A fresh registry: no exporter-level or process series in /probe answers.
    assert!(
        !second
            .names()
            .iter()
            .any(|n| n.starts_with("process_") || n.starts_with("glitchtip_exporter_"))
    );
    stub.set_scenario(Scenario::Healthy);
    let third = exporter.probe("gt").await;
    assert_eq!(
        third.check("glitchtip_consecutive_failures", "gt", "dashboard"),
        0.0
    );
    assert_eq!(third.reason("gt", "dashboard"), "none");
    // /probe shares nothing with /metrics: the scheduler's series were never touched.
    assert_eq!(stub.hits("/"), 3);
    // Only one check, on request.
    let one = exporter.get("/probe?target=gt&check=health").await;
    assert_eq!(one.status, 200);
    let one = Samples::parse(&one.body);
    assert!(
        one.has("glitchtip_up", &[("check", "health")])
            && !one.has("glitchtip_up", &[("check", "api")])
    );
    // Unknown names are a client error, not a new label value.
    assert_eq!(exporter.get("/probe?target=nope").await.status, 400);
    assert_eq!(
        exporter.get("/probe?target=gt&check=nope").await.status,
        400
    );
    assert_eq!(exporter.get("/probe").await.status, 400);
    exporter.stop().await;
}

#[tokio::test]
async fn series_are_absent_before_the_first_probe_and_endpoints_answer() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let (deps, _clock) = helpers::deps();
    // Interval mode with a long interval: nothing has run yet when we look.
    let toml = format!(
        "[defaults]\ninterval = \"1h\"\n[targets.gt]\nurl = \"{}\"\n[targets.gt.checks.health]\ninterval = \"1h\"\n",
        stub.url()
    );
    let exporter = helpers::start(&toml, deps).await;
    let views = exporter.exporter.views();
    let pending = views.iter().filter(|v| v.state.last.is_none()).count();
    let r = exporter.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let m = Samples::parse(&r.body);
    let up = m.find("glitchtip_up", &[]);
    assert_eq!(
        up.len(),
        4 - pending,
        "a series only for checks that ran: {up:?}"
    );
    assert_eq!(exporter.get("/-/healthy").await.status, 200);
    assert_eq!(exporter.get("/-/ready").await.status, 200);
    let landing = exporter.get("/").await;
    assert_eq!(landing.status, 200);
    for needle in [
        "gt",
        "health",
        "database",
        "api",
        "dashboard",
        "/metrics",
        "/probe?target=gt",
    ] {
        assert!(landing.body.contains(needle), "landing page shows {needle}");
    }
    exporter.stop().await;
}
