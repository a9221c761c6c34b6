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

// ---- full disk, bad state files, floods ---------------------------------------------------

/// Whether this process runs as root (reads /proc, no unsafe code).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().next() == Some("0"))
    })
}

/// A small tmpfs of its own (root only), unmounted when dropped: a disk that fills up, or
/// that is read-only, for this test alone.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (the test is skipped, with a note) when not root.
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs: {status}");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        let status = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -o remount,ro: {status}");
    }

    /// Fills the file system with one file, which is returned.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = [0u8; 4096];
        let err = loop {
            if let Err(e) = f.write_all(&chunk) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Issue #12: a full disk turned into a false missed-heartbeat alert and answered 500.
#[tokio::test]
async fn full_disk_answers_503_and_makes_the_heartbeat_unknown_not_missed() {
    let Some(disk) = Tmpfs::mount("64k") else {
        return;
    };
    let files = Files::new();
    let state = disk.path().join("state.json");
    let toml = files.config(&state, &[("worker", "interval = \"5m\"")]);
    let (exporter, clock) = start(&toml).await;
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 200);
    let filler = disk.fill();
    // The journal's last page may still take a few lines; then writes fail.
    let mut refused = None;
    for _ in 0..200 {
        let r = exporter.get(&q("/heartbeat/worker")).await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a ping is refused once the disk is full");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(r.body.contains("cannot be written"), "{}", r.body);
    let saved = exporter.metrics().await.get(
        "glitchtip_heartbeat_pings_total",
        &[("heartbeat", "worker"), ("kind", "success")],
    );

    // The worker keeps pinging in time; nothing can be saved.
    clock.advance(Duration::from_secs(300));
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 503);
    clock.advance(Duration::from_secs(121));
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 0.0);
    assert_eq!(m.get("glitchtip_heartbeat_unknown", &hb("worker")), 1.0);
    assert_eq!(m.get("glitchtip_exporter_state_write_ok", &[]), 0.0);
    assert!(m.get("glitchtip_exporter_state_write_errors_total", &[]) >= 2.0);
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_unsaved_pings_total",
            &[("heartbeat", "worker"), ("reason", "write_failed")]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_last_seen_timestamp_seconds",
            &hb("worker")
        ),
        CLOCK_START as f64,
        "the saved pings"
    );
    let landing = exporter.get("/").await;
    assert!(
        landing.body.contains("<td class=\"pending\">unknown</td>"),
        "{}",
        landing.body
    );
    // Once that ping is late too, the worker stopped as well: missed.
    clock.advance(Duration::from_secs(300));
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_heartbeat_unknown", &hb("worker")), 0.0);
    exporter.stop().await;

    // A restart on the full disk: the state loads, the start-up snapshot fails, and the
    // files stay as they were.
    let snapshot = std::fs::read(&state).unwrap();
    let journal_before = std::fs::read(journal(&state)).unwrap();
    let (exporter, clock) = start(&toml).await;
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_exporter_state_load_ok", &[]), 1.0);
    assert_eq!(m.get("glitchtip_exporter_state_write_ok", &[]), 0.0);
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_last_seen_timestamp_seconds",
            &hb("worker")
        ),
        CLOCK_START as f64
    );
    assert_eq!(std::fs::read(&state).unwrap(), snapshot);
    assert_eq!(std::fs::read(journal(&state)).unwrap(), journal_before);
    let names: Vec<String> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temporary file left: {names:?}");

    // Space again: the next ping is saved and everything recovers.
    std::fs::remove_file(&filler).unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 200);
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_exporter_state_write_ok", &[]), 1.0);
    assert_eq!(m.get("glitchtip_heartbeat_up", &hb("worker")), 1.0);
    assert_eq!(m.get("glitchtip_heartbeat_unknown", &hb("worker")), 0.0);
    assert!(saved >= 1.0);
    exporter.stop().await;
}

/// Issue #18: every kind of bad state file is kept aside, never overwritten, and shown.
#[tokio::test]
async fn bad_state_files_are_kept_aside_and_shown() {
    type Plant = fn(&Path);
    let cases: &[(&str, Plant)] = &[
        ("truncated", |p| {
            std::fs::write(p, "{\"version\": 1, \"heartbeats\": {\"wor").unwrap()
        }),
        ("not JSON", |p| std::fs::write(p, "hello\n").unwrap()),
        ("empty", |p| std::fs::write(p, "").unwrap()),
        ("a folder", |p| {
            std::fs::create_dir(p).unwrap();
            std::fs::write(p.join("inside"), "kept").unwrap();
        }),
        ("a bad journal line", |p| {
            std::fs::write(journal(p), "{\"name\":\"worker\"}\n{}\n").unwrap()
        }),
    ];
    for (case, plant) in cases {
        let files = Files::new();
        let state = files.state_file();
        plant(&state);
        let toml = files.config(&state, &[("worker", "interval = \"5m\"")]);
        let (exporter, _clock) = start(&toml).await;
        let m = exporter.metrics().await;
        assert_eq!(
            m.get("glitchtip_exporter_state_load_ok", &[]),
            0.0,
            "{case}"
        );
        assert_eq!(
            m.get("glitchtip_exporter_state_write_ok", &[]),
            1.0,
            "{case}"
        );
        let aside: Vec<PathBuf> = std::fs::read_dir(files.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{case}: {aside:?}");
        if *case == "a folder" {
            assert_eq!(
                std::fs::read_to_string(aside[0].join("inside")).unwrap(),
                "kept"
            );
        }
        let r = exporter.get(&q("/heartbeat/worker")).await;
        assert_eq!(r.status, 200, "{case}: {}", r.body);
        exporter.stop().await;
    }
}

/// A bad state file that cannot be moved aside (read-only folder) is kept as it is: the
/// exporter starts, writes nothing, and says so.
#[tokio::test]
async fn a_bad_state_file_that_cannot_be_moved_is_never_overwritten() {
    let Some(disk) = Tmpfs::mount("64k") else {
        return;
    };
    let files = Files::new();
    let state = disk.path().join("state.json");
    std::fs::write(&state, "not json").unwrap();
    disk.remount_read_only();
    let toml = files.config(&state, &[("worker", "interval = \"5m\"")]);
    let (exporter, _clock) = start(&toml).await;
    let m = exporter.metrics().await;
    assert_eq!(m.get("glitchtip_exporter_state_load_ok", &[]), 0.0);
    assert_eq!(m.get("glitchtip_exporter_state_write_ok", &[]), 0.0);
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 503);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "not json");
    exporter.stop().await;
}

/// Issue #12: a flood on one heartbeat delayed the others' pings by seconds, and abandoned
/// pings piled up without bound. Each heartbeat has its own bounded room in the write
/// queue: the flood gets 503 beyond it, the other heartbeat never does.
#[tokio::test]
async fn a_flooded_heartbeat_gets_503_and_the_others_do_not_wait_for_it() {
    use glitchtip_exporter::heartbeat::writer::MAX_WAITING_PER_HEARTBEAT as ROOM;
    let files = Files::new();
    let toml = files.config(
        &files.state_file(),
        &[
            ("flood", "interval = \"5m\""),
            ("calm", "interval = \"5m\""),
        ],
    );
    let (exporter, _clock) = start(&toml).await;
    let heartbeats = exporter.exporter.heartbeats();
    let addr = exporter.addr;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ping = move |name: &'static str| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = helpers::request(addr, "GET", &q(&format!("/heartbeat/{name}")), &[]).await;
            let _ = tx.send((name, r.status));
        })
    };

    // The writer is held: the flood fills its room and the rest is refused at once.
    let held = heartbeats.hold_writes();
    let flood = 4 * ROOM;
    let flooders: Vec<_> = (0..flood).map(|_| ping("flood")).collect();
    for _ in 0..flood - ROOM {
        assert_eq!(rx.recv().await.unwrap(), ("flood", 503));
    }
    // The other heartbeat still has its room.
    let calm: Vec<_> = (0..5).map(|_| ping("calm")).collect();
    let wait_len = |len: usize| {
        let heartbeats = heartbeats.clone();
        async move {
            while heartbeats.queue_len() != len {
                tokio::task::yield_now().await;
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait_len(ROOM + 5))
        .await
        .expect("the calm pings wait in the queue");
    drop(held);
    let mut answers = std::collections::BTreeMap::new();
    for _ in 0..ROOM + 5 {
        let (name, status) = rx.recv().await.unwrap();
        *answers.entry((name, status)).or_insert(0) += 1;
    }
    assert_eq!(answers, [(("calm", 200), 5), (("flood", 200), ROOM)].into());
    for task in flooders.into_iter().chain(calm) {
        task.await.unwrap();
    }

    // Abandoned pings: clients that give up leave at most the heartbeat's room behind.
    let held = heartbeats.hold_writes();
    let abandoned: Vec<_> = (0..10 * ROOM).map(|_| ping("flood")).collect();
    for _ in 0..9 * ROOM {
        assert_eq!(rx.recv().await.unwrap(), ("flood", 503));
    }
    for task in &abandoned {
        task.abort();
    }
    assert_eq!(heartbeats.queue_len(), ROOM);
    drop(held);
    tokio::time::timeout(PATIENCE, wait_len(0))
        .await
        .expect("the abandoned pings are written and gone");
    assert_eq!(
        exporter.get(&q("/heartbeat/calm")).await.status,
        200,
        "the other heartbeat is answered at once"
    );
    assert!(heartbeats.queue_peak() <= ROOM);
    let m = exporter.metrics().await;
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_unsaved_pings_total",
            &[("heartbeat", "flood"), ("reason", "queue_full")]
        ),
        (flood - ROOM + 9 * ROOM) as f64
    );
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_unsaved_pings_total",
            &[("heartbeat", "calm"), ("reason", "queue_full")]
        ),
        0.0
    );
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_pings_total",
            &[("heartbeat", "flood"), ("kind", "success")]
        ),
        (2 * ROOM) as f64,
        "the abandoned pings in the queue were saved all the same"
    );
    exporter.stop().await;
}

/// Issue #18: a deadline past year 9999 panicked the landing page.
#[tokio::test]
async fn a_deadline_past_year_9999_does_not_break_the_landing_page() {
    let files = Files::new();
    std::fs::write(
        files.state_file(),
        r#"{"version": 1, "heartbeats": {"worker": {"first_configured_ms": 0, "last_success_ms": 253402300000000}}}"#,
    )
    .unwrap();
    let toml = files.config(&files.state_file(), &[("worker", "interval = \"1h\"")]);
    let (exporter, _clock) = start(&toml).await;
    let landing = exporter.get("/").await;
    assert_eq!(landing.status, 200);
    assert!(
        landing.body.contains("<td>9999-12-31T23:59:59Z</td>"),
        "{}",
        landing.body
    );
    let m = exporter.metrics().await;
    assert_eq!(
        m.get(
            "glitchtip_heartbeat_deadline_timestamp_seconds",
            &hb("worker")
        ),
        253_402_300_799.0
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
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
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

/// A GET that gives up quietly: `None` when there is no answer (the server was killed).
async fn try_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    let driver = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let status = sender
        .send_request(req)
        .await
        .ok()
        .map(|r| r.status().as_u16());
    driver.abort();
    status
}

/// xorshift64: random moments without a dependency; the seed is printed on failure.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Issue #12/#18: 50 times, concurrent pingers and `kill -9` at a random moment; after
/// each restart every ping answered 2xx is there.
#[tokio::test]
async fn binary_keeps_every_answered_ping_across_kill_9() {
    const ROUNDS: usize = 50;
    const PINGERS: usize = 6;
    let files = Files::new();
    let names: Arc<Vec<String>> = Arc::new((0..20).map(|i| format!("job-{i:02}")).collect());
    let tables: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "interval = \"1h\""))
        .collect();
    let config = files.dir.path().join("exporter.toml");
    std::fs::write(&config, files.config(&files.state_file(), &tables)).unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut random = seed;
    // Per heartbeat, the latest time a ping was sent that was then answered 2xx.
    let mut acked: std::collections::HashMap<String, f64> = Default::default();
    let mut answered = 0usize;
    for round in 0..=ROUNDS {
        let exporter = Binary::start(&config, files.dir.path()).await;
        let m = exporter.metrics().await;
        for (name, sent) in &acked {
            let seen = m.get("glitchtip_heartbeat_last_seen_timestamp_seconds", &hb(name));
            // Milliseconds are kept: allow the truncation below `sent`.
            assert!(
                seen >= sent - 0.001,
                "round {round} (seed {seed}): {name} last seen {seen}, a ping sent at {sent} was answered 200"
            );
        }
        assert_eq!(m.get("glitchtip_exporter_state_load_ok", &[]), 1.0);
        if round == ROUNDS {
            break;
        }
        let acks = Arc::new(Mutex::new(Vec::new()));
        let pingers: Vec<_> = (0..PINGERS)
            .map(|k| {
                let (names, acks, addr) = (names.clone(), acks.clone(), exporter.addr);
                tokio::spawn(async move {
                    for i in (k..).step_by(PINGERS) {
                        let name = &names[i % names.len()];
                        let sent = unix_now();
                        match try_get(addr, &q(&format!("/heartbeat/{name}"))).await {
                            Some(200) => acks.lock().unwrap().push((name.clone(), sent)),
                            Some(status) => panic!("{name}: {status}"),
                            None => return,
                        }
                    }
                })
            })
            .collect();
        // The kill comes at a random moment, pings in flight.
        let pause = Duration::from_micros(5_000 + next_random(&mut random) % 40_000);
        tokio::time::sleep(pause).await;
        exporter.kill_9().await;
        for pinger in pingers {
            pinger.await.unwrap();
        }
        let acks = std::mem::take(&mut *acks.lock().unwrap());
        answered += acks.len();
        for (name, sent) in acks {
            let latest = acked.entry(name).or_insert(sent);
            *latest = latest.max(sent);
        }
    }
    eprintln!("{ROUNDS} kills, {answered} pings answered 200, seed {seed}");
    assert!(
        answered >= ROUNDS,
        "pings were answered between the kills: {answered}"
    );
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

/// At the default level a heartbeat going late, failing and recovering is logged once
/// each; rejected pings are logged at debug, at most once a minute.
#[tokio::test]
async fn heartbeat_changes_are_logged_once_and_rejections_rate_limited() {
    let (logs, _guard) = helpers::Captured::install(tracing::Level::DEBUG);
    let files = Files::new();
    let toml = files.config(
        &files.state_file(),
        &[("worker", "interval = \"5m\"\ngrace = \"1m\"")],
    );
    let (exporter, clock) = start(&toml).await;
    exporter.metrics().await;
    clock.advance(Duration::from_secs(361));
    exporter.metrics().await;
    exporter.metrics().await;
    assert_eq!(logs.count("WARN", "heartbeat late"), 1);
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 200);
    exporter.metrics().await;
    assert_eq!(logs.count("INFO", "heartbeat recovered"), 1);
    assert_eq!(exporter.get(&q("/heartbeat/worker/fail")).await.status, 200);
    exporter.metrics().await;
    exporter.metrics().await;
    assert_eq!(logs.count("WARN", "heartbeat failed"), 1);
    assert_eq!(exporter.get(&q("/heartbeat/worker")).await.status, 200);
    exporter.metrics().await;
    assert_eq!(logs.count("INFO", "heartbeat recovered"), 2);
    // Ten rejected pings within a minute: one line; the next after a minute says 10.
    for _ in 0..10 {
        let r = exporter.get("/heartbeat/worker?token=wrong").await;
        assert_eq!(
            r.status, 404,
            "a wrong token looks like an unknown heartbeat"
        );
    }
    clock.advance(Duration::from_secs(60));
    exporter.get("/heartbeat/worker?token=wrong").await;
    assert_eq!(logs.count("DEBUG", "heartbeat pings rejected"), 2);
    assert_eq!(logs.count("DEBUG", "rejected=10"), 1);
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(!text.contains(TOKEN), "the token reached the log");
    exporter.stop().await;
}
