//! The ingest canary against the stub GlitchTip pipeline ([`crate::stub_ingest`]): the
//! metric values in every mode, one canary in flight, only the configured key, `Retry-After`
//! honoured, no secret anywhere; and the canary's alert rules under promtool.
//!
//! Real time, short: interval 600 ms, timeout 500 ms, events visible after 100 ms when
//! healthy. Tests wait for a condition on `/metrics` (bounded), never for a fixed time.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{Samples, TEST_HOST, TestExporter, deps, start};
use crate::stub_ingest::{self, KEY, Mode, StubIngest, TOKEN};

const FAST: &str = "interval = \"600ms\"\ntimeout = \"500ms\"\n";

/// The secret files and the stub.
struct Setup {
    stub: StubIngest,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(mode: Mode) -> Self {
        Self {
            stub: StubIngest::start(mode).await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A config whose only check is the canary, with the DSN `dsn` and `extra` keys.
    fn config(&self, dsn: &str, extra: &str) -> String {
        let dsn_file = self.dir.path().join("dsn");
        let token_file = self.dir.path().join("token");
        std::fs::write(&dsn_file, format!("{dsn}\n")).unwrap();
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        format!(
            r#"
[targets.stub]
url = "{url}"
default_checks = false

[targets.stub.canary]
dsn = {{ file = "{dsn_file}" }}
token = {{ file = "{token_file}" }}
organization = "{org}"
{FAST}{extra}
"#,
            url = self.stub.url(),
            dsn_file = dsn_file.display(),
            token_file = token_file.display(),
            org = stub_ingest::ORG,
        )
    }

    async fn start(&self, extra: &str) -> TestExporter {
        self.start_with_dsn(&self.stub.dsn(), extra).await
    }

    async fn start_with_dsn(&self, dsn: &str, extra: &str) -> TestExporter {
        let (deps, _clock) = deps();
        start(&self.config(dsn, extra), deps).await
    }

    /// The stub saw no breach, and only the configured key.
    fn assert_manners(&self) {
        assert_eq!(self.stub.violations(), Vec::<String>::new());
        assert!(
            self.stub.keys().iter().all(|k| k == KEY),
            "{:?}",
            self.stub.keys().len()
        );
    }
}

/// Polls `/metrics` until `cond` holds (at most 15 s).
async fn wait_for(exporter: &TestExporter, what: &str, cond: impl Fn(&Samples) -> bool) -> Samples {
    exporter.wait_for(what, &["glitchtip_ingest"], cond).await
}

/// The failure reason the check series of `check="canary"` show, once they exist.
fn core_reason(s: &Samples) -> Option<String> {
    let found = s.find(
        "glitchtip_probe_failure_reason",
        &[("target", "stub"), ("check", "canary")],
    );
    found.first().map(|(labels, _)| labels["reason"].clone())
}

fn ingest(s: &Samples, name: &str) -> f64 {
    s.get(name, &[("target", "stub")])
}

fn canaries(s: &Samples, result: &str) -> f64 {
    s.find(
        "glitchtip_ingest_canaries_total",
        &[("target", "stub"), ("result", result)],
    )
    .first()
    .map_or(0.0, |(_, v)| *v)
}

/// The one current ingest reason (exactly one series must exist).
fn ingest_reason(s: &Samples) -> String {
    let found = s.find("glitchtip_ingest_failure_reason", &[("target", "stub")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, 1.0);
    found[0].0["reason"].clone()
}

fn consecutive(s: &Samples) -> f64 {
    s.find(
        "glitchtip_consecutive_failures",
        &[("target", "stub"), ("check", "canary")],
    )
    .first()
    .map_or(0.0, |(_, v)| *v)
}

#[tokio::test]
async fn healthy_pipeline_shows_the_event_and_its_lag() {
    let setup = Setup::new(Mode::Healthy {
        visible_after: Duration::from_millis(100),
    })
    .await;
    let exporter = setup.start("").await;
    // The check series (`check="canary"`) are written ahead, up to a second after the
    // `glitchtip_ingest_*` ones (written at each scrape): wait for both.
    let s = wait_for(&exporter, "two visible canaries", |s| {
        canaries(s, "visible") >= 2.0 && core_reason(s).as_deref() == Some("none")
    })
    .await;
    assert_eq!(ingest(&s, "glitchtip_ingest_up"), 1.0);
    assert_eq!(ingest(&s, "glitchtip_ingest_accept_status_code"), 200.0);
    let accept = ingest(&s, "glitchtip_ingest_accept_duration_seconds");
    assert!(accept > 0.0 && accept < 0.5, "{accept}");
    // Visible 100 ms after the stub received the event; measured from the exporter's
    // receipt of the answer to the poll that saw it, within the 450 ms of one canary.
    let lag = ingest(&s, "glitchtip_ingest_lag_seconds");
    assert!((0.05..0.45).contains(&lag), "lag {lag}");
    assert_eq!(ingest_reason(&s), "none");
    // The core series of check="canary".
    assert_eq!(s.check("glitchtip_up", "stub", "canary"), 1.0);
    assert_eq!(s.reason("stub", "canary"), "none");
    assert_eq!(
        s.check("glitchtip_http_status_code", "stub", "canary"),
        200.0
    );
    assert_eq!(consecutive(&s), 0.0);

    setup.assert_manners();
    let ingests = setup.stub.ingests();
    let mut ids: Vec<&str> = ingests.iter().map(|i| i.id.as_str()).collect();
    assert!(ids.iter().all(|id| id.len() == 32), "{ids:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), ingests.len(), "a fresh event id per canary");
    assert!(ingests.iter().all(|i| i.path == "/api/1/envelope/"));
    exporter.stop().await;
}

#[tokio::test]
async fn stalled_worker_is_accepted_but_never_visible() {
    let setup = Setup::new(Mode::WorkerStalled).await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    assert_eq!(ingest(&s, "glitchtip_ingest_up"), 0.0);
    // Every HTTP answer was a 200: only the canary sees this.
    assert_eq!(ingest(&s, "glitchtip_ingest_accept_status_code"), 200.0);
    assert_eq!(ingest_reason(&s), "not_visible");
    assert!(!s.has("glitchtip_ingest_lag_seconds", &[("target", "stub")]));
    assert!(canaries(&s, "not_visible") >= 2.0);
    assert_eq!(s.check("glitchtip_up", "stub", "canary"), 0.0);
    assert_eq!(s.reason("stub", "canary"), "timeout");
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn redis_down_is_rejected_with_the_recorded_500() {
    let setup = Setup::new(Mode::RedisDown).await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    assert_eq!(ingest(&s, "glitchtip_ingest_up"), 0.0);
    assert_eq!(ingest(&s, "glitchtip_ingest_accept_status_code"), 500.0);
    assert_eq!(ingest_reason(&s), "rejected");
    assert_eq!(s.reason("stub", "canary"), "status");
    // Nothing was accepted, so nothing was looked for.
    assert!(setup.stub.seen().iter().all(|r| r.kind == "ingest"));
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn throttled_ingest_gets_nothing_before_retry_after() {
    let setup = Setup::new(Mode::Throttled {
        retry_after_secs: 2,
    })
    .await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "two throttled canaries", |s| {
        canaries(s, "throttled") >= 2.0 && core_reason(s).as_deref() == Some("status")
    })
    .await;
    assert_eq!(ingest_reason(&s), "throttled");
    assert_eq!(s.reason("stub", "canary"), "status");
    // The quick re-run after the 429 failed at once, without sending: status 0.
    assert_eq!(setup.stub.ingests().len(), 1);
    assert_eq!(ingest(&s, "glitchtip_ingest_accept_status_code"), 0.0);

    setup.stub.set_mode(Mode::Healthy {
        visible_after: Duration::from_millis(50),
    });
    let s = wait_for(&exporter, "recovery", |s| {
        s.find("glitchtip_ingest_up", &[("target", "stub")])
            .first()
            .is_some_and(|(_, v)| *v == 1.0)
    })
    .await;
    assert_eq!(ingest_reason(&s), "none");
    let ingests = setup.stub.ingests();
    assert!(ingests.len() >= 2);
    let gap = ingests[1].at - ingests[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "second request {gap:?} after the 429"
    );
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn slow_worker_within_the_timeout_shows_its_lag() {
    let setup = Setup::new(Mode::Healthy {
        visible_after: Duration::from_millis(300),
    })
    .await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "a visible canary", |s| {
        canaries(s, "visible") >= 1.0
    })
    .await;
    let lag = ingest(&s, "glitchtip_ingest_lag_seconds");
    assert!((0.25..0.45).contains(&lag), "lag {lag}");
    assert_eq!(ingest(&s, "glitchtip_ingest_up"), 1.0);
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn slow_worker_beyond_the_timeout_is_not_visible() {
    let setup = Setup::new(Mode::Healthy {
        visible_after: Duration::from_secs(2),
    })
    .await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    assert_eq!(ingest_reason(&s), "not_visible");
    assert_eq!(ingest(&s, "glitchtip_ingest_up"), 0.0);
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn malformed_api_answers_are_an_api_failure() {
    let setup = Setup::new(Mode::MalformedApi).await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    assert_eq!(ingest_reason(&s), "api");
    assert_eq!(s.reason("stub", "canary"), "http");
    assert_eq!(ingest(&s, "glitchtip_ingest_accept_status_code"), 200.0);
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn an_api_naming_another_event_is_not_believed() {
    let setup = Setup::new(Mode::LyingApi).await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    assert_eq!(ingest_reason(&s), "not_visible");
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn hanging_ingest_is_a_timeout_and_no_pile_up() {
    let setup = Setup::new(Mode::IngestHangs).await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "3 consecutive failures", |s| {
        consecutive(s) >= 3.0
    })
    .await;
    assert_eq!(ingest_reason(&s), "timeout");
    assert_eq!(s.reason("stub", "canary"), "timeout");
    assert_eq!(ingest(&s, "glitchtip_ingest_accept_status_code"), 0.0);
    // One request per canary, each given up before the next.
    let ingests = setup.stub.ingests();
    assert!(ingests.len() <= 4, "{}", ingests.len());
    for pair in ingests.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(90));
    }
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn hanging_api_is_an_api_failure() {
    let setup = Setup::new(Mode::ApiHangs).await;
    let exporter = setup.start("").await;
    let s = wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    assert_eq!(ingest_reason(&s), "api");
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn store_endpoint_and_project_event_lookup() {
    let setup = Setup::new(Mode::Healthy {
        visible_after: Duration::from_millis(100),
    })
    .await;
    let extra = format!(
        "endpoint = \"store\"\nproject = \"{}\"\n",
        stub_ingest::PROJECT
    );
    let exporter = setup.start(&extra).await;
    let s = wait_for(&exporter, "a visible canary", |s| {
        canaries(s, "visible") >= 1.0
    })
    .await;
    assert_eq!(ingest(&s, "glitchtip_ingest_up"), 1.0);
    let seen = setup.stub.seen();
    assert!(seen.iter().any(|r| r.path == "/api/1/store/"));
    assert!(
        seen.iter()
            .filter(|r| r.kind == "poll")
            .all(|r| r.path == format!("/api/0/projects/lab-org/lab-project/events/{}/", r.id)),
        "{seen:?}"
    );
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn ingest_goes_to_the_dsn_host_through_the_injected_resolver() {
    let setup = Setup::new(Mode::Healthy {
        visible_after: Duration::from_millis(50),
    })
    .await;
    let exporter = setup
        .start_with_dsn(&setup.stub.dsn_on(TEST_HOST), "")
        .await;
    wait_for(&exporter, "a visible canary", |s| {
        canaries(s, "visible") >= 1.0
    })
    .await;
    let port = setup.stub.addr.port();
    for r in setup.stub.seen() {
        let expected = match r.kind {
            "ingest" => format!("{TEST_HOST}:{port}"),
            _ => format!("127.0.0.1:{port}"),
        };
        assert_eq!(r.host, expected, "{r:?}");
    }
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn unresolvable_dsn_host_is_dns() {
    let setup = Setup::new(Mode::WorkerStalled).await;
    let dsn = setup.stub.dsn_on("unknown.test");
    let exporter = setup.start_with_dsn(&dsn, "").await;
    let s = wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    assert_eq!(ingest_reason(&s), "dns");
    assert_eq!(s.reason("stub", "canary"), "dns");
    assert!(setup.stub.seen().is_empty());
    exporter.stop().await;
}

#[tokio::test]
async fn refused_ingest_is_connect() {
    let setup = Setup::new(Mode::WorkerStalled).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dsn = format!("http://{KEY}@127.0.0.1:{closed}/1");
    let exporter = setup.start_with_dsn(&dsn, "").await;
    let s = wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    assert_eq!(ingest_reason(&s), "connect");
    assert_eq!(s.reason("stub", "canary"), "connect");
    exporter.stop().await;
}

#[tokio::test]
async fn probe_never_runs_the_canary_and_reload_keeps_or_removes_its_series() {
    let setup = Setup::new(Mode::Healthy {
        visible_after: Duration::from_millis(50),
    })
    .await;
    let exporter = setup.start("").await;
    wait_for(&exporter, "a visible canary", |s| {
        canaries(s, "visible") >= 1.0
    })
    .await;

    let probe = exporter.probe("stub").await;
    assert!(
        !probe.has("glitchtip_up", &[("check", "canary")]),
        "{probe:?}"
    );
    assert!(
        !probe
            .names()
            .iter()
            .any(|n| n.starts_with("glitchtip_ingest"))
    );

    // An unchanged canary keeps running through a reload, and keeps its series.
    let before = canaries(&exporter.metrics().await, "visible");
    let same = setup.config(&setup.stub.dsn(), "");
    let r = exporter.reload(&same).await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(&exporter, "another visible canary after the reload", |s| {
        canaries(s, "visible") > before
    })
    .await;

    // Same target, no canary table any more.
    let without = format!(
        "[targets.stub]\nurl = \"{}\"\ndefault_checks = false\n[targets.stub.checks.x]\npath = \"/x\"\n",
        setup.stub.url()
    );
    let r = exporter.reload(&without).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = exporter.metrics().await;
    assert!(
        !s.names().iter().any(|n| n.starts_with("glitchtip_ingest")),
        "{s:?}"
    );
    assert!(!s.has("glitchtip_up", &[("check", "canary")]));
    setup.assert_manners();
    exporter.stop().await;
}

#[tokio::test]
async fn scrape_mode_runs_the_canary_within_the_scrape() {
    let setup = Setup::new(Mode::Healthy {
        visible_after: Duration::from_millis(50),
    })
    .await;
    let config = format!(
        "[server]\nmode = \"scrape\"\n{}",
        setup.config(&setup.stub.dsn(), "")
    );
    let (deps, _clock) = deps();
    let exporter = start(&config, deps).await;
    // The first scrape runs the due canary and answers when it is done.
    let s = exporter.metrics().await;
    assert_eq!(ingest(&s, "glitchtip_ingest_up"), 1.0);
    assert_eq!(canaries(&s, "visible"), 1.0);
    // Not due again before its interval: a second scrape sends nothing.
    let s = exporter.metrics().await;
    assert_eq!(canaries(&s, "visible"), 1.0);
    assert_eq!(setup.stub.ingests().len(), 1);
    setup.assert_manners();
    exporter.stop().await;
}

/// A writer that appends to a shared buffer, for capturing logs.
#[derive(Clone)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Captures every log of this thread (and so of a current-thread runtime's tasks)
    /// until the guard is dropped.
    pub(crate) fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self(Arc::new(Mutex::new(Vec::new())));
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // Callsites first hit by a concurrent test while this subscriber was being
        // registered may have cached "never": recompute with this subscriber in place.
        tracing::callsite::rebuild_interest_cache();
        (capture, guard)
    }

    /// Everything logged so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_logs_metrics_landing_page_or_debug() {
    // Current-thread runtime: every task logs through this thread's subscriber.
    let (logs, _guard) = Capture::install();

    let setup = Setup::new(Mode::RedisDown).await;
    let exporter = setup.start("").await;
    wait_for(&exporter, "2 consecutive failures", |s| {
        consecutive(s) >= 2.0
    })
    .await;
    setup.stub.set_mode(Mode::MalformedApi);
    wait_for(&exporter, "an api failure", |s| {
        s.has("glitchtip_ingest_failure_reason", &[("reason", "api")])
    })
    .await;
    let metrics = exporter.get("/metrics").await.body;
    let landing = exporter.get("/").await.body;
    let debug = format!("{:?}", exporter.exporter.config());
    exporter.stop().await;
    let logs = logs.text();
    assert!(logs.contains("check failing"), "{logs}");
    // The landing page shows the canary's last result.
    assert!(landing.contains("canary: last result api"), "{landing}");
    for (what, text) in [
        ("logs", &logs),
        ("metrics", &metrics),
        ("landing page", &landing),
        ("config Debug", &debug),
    ] {
        assert!(!text.contains(KEY), "the DSN key in the {what}");
        assert!(!text.contains(TOKEN), "the token in the {what}");
    }
    setup.assert_manners();
}

/// Runs a tool from `alerts/`; panics with its output when it fails.
fn promtool(args: &[&str]) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/alerts"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool (scripts/test-all.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn canary_and_queue_alert_rules_pass_their_unit_tests() {
    // One not_visible canary is silent, two fire; recovery resolves; rejected, throttled,
    // unreachable, lag, backlog, failed tasks, scheduler, workers, unreadable queue.
    let out = promtool(&["check", "rules", "glitchtip.rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool(&["test", "rules", "tests/canary.rules.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The lines of the commented-out table `header` in exporter.toml, uncommented.
fn commented_table(text: &str, header: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| *l != format!("# {header}"))
        .take_while(|l| !l.is_empty())
        .map(|l| l.strip_prefix("# ").unwrap_or(l).to_owned())
        .collect()
}

#[test]
fn exporter_toml_shows_the_canary_and_queue_defaults() {
    use glitchtip_exporter::checks::CheckKind;
    use glitchtip_exporter::config::{ConfigSource, defaults};
    use glitchtip_exporter::queue::config::LayoutChoice;

    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/exporter.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let dsn = secret("dsn", &format!("https://{KEY}@glitchtip.example.com/1"));
    let token = secret("token", TOKEN);
    let password = secret("password", "pw");
    let mut toml = "[targets.prod]\nurl = \"https://glitchtip.example.com\"\n".to_owned();
    for header in ["[targets.prod.canary]", "[targets.prod.queue]"] {
        let lines = commented_table(&text, header);
        assert!(lines.len() > 5, "{header} is shown in exporter.toml");
        for line in lines {
            // Optional keys without a default stay out; the shown prefix is the first
            // one tried.
            if ["project", "prefix", "tls", " "]
                .iter()
                .any(|k| line.starts_with(k))
            {
                if line.starts_with("prefix") {
                    assert!(
                        line.starts_with(&format!("prefix = \"{}\"", defaults::QUEUE_PREFIXES[0]))
                    );
                }
                continue;
            }
            let line = line
                .replace("/run/secrets/glitchtip-canary-dsn", &dsn)
                .replace("/run/secrets/glitchtip-canary-token", &token)
                .replace("/run/secrets/valkey-exporter-password", &password);
            toml.push_str(&line);
            toml.push('\n');
        }
    }
    let file = dir.path().join("exporter.toml");
    std::fs::write(&file, toml).unwrap();
    let config = ConfigSource {
        file: Some(file),
        env: Some(Default::default()),
        ..Default::default()
    }
    .load()
    .unwrap_or_else(|e| panic!("{e}"));
    let target = config.target("prod").unwrap();
    let canary = target.checks.iter().find(|c| c.name == "canary").unwrap();
    assert_eq!(canary.schedule.interval, defaults::CANARY_INTERVAL);
    assert_eq!(canary.schedule.timeout, defaults::CANARY_TIMEOUT);
    assert_eq!(canary.schedule.retry_interval, Duration::from_secs(5));
    let CheckKind::Canary(c) = &canary.kind else {
        panic!("not a canary: {canary:?}");
    };
    assert_eq!(c.endpoint, glitchtip_exporter::canary::Endpoint::Envelope);
    assert_eq!(
        c.ingest_url.as_str(),
        "https://glitchtip.example.com/api/1/envelope/"
    );
    let queue = target.queue.as_ref().unwrap();
    assert_eq!(
        (
            queue.interval,
            queue.timeout,
            queue.layout,
            queue.workers,
            queue.prefix.as_deref()
        ),
        (
            defaults::QUEUE_INTERVAL,
            defaults::QUEUE_TIMEOUT,
            LayoutChoice::Auto,
            false,
            None
        )
    );
    assert_eq!(queue.username.as_deref(), Some("glitchtip-exporter"));
}

#[test]
fn canary_and_queue_alerts_are_routed_by_severity() {
    for (alert, severity, receiver) in [
        ("GlitchTipIngestStalled", "critical", "glitchtip-pager"),
        ("GlitchTipIngestLagHigh", "warning", "glitchtip-chat"),
        ("GlitchTipQueueNoLiveWorker", "critical", "glitchtip-pager"),
    ] {
        let out = std::process::Command::new("amtool")
            .args([
                "config",
                "routes",
                "test",
                "--config.file=alertmanager.example.yml",
            ])
            .arg(format!("alertname={alert}"))
            .arg(format!("severity={severity}"))
            .arg("target=prod")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/alerts"))
            .output()
            .expect("amtool (scripts/test-all.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        let got: Vec<&str> = text.lines().filter(|l| !l.starts_with("Warning")).collect();
        assert_eq!(got.join("\n").trim(), receiver, "{alert}");
    }
    // Every canary and queue alert is inhibited while the whole instance is unreachable.
    let am = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/alerts/alertmanager.example.yml"
    ))
    .unwrap();
    assert!(am.contains("GlitchTipIngest.*|GlitchTipQueue.*"), "{am}");
}

#[test]
fn bad_canary_and_queue_tables_name_the_key_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let dsn = write("dsn", &format!("https://{KEY}@g.example/1"));
    let no_project = write("no-project", &format!("https://{KEY}@g.example/"));
    let token = write("token", TOKEN);
    let spaced = write("spaced", "two words");
    let canary = |extra: &str| {
        format!(
            "[targets.p.canary]\ndsn = {{ file = \"{dsn}\" }}\ntoken = {{ file = \"{token}\" }}\norganization = \"acme\"\n{extra}"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (
            "[targets.p.canary]\norganization = \"acme\"\n".to_owned(),
            "targets.p.canary.dsn: a DSN source",
        ),
        (
            format!(
                "[targets.p.canary]\ndsn = {{ file = \"{no_project}\" }}\ntoken = {{ file = \"{token}\" }}\norganization = \"acme\"\n"
            ),
            "targets.p.canary.dsn: a DSN such as \"https://<public key>@glitchtip.example.com/<project id>\" (the path does not end with a numeric project id)",
        ),
        (
            format!("[targets.p.canary]\ndsn = {{ file = \"{dsn}\" }}\norganization = \"acme\"\n"),
            "targets.p.canary.token: an API token source with scope event:read",
        ),
        (
            format!(
                "[targets.p.canary]\ndsn = {{ file = \"{dsn}\" }}\ntoken = {{ file = \"{spaced}\" }}\norganization = \"acme\"\n"
            ),
            "targets.p.canary.token: a token of visible ASCII characters without spaces",
        ),
        (
            format!(
                "[targets.p.canary]\ndsn = {{ file = \"{dsn}\" }}\ntoken = {{ file = \"{token}\" }}\n"
            ),
            "targets.p.canary.organization: the organization slug",
        ),
        (
            canary("endpoint = \"http\"\n"),
            "targets.p.canary.endpoint: \"envelope\" or \"store\", got \"http\"",
        ),
        (
            canary("project = \"a/b\"\n"),
            "targets.p.canary.project: a project slug",
        ),
        (
            canary("interval = \"10s\"\ntimeout = \"20s\"\n"),
            "targets.p.canary.timeout: a timeout no longer than the interval (10s), got 20s",
        ),
        (
            canary("retry_interval = \"1s\"\n"),
            "unknown key `retry_interval`",
        ),
        (
            "[targets.p.checks.canary]\npath = \"/x\"\n".to_owned(),
            "targets.p.checks.canary: another name: \"canary\" is the ingest canary, configured in [targets.p.canary]",
        ),
        (
            "[targets.p.queue]\nlayout = \"auto\"\n".to_owned(),
            "targets.p.queue.url: a URL such as",
        ),
        (
            "[targets.p.queue]\nurl = \"http://valkey:6379\"\n".to_owned(),
            "targets.p.queue.url: a URL such as \"redis://valkey:6379/0\", \"rediss://valkey:6380/0\" or \"postgres://exporter@db:5432/glitchtip\", got scheme \"http\"",
        ),
        (
            "[targets.p.queue]\nurl = \"redis://valkey/x\"\n".to_owned(),
            "targets.p.queue.url: a URL such as \"redis://valkey:6379/0\", \"rediss://valkey:6380/0\" or \"postgres://exporter@db:5432/glitchtip\": the path is the database number, got \"x\"",
        ),
        (
            "[targets.p.queue]\nurl = \"redis://valkey\"\nlayout = \"celery\"\nworkers = true\n"
                .to_owned(),
            "targets.p.queue.workers: false with layout = \"celery\"",
        ),
        (
            "[targets.p.queue]\nurl = \"redis://valkey\"\nprefix = \"vt*\"\n".to_owned(),
            "targets.p.queue.prefix: a key prefix such as \"{vt}\"",
        ),
        (
            "[targets.p.queue]\nurl = \"redis://valkey\"\ntls = { server_name = \"v\" }\n"
                .to_owned(),
            "targets.p.queue.tls: TLS options only with a rediss:// URL",
        ),
        (
            "[targets.p.queue]\nurl = \"redis://valkey\"\nlayout = \"sidekiq\"\n".to_owned(),
            "targets.p.queue.layout: \"auto\", \"celery\" (GlitchTip 5.x) or \"vtasks\" (6.x), got \"sidekiq\"",
        ),
    ];
    for (i, (table, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case-{i}.toml"));
        std::fs::write(
            &file,
            format!("[targets.p]\nurl = \"https://g.example\"\n{table}"),
        )
        .unwrap();
        let err = glitchtip_exporter::config::ConfigSource {
            file: Some(file),
            env: Some(Default::default()),
            ..Default::default()
        }
        .load()
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(err.contains(expected), "case {i}: {err}");
        assert!(
            !err.contains(KEY) && !err.contains(TOKEN),
            "case {i} shows a secret: {err}"
        );
    }
}
