//! The landing page says why: the summary line, the failure detail, the strip of recent
//! results per check, the `?refresh=N` bounds, and no secret — against the recorded
//! PostgreSQL-down GlitchTip (the database check fails with status 500, the others pass).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use glitchtip_exporter::checks::{CheckSpec, Outcome, Prober, Reason, Trace};

use crate::helpers::{self, TEST_HOST};
use crate::stub::{Scenario, StubGlitchTip};

const SECRET: &str = "landing-page-secret-7f3a";

async fn scraped(scrapes: usize) -> (helpers::TestExporter, StubGlitchTip, tempfile::TempDir) {
    let stub = StubGlitchTip::start(Scenario::PostgresDownFast).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, SECRET).unwrap();
    let toml = format!(
        r#"
[server]
mode = "scrape"
[targets.gt]
url = "http://{TEST_HOST}:{port}"
[targets.gt.checks.database]
basic_auth = {{ username = "monitor", password = {{ file = "{file}" }} }}
[targets.plain]
url = "https://{TEST_HOST}:{port}"
default_checks = false
[targets.plain.checks.tls]
"#,
        port = stub.addr().port(),
        file = secret.display(),
    );
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    for _ in 0..scrapes {
        exporter.metrics().await;
    }
    (exporter, stub, dir)
}

/// The cells of one check's strip: `(failed, title)` for each.
fn strip(page: &str, check: &str) -> Vec<(bool, String)> {
    let row = page
        .split("<tr><td>")
        .find(|r| r.starts_with(&format!("{check}</td>")))
        .unwrap_or_else(|| panic!("no row for {check}: {page}"));
    let cells = row.split("<div class=\"strip\">").nth(1).unwrap();
    let cells = cells.split("</div>").next().unwrap();
    cells
        .split("<span")
        .skip(1)
        .map(|c| {
            let title = c
                .split("title=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (c.starts_with(" class=\"f\""), title.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn summary_detail_and_strip_say_what_fails() {
    let (exporter, _stub, _dir) = scraped(1).await;
    let page = exporter.get("/").await;
    assert_eq!(page.status, 200);
    let body = page.body;
    assert!(
        body.contains("<p class=\"summary bad\" id=\"summary\">2 of 5 checks failing · 0 of 0 heartbeats late</p>"),
        "{body}"
    );
    // The failure detail of the failing check, under its reason.
    let database = body
        .split("<tr><td>")
        .find(|r| r.starts_with("database</td>"))
        .unwrap();
    assert!(
        database.contains("<td>status<div class=\"detail\">"),
        "{database}"
    );
    // One result each (a scrape within the interval probes nothing), its time on hover.
    assert_eq!(
        strip(&body, "database"),
        [(true, "2027-01-15T08:00:00Z status".to_owned())]
    );
    assert_eq!(
        strip(&body, "health"),
        [(false, "2027-01-15T08:00:00Z none".to_owned())]
    );
    // The TLS check of a port that speaks plain HTTP: the reason in words.
    assert!(
        body.contains("TLS: the TLS handshake failed (handshake)"),
        "{body}"
    );
    assert!(!body.contains(SECRET), "the password reached the page");
    assert!(!body.contains("<script"), "no script");
    assert!(!body.contains("src=\"http"), "no external asset");
    exporter.stop().await;
}

#[tokio::test]
async fn refresh_is_optional_and_bounded() {
    let (exporter, _stub, _dir) = scraped(0).await;
    let meta = |n: &str| format!("<meta http-equiv=\"refresh\" content=\"{n}\">");
    let page = exporter.get("/").await.body;
    assert!(!page.contains("http-equiv"), "no refresh unless asked");
    assert!(page.contains("0 of 5 checks failing"), "{page}");
    for (asked, given) in [("30", "30"), ("1", "5"), ("0", "5"), ("999999", "3600")] {
        let page = exporter.get(&format!("/?refresh={asked}")).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains(&meta(given)), "refresh={asked}");
    }
    for bad in ["-3", "abc", "", "1e3", "99999999999999999999999"] {
        let page = exporter.get(&format!("/?refresh={bad}")).await;
        assert_eq!(page.status, 200, "refresh={bad}");
        assert!(!page.body.contains("http-equiv"), "refresh={bad}");
    }
    exporter.stop().await;
}

/// Fails the `database` check with status 500 while `failing` is set; passes the others.
struct Scripted {
    failing: AtomicBool,
}

impl Prober for Scripted {
    fn probe<'a>(&'a self, spec: &'a CheckSpec, _: Duration) -> BoxFuture<'a, Outcome> {
        let fails = spec.name == "database" && self.failing.load(Ordering::SeqCst);
        Box::pin(async move {
            Outcome {
                reason: if fails { Reason::Status } else { Reason::None },
                status: Some(if fails { 500 } else { 200 }),
                duration: Duration::from_millis(3),
                trace: Trace::default(),
                body_match: None,
                version: None,
                detail: fails.then(|| "status 500, expected 200".to_owned()),
                tls: None,
            }
        })
    }
}

/// A scrape-mode exporter whose probes `Scripted` answers; `scrape` runs every check once
/// (time is paused: each scrape comes a whole interval after the one before).
async fn scripted() -> (helpers::TestExporter, Arc<Scripted>) {
    let prober = Arc::new(Scripted {
        failing: AtomicBool::new(true),
    });
    let (mut deps, _clock) = helpers::deps();
    deps.prober = Some(prober.clone());
    let toml =
        format!("[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"http://{TEST_HOST}:9/\"\n");
    (helpers::start(&toml, deps).await, prober)
}

async fn scrape(exporter: &helpers::TestExporter) {
    tokio::time::advance(Duration::from_secs(3600)).await;
    exporter.exporter.scrape(None).await;
}

#[tokio::test(start_paused = true)]
async fn the_strip_keeps_the_last_30_results() {
    let (exporter, prober) = scripted().await;
    for _ in 0..33 {
        scrape(&exporter).await;
    }
    prober.failing.store(false, Ordering::SeqCst);
    scrape(&exporter).await;
    let body = exporter.get("/").await.body;
    let database = strip(&body, "database");
    assert_eq!(database.len(), 30);
    assert!(database[..29].iter().all(|(failed, _)| *failed));
    assert!(
        !database[29].0,
        "the latest, a success, is last: {database:?}"
    );
    assert!(strip(&body, "api").iter().all(|(failed, _)| !failed));
    assert!(body.contains("0 of 4 checks failing"), "{body}");
    exporter.stop().await;
}

/// At the default level: one line per target at start-up, a line when a check reaches the
/// alerting threshold (its second failure in a row, once), and one when it recovers.
#[tokio::test(start_paused = true)]
async fn logs_say_when_a_check_goes_down_and_recovers() {
    let (logs, _guard) = helpers::Captured::install(tracing::Level::INFO);
    let (exporter, prober) = scripted().await;
    scrape(&exporter).await;
    let text = || String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let started = text();
    let target_line = started
        .lines()
        .find(|l| l.contains("INFO") && l.contains(" target target_name="))
        .unwrap_or_else(|| panic!("no start-up line for the target:\n{started}"));
    for needle in [
        "target_name=gt",
        &format!("url=http://{TEST_HOST}:9/"),
        "checks=api,dashboard,database,health",
        "mode=\"scrape\"",
    ] {
        assert!(target_line.contains(needle), "{needle} in {target_line}");
    }
    assert_eq!(logs.count("WARN", "check failing"), 1, "{}", text());
    assert_eq!(logs.count("WARN", "check down"), 0);
    scrape(&exporter).await;
    scrape(&exporter).await;
    assert_eq!(logs.count("WARN", "check down"), 1, "{}", text());
    assert_eq!(logs.count("WARN", "check=\"database\""), 2, "{}", text());
    prober.failing.store(false, Ordering::SeqCst);
    scrape(&exporter).await;
    scrape(&exporter).await;
    assert_eq!(logs.count("INFO", "check recovered"), 1, "{}", text());
    assert!(text().contains("after_failures=3"), "{}", text());
    exporter.stop().await;
}
