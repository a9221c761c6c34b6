//! One HTTP/1.1 exchange for the canary: resolve through the injected resolver, connect
//! (through the target's proxy, if any), TLS with the configuration built at config load,
//! send, read the answer up to a limit.
//!
//! Built on the same pieces as the HTTP prober ([`crate::net`], hyper's connection API)
//! rather than a pooled client, so that a failure has the same reason as in the core checks
//! (`dns`, `connect`, `tls`), no proxy is ever taken from the environment, and tests never
//! reach the system resolver. A canary sends one request to ingest and a few to the API
//! per interval: a fresh connection each costs nothing that matters.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use crate::checks::http::USER_AGENT_VALUE;
use crate::checks::{Failure, Phase, ProbeEnv, Reason, Trace};
use crate::net::connect::{proxy_tunnel, tcp_connect};

/// Most bytes of an answer read: an issue search for one event id is a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How to reach one side (ingest or API): built once at config load.
#[derive(Clone)]
pub struct Connection {
    /// TLS client configuration (the target's `ca_file` and `insecure_skip_verify`).
    pub tls: Arc<ClientConfig>,
    /// SNI and verification name instead of the URL's host.
    pub server_name: Option<ServerName<'static>>,
    /// HTTP proxy `host:port` (the target's), tunnelled through with `CONNECT` for https.
    pub proxy: Option<(String, u16)>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server_name", &self.server_name)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Bytes,
}

/// Sends one request and reads the whole answer. The caller owns the deadline; `trace`
/// gets the phases.
pub async fn send(
    env: &ProbeEnv,
    connection: &Connection,
    method: Method,
    url: &Url,
    headers: &HeaderMap,
    body: Bytes,
    trace: &mut Trace,
) -> Result<Answer, Failure> {
    let https = url.scheme() == "https";
    let host = url
        .host_str()
        .ok_or_else(|| Failure::new(Reason::Http, "URL without a host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Failure::new(Reason::Http, "URL without a port"))?;
    let (dial_host, dial_port) = match &connection.proxy {
        Some((proxy_host, proxy_port)) => (proxy_host.as_str(), *proxy_port),
        None => (host, port),
    };

    trace.enter(Phase::Resolve);
    let addrs = resolve(env, dial_host, dial_port).await?;
    trace.enter(Phase::Connect);
    let mut stream = tcp_connect(&addrs)
        .await
        .map_err(|e| Failure::new(Reason::Connect, e.to_string()))?;
    if connection.proxy.is_some() && https {
        proxy_tunnel(&mut stream, &format!("{host}:{port}"))
            .await
            .map_err(|e| Failure::new(Reason::Connect, e.to_string()))?;
    }
    let io: Box<dyn Io> = if https {
        trace.enter(Phase::Tls);
        let server_name = match &connection.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| Failure::new(Reason::Tls, "host is not a valid TLS server name"))?,
        };
        let tls = tokio_rustls::TlsConnector::from(connection.tls.clone())
            .connect(server_name, stream)
            .await
            .map_err(|e| Failure::new(Reason::Tls, e.to_string()))?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };

    trace.enter(Phase::Processing);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::new(Reason::Http, e.to_string()))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let request = build_request(
        method,
        url,
        host,
        port,
        https,
        connection.proxy.is_some(),
        headers,
        body,
    )?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::new(Reason::Http, e.to_string()))?;
    let status = response.status().as_u16();
    let response_headers = response.headers().clone();
    trace.enter(Phase::Transfer);
    let mut incoming = response.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| Failure {
            status: Some(status),
            ..Failure::new(Reason::Http, e.to_string())
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY_BYTES {
                return Err(Failure {
                    status: Some(status),
                    ..Failure::new(
                        Reason::BodyTooLarge,
                        format!("body exceeds {MAX_BODY_BYTES} bytes"),
                    )
                });
            }
            buf.extend_from_slice(&data);
        }
    }
    trace.close();
    Ok(Answer {
        status,
        headers: response_headers,
        body: buf.freeze(),
    })
}

/// Resolves `host`; an IP literal skips the resolver.
async fn resolve(env: &ProbeEnv, host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match env.resolver.resolve(host, port).await {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(Failure::new(Reason::Dns, "name resolved to no address")),
        Err(e) => Err(Failure::new(Reason::Dns, e.to_string())),
    }
}

#[allow(clippy::too_many_arguments)]
fn build_request(
    method: Method,
    url: &Url,
    host: &str,
    port: u16,
    https: bool,
    proxied: bool,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Failure> {
    // Through a proxy, plain HTTP uses the absolute form; everything else the origin form.
    let target = if proxied && !https {
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
        .method(method)
        .uri(target)
        .body(Full::new(body))
        .map_err(|e| Failure::new(Reason::Http, e.to_string()))?;
    let default_port = if https { 443 } else { 80 };
    let authority = match (host.parse::<IpAddr>(), port == default_port) {
        (Ok(IpAddr::V6(_)), true) => format!("[{host}]"),
        (Ok(IpAddr::V6(_)), false) => format!("[{host}]:{port}"),
        (_, true) => host.to_owned(),
        (_, false) => format!("{host}:{port}"),
    };
    let h = request.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&authority) {
        h.insert(HOST, value);
    }
    h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    for (name, value) in headers {
        h.insert(name.clone(), value.clone());
    }
    Ok(request)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Ends the connection task when the exchange ends, finished or dropped by its deadline.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
