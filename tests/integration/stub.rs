//! A stub GlitchTip HTTP server for integration tests, plus raw TCP servers that misbehave
//! below HTTP.
//!
//! [`StubGlitchTip`] answers the endpoints the exporter probes with responses replayed from
//! the real recordings in `tests/fixtures/recorded/` (status, recorded headers such as
//! `content-type`, and body exactly as recorded). The files are read at run time, once per
//! test binary. Which recording answers is chosen by a [`Scenario`]; single paths can be
//! overridden with a [`Behavior`] (hang, delay, huge body, redirect, malformed JSON, …).
//!
//! Paths served per scenario (GET only): `/_health/`, `/api/0/internal/health`,
//! `/api/settings/`, `/api/0/`, `/api/0/organizations/`, `/.well-known/healthz` and `/`.
//! Any other path, and any method other than GET, answers the scenario's recorded
//! `/.well-known/healthz` 404 (GlitchTip's own 404 page).
//!
//! `/` answers a small synthetic front-end page (200, `text/html; charset=utf-8`, with
//! `<title>GlitchTip</title>`, like the official image's `index.html`) in every scenario except
//! [`Scenario::BackendOnly`], which answers the recorded 500 (`healthy__get_root`): the
//! recordings were made on an install without a front end.
//!
//! PostgreSQL-down scenarios: an endpoint counts as database-backed — it hangs in
//! [`Scenario::PostgresDownHang`] — when its `postgres_down` recording took longer than
//! 10 s (`elapsed_ms > 10000`). Of the probed paths that is `/api/settings/` only (recorded
//! 500 after 30.0 s). In [`Scenario::PostgresDownHang`] such an endpoint holds the request for
//! the recorded time (at least 30 s) and then answers the recorded 500, like the real server;
//! any test timeout must therefore be shorter than 30 s. In [`Scenario::PostgresDownFast`]
//! every recording, those 500s included, is answered at once, as while the web process's
//! pool still holds connections PostgreSQL closed: measured on the real lab
//! (scripts/test-real-glitchtip.sh), `/api/settings/` answered 500 at once for 19 s and 37 s
//! after PostgreSQL stopped (two runs), and hung from then on.
//!
//! Dropping a [`StubGlitchTip`] stops the server: the listener closes (new connections are
//! refused) and every open connection, hanging ones included, is closed.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Directory holding the recorded GlitchTip responses.
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/recorded");

/// A `postgres_down` recording slower than this hangs in [`Scenario::PostgresDownHang`].
const HANG_THRESHOLD: Duration = Duration::from_secs(10);

/// Shortest time a hanging PostgreSQL-down endpoint holds a request before answering.
const MIN_HANG: Duration = Duration::from_secs(30);

/// Chunk size used to stream [`Behavior::HugeBody`].
const HUGE_BODY_CHUNK: usize = 64 * 1024;

/// Body of [`Behavior::MalformedJson`]: a JSON document cut in the middle.
const MALFORMED_JSON: &str = r#"{"socialApps": [], "version": "0.0.0-unkn"#;

/// Bytes written by [`start_garbage_server`]: not an HTTP response.
const GARBAGE: &[u8] = b"SSH-2.0-OpenSSH_9.6 not-http\r\n\x00\xff\xfe\x01garbage\x02\x03\r\n\r\n";

/// The synthetic front-end page served at `/` (see the module documentation).
const FRONT_END_HTML: &str = "<!doctype html>
<html lang=\"en\">
<head>
  <meta charset=\"utf-8\">
  <title>GlitchTip</title>
  <base href=\"/\">
  <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
  <link rel=\"icon\" type=\"image/png\" href=\"assets/images/favicon-32x32.png\">
</head>
<body>
  <app-root></app-root>
  <noscript>GlitchTip requires JavaScript</noscript>
</body>
</html>
";

/// What the stub GlitchTip is going through; selects the recordings it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Everything running (`healthy` recordings); `/` serves the front-end page.
    Healthy,
    /// Everything running, but no front end: `healthy` recordings, and `/` answers the
    /// recorded 500 (`healthy__get_root`).
    BackendOnly,
    /// Celery worker stopped (`worker_stopped` recordings): every probe stays green.
    WorkerStopped,
    /// Redis stopped (`redis_down` recordings): every probe stays green.
    RedisDown,
    /// PostgreSQL just stopped (`postgres_down` recordings): the database-backed endpoints
    /// (`/api/settings/`) answer their recorded 500 at once.
    PostgresDownFast,
    /// PostgreSQL stopped for a while (`postgres_down` recordings): the database-backed
    /// endpoints (recorded `elapsed_ms > 10000`, i.e. `/api/settings/`) hold the request for
    /// at least 30 s before answering the recorded 500, so a probe sees a timeout.
    PostgresDownHang,
}

impl Scenario {
    /// Index of the recording set this scenario replays (see [`RECORDING_SETS`]).
    fn recording_set(self) -> usize {
        match self {
            Scenario::Healthy | Scenario::BackendOnly => 0,
            Scenario::WorkerStopped => 1,
            Scenario::RedisDown => 2,
            Scenario::PostgresDownFast | Scenario::PostgresDownHang => 3,
        }
    }
}

/// File name prefixes of the recording sets, indexed by [`Scenario::recording_set`].
const RECORDING_SETS: [&str; 4] = ["healthy", "worker_stopped", "redis_down", "postgres_down"];

/// What one path answers, overriding the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Answer at once with this status, `content-type` and body. An invalid status code
    /// answers 500 instead.
    Status {
        /// HTTP status code.
        status: u16,
        /// Value of the `content-type` header.
        content_type: &'static str,
        /// Response body.
        body: String,
    },
    /// Accept the request and never answer; the connection stays open until the client gives
    /// up or the stub is dropped.
    Hang,
    /// Wait this long, then behave like the inner behavior.
    Delay(Duration, Box<Behavior>),
    /// 200 `text/plain` whose body streams this many bytes (`x`) in 64 KiB chunks, without a
    /// `content-length` header (chunked transfer encoding).
    HugeBody {
        /// Number of body bytes.
        bytes: usize,
    },
    /// Answer at once with this (3xx) status, a `location` header and an empty body.
    Redirect {
        /// HTTP status code.
        status: u16,
        /// Value of the `location` header.
        location: String,
    },
    /// 200 `application/json` whose body is not valid JSON (a document cut in the middle).
    MalformedJson,
}

/// The endpoints a scenario answers, in the order of [`Endpoint::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Health,
    InternalHealth,
    ApiSettings,
    Api0,
    Organizations,
    WellKnownHealthz,
    Root,
}

impl Endpoint {
    const ALL: [Endpoint; 7] = [
        Endpoint::Health,
        Endpoint::InternalHealth,
        Endpoint::ApiSettings,
        Endpoint::Api0,
        Endpoint::Organizations,
        Endpoint::WellKnownHealthz,
        Endpoint::Root,
    ];

    fn path(self) -> &'static str {
        match self {
            Endpoint::Health => "/_health/",
            Endpoint::InternalHealth => "/api/0/internal/health",
            Endpoint::ApiSettings => "/api/settings/",
            Endpoint::Api0 => "/api/0/",
            Endpoint::Organizations => "/api/0/organizations/",
            Endpoint::WellKnownHealthz => "/.well-known/healthz",
            Endpoint::Root => "/",
        }
    }

    fn recording(self) -> &'static str {
        match self {
            Endpoint::Health => "get_health",
            Endpoint::InternalHealth => "get_internal_health",
            Endpoint::ApiSettings => "get_api_settings",
            Endpoint::Api0 => "get_api0_no_auth",
            Endpoint::Organizations => "get_organizations_no_auth",
            Endpoint::WellKnownHealthz => "get_well_known_healthz",
            Endpoint::Root => "get_root",
        }
    }

    fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One recorded response, ready to replay.
#[derive(Debug)]
struct Recorded {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    elapsed: Duration,
}

/// All recordings the stub replays: `[recording set][endpoint]`.
struct Fixtures {
    sets: Vec<Vec<Arc<Recorded>>>,
}

impl Fixtures {
    fn get(&self, scenario: Scenario, endpoint: Endpoint) -> Arc<Recorded> {
        Arc::clone(&self.sets[scenario.recording_set()][endpoint.index()])
    }
}

/// The recordings, loaded on first use. Panics (test set-up error) when a file is missing or
/// malformed.
fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let sets = RECORDING_SETS
            .iter()
            .map(|set| {
                Endpoint::ALL
                    .iter()
                    .map(|endpoint| match load_recording(set, *endpoint) {
                        Ok(rec) => Arc::new(rec),
                        Err(err) => panic!(
                            "stub GlitchTip: cannot load {FIXTURE_DIR}/{set}__{}.json: {err}",
                            endpoint.recording()
                        ),
                    })
                    .collect()
            })
            .collect();
        Fixtures { sets }
    })
}

fn load_recording(set: &str, endpoint: Endpoint) -> Result<Recorded, String> {
    let file = format!("{FIXTURE_DIR}/{set}__{}.json", endpoint.recording());
    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;

    let method = json["request"]["method"].as_str();
    let path = json["request"]["path"].as_str();
    if method != Some("GET") || path != Some(endpoint.path()) {
        return Err(format!(
            "expected a recording of GET {}, found {method:?} {path:?}",
            endpoint.path()
        ));
    }

    let response = &json["response"];
    let status = response["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or("missing or invalid response.status")?;
    let mut headers = Vec::new();
    if let Some(map) = response["headers"].as_object() {
        for (name, value) in map {
            let value = value.as_str().ok_or("non-string header value")?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            headers.push((name, value));
        }
    }
    let body = response["body"]
        .as_str()
        .ok_or("missing response.body")?
        .to_owned();
    let elapsed_ms = json["elapsed_ms"].as_f64().ok_or("missing elapsed_ms")?;
    let elapsed = Duration::try_from_secs_f64(elapsed_ms / 1000.0).map_err(|e| e.to_string())?;

    Ok(Recorded {
        status,
        headers,
        body: Bytes::from(body),
        elapsed,
    })
}

/// Mutable state shared between the handle and the server.
struct StubState {
    scenario: Scenario,
    behaviors: HashMap<String, Behavior>,
    hits: HashMap<String, usize>,
    total_hits: usize,
}

struct Shared {
    fixtures: &'static Fixtures,
    state: Mutex<StubState>,
}

impl Shared {
    /// Locks the state; a poisoned lock is used as is (the state stays consistent).
    fn lock(&self) -> MutexGuard<'_, StubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How one request will be answered, decided while the lock is held.
enum Plan {
    Behavior(Behavior),
    Recorded {
        recorded: Arc<Recorded>,
        hold: Option<Duration>,
    },
    FrontEnd,
}

/// A stub GlitchTip web server on `127.0.0.1` (plain HTTP/1.1) for one test.
///
/// Dropping it stops the server and closes every connection it holds.
pub struct StubGlitchTip {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl StubGlitchTip {
    /// Starts a stub on `127.0.0.1` with a free port, answering as in `scenario`.
    ///
    /// Must be called inside a Tokio runtime. Panics when the recordings cannot be loaded or
    /// no port can be bound (test set-up errors).
    pub async fn start(scenario: Scenario) -> StubGlitchTip {
        let fixtures = fixtures();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stub GlitchTip: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("stub GlitchTip: local address");
        let shared = Arc::new(Shared {
            fixtures,
            state: Mutex::new(StubState {
                scenario,
                behaviors: HashMap::new(),
                hits: HashMap::new(),
                total_hits: 0,
            }),
        });
        let shutdown = CancellationToken::new();
        let listener = StubListener {
            inner: listener,
            shutdown: shutdown.clone(),
        };
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StubGlitchTip {
            addr,
            shared,
            shutdown,
            task,
        }
    }

    /// The address the stub listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the stub, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches to another scenario; applies to requests arriving from now on. Per-path
    /// behaviors stay in force.
    pub fn set_scenario(&self, scenario: Scenario) {
        self.shared.lock().scenario = scenario;
    }

    /// Makes `path` (without query, e.g. `/_health/`; a query is ignored) answer with
    /// `behavior` for every method, whatever the scenario, until cleared.
    pub fn set_behavior(&self, path: &str, behavior: Behavior) {
        self.shared
            .lock()
            .behaviors
            .insert(strip_query(path).to_owned(), behavior);
    }

    /// Removes the behavior set for `path`; the scenario answers it again.
    pub fn clear_behavior(&self, path: &str) {
        self.shared.lock().behaviors.remove(strip_query(path));
    }

    /// Number of requests received for `path` (without query; any method), counted when the
    /// request arrives, before it is answered.
    pub fn hits(&self, path: &str) -> usize {
        self.shared
            .lock()
            .hits
            .get(strip_query(path))
            .copied()
            .unwrap_or(0)
    }

    /// Number of requests received for all paths together.
    pub fn total_hits(&self) -> usize {
        self.shared.lock().total_hits
    }
}

impl Drop for StubGlitchTip {
    /// Stops the server task and closes every connection it holds.
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The single handler: counts the request, then answers by behavior or scenario.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path();
    let plan = {
        let mut state = shared.lock();
        state.total_hits += 1;
        *state.hits.entry(path.to_owned()).or_insert(0) += 1;
        plan(&state, shared.fixtures, request.method(), path)
    };
    drop(request);
    match plan {
        Plan::Behavior(behavior) => behavior_response(behavior).await,
        Plan::Recorded { recorded, hold } => {
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
            }
            recorded_response(&recorded)
        }
        Plan::FrontEnd => simple_response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Body::from(FRONT_END_HTML),
        ),
    }
}

fn plan(state: &StubState, fixtures: &Fixtures, method: &Method, path: &str) -> Plan {
    if let Some(behavior) = state.behaviors.get(path) {
        return Plan::Behavior(behavior.clone());
    }
    let scenario = state.scenario;
    let endpoint = match Endpoint::from_path(path) {
        Some(endpoint) if *method == Method::GET => endpoint,
        _ => Endpoint::WellKnownHealthz,
    };
    if endpoint == Endpoint::Root && scenario != Scenario::BackendOnly {
        return Plan::FrontEnd;
    }
    let recorded = fixtures.get(scenario, endpoint);
    let hold = (scenario == Scenario::PostgresDownHang && recorded.elapsed > HANG_THRESHOLD)
        .then(|| recorded.elapsed.max(MIN_HANG));
    Plan::Recorded { recorded, hold }
}

fn recorded_response(recorded: &Recorded) -> Response {
    let mut response = Response::new(Body::from(recorded.body.clone()));
    *response.status_mut() = recorded.status;
    for (name, value) in &recorded.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

fn simple_response(status: StatusCode, content_type: &str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn status_or_500(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn behavior_response(mut behavior: Behavior) -> Response {
    loop {
        behavior = match behavior {
            Behavior::Delay(delay, inner) => {
                tokio::time::sleep(delay).await;
                *inner
            }
            Behavior::Hang => return std::future::pending().await,
            Behavior::Status {
                status,
                content_type,
                body,
            } => return simple_response(status_or_500(status), content_type, Body::from(body)),
            Behavior::HugeBody { bytes } => {
                return simple_response(StatusCode::OK, "text/plain", huge_body(bytes));
            }
            Behavior::Redirect { status, location } => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = status_or_500(status);
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return response;
            }
            Behavior::MalformedJson => {
                return simple_response(
                    StatusCode::OK,
                    "application/json",
                    Body::from(MALFORMED_JSON),
                );
            }
        }
    }
}

/// A body of `bytes` bytes streamed in chunks that share one buffer.
fn huge_body(bytes: usize) -> Body {
    let chunk = Bytes::from(vec![b'x'; bytes.min(HUGE_BODY_CHUNK)]);
    let stream = futures::stream::unfold(bytes, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(chunk.len());
            Some((Ok::<Bytes, Infallible>(chunk.slice(..n)), left - n))
        }
    });
    Body::from_stream(stream)
}

/// Listener whose connections are closed when the stub is dropped.
struct StubListener {
    inner: TcpListener,
    shutdown: CancellationToken,
}

impl axum::serve::Listener for StubListener {
    type Io = StubIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (StubIo, SocketAddr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let stopped = Box::pin(self.shutdown.clone().cancelled_owned());
        (
            StubIo {
                stream,
                stopped,
                is_stopped: false,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write once the stub is stopped, so that the HTTP
/// server drops it (and closes the socket) even while a handler hangs.
struct StubIo {
    stream: TcpStream,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
    is_stopped: bool,
}

impl StubIo {
    fn stopped(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_stopped && self.stopped.as_mut().poll(cx).is_ready() {
            self.is_stopped = true;
        }
        self.is_stopped
    }
}

fn stopped_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "stub GlitchTip stopped")
}

impl AsyncRead for StubIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.stopped(cx) {
            return Poll::Ready(Err(stopped_error()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StubIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.stopped(cx) {
            return Poll::Ready(Err(stopped_error()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.stopped(cx) {
            return Poll::Ready(Err(stopped_error()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Starts a raw TCP server on `127.0.0.1` that accepts connections and reads from them but
/// never writes, keeping every socket open (a probe sees a timeout, not an error).
///
/// Aborting the returned task stops the server and closes its connections.
pub async fn start_silent_server() -> (SocketAddr, JoinHandle<()>) {
    start_raw_server(hold_silently).await
}

/// Starts a raw TCP server on `127.0.0.1` that accepts connections, writes bytes that are not
/// an HTTP response, and closes each connection (after reading the request, for up to 1 s,
/// so that the client reads the garbage rather than a connection reset).
///
/// Aborting the returned task stops the server.
pub async fn start_garbage_server() -> (SocketAddr, JoinHandle<()>) {
    start_raw_server(send_garbage).await
}

/// A TCP address on `127.0.0.1` that refuses connections: a port bound with port 0, noted,
/// and released again (another process could take it in between, which is unlikely).
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

async fn start_raw_server<F, Fut>(serve: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("raw server: bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("raw server: local address");
    let task = tokio::spawn(async move {
        // Connections live in this set, so aborting the task closes them too.
        let mut connections = JoinSet::new();
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
            while connections.try_join_next().is_some() {}
        }
    });
    (addr, task)
}

async fn hold_silently(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => std::future::pending::<()>().await,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

async fn send_garbage(mut stream: TcpStream) {
    if stream.write_all(GARBAGE).await.is_err() {
        return;
    }
    let _ = stream.flush().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), read_request_head(&mut stream)).await;
    let _ = stream.shutdown().await;
}

/// Reads until the end of a request head (`\r\n\r\n`), end of stream or an error.
async fn read_request_head(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    return;
                }
            }
        }
    }
}
