//! The exporter's own port under abuse (README, "Limits"): clients that never finish their
//! request head, heads over the size limit, more connections than the cap, more `/probe`
//! requests than the bound — and, with the real binary under a low open-file limit, a
//! flood that must neither starve the probes nor be blamed on the target.
//!
//! Deadlines are configured short (200 ms) and the tests assert that a connection is
//! closed, never how fast; every wait is bounded by [`PATIENCE`].

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::binary::{Running, wrapped};
use crate::helpers::{Samples, TestExporter, deps, request, start};
use crate::stub::{Scenario, StubGlitchTip, start_silent_server};

/// The longest any step may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// A config with one target at `url` and the given `[server]` lines.
fn config(url: &str, server: &str) -> String {
    format!(
        "[server]\n{server}\n\n[targets.gt]\nurl = \"{url}\"\ninterval = \"1m\"\ntimeout = \"2s\"\n"
    )
}

/// Reads until the server closes the connection; what it sent before. Panics when the
/// connection stays open for [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        match timeout(deadline - Instant::now(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection is still open after {PATIENCE:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// The status line of an answer.
fn status_line(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.lines().next().unwrap_or_default().to_owned()
}

async fn exporter(server: &str) -> (TestExporter, StubGlitchTip) {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let exporter = start(&config(&stub.url(), server), deps().0).await;
    (exporter, stub)
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_deadline() {
    let (exporter, _stub) = exporter("header_read_timeout = \"200ms\"").await;
    let mut silent = TcpStream::connect(exporter.addr).await.unwrap();
    assert_eq!(read_until_closed(&mut silent).await, b"");
    // A keep-alive connection idle after an answer is closed the same way.
    let mut idle = TcpStream::connect(exporter.addr).await.unwrap();
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    exporter.stop().await;
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off() {
    let (exporter, _stub) = exporter("header_read_timeout = \"200ms\"").await;
    let mut slow = TcpStream::connect(exporter.addr).await.unwrap();
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
        "a".repeat(400)
    );
    let mut cut_off = false;
    for byte in head.as_bytes() {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        // Real time on purpose: the point is a client slower than the deadline. 400+
        // bytes at 20 ms each take over 8 s, forty times the deadline.
        sleep(Duration::from_millis(20)).await;
    }
    if !cut_off {
        // Everything was written into the socket buffer: the server must have closed.
        assert_eq!(read_until_closed(&mut slow).await, b"");
    }
    exporter.stop().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_is_cut_off_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let toml = format!(
        "[server]\nheader_read_timeout = \"200ms\"\nstate_file = \"{}\"\n\n[heartbeats.worker]\ninterval = \"5m\"\ntoken = {{ file = \"{}\" }}\n",
        dir.path().join("state.json").display(),
        token.display()
    );
    let exporter = start(&toml, deps().0).await;
    let mut client = TcpStream::connect(exporter.addr).await.unwrap();
    // A ping that announces a body and never sends it.
    client
        .write_all(b"POST /heartbeat/worker?token=t0ken HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut client).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request");
    assert!(
        String::from_utf8_lossy(&answer).ends_with("cannot read the request body\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    exporter.stop().await;
}

#[tokio::test]
async fn a_head_over_max_header_bytes_is_answered_431_and_closed() {
    let (exporter, _stub) = exporter("max_header_bytes = 1024").await;
    let mut client = TcpStream::connect(exporter.addr).await.unwrap();
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(2000)
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut client).await;
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // Under the limit, the same request is served.
    let pad = "a".repeat(900);
    let r = exporter.get_with("/-/healthy", &[("x-pad", &pad)]).await;
    assert_eq!(r.status, 200);
    exporter.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_metrics_and_health_are_still_answered() {
    let (exporter, _stub) = exporter("max_connections = 4\nheader_read_timeout = \"30s\"").await;
    // Connections are accepted in order: these four fill the general pool.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(exporter.addr).await.unwrap());
    }
    for path in ["/metrics", "/-/healthy", "/-/ready"] {
        let r = exporter.get(path).await;
        assert_eq!(r.status, 200, "{path} from the reserve: {}", r.body);
    }
    for path in ["/", "/probe?target=gt"] {
        let r = exporter.get(path).await;
        assert_eq!(r.status, 503, "{path} from the reserve");
        assert_eq!(
            r.body,
            "connection limit reached (server.max_connections): only /metrics, /-/healthy and /-/ready are served\n"
        );
    }
    // The general pool's slots come back when its clients leave.
    drop(held);
    let deadline = Instant::now() + PATIENCE;
    while exporter.get("/").await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "the landing page never came back"
        );
        sleep(Duration::from_millis(25)).await;
    }
    exporter.stop().await;
}

#[tokio::test]
async fn probe_requests_beyond_the_bound_get_503() {
    let (silent, silent_task) = start_silent_server().await;
    let exporter = start(
        &config(&format!("http://{silent}"), "max_concurrent_probes = 1"),
        deps().0,
    )
    .await;
    // Each probe waits for the silent target until its 2 s timeout, so these three run
    // at the same time: one is served, the others are refused at once.
    let addr = exporter.addr;
    let answers = futures::future::join_all(
        (0..3).map(|_| async move { request(addr, "GET", "/probe?target=gt", &[]).await }),
    )
    .await;
    let served = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert_eq!((served, refused.len()), (1, 2), "{answers:?}");
    for r in refused {
        assert_eq!(
            r.body,
            "too many concurrent probes (server.max_concurrent_probes): try again later\n"
        );
    }
    // The slot is given back: the next probe runs.
    assert_eq!(exporter.get("/probe?target=gt").await.status, 200);
    silent_task.abort();
    exporter.stop().await;
}

// ---- the real binary under a low open-file limit ------------------------------------------

/// The default checks of the stub, every second.
const CHECKS: [&str; 4] = ["health", "database", "api", "dashboard"];

/// The binary under `prlimit --nofile=N:N` (soft and hard: it cannot raise it), probing a
/// healthy stub every second, with `envs` added.
async fn limited_binary(nofile: u32, stub: &StubGlitchTip, envs: &[(&str, &str)]) -> Running {
    let nofile = format!("--nofile={nofile}:{nofile}");
    let target = format!("stub={}", stub.url());
    let mut all: Vec<(&str, String)> = vec![
        ("GLITCHTIP_EXPORTER_LOG", "info".to_owned()),
        ("GLITCHTIP_EXPORTER__DEFAULTS__INTERVAL", "1s".to_owned()),
        ("GLITCHTIP_EXPORTER__DEFAULTS__TIMEOUT", "1s".to_owned()),
        (
            "GLITCHTIP_EXPORTER__DEFAULTS__RETRY_INTERVAL",
            "1s".to_owned(),
        ),
    ];
    all.extend(envs.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let exporter = Running::start_with(
        wrapped(&["prlimit", &nofile, "--"]),
        &["--listen", "127.0.0.1:0", "--target", &target],
        &all,
    )
    .await;
    exporter.wait_for("every default check up", all_up).await;
    exporter
}

fn all_up(s: &Samples) -> bool {
    CHECKS.iter().all(|c| {
        s.has("glitchtip_up", &[("target", "stub"), ("check", c)])
            && s.check("glitchtip_up", "stub", c) == 1.0
    })
}

fn probes(s: &Samples, result: &str) -> f64 {
    s.find("glitchtip_probes_total", &[("result", result)])
        .iter()
        .map(|(_, v)| v)
        .sum()
}

/// `count` connections to `addr` that send nothing.
async fn flood(addr: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    held
}

#[tokio::test]
async fn a_flood_of_clients_leaves_the_probes_their_sockets() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let exporter = limited_binary(128, &stub, &[]).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", exporter.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["128", "128"]
    );
    let before = exporter.metrics().await;
    assert_eq!(before.get("process_max_fds", &[]), 128.0);

    // Far more than the fd limit: a quarter of it (32) is served, 16 more from the reserve,
    // the rest closed at once.
    let held = flood(exporter.addr, 300).await;
    let wanted = probes(&before, "success") + 2.0 * CHECKS.len() as f64;
    let during = exporter
        .wait_for("two more rounds of probes during the flood", |s| {
            probes(s, "success") >= wanted
        })
        .await;
    assert_eq!(probes(&during, "failure"), probes(&before, "failure"));
    assert!(all_up(&during));
    assert!(during.get("process_open_fds", &[]) < 128.0);
    drop(held);
    let (_, _, stderr) = exporter.terminate().await;
    assert!(stderr.contains("open file limit"), "{stderr}");
    assert!(stderr.contains("max_connections=32"), "{stderr}");
    assert!(!stderr.contains("accept error"), "{stderr}");
}

#[tokio::test]
async fn out_of_descriptors_accept_backs_off_and_probes_blame_the_exporter() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    // A cap above the fd limit, so that a flood takes every descriptor.
    let exporter = limited_binary(
        64,
        &stub,
        &[("GLITCHTIP_EXPORTER__SERVER__MAX_CONNECTIONS", "1000")],
    )
    .await;
    let held = flood(exporter.addr, 200).await;
    // Real time on purpose: while every descriptor is taken the exporter cannot be asked
    // anything; 3 s hold several probe rounds (1 s interval) and accept retries.
    sleep(Duration::from_secs(3)).await;
    drop(held);
    exporter
        .wait_for("every check up again after the flood", all_up)
        .await;
    let (_, _, stderr) = exporter.terminate().await;
    // Logged, but at most once per 10 s, and retried with a growing wait, not in a loop:
    // each line says how many errors it stands for.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("accept error"))
        .collect();
    assert!(!lines.is_empty(), "{stderr}");
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = lines
        .iter()
        .map(|l| {
            chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next().unwrap()).unwrap()
        })
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::TimeDelta::seconds(10),
            "{stderr}"
        );
    }
    for line in &lines {
        let suppressed: u64 = line
            .split_once("suppressed=")
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap();
        // 10 s of retries from 10 ms doubling to 1 s: at most ~17; a busy loop would be
        // thousands.
        assert!(suppressed <= 50, "{line}");
    }
    assert!(stderr.contains("exporter_resources"), "{stderr}");
    assert!(
        !stderr.contains("reason=\"connect\"") && !stderr.contains("reason=connect"),
        "{stderr}"
    );
}
