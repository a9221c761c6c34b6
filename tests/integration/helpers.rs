//! Shared test plumbing: the real exporter on 127.0.0.1:0, a small HTTP client, and a
//! parser for the text exposition format.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use glitchtip_exporter::clock::ManualClock;
use glitchtip_exporter::config::ConfigSource;
use glitchtip_exporter::exporter::{Deps, Exporter};
use glitchtip_exporter::net::resolver::StaticResolver;
use glitchtip_exporter::server::Web;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The Unix time the manual clock of [`deps`] shows.
pub const CLOCK_START: u64 = 1_800_000_000;

/// A name the test resolver maps to 127.0.0.1; every other name fails.
pub const TEST_HOST: &str = "glitchtip.test";

/// Test dependencies: a manual clock at [`CLOCK_START`] and a resolver that knows only
/// [`TEST_HOST`].
pub fn deps() -> (Deps, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_unix(CLOCK_START));
    let deps = Deps {
        resolver: Arc::new(StaticResolver::new().with(TEST_HOST, [127, 0, 0, 1].into())),
        clock: clock.clone(),
        prober: None,
    };
    (deps, clock)
}

/// A running exporter.
pub struct TestExporter {
    pub addr: SocketAddr,
    pub exporter: Arc<Exporter>,
    pub config_file: tempfile::NamedTempFile,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Starts the exporter with `toml` as its config file, on 127.0.0.1:0, with the lifecycle
/// endpoints on (`--web.enable-lifecycle`: the reload tests POST /-/reload).
pub async fn start(toml: &str, deps: Deps) -> TestExporter {
    start_web(toml, deps, Web::open(true)).await
}

/// [`start`], with the endpoints protected and switched as `web` says.
pub async fn start_web(toml: &str, deps: Deps, web: Arc<Web>) -> TestExporter {
    let config_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config_file.path(), toml).unwrap();
    let source = ConfigSource {
        file: Some(config_file.path().to_owned()),
        env: Some(Default::default()),
        ..Default::default()
    };
    let exporter = Exporter::new(source, deps).unwrap_or_else(|e| panic!("{e}"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(glitchtip_exporter::server::run_with(
        listener,
        exporter.clone(),
        web,
        async move {
            let _ = rx.await;
        },
    ));
    TestExporter {
        addr,
        exporter,
        config_file,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl TestExporter {
    /// GET `path`.
    pub async fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[]).await
    }

    /// GET `path` with headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr, "GET", path, headers).await
    }

    /// POST `path`.
    pub async fn post(&self, path: &str) -> Response {
        request(self.addr, "POST", path, &[]).await
    }

    /// GET /metrics, parsed.
    pub async fn metrics(&self) -> Samples {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.body);
        Samples::parse(&r.body)
    }

    /// Polls `/metrics` until `cond` holds (at most 15 s); on timeout the message names
    /// `what` and shows the series whose name contains `shown`.
    pub async fn wait_for(
        &self,
        what: &str,
        shown: &[&str],
        cond: impl Fn(&Samples) -> bool,
    ) -> Samples {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let samples = self.metrics().await;
            if cond(&samples) {
                return samples;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; series: {:?}",
                samples
                    .0
                    .iter()
                    .filter(|(n, _, _)| shown.iter().any(|s| n.contains(s)))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// GET /probe?target=…, parsed.
    pub async fn probe(&self, target: &str) -> Samples {
        let r = self.get(&format!("/probe?target={target}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        Samples::parse(&r.body)
    }

    /// Replaces the config file and POSTs /-/reload.
    pub async fn reload(&self, toml: &str) -> Response {
        std::fs::write(self.config_file.path(), toml).unwrap();
        self.post("/-/reload").await
    }

    /// Shuts down and waits.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("shutdown within its deadline")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestExporter {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// One HTTP/1.1 request over a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    send(addr, method, path, headers, Vec::new()).await
}

/// One HTTP/1.1 request with a body over a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Response {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Parsed samples of the text exposition format.
#[derive(Debug, Clone)]
pub struct Samples(pub Vec<(String, BTreeMap<String, String>, f64)>);

impl Samples {
    /// Parses the text format (enough of it for our own output).
    pub fn parse(text: &str) -> Self {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').unwrap();
                    let mut labels = BTreeMap::new();
                    let mut s = rest;
                    while !s.is_empty() {
                        let (k, after) = s.split_once("=\"").unwrap();
                        let mut value = String::new();
                        let mut chars = after.char_indices();
                        let mut end = 0;
                        while let Some((i, c)) = chars.next() {
                            match c {
                                '\\' => {
                                    if let Some((_, n)) = chars.next() {
                                        value.push(match n {
                                            'n' => '\n',
                                            other => other,
                                        });
                                    }
                                }
                                '"' => {
                                    end = i;
                                    break;
                                }
                                c => value.push(c),
                            }
                        }
                        labels.insert(k.trim_start_matches(',').to_owned(), value);
                        s = &after[end + 1..];
                        s = s.trim_start_matches(',');
                    }
                    (name.to_owned(), labels)
                }
            };
            out.push((name, labels, value));
        }
        Self(out)
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn find(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }

    /// The one sample named `name` with `labels`; panics unless there is exactly one.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(
            found.len(),
            1,
            "expected one {name}{labels:?}, found {found:?}"
        );
        found[0].1
    }

    /// The value for check `check` of target `target`.
    pub fn check(&self, name: &str, target: &str, check: &str) -> f64 {
        self.get(name, &[("target", target), ("check", check)])
    }

    /// Whether any sample named `name` has `labels`.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        !self.find(name, labels).is_empty()
    }

    /// The current failure reason of a check (exactly one series must exist).
    pub fn reason(&self, target: &str, check: &str) -> String {
        let found = self.find(
            "glitchtip_probe_failure_reason",
            &[("target", target), ("check", check)],
        );
        assert_eq!(
            found.len(),
            1,
            "expected one reason series for {target}/{check}, found {found:?}"
        );
        assert_eq!(found[0].1, 1.0);
        found[0].0["reason"].clone()
    }

    /// Every metric name present.
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.0.iter().map(|(n, _, _)| n.clone()).collect()
    }
}

/// Seconds since the epoch of the manual clock's start.
pub fn clock_start_secs() -> f64 {
    (UNIX_EPOCH + Duration::from_secs(CLOCK_START))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Tracing output of the test's own thread (the exporter's tasks run there too).
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

impl Captured {
    /// Captures the test thread's tracing output up to `level` while the guard lives.
    pub fn install(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(level)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // Callsites first hit by a concurrent test while this subscriber was being
        // registered may have cached "never": recompute with this subscriber in place.
        tracing::callsite::rebuild_interest_cache();
        (logs, guard)
    }

    /// Lines at `level` that contain `text`.
    pub fn count(&self, level: &str, text: &str) -> usize {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(&format!(" {level} ")) && l.contains(text))
            .count()
    }
}
