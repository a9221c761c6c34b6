//! The heartbeat endpoints, Healthchecks.io style:
//!
//! - `GET|POST|HEAD /heartbeat/{name}`: success;
//! - `/heartbeat/{name}/start`, `/heartbeat/{name}/fail`;
//! - `/heartbeat/{name}/{exit_status}`: 0 is success, 1–255 failure.
//!
//! The token comes as `?token=` or `Authorization: Bearer`. An unknown name or action and a
//! wrong token all answer the same 404, so that nobody learns which heartbeats exist. The
//! path is matched as sent, without percent-decoding: configured names hold only
//! `[a-z0-9_-]`, so `..`, `%2F` and friends can never match one.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::{Auth, Heartbeats, MAX_BODY_BYTES, PingError, PingKind, message};

/// Longest path segment looked at; anything longer is not a name or an action.
const MAX_SEGMENT: usize = 64;
/// Most `token` query parameters compared.
const MAX_TOKENS: usize = 4;

/// The heartbeat routes, with their own state.
pub fn routes(heartbeats: Arc<Heartbeats>) -> Router {
    let methods = MethodFilter::GET
        .or(MethodFilter::POST)
        .or(MethodFilter::HEAD);
    Router::new()
        .route("/heartbeat/{name}", on(methods, ping))
        .route("/heartbeat/{name}/{action}", on(methods, ping))
        .with_state(heartbeats)
}

/// `(name, kind)` from the raw path, or `None` for anything else.
fn parse_path(path: &str) -> Option<(&str, PingKind)> {
    let rest = path.strip_prefix("/heartbeat/")?;
    let mut segments = rest.split('/');
    let name = segments
        .next()
        .filter(|n| !n.is_empty() && n.len() <= MAX_SEGMENT)?;
    let kind = match segments.next() {
        None => PingKind::Success,
        Some("start") => PingKind::Start,
        Some("fail") => PingKind::Fail,
        Some(status) => exit_status(status)?,
    };
    if segments.next().is_some() {
        return None;
    }
    Some((name, kind))
}

/// `0` is success, `1`–`255` failure; anything else is no action.
fn exit_status(text: &str) -> Option<PingKind> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<u16>().ok()? {
        0 => Some(PingKind::Success),
        1..=255 => Some(PingKind::Fail),
        _ => None,
    }
}

/// The tokens a request carries: `Authorization: Bearer` and `token` query parameters.
fn tokens<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Vec<std::borrow::Cow<'a, [u8]>> {
    let mut out = Vec::new();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.as_bytes();
        if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
            out.push(std::borrow::Cow::Borrowed(value[7..].trim_ascii()));
        }
    }
    if let Some(query) = uri.query() {
        out.extend(
            url::form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == "token")
                .take(MAX_TOKENS)
                .map(|(_, v)| match v {
                    std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
                    std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
                }),
        );
    }
    out
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn ping(
    State(heartbeats): State<Arc<Heartbeats>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((name, kind)) = parse_path(uri.path()) else {
        heartbeats.unknown_request();
        return not_found();
    };
    let tokens = tokens(&uri, &headers);
    let candidates: Vec<&[u8]> = tokens.iter().map(AsRef::as_ref).collect();
    match heartbeats.authenticate(name, &candidates) {
        Auth::Accepted => {}
        Auth::Unknown | Auth::Rejected => return not_found(),
    }

    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: at most {MAX_BODY_BYTES} bytes\n"),
        )
            .into_response()
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(_) => {
            return (StatusCode::BAD_REQUEST, "cannot read the request body\n").into_response();
        }
    };

    match heartbeats.record(name, kind, message(&body)).await {
        Ok(()) => "OK\n".into_response(),
        Err(PingError::Gone) => not_found(),
        Err(PingError::Busy) => unavailable(
            "the ping was not saved: too many pings of this heartbeat are waiting to be written; retry\n",
        ),
        Err(PingError::NotSaved) => unavailable(
            "the ping was not saved: the state file cannot be written (see the exporter's log); retry\n",
        ),
    }
}

/// 503 with `Retry-After: 1`: the ping was not saved, and a retry may well be.
fn unavailable(text: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        use PingKind::*;
        let cases: &[(&str, Option<(&str, PingKind)>)] = &[
            ("/heartbeat/worker", Some(("worker", Success))),
            ("/heartbeat/worker/start", Some(("worker", Start))),
            ("/heartbeat/worker/fail", Some(("worker", Fail))),
            ("/heartbeat/worker/0", Some(("worker", Success))),
            ("/heartbeat/worker/000", Some(("worker", Success))),
            ("/heartbeat/worker/1", Some(("worker", Fail))),
            ("/heartbeat/worker/255", Some(("worker", Fail))),
            ("/heartbeat/worker/256", None),
            ("/heartbeat/worker/1000", None),
            ("/heartbeat/worker/-1", None),
            ("/heartbeat/worker/+1", None),
            ("/heartbeat/worker/ok", None),
            ("/heartbeat/worker/", None),
            ("/heartbeat/worker/start/x", None),
            ("/heartbeat/", None),
            ("/heartbeat", None),
            ("/metrics", None),
        ];
        for (path, expected) in cases {
            assert_eq!(parse_path(path), *expected, "{path}");
        }
        let long = format!("/heartbeat/{}", "a".repeat(65));
        assert_eq!(parse_path(&long), None);
    }

    #[test]
    fn tokens_from_header_and_query() {
        let uri: Uri = "/heartbeat/w?x=1&token=a%2Bb&token=c".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer  tok ".parse().unwrap());
        let found: Vec<Vec<u8>> = tokens(&uri, &headers)
            .into_iter()
            .map(|t| t.into_owned())
            .collect();
        assert_eq!(found, [b"tok".to_vec(), b"a+b".to_vec(), b"c".to_vec()]);
        headers.insert(header::AUTHORIZATION, "Basic dTpw".parse().unwrap());
        let uri: Uri = "/heartbeat/w".parse().unwrap();
        assert!(tokens(&uri, &headers).is_empty());
    }
}
