//! No secret in any output of the real binary (issue #12), with every secret configured and
//! every path that handles one exercised at once, logging at `trace` (dependencies
//! included): a bearer token followed across a redirect to another origin, a basic-auth
//! password, proxy credentials refused with 407, a canary whose DSN key and token meet a
//! stalled worker, a queue reader whose Redis password is wrong, heartbeat pings with the
//! right and a wrong token, and a reload of a config that wrongly writes a secret inline
//! (by `POST /-/reload` and by `SIGHUP`). Every channel is then greped: stderr, stdout,
//! `/metrics`, `/probe`, the landing page, every answer, the heartbeat state file, and the
//! request heads the other origin received.

use std::time::Duration;

use crate::binary::Running;
use crate::helpers::{Samples, request};
use crate::queue::Redis;
use crate::redirects::{Recorder, ok, redirect, secret_file};
use crate::secrets::Channels;
use crate::stub_ingest::{self, Mode, StubIngest};

const BEARER: &str = "live-bearer-SECRET-a81f03";
const BASIC: &str = "live-basic-SECRET-5c22e9";
const PROXY: &str = "live-proxy-SECRET-77b0d1";
const QUEUE: &str = "live-queue-SECRET-e4a6c7";
const HEARTBEAT: &str = "live-heartbeat-SECRET-9d3b2f";
/// A token a client wrongly sends: not ours, but no more to be repeated than ours.
const WRONG_TOKEN: &str = "live-wrong-token-SECRET-1a2b3c";
/// What the reload wrongly writes inline.
const INLINE: &str = "live-inline-SECRET-60fe44";

fn secrets() -> Vec<String> {
    use base64::Engine as _;
    let b64 = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    vec![
        BEARER.to_owned(),
        BASIC.to_owned(),
        PROXY.to_owned(),
        QUEUE.to_owned(),
        HEARTBEAT.to_owned(),
        WRONG_TOKEN.to_owned(),
        INLINE.to_owned(),
        stub_ingest::KEY.to_owned(),
        stub_ingest::TOKEN.to_owned(),
        b64("monitor", BASIC),
        b64("proxyuser", PROXY),
    ]
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.find(name, labels).first().map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_output_of_the_running_binary() {
    // Two origins: the first redirects to the second, which must never see the bearer.
    let other = Recorder::start(|_| ok()).await;
    let landed = format!("http://127.0.0.1:{}/landed", other.addr.port());
    let origin = Recorder::start(move |line| {
        if line.contains("/go ") {
            redirect(&landed)
        } else {
            ok()
        }
    })
    .await;
    // A proxy that refuses everybody.
    let proxy = Recorder::start(|_| {
        "HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"x\"\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n"
            .to_owned()
    })
    .await;
    let ingest = StubIngest::start(Mode::WorkerStalled).await;
    let redis = Redis::start().await;

    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("bearer", BEARER.to_owned()),
        ("basic", BASIC.to_owned()),
        ("proxy", PROXY.to_owned()),
        ("queue", QUEUE.to_owned()),
        ("heartbeat", HEARTBEAT.to_owned()),
        ("dsn", ingest.dsn()),
        ("token", stub_ingest::TOKEN.to_owned()),
    ];
    let _files: Vec<_> = files.iter().map(|(_, s)| secret_file(s)).collect();
    let path = |name: &str| {
        let i = files.iter().position(|(n, _)| *n == name).unwrap();
        _files[i].path().display().to_string()
    };
    let state_file = dir.path().join("state.json");
    let config = |bearer: &str| {
        format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            state_file = "{state}"

            [targets.gt]
            url = "http://{origin}"
            default_checks = false

            [targets.gt.checks.redirected]
            path = "/go"
            follow_redirects = true
            bearer_token = {bearer}
            interval = "1s"
            timeout = "1s"
            retry_interval = "200ms"

            [targets.gt.checks.basic]
            path = "/basic"
            basic_auth = {{ username = "monitor", password = {{ file = "{basic}" }} }}
            interval = "1s"
            timeout = "1s"
            retry_interval = "200ms"

            [targets.gt.checks.proxied]
            url = "http://127.0.0.1:9/behind-the-proxy"
            proxy = "http://{proxy}"
            proxy_auth = {{ username = "proxyuser", password = {{ file = "{proxy_pw}" }} }}
            interval = "1s"
            timeout = "1s"
            retry_interval = "200ms"

            [targets.gt.canary]
            dsn = {{ file = "{dsn}" }}
            token = {{ file = "{token}" }}
            organization = "{org}"
            interval = "2s"
            timeout = "1s"

            [targets.gt.queue]
            url = "redis://127.0.0.1:{redis}/0"
            password = {{ file = "{queue}" }}
            interval = "1s"
            timeout = "1s"

            [heartbeats.worker]
            interval = "1m"
            token = {{ file = "{heartbeat}" }}
            "#,
            state = state_file.display(),
            origin = origin.addr,
            proxy = proxy.addr,
            basic = path("basic"),
            proxy_pw = path("proxy"),
            dsn = path("dsn"),
            token = path("token"),
            org = stub_ingest::ORG,
            redis = redis.port,
            queue = path("queue"),
            heartbeat = path("heartbeat"),
        )
    };
    let config_file = dir.path().join("exporter.toml");
    let good = config(&format!("{{ file = \"{}\" }}", path("bearer")));
    std::fs::write(&config_file, &good).unwrap();

    let envs = [("GLITCHTIP_EXPORTER_LOG", "trace".to_owned())];
    let exporter = Running::start(
        &[
            "-c",
            config_file.to_str().unwrap(),
            "--web.enable-lifecycle",
        ],
        &envs,
    )
    .await;
    let mut seen = Channels::default();

    // Every path that holds a secret has run, and failed where it should.
    let samples = exporter
        .wait_for("every secret-bearing path ran", |s| {
            let failures = |check| {
                value(
                    s,
                    "glitchtip_consecutive_failures",
                    &[("target", "gt"), ("check", check)],
                )
            };
            value(
                s,
                "glitchtip_up",
                &[("target", "gt"), ("check", "redirected")],
            ) == Some(1.0)
                && value(s, "glitchtip_up", &[("target", "gt"), ("check", "basic")]) == Some(1.0)
                && failures("proxied") >= Some(1.0)
                && failures("canary") >= Some(1.0)
                && value(s, "glitchtip_queue_up", &[("target", "gt")]) == Some(0.0)
        })
        .await;
    let reason = |check: &str| {
        samples
            .find(
                "glitchtip_probe_failure_reason",
                &[("target", "gt"), ("check", check)],
            )
            .into_iter()
            .find(|(_, v)| *v == 1.0)
            .map(|(labels, _)| labels["reason"].clone())
    };
    assert_eq!(reason("proxied").as_deref(), Some("proxy"));
    assert!(!ingest.ingests().is_empty(), "the canary sent an event");
    assert!(
        other.heads().iter().any(|h| h.contains("/landed")),
        "the redirect was followed"
    );
    for head in other.heads() {
        seen.add("a request head at the other origin", head);
    }

    // Heartbeats: the right token, then a wrong one, by query and by header.
    let ok_ping = request(
        exporter.addr,
        "GET",
        &format!("/heartbeat/worker?token={HEARTBEAT}"),
        &[],
    )
    .await;
    assert_eq!(ok_ping.status, 200, "{}", ok_ping.body);
    let auth = format!("Bearer {WRONG_TOKEN}");
    for (path, headers) in [
        (format!("/heartbeat/worker?token={WRONG_TOKEN}"), vec![]),
        (
            "/heartbeat/worker/fail".to_owned(),
            vec![("authorization", auth.as_str())],
        ),
    ] {
        let answer = request(exporter.addr, "POST", &path, &headers).await;
        assert_eq!(answer.status, 404);
        seen.add(format!("the answer to {path}"), answer.body);
    }
    seen.add("the answer to a good ping", ok_ping.body);

    // A reload of a config that writes the bearer inline: refused, by both means.
    std::fs::write(&config_file, config(&format!("\"{INLINE}\""))).unwrap();
    let refused = request(exporter.addr, "POST", "/-/reload", &[]).await;
    assert_ne!(refused.status, 200, "an inline secret is refused");
    seen.add("the answer to POST /-/reload", refused.body);
    let pid = exporter_pid(&exporter);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(&config_file, &good).unwrap();

    for path in [
        "/metrics",
        "/",
        "/probe?target=gt",
        "/-/healthy",
        "/-/ready",
    ] {
        let answer = request(exporter.addr, "GET", path, &[]).await;
        seen.add(format!("GET {path}"), answer.body);
    }
    let (status, stdout, stderr) = exporter.terminate().await;
    assert!(status.success(), "{status}");
    // The log was really at trace and really saw the refused reloads.
    assert!(stderr.contains("TRACE"), "trace logging is on");
    assert!(
        stderr.matches("config reload failed").count() >= 1,
        "the refused reload is logged"
    );
    seen.add("stderr at trace", stderr);
    seen.add("stdout", stdout);
    seen.add(
        "the heartbeat state file",
        std::fs::read_to_string(&state_file).unwrap_or_default(),
    );
    seen.assert_no_secret(&secrets());
}

fn exporter_pid(exporter: &Running) -> String {
    exporter.pid().to_string()
}
