//! The HTTP endpoints: `/metrics`, `/probe`, `/` (landing page), `/-/healthy`,
//! `/-/ready`, `/-/reload`.
//!
//! [`run`] takes an already bound listener and any shutdown future, so that tests bind
//! `127.0.0.1:0` and need no signals. Shutdown is two steps: stop accepting and stop the
//! scheduler, then wait — at most `server.shutdown_timeout` — for both to finish.
//! The accept loop and its bounds on clients live in [`listener`].

mod landing;
pub mod listener;
pub mod web_config;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Mode;
use crate::config::defaults::SCRAPE_TIMEOUT_OFFSET;
use crate::exporter::{Exporter, ProbeError};
use crate::metrics::CONTENT_TYPE;

/// The shortest deadline a scrape header can impose, so that a tiny or bogus header value
/// still leaves time for a probe.
const MIN_SCRAPE_DEADLINE: Duration = Duration::from_millis(100);

/// Serves the exporter on `listener` until `shutdown` completes; starts the scheduler.
pub async fn run(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    exporter.start();
    let deadline = exporter.config().shutdown_timeout;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(exporter.clone());
    let reserve_app = reserve_router(exporter.clone());
    let limits = exporter.config().limits;
    let server = tokio::spawn(listener::serve(
        listener,
        app,
        reserve_app,
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

/// The routes, for tests that want to drive them without a listener.
pub fn router(exporter: Arc<Exporter>) -> Router {
    let heartbeats = crate::heartbeat::routes(exporter.heartbeats());
    let probes = Arc::new(Semaphore::new(
        exporter.config().limits.max_concurrent_probes,
    ));
    scrape_routes()
        .route(
            "/probe",
            get(move |state, query, headers| bounded_probe(probes, state, query, headers)),
        )
        .route("/", get(landing))
        .route("/-/reload", post(reload))
        .with_state(exporter)
        .merge(heartbeats)
}

/// The routes of a reserve connection (see [`listener`]): what Prometheus and health
/// checks ask for, nothing else.
pub fn reserve_router(exporter: Arc<Exporter>) -> Router {
    scrape_routes()
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "connection limit reached (server.max_connections): only /metrics, /-/healthy and /-/ready are served\n",
            )
        })
        .with_state(exporter)
}

/// The endpoints served even when the connection limit is reached.
fn scrape_routes() -> Router<Arc<Exporter>> {
    Router::new()
        .route("/metrics", get(metrics))
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

async fn metrics(State(exporter): State<Arc<Exporter>>, headers: HeaderMap) -> Response {
    if exporter.config().mode == Mode::Scrape {
        exporter.scrape(scrape_deadline(&headers)).await;
    }
    // Sent in pieces: the large cached part of the text is shared between scrapes, not
    // copied into each answer.
    let chunks = exporter.scrape_chunks();
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

async fn reload(State(exporter): State<Arc<Exporter>>) -> Response {
    match exporter.reload().await {
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
