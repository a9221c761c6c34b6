//! The exporter's HTTP routes, heartbeat pings first: arbitrary methods, paths, query
//! strings, `Authorization` and `Content-Length` headers and bodies, driven through the
//! axum router in-process (no socket) against a fixed config with two heartbeats, a state
//! file in a scratch folder and paused time. Nothing panics, nothing answers 5xx, and no
//! answer shows a heartbeat token.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use glitchtip_exporter::config::{Config, ConfigSource};
use glitchtip_exporter_fuzz::{
    Budget, ENV, SECRET_FILE_TEXT, exporter_offline, load_config, paused_runtime,
};
use http::{Method, Request, Uri};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

const CONFIG: &str = r#"
[server]
mode = "scrape"

[targets.prod]
url = "http://glitchtip.fuzz.invalid"

[heartbeats.worker]
target = "prod"
interval = "5m"
token = { env = "FUZZ_TOKEN" }

[heartbeats.nightly]
schedule = "0 5 * * *"
timezone = "Europe/Berlin"
grace = "1h"
token = { file = "secret" }
"#;

const METHODS: [&str; 6] = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"];
const MAX_REQUESTS: usize = 8;

#[derive(Debug, Arbitrary)]
struct Req<'a> {
    method: u8,
    path: &'a [u8],
    /// 0: no token; 1: the right one in the query; 2: in `Authorization: Bearer`; 3: the
    /// other heartbeat's; else none.
    token: u8,
    authorization: Option<&'a [u8]>,
    content_length: Option<&'a [u8]>,
    scrape_timeout: Option<&'a [u8]>,
    body: &'a [u8],
}

fn config() -> &'static (ConfigSource, Config) {
    static CONFIG_LOADED: OnceLock<(ConfigSource, Config)> = OnceLock::new();
    CONFIG_LOADED.get_or_init(|| {
        let (source, loaded) = load_config(CONFIG, "heartbeat.toml");
        (source, loaded.expect("the heartbeat config is valid"))
    })
}

fn request(req: &Req<'_>) -> Option<Request<axum::body::Body>> {
    let worker_token = ENV[0].1;
    let nightly_token = SECRET_FILE_TEXT.trim_end();
    let mut path = String::from_utf8(req.path.to_vec()).ok()?;
    let token = match req.token % 8 {
        1 | 2 => Some(worker_token),
        3 => Some(nightly_token),
        _ => None,
    };
    if req.token % 8 == 1 || req.token % 8 == 3 {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("token=");
        path.push_str(token.unwrap_or_default());
    }
    let uri = Uri::try_from(path).ok()?;
    let method = match METHODS.get(usize::from(req.method)) {
        Some(m) => Method::from_bytes(m.as_bytes()).ok()?,
        None => Method::from_bytes(&[b'X', req.method]).ok()?,
    };
    let mut builder = Request::builder().method(method).uri(uri);
    if req.token % 8 == 2 {
        builder = builder.header("authorization", format!("Bearer {worker_token}"));
    }
    if let Some(v) = req.authorization {
        builder = builder.header("authorization", http::HeaderValue::from_bytes(v).ok()?);
    }
    if let Some(v) = req.content_length {
        builder = builder.header("content-length", http::HeaderValue::from_bytes(v).ok()?);
    }
    if let Some(v) = req.scrape_timeout {
        builder = builder.header(
            "x-prometheus-scrape-timeout-seconds",
            http::HeaderValue::from_bytes(v).ok()?,
        );
    }
    builder.body(axum::body::Body::from(req.body.to_vec())).ok()
}

fuzz_target!(|requests: Vec<Req<'_>>| {
    let requests: Vec<(Request<axum::body::Body>, &[u8])> = requests
        .iter()
        .take(MAX_REQUESTS)
        .filter_map(|r| Some((request(r)?, r.body)))
        .collect();
    if requests.is_empty() {
        return;
    }
    let (source, config) = config().clone();
    let runtime = paused_runtime();
    runtime.block_on(async move {
        let budget = Budget::new(64);
        let state_file = glitchtip_exporter_fuzz::scratch().join("heartbeat-state.json");
        let exporter = exporter_offline(source, config, state_file, budget);
        let app = glitchtip_exporter::server::router(exporter.clone());
        let secrets = [ENV[0].1, SECRET_FILE_TEXT.trim_end()];
        // A secret the requests themselves spell outside `token=` and `Authorization` (a
        // `/probe?target=` name, a ping's message) may come back: that is an echo, not a
        // leak.
        let mut echoed = [false; 2];
        for (request, body) in requests {
            let shown = format!("{} {}", request.method(), request.uri());
            for (i, secret) in secrets.iter().enumerate() {
                let uri = shown.replace(&format!("token={secret}"), "");
                echoed[i] |= uri.contains(secret) || contains(&body, secret.as_bytes());
            }
            let response = app.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .expect("an answer body");
            assert!(!status.is_server_error(), "{shown}: {status}");
            let body = String::from_utf8_lossy(&body);
            for (secret, echoed) in secrets.iter().zip(echoed) {
                assert!(
                    echoed || !body.contains(secret),
                    "{shown}: the answer shows a token"
                );
            }
            tokio::time::advance(Duration::from_secs(61)).await;
        }
        let _ = exporter.heartbeats().render(exporter.now());
        exporter.stop(Duration::from_secs(1)).await;
    });
});

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
