//! A stub GlitchTip that models the asynchronous ingest pipeline, for the canary tests.
//!
//! Ingest (`POST /api/<project>/envelope/` and `/store/`) answers what the real server
//! answered in the recordings of `tests/fixtures/recorded/` (status, `content-type`, body,
//! with the event id of the request in place of the recorded one), and — like the real
//! worker — makes the event visible only later, or never. The API answers the recorded
//! issue search (`[]` before, the issue after, `X-Sentry-Direct-Hit: 1` both times) and the
//! recorded event detail (404 before, 200 after).
//!
//! [`Mode`]s: healthy (visible after a delay: a slow worker is a longer delay), worker
//! stalled (accepted, never visible), Redis down (ingest's recorded 500), throttled (429
//! with `Retry-After`), malformed API answers, a lying API (a hit for another event),
//! hanging ingest or API.
//!
//! The stub also checks the exporter's manners and keeps every breach in
//! [`StubIngest::violations`]: at most one canary in flight (no ingest request while
//! another ingest request or a poll runs, no poll for an older canary once a newer one was
//! sent), only the configured key, and nothing sent after a 429 before its `Retry-After`
//! has passed. Dropping the stub stops it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::time::Instant;

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/recorded");
/// The event id in the recorded answers, replaced by the request's.
const RECORDED_ID: &str = "443ea29f420a46e69901f80e4fc9310b";
/// The store recording's event id.
const RECORDED_STORE_ID: &str = "24da691d956047ff91a7fcd34d60abfe";

/// The key, token, organization and project the stub expects.
pub const KEY: &str = "0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "t0k3n-for-the-canary-with-event-read";
pub const ORG: &str = "lab-org";
pub const PROJECT: &str = "lab-project";
pub const PROJECT_ID: &str = "1";

/// What the stub GlitchTip is going through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything works: an accepted event is visible this long after.
    Healthy { visible_after: Duration },
    /// The worker is stopped: ingest accepts (200), nothing ever becomes visible.
    WorkerStalled,
    /// Redis is down: ingest answers the recorded 500.
    RedisDown,
    /// Ingest answers 429 with `Retry-After: <seconds>`.
    Throttled { retry_after_secs: u64 },
    /// Ingest works; the issue search answers 200 with a JSON document cut in the middle.
    MalformedApi,
    /// Ingest works; the issue search answers a hit for another event.
    LyingApi,
    /// Ingest never answers.
    IngestHangs,
    /// Ingest works and the event is visible at once; the API never answers.
    ApiHangs,
}

/// One recorded answer.
#[derive(Debug, Clone)]
struct Recorded {
    status: u16,
    content_type: String,
    extra: Vec<(String, String)>,
    body: String,
}

fn recorded(name: &str) -> Recorded {
    let text = std::fs::read_to_string(format!("{FIXTURE_DIR}/{name}.json"))
        .unwrap_or_else(|e| panic!("stub: cannot read recording {name}: {e}"));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let response = &doc["response"];
    let headers = response["headers"].as_object().unwrap();
    Recorded {
        status: response["status"].as_u64().unwrap() as u16,
        content_type: headers["content-type"].as_str().unwrap().to_owned(),
        extra: headers
            .iter()
            .filter(|(k, _)| *k != "content-type")
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect(),
        body: response["body"].as_str().unwrap().to_owned(),
    }
}

/// One request the stub saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When.
    pub at: Instant,
    /// `ingest` or `poll`.
    pub kind: &'static str,
    /// The `Host` header.
    pub host: String,
    /// The path.
    pub path: String,
    /// The event id it is about.
    pub id: String,
}

struct Inner {
    mode: Mode,
    /// Event id → when it becomes visible (`None`: never).
    events: HashMap<String, Option<Instant>>,
    /// The latest event id sent.
    current: Option<String>,
    /// After a 429: nothing may arrive before this.
    not_before: Option<Instant>,
    keys: Vec<String>,
    seen: Vec<Seen>,
    violations: Vec<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    ingest_in_flight: AtomicUsize,
    polls_in_flight: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn violation(&self, what: String) {
        self.lock().violations.push(what);
    }
}

/// Decrements a counter when dropped (a request that ends, answered or cut off).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts a request in on `counter`; one while another is in flight is the violation
    /// `what`.
    fn enter(shared: &Shared, counter: &'a AtomicUsize, what: &str) -> Self {
        if counter.fetch_add(1, Ordering::SeqCst) > 0 {
            shared.violation(what.to_owned());
        }
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running stub.
pub struct StubIngest {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl StubIngest {
    /// Starts the stub on 127.0.0.1:0 in `mode`.
    pub async fn start(mode: Mode) -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                mode,
                events: HashMap::new(),
                current: None,
                not_before: None,
                keys: Vec::new(),
                seen: Vec::new(),
                violations: Vec::new(),
            }),
            ingest_in_flight: AtomicUsize::new(0),
            polls_in_flight: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/api/{project}/{endpoint}/", post(ingest))
            .route("/api/0/organizations/{org}/issues/", get(issue_search))
            .route(
                "/api/0/projects/{org}/{project}/events/{id}/",
                get(event_detail),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            addr,
            shared,
            stop: Some(tx),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The DSN of the stub's project with the right key, on `host` (which must resolve to
    /// 127.0.0.1).
    pub fn dsn_on(&self, host: &str) -> String {
        format!("http://{KEY}@{host}:{}/{PROJECT_ID}", self.addr.port())
    }

    /// The DSN on 127.0.0.1.
    pub fn dsn(&self) -> String {
        self.dsn_on("127.0.0.1")
    }

    /// Changes the mode; events already accepted keep their visibility.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.lock().mode = mode;
    }

    /// Every breach of the exporter's manners so far.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Every key sent to ingest.
    pub fn keys(&self) -> Vec<String> {
        self.shared.lock().keys.clone()
    }

    /// Every request seen, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }

    /// The ingest requests seen.
    pub fn ingests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.kind == "ingest")
            .collect()
    }
}

impl Drop for StubIngest {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn answer(status: u16, content_type: &str, extra: &[(String, String)], body: String) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(header::CONTENT_TYPE, content_type);
    for (k, v) in extra {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder.body(Body::from(body)).unwrap()
}

fn replay(rec: &Recorded, id: &str) -> Response {
    answer(
        rec.status,
        &rec.content_type,
        &rec.extra,
        rec.body
            .replace(RECORDED_ID, id)
            .replace(RECORDED_STORE_ID, id),
    )
}

/// The key of an ingest request: `X-Sentry-Auth`'s `sentry_key`, or `?sentry_key=`.
fn key_of(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers
        .get("x-sentry-auth")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find_map(|part| {
                    part.trim_start_matches("Sentry ")
                        .strip_prefix("sentry_key=")
                })
                .map(str::to_owned)
        });
    from_header.or_else(|| {
        query?
            .split('&')
            .find_map(|kv| kv.strip_prefix("sentry_key="))
            .map(str::to_owned)
    })
}

/// The event id of an envelope (its header line) or a store body.
fn event_id_of(endpoint: &str, body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let first = if endpoint == "envelope" {
        text.lines().next()?
    } else {
        text
    };
    let doc: serde_json::Value = serde_json::from_str(first).ok()?;
    doc["event_id"].as_str().map(str::to_owned)
}

fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn ingest(
    State(shared): State<Arc<Shared>>,
    Path((project, endpoint)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let guard = InFlight::enter(
        &shared,
        &shared.ingest_in_flight,
        "an ingest request while another one was in flight",
    );
    if shared.polls_in_flight.load(Ordering::SeqCst) > 0 {
        shared.violation("an ingest request while a poll was in flight".to_owned());
    }
    let key = key_of(&headers, query.as_deref()).unwrap_or_default();
    let id = event_id_of(&endpoint, &body).unwrap_or_default();
    let mode = {
        let mut inner = shared.lock();
        if let Some(until) = inner.not_before
            && now < until
        {
            let early = until - now;
            inner.violations.push(format!(
                "an ingest request {early:?} before Retry-After had passed"
            ));
        }
        inner.keys.push(key.clone());
        inner.seen.push(Seen {
            at: now,
            kind: "ingest",
            host: host_of(&headers),
            path: format!("/api/{project}/{endpoint}/"),
            id: id.clone(),
        });
        if key != KEY {
            inner
                .violations
                .push("an ingest request with another key".to_owned());
        }
        if project != PROJECT_ID || !matches!(endpoint.as_str(), "envelope" | "store") {
            inner
                .violations
                .push(format!("an ingest request to /api/{project}/{endpoint}/"));
        }
        inner.current = Some(id.clone());
        inner.mode
    };
    if key != KEY {
        let name = if endpoint == "store" {
            "healthy__store_bad_key"
        } else {
            "healthy__envelope_during_block"
        };
        return replay(&recorded(name), &id);
    }
    let ok = if endpoint == "store" {
        "healthy__store"
    } else {
        "healthy__envelope"
    };
    let visible_at = match mode {
        Mode::Healthy { visible_after } => Some(now + visible_after),
        Mode::MalformedApi | Mode::LyingApi | Mode::ApiHangs => Some(now),
        Mode::WorkerStalled => None,
        Mode::RedisDown => {
            let name = if endpoint == "store" {
                "redis_down__store"
            } else {
                "redis_down__envelope"
            };
            return replay(&recorded(name), &id);
        }
        Mode::Throttled { retry_after_secs } => {
            shared.lock().not_before = Some(now + Duration::from_secs(retry_after_secs));
            return answer(
                429,
                "application/json",
                &[("retry-after".to_owned(), retry_after_secs.to_string())],
                r#"{"detail": "Request was throttled."}"#.to_owned(),
            );
        }
        Mode::IngestHangs => {
            // A request the client gave up on may never end here: not in flight.
            drop(guard);
            futures::future::pending::<()>().await;
            unreachable!()
        }
    };
    shared.lock().events.insert(id.clone(), visible_at);
    replay(&recorded(ok), &id)
}

/// Shared part of both lookups: checks, then whether `id` is visible now.
async fn poll(
    shared: &Shared,
    guard: InFlight<'_>,
    headers: &HeaderMap,
    path: String,
    id: &str,
) -> Result<bool, Response> {
    let now = Instant::now();
    let (mode, visible) = {
        let mut inner = shared.lock();
        inner.seen.push(Seen {
            at: now,
            kind: "poll",
            host: host_of(headers),
            path,
            id: id.to_owned(),
        });
        if inner.current.as_deref() != Some(id) {
            inner
                .violations
                .push("a poll for an older canary after a newer one was sent".to_owned());
        }
        let visible = inner
            .events
            .get(id)
            .copied()
            .flatten()
            .is_some_and(|at| now >= at);
        (inner.mode, visible)
    };
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return Err(answer(
            401,
            "application/json",
            &[],
            r#"{"detail": "Invalid token."}"#.to_owned(),
        ));
    }
    match mode {
        Mode::ApiHangs => {
            // A request the client gave up on may never end here: not in flight.
            drop(guard);
            futures::future::pending::<()>().await;
            unreachable!()
        }
        Mode::MalformedApi => Err(answer(
            200,
            "application/json; charset=utf-8",
            &[("x-sentry-direct-hit".to_owned(), "1".to_owned())],
            r#"[{"id": "10", "count": "1", "type": "def"#.to_owned(),
        )),
        _ => Ok(visible),
    }
}

async fn issue_search(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let guard = InFlight::enter(&shared, &shared.polls_in_flight, "two polls at once");
    let id = query
        .as_deref()
        .and_then(|q| q.strip_prefix("query="))
        .unwrap_or_default()
        .to_owned();
    if org != ORG {
        shared.violation(format!("a poll for organization {org}"));
    }
    let path = format!("/api/0/organizations/{org}/issues/");
    match poll(&shared, guard, &headers, path, &id).await {
        Err(response) => response,
        Ok(_) if shared.lock().mode == Mode::LyingApi => replay(
            &recorded("healthy__issue_search_envelope_after"),
            "ffffffffffffffffffffffffffffffff",
        ),
        Ok(true) => replay(&recorded("healthy__issue_search_envelope_after"), &id),
        Ok(false) => replay(&recorded("healthy__issue_search_envelope_before"), &id),
    }
}

async fn event_detail(
    State(shared): State<Arc<Shared>>,
    Path((org, project, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let guard = InFlight::enter(&shared, &shared.polls_in_flight, "two polls at once");
    if org != ORG || project != PROJECT {
        shared.violation(format!("a poll for {org}/{project}"));
    }
    let path = format!("/api/0/projects/{org}/{project}/events/{id}/");
    match poll(&shared, guard, &headers, path, &id).await {
        Err(response) => response,
        Ok(true) => replay(&recorded("healthy__event_envelope_after"), &id),
        Ok(false) => replay(&recorded("healthy__event_envelope_before"), &id),
    }
}
