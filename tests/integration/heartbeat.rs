//! Worker heartbeats over HTTP: the endpoints and their metrics, requests that must change
//! nothing, an unwritable state file, reload, and durability across `kill -9` of the real
//! binary.
//!
//! In-process tests run the exporter with the manual clock of [`helpers::deps`], so every
//! age and deadline is exact; the binary tests use the system clock and bound the times.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{self, CLOCK_START, Samples, TestExporter, send};

const TOKEN: &str = "hb-token-0123456789abcdef";

/// A temporary folder with the token file; the state file goes beside it.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Self { dir }
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// `[server] state_file` plus one `[heartbeats.<name>]` table per `(name, body)`.
    fn config(&self, state_file: &Path, heartbeats: &[(&str, &str)]) -> String {
        let mut toml = format!("[server]\nstate_file = \"{}\"\n", state_file.display());
        for (name, body) in heartbeats {
            toml.push_str(&format!(
                "[heartbeats.{name}]\n{body}\ntoken = {{ file = \"{}\" }}\n",
                self.token_file().display()
            ));
        }
        toml
    }
}

/// A POST whose body is sent chunked, without a `Content-Length`.
async fn send_chunked(addr: SocketAddr, path: &str, chunks: usize, chunk: usize) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let frames = (0..chunks).map(move |_| {
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; chunk])))
    });
    let body = StreamBody::new(futures::stream::iter(frames));
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", addr.to_string())
        .body(body)
        .unwrap();
    let status = match sender.send_request(req).await {
        Ok(resp) => resp.status().as_u16(),
        // The server may answer and close before the whole body is sent.
        Err(e) => panic!("no answer: {e}"),
    };
    driver.abort();
    status
}

/// A request that must be refused: method, path and query, headers.
type Refused<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

fn q(path: &str) -> String {
    format!("{path}?token={TOKEN}")
}

fn hb(name: &str) -> [(&'static str, &str); 1] {
    [("heartbeat", name)]
}

/// Every heartbeat series except the counters of refused requests.
fn heartbeat_series(m: &Samples) -> Vec<String> {
    m.0.iter()
        .filter(|(name, labels, _)| {
            (name.starts_with("glitchtip_heartbeat_")
                || name == "glitchtip_exporter_state_write_errors_total")
                && name != "glitchtip_heartbeat_unknown_requests_total"
                && labels.get("kind").map(String::as_str) != Some("rejected")
        })
        .map(|(name, labels, value)| format!("{name}{labels:?} {value}"))
        .collect()
}

/// The journal beside a state file.
fn journal(state_file: &Path) -> PathBuf {
    glitchtip_exporter::heartbeat::store::journal_path(state_file)
}

async fn start(toml: &str) -> (TestExporter, Arc<glitchtip_exporter::clock::ManualClock>) {
    let (deps, clock) = helpers::deps();
    (helpers::start(toml, deps).await, clock)
}

#[tokio::test]
async fn heartbeat_pings_drive_the_metrics() {
    let files = Files::new();
    let toml = files.config(
        &files.state_file(),
        &[("worker", "interval = \"5m\"\ngrace = \"1m\"")],
    );
    let (exporter, clock) = start(&toml).await;
    let t0 = CLOCK_START as f64;

    // Never pinged: counted from the first configuration.
    clock.advance(Duration::from_secs(30));
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 1.0);
    assert_eq!(
        m.get("glitchtip_heartbeat_age_seconds", &hb("worker")),
        30.0
    );
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_deadline_timestamp_seconds",
            &hb("worker")
        ),
        t0 + 360.0
    );
    assert!(!m.has(
        "glitchtip_heartbeat_last_seen_timestamp_seconds",
        &hb("worker")
    ));
    assert!(!m.has("glitchtip_heartbeat_last_duration_seconds", &hb("worker")));
    for kind in ["success", "start", "fail", "rejected"] {
        assert_eq!(
            m.get(
                "glitchtip_heartbeat_pings_total",
                &[("heartbeat", "worker"), ("kind", kind)]
            ),
            0.0
        );
    }

    // Missed.
    clock.advance(Duration::from_secs(331));
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 0.0);

    // start (Bearer), then success with a body (query token): back up, with a duration.
    let bearer = format!("Bearer {TOKEN}");
    let r = send(
        exporter.addr,
        "POST",
        "/heartbeat/worker/start",
        &[("authorization", &bearer)],
        vec![],
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK\n"));
    clock.advance(Duration::from_secs(9));
    let r = send(
        exporter.addr,
        "POST",
        &q("/heartbeat/worker"),
        &[],
        b"42 events written".to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = t0 + 370.0;
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 1.0);
    assert_eq!(m.get("glitchtip_heartbeat_age_seconds", &hb("worker")), 0.0);
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_last_seen_timestamp_seconds",
            &hb("worker")
        ),
        seen
    );
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_deadline_timestamp_seconds",
            &hb("worker")
        ),
        seen + 360.0
    );
    assert_eq!(
        m.get("glitchtip_heartbeat_last_duration_seconds", &hb("worker")),
        9.0
    );
    // The ping is in the journal (the snapshot follows later).
    let journal = std::fs::read_to_string(journal(&files.state_file())).unwrap();
    assert!(journal.contains("42 events written"), "{journal}");
    assert!(!journal.contains(TOKEN));

    // Exit status 3: failed at once. HEAD and exit status 0: success again.
    clock.advance(Duration::from_secs(60));
    assert_eq!(exporter.get(&q("/heartbeat/worker/3")).await.status, 200);
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 0.0);
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_last_seen_timestamp_seconds",
            &hb("worker")
        ),
        seen
    );
    let r = helpers::request(exporter.addr, "HEAD", &q("/heartbeat/worker/0"), &[]).await;
    assert_eq!(r.status, 200);
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 1.0);
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_last_seen_timestamp_seconds",
            &hb("worker")
        ),
        seen + 60.0
    );
    // fail, then a plain GET success.
    assert_eq!(exporter.get(&q("/heartbeat/worker/fail")).await.status, 200);
    assert_eq!(
        exporter
            .metrics()
            .await
            .get("glitchtip_heartbeat_up", &hb("worker")),
        0.0
    );
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 200);
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 1.0);
    for (kind, n) in [
        ("success", 3.0),
        ("start", 1.0),
        ("fail", 2.0),
        ("rejected", 0.0),
    ] {
        assert_eq!(
            m.get(
                "glitchtip_heartbeat_pings_total",
                &[("heartbeat", "worker"), ("kind", kind)]
            ),
            n,
            "{kind}"
        );
    }
    // The landing page lists the heartbeat with its state, and never its token.
    let landing = exporter.get("/").await;
    assert!(
        landing.body.contains("<h2>Heartbeats</h2>"),
        "{}",
        landing.body
    );
    assert!(landing.body.contains("<td>worker</td>"));
    assert!(
        !landing.body.contains(
            &std::fs::read_to_string(files.token_file())
                .unwrap()
                .trim()
                .to_owned()
        )
    );
    exporter.stop().await;
}

#[tokio::test]
async fn refused_requests_change_nothing() {
    let files = Files::new();
    let toml = files.config(&files.state_file(), &[("worker", "interval = \"5m\"")]);
    let (exporter, clock) = start(&toml).await;
    clock.advance(Duration::from_secs(10));
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 200);
    clock.advance(Duration::from_secs(10));
    let state_before = std::fs::read(files.state_file()).unwrap();
    let before = exporter.metrics().await;

    let long_name = format!("/heartbeat/{}?token={TOKEN}", "w".repeat(8_000));
    let wrong_bearer = "Bearer hb-token-0123456789abcdeF";
    // Known name, wrong or missing token: 404, counted as rejected.
    let rejected: Vec<Refused> = vec![
        ("GET", "/heartbeat/worker".to_owned(), vec![]),
        ("GET", "/heartbeat/worker?token=nope".to_owned(), vec![]),
        ("GET", "/heartbeat/worker?token=".to_owned(), vec![]),
        (
            "POST",
            "/heartbeat/worker/fail".to_owned(),
            vec![("authorization", wrong_bearer)],
        ),
        (
            "GET",
            "/heartbeat/worker/start".to_owned(),
            vec![("authorization", TOKEN)],
        ),
        (
            "GET",
            format!("/heartbeat/worker/0?token={}", &TOKEN[1..]),
            vec![],
        ),
    ];
    // Unknown name or action, path tricks: 404, counted as unknown.
    let unknown: Vec<String> = vec![
        q("/heartbeat/nope"),
        q("/heartbeat/WORKER"),
        q("/heartbeat/worker%2Fstart"),
        q("/heartbeat/worker%2fstart"),
        q("/heartbeat/%77orker"),
        q("/heartbeat/..%2Fmetrics"),
        q("/heartbeat/%2e%2e"),
        q("/heartbeat/worker/256"),
        q("/heartbeat/worker/-1"),
        q("/heartbeat/worker/1.0"),
        q("/heartbeat/worker/%30"),
        q("/heartbeat/worker/ok"),
        long_name.clone(),
    ];
    for (method, path, headers) in &rejected {
        let r = send(exporter.addr, method, path, headers, vec![]).await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.body, "not found\n");
    }
    for path in &unknown {
        let r = exporter.get(path).await;
        assert_eq!(r.status, 404, "{}", &path[..path.len().min(80)]);
        assert_eq!(r.body, "not found\n");
    }
    // Not even routed: the same 404, counted nowhere.
    for path in [
        q("/heartbeat/worker/start/x"),
        q("/heartbeat/"),
        q("/heartbeat/worker/../../metrics"),
        q("/heartbeat/../heartbeat/worker"),
    ] {
        assert_eq!(exporter.get(&path).await.status, 404, "{path}");
    }
    // Other methods are not pings.
    let r = send(exporter.addr, "PUT", &q("/heartbeat/worker"), &[], vec![]).await;
    assert_eq!(r.status, 405);
    // Too large, declared or streamed.
    let r = send(
        exporter.addr,
        "POST",
        &q("/heartbeat/worker"),
        &[],
        vec![b'x'; 10 * 1024 + 1],
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(
        send_chunked(exporter.addr, &q("/heartbeat/worker/fail"), 11, 1024).await,
        413
    );

    let after = exporter.metrics().await;
    assert_eq!(heartbeat_series(&before), heartbeat_series(&after));
    assert_eq!(std::fs::read(files.state_file()).unwrap(), state_before);
    assert_eq!(
        after.get(
            "glitchtip_heartbeat_pings_total",
            &[("heartbeat", "worker"), ("kind", "rejected")]
        ),
        rejected.len() as f64
    );
    assert_eq!(
        after.get("glitchtip_heartbeat_unknown_requests_total", &[]),
        unknown.len() as f64
    );
    // No client-supplied name became a label value.
    let names: std::collections::BTreeSet<&str> = after
        .0
        .iter()
        .filter_map(|(_, labels, _)| labels.get("heartbeat").map(String::as_str))
        .collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["worker"]);

    // A body of exactly the cap is accepted.
    let r = send(
        exporter.addr,
        "POST",
        &q("/heartbeat/worker"),
        &[],
        vec![b'x'; 10 * 1024],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    exporter.stop().await;
}

#[tokio::test]
async fn unwritable_state_file_answers_503_and_is_counted() {
    let files = Files::new();
    // Tests run as root, which ignores permissions: a path below a regular file cannot be
    // written by anyone.
    let blocker = files.dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let toml = files.config(
        &blocker.join("state.json"),
        &[("worker", "interval = \"5m\"")],
    );
    let (exporter, clock) = start(&toml).await;
    let before = exporter.metrics().await;
    let errors = before.get("glitchtip_exporter_state_write_errors_total", &[]);
    assert_eq!(errors, 1.0, "the start-up write failed too");
    assert_eq!(before.get("glitchtip_exporter_state_write_ok", &[]), 0.0);
    assert_eq!(
        before.get("glitchtip_exporter_state_load_ok", &[]),
        1.0,
        "nothing to load is no load error"
    );

    clock.advance(Duration::from_secs(5));
    let r = exporter.get(&q("/heartbeat/worker")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    let m = exporter.metrics().await;
    assert_eq!(
        m.get("glitchtip_exporter_state_write_errors_total", &[]),
        2.0
    );
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_unsaved_pings_total",
            &[("heartbeat", "worker"), ("reason", "write_failed")]
        ),
        1.0
    );
    assert!(!m.has(
        "glitchtip_heartbeat_last_seen_timestamp_seconds",
        &hb("worker")
    ));
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_pings_total",
            &[("heartbeat", "worker"), ("kind", "success")]
        ),
        0.0
    );
    assert_eq!(m.get("glitchtip_heartbeat_age_seconds", &hb("worker")), 5.0);
    assert_eq!(m.get("glitchtip_heartbeat_unknown", &hb("worker")), 0.0);
    // Past the saved deadline the ping that came in time makes it unknown, not missed.
    clock.advance(Duration::from_secs(420));
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 0.0);
    assert_eq!(m.get("glitchtip_heartbeat_unknown", &hb("worker")), 1.0);
    exporter.stop().await;
}

#[tokio::test]
async fn reload_removes_a_heartbeat_and_its_series() {
    let files = Files::new();
    let two = files.config(
        &files.state_file(),
        &[
            ("worker", "interval = \"5m\""),
            (
                "nightly",
                "schedule = \"0 5 * * *\"\ntimezone = \"Europe/Berlin\"",
            ),
        ],
    );
    let (exporter, clock) = start(&two).await;
    assert_eq!(exporter.get(&q("/heartbeat/nightly")).await.status, 200);
    clock.advance(Duration::from_secs(100));

    let one = files.config(&files.state_file(), &[("worker", "interval = \"5m\"")]);
    let r = exporter.reload(&one).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = exporter.metrics().await;
    assert!(
        !m.0.iter()
            .any(|(_, l, _)| l.get("heartbeat").map(String::as_str) == Some("nightly")),
        "{m:?}"
    );
    assert_eq!(
        m.get("glitchtip_heartbeat_age_seconds", &hb("worker")),
        100.0
    );
    let r = exporter.get(&q("/heartbeat/nightly")).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        m.get("glitchtip_heartbeat_unknown_requests_total", &[]),
        0.0
    );
    exporter.stop().await;
}

#[tokio::test]
async fn probe_answers_carry_no_heartbeat_series() {
    let files = Files::new();
    let mut toml = files.config(
        &files.state_file(),
        &[("worker", "interval = \"5m\"\ntarget = \"gt\"")],
    );
    toml.push_str(&format!(
        "[targets.gt]\nurl = \"http://{}\"\ndefault_checks = false\n[targets.gt.checks.one]\npath = \"/\"\ntimeout = \"1s\"\n",
        crate::stub::refused_addr()
    ));
    let (exporter, _clock) = start(&toml).await;
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 200);
    let probe = exporter.probe("gt").await;
    assert!(
        !probe
            .names()
            .iter()
            .any(|n| n.contains("heartbeat") || n.contains("state_write")),
        "{probe:?}"
    );
    assert!(
        exporter
            .metrics()
            .await
            .has("glitchtip_heartbeat_up", &hb("worker"))
    );
    exporter.stop().await;
}

// ---- the real binary: kill -9, corrupt and missing state files ---------------------------

const BIN: &str = env!("CARGO_BIN_EXE_glitchtip-exporter");
const PATIENCE: Duration = Duration::from_secs(15);

/// The binary, killed when dropped.
struct Binary {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Binary {
    async fn start(config: &Path, cwd: &Path) -> Binary {
        let mut child = Command::new(BIN)
            .env_clear()
            .current_dir(cwd)
            .args(["--listen", "127.0.0.1:0", "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line
                    .split_once("listening listen=")
                    .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        let addr: SocketAddr = match tokio::time::timeout(PATIENCE, rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!("no `listening` line; stderr:\n{}", stderr.lock().unwrap()),
        };
        assert!(addr.ip().is_loopback());
        Binary {
            child,
            addr,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr holds `needle` (the log is read by a task, a little behind).
    async fn wait_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let stderr = self.stderr();
            if stderr.contains(needle) {
                return stderr;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} in stderr:\n{stderr}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metrics(&self) -> Samples {
        let r = helpers::request(self.addr, "GET", "/metrics", &[]).await;
        assert_eq!(r.status, 200);
        Samples::parse(&r.body)
    }

    /// `kill -KILL`: no shutdown code runs.
    async fn kill_9(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the process dies");
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn binary_keeps_every_answered_ping_across_kill_9() {
    let files = Files::new();
    let names: Vec<String> = (0..20).map(|i| format!("job-{i:02}")).collect();
    let tables: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "interval = \"1h\""))
        .collect();
    let config = files.dir.path().join("exporter.toml");
    std::fs::write(&config, files.config(&files.state_file(), &tables)).unwrap();

    let first = Binary::start(&config, files.dir.path()).await;
    let mut windows = Vec::new();
    for name in &names {
        let before = unix_now();
        let r = helpers::request(first.addr, "GET", &q(&format!("/heartbeat/{name}")), &[]).await;
        assert_eq!(r.status, 200, "{name}: {}\n{}", r.body, first.stderr());
        windows.push((before, unix_now()));
    }
    // At once after the last answer.
    first.kill_9().await;

    let second = Binary::start(&config, files.dir.path()).await;
    let m = second.metrics().await;
    for (name, (before, after)) in names.iter().zip(windows) {
        let seen = m.get("glitchtip_heartbeat_last_seen_timestamp_seconds", &hb(name));
        // Milliseconds are kept: allow the truncation below `before`.
        assert!(
            seen >= before - 0.001 && seen <= after,
            "{name}: last seen {seen}, pinged between {before} and {after}"
        );
        assert_eq!(m.get("glitchtip_heartbeat_up", &hb(name)), 1.0, "{name}");
    }
}

#[tokio::test]
async fn binary_moves_a_corrupt_state_file_aside_and_starts_fresh() {
    let files = Files::new();
    std::fs::write(
        files.state_file(),
        "{\"version\": 1, \"heartbeats\": {\"worker\"",
    )
    .unwrap();
    let config = files.dir.path().join("exporter.toml");
    std::fs::write(
        &config,
        files.config(&files.state_file(), &[("worker", "interval = \"5m\"")]),
    )
    .unwrap();
    let started = unix_now();
    let exporter = Binary::start(&config, files.dir.path()).await;
    let m = exporter.metrics().await;
    assert!(!m.has(
        "glitchtip_heartbeat_last_seen_timestamp_seconds",
        &hb("worker")
    ));
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 1.0);
    let deadline = m.get(
        "glitchtip_heartbeat_deadline_timestamp_seconds",
        &hb("worker"),
    );
    assert!(
        deadline >= started - 1.0 + 420.0,
        "fresh: counted from now, {deadline}"
    );

    let aside: Vec<PathBuf> = std::fs::read_dir(files.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(&aside[0]).unwrap(),
        "{\"version\": 1, \"heartbeats\": {\"worker\""
    );
    let stderr = exporter.wait_log("corrupt").await;
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(stderr.contains("moved it aside"), "{stderr}");
    assert_eq!(m.get("glitchtip_exporter_state_load_ok", &[]), 0.0);
    assert_eq!(m.get("glitchtip_exporter_state_write_ok", &[]), 1.0);
    // The new file is valid: a ping is saved and the exporter restarts cleanly on it.
    let r = helpers::request(exporter.addr, "GET", &q("/heartbeat/worker"), &[]).await;
    assert_eq!(r.status, 200);
    exporter.kill_9().await;
    let again = Binary::start(&config, files.dir.path()).await;
    assert!(again.metrics().await.has(
        "glitchtip_heartbeat_last_seen_timestamp_seconds",
        &hb("worker")
    ));
    let stderr = again.wait_log("heartbeat state loaded").await;
    assert!(!stderr.contains("corrupt"), "{stderr}");
}

#[tokio::test]
async fn binary_starts_fresh_without_a_state_file() {
    let files = Files::new();
    let config = files.dir.path().join("exporter.toml");
    // A relative state_file is relative to the working directory.
    let mut toml = files.config(
        Path::new("relative-state.json"),
        &[("worker", "interval = \"5m\"")],
    );
    toml.push('\n');
    std::fs::write(&config, toml).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let exporter = Binary::start(&config, cwd.path()).await;
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 1.0);
    assert!(m.get("glitchtip_heartbeat_age_seconds", &hb("worker")) < 60.0);
    assert!(!m.has(
        "glitchtip_heartbeat_last_seen_timestamp_seconds",
        &hb("worker")
    ));
    assert!(
        cwd.path().join("relative-state.json").exists(),
        "created at start-up"
    );
    assert!(!files.dir.path().join("relative-state.json").exists());
    let stderr = exporter.wait_log("no heartbeat state file yet").await;
    assert!(!stderr.contains("WARN"), "{stderr}");
}
