//! Scrape mode: the deadline comes from Prometheus' header, and concurrent scrapes share
//! one probe per check.

use std::time::Duration;

use crate::helpers::{self, Samples};
use crate::stub::{self, Behavior, Scenario, StubGlitchTip};

#[tokio::test]
async fn deadline_is_the_scrape_timeout_header_minus_half_a_second() {
    let (silent, _server) = stub::start_silent_server().await;
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[targets.t]\nurl = \"http://{silent}\"\ndefault_checks = false\n[targets.t.checks.c]\npath = \"/\"\ntimeout = \"8s\"\n"
    );
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    let r = exporter
        .get_with(
            "/metrics",
            &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")],
        )
        .await;
    assert_eq!(r.status, 200);
    let m = Samples::parse(&r.body);
    assert_eq!(m.reason("t", "c"), "timeout");
    let duration = m.check("glitchtip_probe_duration_seconds", "t", "c");
    assert!(
        (1.0..1.4).contains(&duration),
        "1.5 s - 0.5 s, not the 8 s check timeout: {duration}"
    );
    exporter.stop().await;
}

#[test]
fn scrape_deadline_parsing() {
    use glitchtip_exporter::server::scrape_deadline;
    let header = |v: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("x-prometheus-scrape-timeout-seconds", v.parse().unwrap());
        scrape_deadline(&h)
    };
    assert_eq!(header("10"), Some(Duration::from_millis(9500)));
    assert_eq!(header("2.5"), Some(Duration::from_secs(2)));
    assert_eq!(
        header("0.3"),
        Some(Duration::from_millis(100)),
        "never below 100 ms"
    );
    assert_eq!(header("-1"), None);
    assert_eq!(header("NaN"), None);
    assert_eq!(header("soon"), None);
    assert_eq!(scrape_deadline(&http::HeaderMap::new()), None);
}

#[tokio::test]
async fn concurrent_scrapes_cause_one_probe_per_check() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    // Slow answers, so that the scrapes overlap while the probes are in flight.
    for path in ["/_health/", "/api/settings/", "/api/0/organizations/", "/"] {
        let recorded = match path {
            "/_health/" => ("text/plain", "ok".to_owned(), 200),
            "/api/settings/" => (
                "application/json",
                r#"{"version": "6.1.3"}"#.to_owned(),
                200,
            ),
            "/api/0/organizations/" => (
                "application/json",
                r#"{"detail": "Unauthorized"}"#.to_owned(),
                401,
            ),
            _ => ("text/html", "<title>GlitchTip</title>".to_owned(), 200),
        };
        stub.set_behavior(
            path,
            Behavior::Delay(
                Duration::from_millis(300),
                Box::new(Behavior::Status {
                    status: recorded.2,
                    content_type: recorded.0,
                    body: recorded.1,
                }),
            ),
        );
    }
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"{}\"\n",
        stub.url()
    );
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    let (a, b, c) = tokio::join!(exporter.metrics(), exporter.metrics(), exporter.metrics());
    for m in [&a, &b, &c] {
        assert_eq!(m.find("glitchtip_up", &[("target", "gt")]).len(), 4);
        assert_eq!(m.check("glitchtip_up", "gt", "database"), 1.0);
    }
    for path in ["/_health/", "/api/settings/", "/api/0/organizations/", "/"] {
        assert_eq!(stub.hits(path), 1, "one probe of {path} for three scrapes");
    }
    // A scrape within the interval (10 s) answers the latest results without probing.
    let again = exporter.metrics().await;
    assert_eq!(stub.total_hits(), 4);
    assert_eq!(
        again.get(
            "glitchtip_probes_total",
            &[("check", "health"), ("result", "success")]
        ),
        1.0
    );
    assert!(again.has(
        "glitchtip_version_info",
        &[("target", "gt"), ("version", "6.1.3")]
    ));
    exporter.stop().await;
}
