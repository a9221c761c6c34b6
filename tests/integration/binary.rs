//! The real `glitchtip-exporter` binary, run as an operator runs it: command-line flags,
//! exit codes, the `listening` log line, SIGTERM, and secrets that must never show up in
//! its output.
//!
//! Everything else is tested through the library; these tests cover what only the binary
//! does (`main`, logging set-up, signal handling). Every child runs with a cleared
//! environment, listens on 127.0.0.1:0 and probes only a stub on 127.0.0.1; a guard kills
//! it if a test fails half-way.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use crate::helpers::{Samples, request};
use crate::stub::{Scenario, StubGlitchTip, refused_addr};

const BIN: &str = env!("CARGO_BIN_EXE_glitchtip-exporter");

/// How long the binary may take to start listening, to get a check green or failing, and
/// to exit after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(15);

/// The token of the secrets test: it must appear nowhere the exporter writes.
const TOKEN: &str = "s3cr3t-token-value-123";

/// The proxy variables that HTTP clients commonly honour; the exporter must not.
const PROXY_VARS: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
];

/// The binary with a cleared environment, run from the package root, so that neither the
/// caller's `GLITCHTIP_EXPORTER*` variables nor its working directory leak in.
fn command() -> Command {
    wrapped(&[])
}

/// [`command`] run through `wrapper`, e.g. `prlimit --nofile=64:64 --`.
pub(crate) fn wrapped(wrapper: &[&str]) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(BIN);
            cmd
        }
        None => Command::new(BIN),
    };
    cmd.env_clear()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the binary to completion.
pub(crate) async fn run_to_end(args: &[&str]) -> (ExitStatus, String, String) {
    let out = timeout(PATIENCE, command().args(args).output())
        .await
        .expect("the binary finishes")
        .expect("the binary starts");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running exporter process. Dropping it kills the process, so that a failed assertion
/// leaves nothing behind.
pub(crate) struct Running {
    child: Child,
    pub(crate) addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Copies `pipe` into `sink` line by line; the first line that logs `listening` sends its
/// address to `listening`.
fn collect<R: AsyncRead + Unpin + Send + 'static>(
    pipe: R,
    sink: Arc<Mutex<String>>,
    mut listening: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = listen_addr(&line)
                && let Some(tx) = listening.take()
            {
                let _ = tx.send(addr);
            }
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    })
}

/// The address in tracing's text line `… INFO glitchtip_exporter: listening listen=ADDR`.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening listen=")?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Running {
    /// Starts the binary with `args` and `envs`, and waits for its `listening` line.
    pub(crate) async fn start(args: &[&str], envs: &[(&str, String)]) -> Running {
        Running::start_with(command(), args, envs).await
    }

    /// Starts `cmd` (the binary, maybe [`wrapped`]) with `args` and `envs`.
    pub(crate) async fn start_with(
        mut cmd: Command,
        args: &[&str],
        envs: &[(&str, String)],
    ) -> Running {
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the binary starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone(), None),
            collect(child.stderr.take().unwrap(), stderr.clone(), Some(tx)),
        ];
        let mut running = Running {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout,
            stderr,
            readers,
        };
        match timeout(PATIENCE, rx).await {
            Ok(Ok(addr)) => running.addr = addr,
            _ => panic!(
                "no `listening` line within {PATIENCE:?}; stderr:\n{}",
                running.stderr()
            ),
        }
        assert!(
            running.addr.ip().is_loopback(),
            "listens on {}",
            running.addr
        );
        running
    }

    /// The process id (for signals).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) async fn metrics(&self) -> Samples {
        let r = request(self.addr, "GET", "/metrics", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        Samples::parse(&r.body)
    }

    /// Polls /metrics until `done` holds; panics after [`PATIENCE`].
    pub(crate) async fn wait_for(&self, what: &str, done: impl Fn(&Samples) -> bool) -> Samples {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let samples = self.metrics().await;
            if done(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {PATIENCE:?}; last /metrics: {samples:?}\nstderr:\n{}",
                self.stderr()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the status and everything the process
    /// wrote to stdout and stderr.
    pub(crate) async fn terminate(mut self) -> (ExitStatus, String, String) {
        let pid = self.child.id().expect("still running").to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(kill.success(), "kill -TERM {pid}: {kill}");
        let status = match timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => status.expect("wait for the binary"),
            Err(_) => panic!(
                "no exit within {PATIENCE:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            ),
        };
        // The pipes close with the process: the readers end and hold everything.
        for reader in std::mem::take(&mut self.readers) {
            timeout(PATIENCE, reader)
                .await
                .expect("output pipes close")
                .unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        (status, stdout, self.stderr())
    }
}

/// `glitchtip_up` of `check` on target `stub`, if the series exists.
fn up(samples: &Samples, check: &str) -> Option<f64> {
    samples
        .find("glitchtip_up", &[("target", "stub"), ("check", check)])
        .first()
        .map(|(_, v)| *v)
}

#[tokio::test]
async fn version_flag_prints_the_version() {
    let (status, stdout, stderr) = run_to_end(&["--version"]).await;
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(
        stdout,
        format!("glitchtip-exporter {}\n", glitchtip_exporter::VERSION)
    );
}

#[tokio::test]
async fn check_config_accepts_the_example_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("exporter.toml");
    let (status, stdout, stderr) =
        run_to_end(&["--check-config", "-c", path.to_str().unwrap()]).await;
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(
        stdout,
        "config OK: 1 targets, 5 checks, mode interval, listen 0.0.0.0:10099\n"
    );
    assert_eq!(stderr, "");
}

#[tokio::test]
async fn check_config_rejects_a_bad_config_naming_file_and_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad-configs/unknown_check_key.toml");
    let path = path.to_str().unwrap();
    let (status, stdout, stderr) = run_to_end(&["--check-config", "-c", path]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    let prefix = format!("error: config file {path}, line 6, column 1: ");
    assert!(stderr.starts_with(&prefix), "{stderr}");
    assert!(
        stderr.contains("unknown key `expected_status`, did you mean `expect_status`?"),
        "{stderr}"
    );
    assert!(stderr.contains("targets.prod.checks.health"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn check_config_rejects_an_invalid_value_exactly() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad-configs/server_mode_bad.toml");
    let path = path.to_str().unwrap();
    let (status, stdout, stderr) = run_to_end(&["--check-config", "-c", path]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "error: config file {path}, line 3, column 1: server.mode: \"interval\" or \"scrape\", got \"push\"\n"
        )
    );
}

#[tokio::test]
async fn serves_probes_ignores_proxy_env_and_stops_on_sigterm() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let target = format!("stub={}", stub.url());
    // A proxy that refuses connections: any probe that used it would fail.
    let proxy = format!("http://{}", refused_addr());
    let mut envs: Vec<(&str, String)> = PROXY_VARS.iter().map(|v| (*v, proxy.clone())).collect();
    envs.push(("GLITCHTIP_EXPORTER_LOG", "info".to_owned()));
    let exporter = Running::start(&["--listen", "127.0.0.1:0", "--target", &target], &envs).await;

    let checks = ["health", "database", "api", "dashboard"];
    exporter
        .wait_for("every default check up", |s| {
            checks.iter().all(|c| up(s, c) == Some(1.0))
        })
        .await;
    for path in ["/_health/", "/api/settings/", "/api/0/organizations/", "/"] {
        assert!(stub.hits(path) > 0, "the stub saw no request for {path}");
    }
    for path in ["/-/healthy", "/-/ready"] {
        let r = request(exporter.addr, "GET", path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    let (status, _, stderr) = exporter.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[tokio::test]
async fn secrets_stay_out_of_logs_metrics_and_landing_page() {
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), format!("{TOKEN}\n")).unwrap();
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"

        [targets.stub]
        url = "{url}"

        # The stub answers 401 without looking at the token: the check fails every time,
        # and each failure is logged.
        [targets.stub.checks.authed]
        path = "/api/0/organizations/"
        expect_status = [200]
        bearer_token = {{ file = "{token}" }}
        interval = "1s"
        timeout = "1s"
        retry_interval = "200ms"
        "#,
        url = stub.url(),
        token = token_file.path().display(),
    );
    let config_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config_file.path(), config).unwrap();

    // Trace logging, dependencies included: every line that could carry the token.
    let envs = [("GLITCHTIP_EXPORTER_LOG", "trace".to_owned())];
    let exporter = Running::start(&["-c", config_file.path().to_str().unwrap()], &envs).await;
    let failures = |s: &Samples| {
        s.find(
            "glitchtip_consecutive_failures",
            &[("target", "stub"), ("check", "authed")],
        )
        .first()
        .map(|(_, v)| *v)
    };
    exporter
        .wait_for("authed failed twice", |s| failures(s) >= Some(2.0))
        .await;
    assert!(stub.hits("/api/0/organizations/") >= 2);

    let metrics = request(exporter.addr, "GET", "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    let landing = request(exporter.addr, "GET", "/", &[]).await;
    assert_eq!(landing.status, 200);
    assert!(landing.body.contains("authed"), "{}", landing.body);

    let (status, stdout, stderr) = exporter.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("authed"),
        "the failures are logged:\n{stderr}"
    );
    for (what, text) in [
        ("stderr", &stderr),
        ("stdout", &stdout),
        ("/metrics", &metrics.body),
        ("the landing page", &landing.body),
    ] {
        assert!(!text.contains(TOKEN), "{what} shows the token:\n{text}");
    }
}

/// `glitchtip-exporter healthcheck`, the container's HEALTHCHECK: 0 against a live
/// exporter, 1 against one that answers but is not healthy (503), and 1 once it is stopped.
#[tokio::test]
async fn healthcheck_exits_0_live_1_unhealthy_and_1_stopped() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\n[targets.gone]\nurl = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let exporter = Running::start(&["-c", config.path().to_str().unwrap()], &[]).await;
    let healthcheck = |url: String| async move {
        let (status, _, stderr) =
            run_to_end(&["healthcheck", "--url", &url, "--timeout", "2s"]).await;
        (status.code(), stderr)
    };
    let live = format!("http://{}/-/healthy", exporter.addr);
    assert_eq!(healthcheck(live.clone()).await.0, Some(0));
    let ready = format!("http://{}/-/ready", exporter.addr);
    assert_eq!(healthcheck(ready).await.0, Some(0));

    // A server that answers 503, as a not-ready one does.
    let unhealthy = crate::redirects::Recorder::start(|_| {
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_owned()
    })
    .await;
    let (code, stderr) = healthcheck(format!("http://{}/-/healthy", unhealthy.addr)).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("answered 503"), "{stderr}");

    let (status, _, _) = exporter.terminate().await;
    assert!(status.success());
    let (code, stderr) = healthcheck(live).await;
    assert_eq!(code, Some(1), "{stderr}");
}
