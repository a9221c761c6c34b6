//! The HTTP endpoints: `/metrics`, `/probe`, `/` (landing page), `/-/healthy`,
//! `/-/ready`, `/-/reload`.
//!
//! [`run`] takes an already bound listener and any shutdown future, so that tests bind
//! `127.0.0.1:0` and need no signals. Shutdown is two steps: stop accepting and stop the
//! scheduler, then wait — at most `server.shutdown_timeout` — for both to finish.

mod landing;
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
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    exporter.stop(deadline).await;
    match tokio::time::timeout(deadline, server).await {
        Ok(Ok(result)) => result,
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
    Router::new()
        .route("/metrics", get(metrics))
        .route("/probe", get(probe))
        .route("/", get(landing))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .with_state(exporter)
        .merge(heartbeats)
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
