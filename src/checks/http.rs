//! The HTTP prober: one request over a fresh connection, timed phase by phase, judged
//! against the check's expectations.
//!
//! It speaks HTTP/1.1 through hyper's connection API rather than a pooled client, so that
//! every probe really resolves, connects and shakes hands (the phase metrics would lie
//! otherwise), and so that no proxy is taken from the environment. That exchange is
//! [`crate::net::exchange::send`], shared with the ingest canary; what is here is the
//! check's part: redirects, the body limit, and judging the answer.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, COOKIE, LOCATION, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderName, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use url::Url;

use super::{Failure, Found, HttpCheck, Phase, ProbeEnv, Reason, Trace};
use crate::config::defaults::MAX_LABEL_VALUE_CHARS;
use crate::net::exchange::{AbortOnDrop, Route, send};

/// Probes `check` once. The dispatcher owns the deadline.
pub async fn probe(check: &HttpCheck, env: &ProbeEnv, trace: &mut Trace) -> Result<Found, Failure> {
    let mut url = check.url.clone();
    // The check's headers until a redirect leaves its origin; from then on without the
    // credentials, also if a later redirect comes back.
    let mut headers = Cow::Borrowed(&check.headers);
    let mut redirects = 0;
    loop {
        let mut answer = exchange(check, &url, &headers, env, trace).await?;
        let status = answer.status.as_u16();
        if check.follow_redirects
            && answer.status.is_redirection()
            && let Some(location) = answer.location.take()
        {
            if redirects >= check.max_redirects {
                return Err(Failure {
                    status: Some(status),
                    ..Failure::new(
                        Reason::Http,
                        format!("more than {} redirects", check.max_redirects),
                    )
                });
            }
            let next = match url.join(&location) {
                Ok(next) if matches!(next.scheme(), "http" | "https") => next,
                _ => {
                    return Err(Failure {
                        status: Some(status),
                        ..Failure::new(Reason::Http, "redirect to an unusable location")
                    });
                }
            };
            if url.scheme() == "https"
                && next.scheme() == "http"
                && !check.allow_https_to_http_redirect
            {
                return Err(Failure {
                    status: Some(status),
                    ..Failure::new(
                        Reason::Http,
                        "redirect from https:// to http:// refused (allow_https_to_http_redirect = false)",
                    )
                });
            }
            if next.origin() != url.origin() && matches!(headers, Cow::Borrowed(_)) {
                headers = Cow::Owned(without_credentials(
                    &check.headers,
                    &check.sensitive_headers,
                ));
            }
            url = next;
            redirects += 1;
            continue;
        }
        trace.enter(Phase::Transfer);
        let body = read_body(answer.body, check.max_body_bytes, status).await;
        trace.close();
        drop(answer.connection);
        return judge(check, status, body);
    }
}

/// The headers that may follow a redirect to another origin (scheme, host or port), as
/// curl and reqwest do: without `Authorization`, `Cookie`, `Proxy-Authorization` and the
/// check's `sensitive_headers`.
fn without_credentials(headers: &HeaderMap, sensitive: &[HeaderName]) -> HeaderMap {
    let mut kept = headers.clone();
    for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION]
        .iter()
        .chain(sensitive)
    {
        kept.remove(name);
    }
    kept
}

/// The head of an answer, with the connection kept alive until the body is read.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Incoming,
    connection: AbortOnDrop,
}

/// One exchange up to the response headers, which say whether to follow a redirect and
/// whether the declared body is too large.
async fn exchange(
    check: &HttpCheck,
    url: &Url,
    headers: &HeaderMap,
    env: &ProbeEnv,
    trace: &mut Trace,
) -> Result<Answer, Failure> {
    let route = Route {
        tls: &check.tls,
        server_name: check.server_name.as_ref(),
        proxy: check.proxy.as_ref(),
    };
    let body = check.request_body.clone().unwrap_or_default();
    let (response, connection) =
        send(env, route, check.method.clone(), url, headers, body, trace).await?;
    trace.close();

    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let declared_length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > check.max_body_bytes) && !status.is_redirection() {
        return Err(Failure {
            status: Some(status.as_u16()),
            ..Failure::new(
                Reason::BodyTooLarge,
                "declared Content-Length exceeds max_body_bytes",
            )
        });
    }
    Ok(Answer {
        status,
        location,
        body: response.into_body(),
        connection,
    })
}

/// Reads the body up to `max` bytes; more is a failure, not more memory.
async fn read_body(mut body: Incoming, max: u64, status: u16) -> Result<Bytes, Failure> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure {
            status: Some(status),
            ..Failure::new(Reason::Http, e.to_string())
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > max {
                return Err(Failure {
                    status: Some(status),
                    ..Failure::new(Reason::BodyTooLarge, format!("body exceeds {max} bytes"))
                });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Judges a complete answer. A wrong status wins over a body problem: it says more.
/// Public for the fuzz targets only (`fuzz/`).
#[doc(hidden)]
pub fn judge(
    check: &HttpCheck,
    status: u16,
    body: Result<Bytes, Failure>,
) -> Result<Found, Failure> {
    let status_ok = check.expect_status.contains(status);
    let has_body_expectations = !check.body.is_empty();
    let body = match body {
        Ok(body) => body,
        Err(failure) if status_ok => return Err(failure),
        Err(_) => {
            return Ok(Found {
                status: Some(status),
                body_match: has_body_expectations.then_some(false),
                version: None,
                reason: Reason::Status,
                detail: Some(format!("status {status}, expected {}", check.expect_status)),
                tls: None,
            });
        }
    };

    let text = String::from_utf8_lossy(&body);
    let keyword_ok = check
        .body
        .keyword
        .as_ref()
        .is_none_or(|k| text.contains(k.as_str()))
        && check.body.regex.as_ref().is_none_or(|r| r.is_match(&text));
    let needs_json = check.body.json.is_some() || check.version_field.is_some();
    let json: Option<serde_json::Value> = if needs_json {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };
    let json_ok = match &check.body.json {
        None => true,
        Some(expectation) => json
            .as_ref()
            .and_then(|doc| expectation.path.lookup(doc))
            .is_some_and(|found| match &expectation.equals {
                Some(expected) => found == expected,
                None => !found.is_null(),
            }),
    };
    let version = match (&check.version_field, &json) {
        (Some(path), Some(doc)) if status_ok => path.lookup(doc).and_then(version_label),
        _ => None,
    };

    let (reason, detail) = if !status_ok {
        (
            Reason::Status,
            Some(format!("status {status}, expected {}", check.expect_status)),
        )
    } else if !keyword_ok {
        (
            Reason::Keyword,
            Some("keyword or regex not found in body".to_owned()),
        )
    } else if !json_ok {
        let detail = if json.is_none() {
            "body is not JSON"
        } else {
            "JSON expectation not met"
        };
        (Reason::Json, Some(detail.to_owned()))
    } else {
        (Reason::None, None)
    };
    Ok(Found {
        status: Some(status),
        body_match: has_body_expectations.then_some(keyword_ok && json_ok),
        version,
        reason,
        detail,
        tls: None,
    })
}

/// A version string fit for a label value: strings and numbers, capped in length.
fn version_label(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(text.chars().take(MAX_LABEL_VALUE_CHARS).collect())
}
