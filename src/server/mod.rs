//! The HTTP endpoints: `/metrics`, `/probe`, `/` (landing page), `/-/healthy`,
//! `/-/ready`, `/-/reload`.
//!
//! [`Web`] protects them (`--web.config.file`, see [`web_config`]): TLS in the accept loop,
//! basic authentication on every endpoint but the heartbeat pings, which keep their own
//! per-heartbeat tokens. `POST /-/reload` answers 403 unless `--web.enable-lifecycle` was
//! given, as in Prometheus; `SIGHUP` always reloads ([`reload`]).
//!
//! [`run`] takes an already bound listener and any shutdown future, so that tests bind
//! `127.0.0.1:0` and need no signals. Shutdown is two steps: stop accepting and stop the
//! scheduler, then wait — at most `server.shutdown_timeout` — for both to finish.
//! The accept loop and its bounds on clients live in [`listener`].

mod landing;
pub mod listener;
pub mod web_config;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Mode;
use crate::config::defaults::SCRAPE_TIMEOUT_OFFSET;
use crate::exporter::{Exporter, ProbeError};
use crate::metrics::CONTENT_TYPE;
use web_config::{BasicAuthUsers, WebConfig, WebConfigError};

/// The shortest deadline a scrape header can impose, so that a tiny or bogus header value
/// still leaves time for a probe.
const MIN_SCRAPE_DEADLINE: Duration = Duration::from_millis(100);

/// The realm of the basic-authentication challenge.
const REALM_CHALLENGE: &str = "Basic realm=\"glitchtip-exporter\"";
/// The one answer to missing, malformed and wrong credentials alike.
const UNAUTHORIZED: &str = "unauthorized\n";
/// The answer to `POST /-/reload` without `--web.enable-lifecycle`.
const LIFECYCLE_DISABLED: &str = "lifecycle endpoints are disabled: start with --web.enable-lifecycle to allow POST /-/reload (SIGHUP always reloads)\n";

/// How the endpoints are protected and which of them are on: the web-config file in force
/// and the lifecycle switch.
pub struct Web {
    /// `--web.config.file`; `None`: plain HTTP, no authentication.
    file: Option<PathBuf>,
    /// std RwLock: nothing async happens while it is held.
    current: RwLock<WebConfig>,
    /// `--web.enable-lifecycle`.
    lifecycle: bool,
    /// bcrypt verifications running at once, at most one per core: a flood of wrong
    /// passwords queues here instead of taking every blocking thread and the CPU that
    /// probes need.
    verifications: Semaphore,
    /// The last reload's error message, so that the same failure again is logged at debug;
    /// `Some` also sets [`WEB_RELOAD_GAUGE`] to 0.
    last_error: Mutex<Option<String>>,
}

/// The gauge of the web config's last load, shown on `/metrics` when a web-config file is
/// given. Apart from `glitchtip_exporter_config_last_reload_successful`, which is about the
/// TOML config, so that each says which file was refused.
const WEB_RELOAD_GAUGE: &str = "glitchtip_exporter_web_config_last_reload_successful";

impl Web {
    /// Reads `file` (if any); an error names the file, the key and what was expected.
    /// Blocking (file reads).
    pub fn load(file: Option<PathBuf>, lifecycle: bool) -> Result<Arc<Web>, WebConfigError> {
        let current = match &file {
            Some(path) => web_config::load(path)?,
            None => WebConfig::default(),
        };
        Ok(Arc::new(Web {
            file,
            current: RwLock::new(current),
            lifecycle,
            verifications: verification_slots(),
            last_error: Mutex::new(None),
        }))
    }

    /// No web-config file: plain HTTP and no authentication; lifecycle as given.
    pub fn open(lifecycle: bool) -> Arc<Web> {
        Arc::new(Web {
            file: None,
            current: RwLock::new(WebConfig::default()),
            lifecycle,
            verifications: verification_slots(),
            last_error: Mutex::new(None),
        })
    }

    /// The TLS config for new connections, if TLS is on.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tls
            .clone()
    }

    /// The text of [`WEB_RELOAD_GAUGE`], if a web-config file is given.
    fn exposition(&self) -> Option<bytes::Bytes> {
        self.file.as_ref()?;
        let ok = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none();
        Some(bytes::Bytes::from(format!(
            "# HELP {WEB_RELOAD_GAUGE} 1 when the last load of --web.config.file succeeded, 0 when a reload was refused (the previous web config stays in force).\n# TYPE {WEB_RELOAD_GAUGE} gauge\n{WEB_RELOAD_GAUGE} {}\n",
            u8::from(ok)
        )))
    }

    fn users(&self) -> Option<Arc<BasicAuthUsers>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .clone()
    }

    /// Reads the web-config file again; on error the one in force stays. The outcome is
    /// logged when it differs from the last one.
    async fn reload(&self) -> Result<(), Arc<WebConfigError>> {
        let Some(path) = self.file.clone() else {
            return Ok(());
        };
        let result = match tokio::task::spawn_blocking(move || web_config::load(&path)).await {
            Ok(result) => result.map_err(Arc::new),
            // The load panicked: the one in force stays, as for a bad file.
            Err(_) => Err(Arc::new(WebConfigError::Invalid {
                file: self.file.clone().unwrap_or_default(),
                key: String::new(),
                expected: "a file that loads (the load stopped)".to_owned(),
            })),
        };
        let message = result.as_ref().err().map(ToString::to_string);
        let new = {
            let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *last, message.clone()) != message
        };
        match result {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
                if new {
                    tracing::info!("web config reloaded");
                }
                Ok(())
            }
            Err(e) => {
                if new {
                    tracing::error!(error = %e, "web config reload failed; the previous web config stays in force");
                } else {
                    tracing::debug!(error = %e, "web config reload failed again the same way");
                }
                Err(e)
            }
        }
    }
}

fn verification_slots() -> Semaphore {
    Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from))
}

/// Errors of a reload of both the config and the web config.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// Occurs when the config does not reload; the one in force stays.
    #[error(transparent)]
    Config(#[from] crate::exporter::ReloadError),
    /// Occurs when the web-config file does not reload; the one in force stays.
    #[error(transparent)]
    Web(Arc<WebConfigError>),
}

/// Reloads the config, then the web config (`POST /-/reload`, `SIGHUP`). Each keeps the
/// one in force when its file is bad; the other still reloads.
pub async fn reload(exporter: &Arc<Exporter>, web: &Web) -> Result<(), ReloadError> {
    let config = exporter.reload().await;
    let web = web.reload().await;
    config?;
    web.map_err(ReloadError::Web)
}

/// Serves the exporter on `listener` until `shutdown` completes; starts the scheduler. No
/// TLS, no authentication, lifecycle endpoints off.
pub async fn run(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, exporter, Web::open(false), shutdown).await
}

/// [`run`], with the endpoints protected and switched as `web` says.
pub async fn run_with(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    web: Arc<Web>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    exporter.start();
    let deadline = exporter.config().shutdown_timeout;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = protected_router(exporter.clone(), web.clone());
    let reserve_app = reserve_router(exporter.clone(), web.clone()).layer(
        axum::middleware::from_fn_with_state(web.clone(), require_auth),
    );
    let limits = exporter.config().limits;
    let server = tokio::spawn(listener::serve(
        listener,
        app,
        reserve_app,
        web,
        limits,
        async move {
            let _ = stop_rx.await;
        },
    ));
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    exporter.stop(deadline).await;
    match tokio::time::timeout(deadline, server).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(join)) => Err(std::io::Error::other(join)),
        Err(_) => {
            tracing::warn!("open requests did not finish within the shutdown timeout");
            Ok(())
        }
    }
}

/// The routes, for tests that want to drive them without a listener: no authentication,
/// lifecycle endpoints on.
pub fn router(exporter: Arc<Exporter>) -> Router {
    protected_router(exporter, Web::open(true))
}

/// The routes, every one behind `web`'s basic authentication but the heartbeat pings.
fn protected_router(exporter: Arc<Exporter>, web: Arc<Web>) -> Router {
    let heartbeats = crate::heartbeat::routes(exporter.heartbeats());
    let probes = Arc::new(Semaphore::new(
        exporter.config().limits.max_concurrent_probes,
    ));
    let lifecycle = web.clone();
    scrape_routes(web.clone())
        .route(
            "/probe",
            get(move |state, query, headers| bounded_probe(probes, state, query, headers)),
        )
        .route("/", get(landing))
        .route(
            "/-/reload",
            post(move |state| reload_endpoint(lifecycle, state)),
        )
        .with_state(exporter)
        .layer(axum::middleware::from_fn_with_state(web, require_auth))
        .merge(heartbeats)
}

/// Basic authentication when the web config has users. Missing, malformed and wrong
/// credentials get the same answer; bcrypt runs off the async workers, and an unknown
/// user costs the same as a wrong password ([`BasicAuthUsers::verify`]).
async fn require_auth(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    let Some(users) = web.users() else {
        return next.run(request).await;
    };
    let allowed = match basic_credentials(request.headers()) {
        Some((user, password)) if users.remembered(&user, &password) => true,
        Some((user, password)) => match web.verifications.acquire().await {
            Ok(_slot) => tokio::task::spawn_blocking(move || users.verify(&user, &password))
                .await
                .unwrap_or(false),
            Err(_) => false,
        },
        None => false,
    };
    if allowed {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, REALM_CHALLENGE)],
            UNAUTHORIZED,
        )
            .into_response()
    }
}

/// `Authorization: Basic base64(user:password)`, if the header is there and well formed.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The routes of a reserve connection (see [`listener`]): what Prometheus and health
/// checks ask for, nothing else.
pub fn reserve_router(exporter: Arc<Exporter>, web: Arc<Web>) -> Router {
    scrape_routes(web)
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "connection limit reached (server.max_connections): only /metrics, /-/healthy and /-/ready are served\n",
            )
        })
        .with_state(exporter)
}

/// The endpoints served even when the connection limit is reached.
fn scrape_routes(web: Arc<Web>) -> Router<Arc<Exporter>> {
    Router::new()
        .route(
            "/metrics",
            get(move |state, headers| metrics(web, state, headers)),
        )
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
}

/// The deadline Prometheus allows: `X-Prometheus-Scrape-Timeout-Seconds` minus a margin.
pub fn scrape_deadline(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get("x-prometheus-scrape-timeout-seconds")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return None;
    }
    let header = Duration::try_from_secs_f64(seconds).ok()?;
    Some(
        header
            .saturating_sub(SCRAPE_TIMEOUT_OFFSET)
            .max(MIN_SCRAPE_DEADLINE),
    )
}

async fn metrics(
    web: Arc<Web>,
    State(exporter): State<Arc<Exporter>>,
    headers: HeaderMap,
) -> Response {
    if exporter.config().mode == Mode::Scrape {
        exporter.scrape(scrape_deadline(&headers)).await;
    }
    // Sent in pieces: the large cached part of the text is shared between scrapes, not
    // copied into each answer.
    let mut chunks = exporter.scrape_chunks();
    chunks.extend(web.exposition());
    let body = axum::body::Body::from_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

#[derive(Deserialize)]
struct ProbeParams {
    target: Option<String>,
    check: Option<String>,
}

/// `/probe`, at most `server.max_concurrent_probes` at once: each one opens connections to
/// a target, so an unbounded number of requests would open an unbounded number of sockets.
async fn bounded_probe(
    probes: Arc<Semaphore>,
    state: State<Arc<Exporter>>,
    query: Query<ProbeParams>,
    headers: HeaderMap,
) -> Response {
    let Ok(_permit) = probes.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent probes (server.max_concurrent_probes): try again later\n",
        )
            .into_response();
    };
    probe(state, query, headers).await
}

async fn probe(
    State(exporter): State<Arc<Exporter>>,
    Query(params): Query<ProbeParams>,
    headers: HeaderMap,
) -> Response {
    let Some(target) = params.target else {
        return (
            StatusCode::BAD_REQUEST,
            "target parameter is missing: /probe?target=NAME\n",
        )
            .into_response();
    };
    let deadline = scrape_deadline(&headers);
    match exporter
        .probe_target(&target, params.check.as_deref(), deadline)
        .await
    {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e @ (ProbeError::UnknownTarget(_) | ProbeError::UnknownCheck { .. })) => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
    }
}

async fn ready(State(exporter): State<Arc<Exporter>>) -> Response {
    if exporter.ready() {
        "Ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Shutting down\n").into_response()
    }
}

async fn reload_endpoint(web: Arc<Web>, State(exporter): State<Arc<Exporter>>) -> Response {
    if !web.lifecycle {
        return (StatusCode::FORBIDDEN, LIFECYCLE_DISABLED).into_response();
    }
    match reload(&exporter, &web).await {
        Ok(()) => "config reloaded\n".into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
struct LandingParams {
    refresh: Option<String>,
}

async fn landing(
    State(exporter): State<Arc<Exporter>>,
    Query(params): Query<LandingParams>,
) -> Html<String> {
    let refresh = landing::refresh_seconds(params.refresh.as_deref());
    Html(landing::render(&exporter, refresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(value: &str) -> Option<(String, String)> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        basic_credentials(&headers)
    }

    #[test]
    fn basic_credentials_are_read_only_from_a_well_formed_header() {
        let pair = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
        // "user:pa:ss", "user:", ":pw"
        assert_eq!(credentials("Basic dXNlcjpwYTpzcw=="), pair("user", "pa:ss"));
        assert_eq!(credentials("basic dXNlcjo="), pair("user", ""));
        assert_eq!(credentials("Basic OnB3"), pair("", "pw"));
        // "user" (no colon), not base64, another scheme, no value.
        assert_eq!(credentials("Basic dXNlcg=="), None);
        assert_eq!(credentials("Basic not-base64!"), None);
        assert_eq!(credentials("Bearer dXNlcjpwYXNz"), None);
        assert_eq!(credentials("Basic"), None);
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }
}
