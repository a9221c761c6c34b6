//! Targets that are down, slow, hostile or lying: each ends as a failed probe with its
//! reason, within the deadline, and never delays another target.

use std::net::SocketAddr;
use std::time::Duration;

use crate::helpers::{self, Samples, TEST_HOST};
use crate::stub::{self, Behavior, Scenario, StubGlitchTip};

/// One target `t` with one check `c` (no default checks), scraped once.
async fn probe_one(url: &str, check: &str) -> Samples {
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[targets.t]\nurl = \"{url}\"\ndefault_checks = false\n[targets.t.checks.c]\ntimeout = \"400ms\"\n{check}\n"
    );
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    let m = exporter.metrics().await;
    exporter.stop().await;
    m
}

fn assert_failed(m: &Samples, reason: &str, status: f64) {
    assert_eq!(m.check("glitchtip_up", "t", "c"), 0.0);
    assert_eq!(m.reason("t", "c"), reason);
    assert_eq!(m.check("glitchtip_http_status_code", "t", "c"), status);
    assert_eq!(m.check("glitchtip_consecutive_failures", "t", "c"), 1.0);
    let duration = m.check("glitchtip_probe_duration_seconds", "t", "c");
    assert!(duration < 1.5, "within the deadline: {duration}");
}

fn http(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

#[tokio::test]
async fn connection_refused_is_connect() {
    let m = probe_one(&http(stub::refused_addr()), "path = \"/\"").await;
    assert_failed(&m, "connect", 0.0);
}

#[tokio::test]
async fn name_that_does_not_resolve_is_dns() {
    // The test resolver knows only glitchtip.test; the system resolver is never asked.
    let m = probe_one("http://no-such-host.test:80", "path = \"/\"").await;
    assert_failed(&m, "dns", 0.0);
    assert_eq!(
        m.get("glitchtip_probe_phase_seconds", &[("phase", "connect")]),
        0.0
    );
}

#[tokio::test]
async fn server_that_never_answers_is_timeout_at_the_deadline() {
    let (addr, _server) = stub::start_silent_server().await;
    let m = probe_one(&http(addr), "path = \"/\"").await;
    assert_failed(&m, "timeout", 0.0);
    let duration = m.check("glitchtip_probe_duration_seconds", "t", "c");
    assert!(duration >= 0.4, "{duration}");
}

#[tokio::test]
async fn garbage_instead_of_http_is_http() {
    let (addr, _server) = stub::start_garbage_server().await;
    let m = probe_one(&http(addr), "path = \"/\"").await;
    assert_failed(&m, "http", 0.0);
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_tls() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let m = probe_one(
        &format!("https://{TEST_HOST}:{}", stub.addr().port()),
        "path = \"/_health/\"",
    )
    .await;
    assert_failed(&m, "tls", 0.0);
}

#[tokio::test]
async fn https_handshake_that_stalls_is_timeout() {
    let (addr, _server) = stub::start_silent_server().await;
    let m = probe_one(
        &format!("https://{TEST_HOST}:{}", addr.port()),
        "path = \"/\"",
    )
    .await;
    assert_failed(&m, "timeout", 0.0);
    let tls = m.get("glitchtip_probe_phase_seconds", &[("phase", "tls")]);
    assert!(tls >= 0.3, "the time went into the handshake: {tls}");
}

async fn with_behavior(path: &str, behavior: Behavior, check: &str) -> (Samples, StubGlitchTip) {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    stub.set_behavior(path, behavior);
    let m = probe_one(&format!("http://{TEST_HOST}:{}", stub.addr().port()), check).await;
    (m, stub)
}

#[tokio::test]
async fn wrong_status_is_status() {
    let behavior = Behavior::Status {
        status: 503,
        content_type: "text/plain",
        body: "down".into(),
    };
    let (m, _stub) = with_behavior(
        "/_health/",
        behavior,
        "path = \"/_health/\"\nkeyword = \"ok\"",
    )
    .await;
    assert_failed(&m, "status", 503.0);
    assert_eq!(m.check("glitchtip_keyword_match", "t", "c"), 0.0);
}

#[tokio::test]
async fn missing_keyword_is_keyword() {
    let behavior = Behavior::Status {
        status: 200,
        content_type: "text/plain",
        body: "maintenance".into(),
    };
    let (m, _stub) = with_behavior(
        "/_health/",
        behavior,
        "path = \"/_health/\"\nkeyword = \"ok\"",
    )
    .await;
    assert_failed(&m, "keyword", 200.0);
    assert_eq!(m.check("glitchtip_keyword_match", "t", "c"), 0.0);
}

#[tokio::test]
async fn regex_that_does_not_match_is_keyword() {
    let behavior = Behavior::Status {
        status: 200,
        content_type: "text/plain",
        body: "version 5.1".into(),
    };
    let (m, _stub) = with_behavior(
        "/x",
        behavior,
        "path = \"/x\"\nregex = \"version 6\\\\.\\\\d+\"",
    )
    .await;
    assert_failed(&m, "keyword", 200.0);
}

#[tokio::test]
async fn body_over_the_cap_is_body_too_large_without_reading_it_all() {
    let (m, _stub) = with_behavior(
        "/_health/",
        Behavior::HugeBody {
            bytes: 64 * 1024 * 1024,
        },
        "path = \"/_health/\"\nmax_body_bytes = 1048576",
    )
    .await;
    assert_failed(&m, "body_too_large", 200.0);
}

#[tokio::test]
async fn malformed_json_is_json() {
    let (m, _stub) = with_behavior(
        "/api/settings/",
        Behavior::MalformedJson,
        "path = \"/api/settings/\"\njson = { path = \"version\" }\nversion_field = \"version\"",
    )
    .await;
    assert_failed(&m, "json", 200.0);
    assert_eq!(m.check("glitchtip_keyword_match", "t", "c"), 0.0);
    assert!(!m.has("glitchtip_version_info", &[]));
}

#[tokio::test]
async fn json_field_with_the_wrong_value_is_json() {
    let behavior = Behavior::Status {
        status: 200,
        content_type: "application/json",
        body: r#"{"healthy": {}, "problems": ["db"]}"#.into(),
    };
    let (m, _stub) = with_behavior(
        "/api/0/internal/health",
        behavior,
        "path = \"/api/0/internal/health\"\njson = { path = \"problems\", equals = [] }",
    )
    .await;
    assert_failed(&m, "json", 200.0);
}

#[tokio::test]
async fn redirect_is_judged_by_its_own_status_by_default() {
    let behavior = Behavior::Redirect {
        status: 302,
        location: "/login".into(),
    };
    let (m, stub) = with_behavior("/", behavior, "path = \"/\"\nkeyword = \"GlitchTip\"").await;
    assert_failed(&m, "status", 302.0);
    assert_eq!(stub.hits("/login"), 0, "not followed");
}

#[tokio::test]
async fn redirect_is_followed_when_asked() {
    let behavior = Behavior::Redirect {
        status: 301,
        location: "/_health/".into(),
    };
    let (m, stub) = with_behavior(
        "/old",
        behavior,
        "path = \"/old\"\nkeyword = \"ok\"\nfollow_redirects = true",
    )
    .await;
    assert_eq!(m.check("glitchtip_up", "t", "c"), 1.0);
    assert_eq!(m.check("glitchtip_http_status_code", "t", "c"), 200.0);
    assert_eq!(stub.hits("/_health/"), 1);
}

#[tokio::test]
async fn redirect_loop_is_http() {
    let behavior = Behavior::Redirect {
        status: 302,
        location: "/loop".into(),
    };
    let (m, stub) = with_behavior(
        "/loop",
        behavior,
        "path = \"/loop\"\nfollow_redirects = true\nmax_redirects = 3",
    )
    .await;
    assert_failed(&m, "http", 302.0);
    assert_eq!(stub.hits("/loop"), 4, "the first request and 3 redirects");
}

#[tokio::test]
async fn hanging_target_does_not_delay_another_targets_probes() {
    let (silent, _server) = stub::start_silent_server().await;
    let healthy = StubGlitchTip::start(Scenario::Healthy).await;
    // Interval mode: every check on its own task. The hanging target's probes take their
    // whole 900 ms timeout; the healthy one runs every second regardless.
    let toml = format!(
        r#"
[defaults]
interval = "1s"
timeout = "900ms"
retry_interval = "100ms"
[targets.hanging]
url = "http://{silent}"
[targets.healthy]
url = "{healthy_url}"
default_checks = false
[targets.healthy.checks.health]
path = "/_health/"
keyword = "ok"
"#,
        healthy_url = healthy.url()
    );
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    // Count how many probes the healthy target receives while the hanging one hangs.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(4500);
    tokio::time::sleep_until(deadline).await;
    let hits = healthy.hits("/_health/");
    let m = exporter.metrics().await;
    exporter.stop().await;
    assert!(
        hits >= 3,
        "healthy target probed on schedule: {hits} probes in 4.5 s"
    );
    assert_eq!(m.check("glitchtip_up", "healthy", "health"), 1.0);
    assert_eq!(m.check("glitchtip_up", "hanging", "health"), 0.0);
    assert_eq!(m.reason("hanging", "health"), "timeout");
}
