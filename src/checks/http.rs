//! The HTTP prober: one request over a fresh connection, timed phase by phase, judged
//! against the check's expectations.
//!
//! It speaks HTTP/1.1 through hyper's connection API rather than a pooled client, so that
//! every probe really resolves, connects and shakes hands (the phase metrics would lie
//! otherwise), and so that no proxy is taken from the environment.

use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use super::{Failure, Found, HttpCheck, Phase, ProbeEnv, Reason, Trace};
use crate::config::defaults::MAX_LABEL_VALUE_CHARS;
use crate::net::connect::{proxy_tunnel, tcp_connect};

/// The `User-Agent` of every probe unless a check sets its own.
pub const USER_AGENT_VALUE: &str = concat!("glitchtip-exporter/", env!("CARGO_PKG_VERSION"));

/// Probes `check` once. The dispatcher owns the deadline.
pub async fn probe(check: &HttpCheck, env: &ProbeEnv, trace: &mut Trace) -> Result<Found, Failure> {
    let mut url = check.url.clone();
    let mut redirects = 0;
    loop {
        let mut answer = exchange(check, &url, env, trace).await?;
        let status = answer.status.as_u16();
        if check.follow_redirects && answer.status.is_redirection() {
            if let Some(location) = answer.location.take() {
                if redirects >= check.max_redirects {
                    return Err(Failure {
                        status: Some(status),
                        ..Failure::new(
                            Reason::Http,
                            format!("more than {} redirects", check.max_redirects),
                        )
                    });
                }
                url = match url.join(&location) {
                    Ok(next) if matches!(next.scheme(), "http" | "https") => next,
                    _ => {
                        return Err(Failure {
                            status: Some(status),
                            ..Failure::new(Reason::Http, "redirect to an unusable location")
                        });
                    }
                };
                redirects += 1;
                continue;
            }
        }
        trace.enter(Phase::Transfer);
        let body = read_body(answer.body, check.max_body_bytes, status).await;
        trace.close();
        drop(answer.connection);
        return judge(check, status, body);
    }
}

/// The head of an answer, with the connection kept alive until the body is read.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Incoming,
    connection: AbortOnDrop,
}

/// Resolve, connect, shake hands, send, and wait for the response headers.
async fn exchange(
    check: &HttpCheck,
    url: &Url,
    env: &ProbeEnv,
    trace: &mut Trace,
) -> Result<Answer, Failure> {
    let https = url.scheme() == "https";
    let host = url
        .host_str()
        .ok_or_else(|| Failure::new(Reason::Http, "URL without a host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Failure::new(Reason::Http, "URL without a port"))?;
    let (dial_host, dial_port) = match &check.proxy {
        Some((proxy_host, proxy_port)) => (proxy_host.as_str(), *proxy_port),
        None => (host, port),
    };

    trace.enter(Phase::Resolve);
    let addrs = resolve(env, dial_host, dial_port).await?;

    trace.enter(Phase::Connect);
    let mut stream = tcp_connect(&addrs)
        .await
        .map_err(|e| Failure::new(Reason::Connect, e.to_string()))?;
    if check.proxy.is_some() && https {
        proxy_tunnel(&mut stream, &format!("{host}:{port}"))
            .await
            .map_err(|e| Failure::new(Reason::Connect, e.to_string()))?;
    }

    let io: Box<dyn Io> = if https {
        trace.enter(Phase::Tls);
        let server_name = match &check.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| Failure::new(Reason::Tls, "host is not a valid TLS server name"))?,
        };
        let tls = tokio_rustls::TlsConnector::from(check.tls.clone())
            .connect(server_name, stream)
            .await
            .map_err(|e| Failure::new(Reason::Tls, e.to_string()))?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };

    trace.enter(Phase::Processing);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::new(Reason::Http, e.to_string()))?;
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let request = build_request(check, url, host, port, https)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::new(Reason::Http, e.to_string()))?;
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

/// Resolves `host` (an IP literal skips the resolver); shared with the TLS prober.
pub(super) async fn resolve(
    env: &ProbeEnv,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match env.resolver.resolve(host, port).await {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(Failure::new(Reason::Dns, "name resolved to no address")),
        Err(e) => Err(Failure::new(Reason::Dns, e.to_string())),
    }
}

fn build_request(
    check: &HttpCheck,
    url: &Url,
    host: &str,
    port: u16,
    https: bool,
) -> Result<Request<Full<Bytes>>, Failure> {
    // Through a proxy, plain HTTP uses the absolute form; everything else the origin form.
    let target = if check.proxy.is_some() && !https {
        url.as_str().to_owned()
    } else {
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        target
    };
    let mut request = Request::builder()
        .method(check.method.clone())
        .uri(target)
        .body(Full::new(check.request_body.clone().unwrap_or_default()))
        .map_err(|e| Failure::new(Reason::Http, e.to_string()))?;
    let headers = request.headers_mut();
    let default_port = if https { 443 } else { 80 };
    let authority = match (host.parse::<IpAddr>(), port == default_port) {
        (Ok(IpAddr::V6(_)), true) => format!("[{host}]"),
        (Ok(IpAddr::V6(_)), false) => format!("[{host}]:{port}"),
        (_, true) => host.to_owned(),
        (_, false) => format!("{host}:{port}"),
    };
    if let Ok(value) = HeaderValue::from_str(&authority) {
        headers.insert(HOST, value);
    }
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    for (name, value) in &check.headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(request)
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
fn judge(check: &HttpCheck, status: u16, body: Result<Bytes, Failure>) -> Result<Found, Failure> {
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

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Ends the connection task when the probe ends, finished or cancelled by its deadline, so
/// that a silent server never keeps a task alive.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
