//! The way from a probe to its server, in the terms every prober reports: each step timed
//! as its phase of the probe's [`Trace`], each failure given the reason it has for every
//! kind of check (`dns`, `connect`, `proxy`, `tls`, `http`).
//!
//! [`dial`] resolves and connects, for every prober that opens a connection; [`send`] is
//! one HTTP/1.1 exchange over a fresh connection (proxy tunnel, TLS with the configuration
//! built at config load, hyper's connection API), for the HTTP prober and the ingest
//! canary, so that both time and name a failure alike. Unlike the rest of [`crate::net`],
//! this speaks the probers' vocabulary ([`Failure`], [`Reason`], [`Trace`]): it is their
//! shared sequence, not general plumbing.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HOST, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use url::Url;

pub use super::connect::AbortOnDrop;
pub use super::connect::Proxy;
use super::connect::{Io, is_out_of_resources, proxy_tunnel, resolve, tcp_connect};
use crate::checks::{Failure, Phase, ProbeEnv, Reason, Trace};

/// The `User-Agent` of every request unless a check sets its own.
pub const USER_AGENT_VALUE: &str = concat!("glitchtip-exporter/", env!("CARGO_PKG_VERSION"));

/// How an exchange reaches its server; borrowed from what the config load built.
#[derive(Clone, Copy)]
pub struct Route<'a> {
    /// TLS client configuration, for `https://` URLs.
    pub tls: &'a Arc<ClientConfig>,
    /// SNI and verification name instead of the URL's host.
    pub server_name: Option<&'a ServerName<'static>>,
    /// HTTP proxy: plain HTTP through it in absolute form, HTTPS through a `CONNECT`
    /// tunnel.
    pub proxy: Option<&'a Proxy>,
}

/// Sends one request over a fresh connection and waits for the response headers. The
/// caller owns the deadline and reads the body; `trace` gets the `resolve`, `connect`,
/// `tls` (https only) and `processing` phases, the last left open. The connection lives
/// as long as the returned [`AbortOnDrop`].
pub async fn send(
    env: &ProbeEnv,
    route: Route<'_>,
    method: Method,
    url: &Url,
    headers: &HeaderMap,
    body: Bytes,
    trace: &mut Trace,
) -> Result<(Response<Incoming>, AbortOnDrop), Failure> {
    let https = url.scheme() == "https";
    let host = url
        .host_str()
        .ok_or_else(|| Failure::new(Reason::Http, "URL without a host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Failure::new(Reason::Http, "URL without a port"))?;
    let stream = open(env, host, port, route.proxy, https, trace).await?;
    let io: Box<dyn Io> = if https {
        trace.enter(Phase::Tls);
        let server_name = match route.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| Failure::new(Reason::Tls, "host is not a valid TLS server name"))?,
        };
        let tls = tokio_rustls::TlsConnector::from(route.tls.clone())
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
    // Plain HTTP goes to the proxy in absolute form, with its credentials.
    let forwarding_proxy = route.proxy.filter(|_| !https);
    let mut request = build_request(
        method,
        url,
        host,
        port,
        https,
        forwarding_proxy.is_some(),
        headers,
        body,
    )?;
    if let Some(value) = forwarding_proxy.and_then(|p| p.authorization.as_ref()) {
        request
            .headers_mut()
            .insert(PROXY_AUTHORIZATION, value.clone());
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::new(Reason::Http, e.to_string()))?;
    if forwarding_proxy.is_some() && response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED
    {
        return Err(Failure {
            status: Some(response.status().as_u16()),
            ..Failure::new(
                Reason::Proxy,
                "proxy refused the request with status 407 (proxy authentication required)",
            )
        });
    }
    Ok((response, connection))
}

/// Resolves `host` and connects to it: the `resolve` and `connect` phases of `trace`, the
/// last left open (a proxy tunnel belongs to it).
pub async fn dial(
    env: &ProbeEnv,
    host: &str,
    port: u16,
    trace: &mut Trace,
) -> Result<TcpStream, Failure> {
    trace.enter(Phase::Resolve);
    let addrs = resolve(env.resolver.as_ref(), host, port)
        .await
        .map_err(|e| Failure::new(Reason::Dns, e))?;
    trace.enter(Phase::Connect);
    tcp_connect(&addrs).await.map_err(|e| {
        let reason = if is_out_of_resources(&e) {
            Reason::ExporterResources
        } else {
            Reason::Connect
        };
        Failure::new(reason, e.to_string())
    })
}

/// Connects to `host:port`, directly or through `proxy`: the `resolve` and `connect`
/// phases of `trace`, the last left open. With `tunnel`, the proxy is asked for a
/// `CONNECT` tunnel to `host:port` (for TLS); without, the caller speaks to the proxy
/// itself. Whatever goes wrong with the proxy — its name, its port, a refused tunnel —
/// is a `proxy` failure, apart from the target's own `dns` and `connect`.
pub async fn open(
    env: &ProbeEnv,
    host: &str,
    port: u16,
    proxy: Option<&Proxy>,
    tunnel: bool,
    trace: &mut Trace,
) -> Result<TcpStream, Failure> {
    let Some(proxy) = proxy else {
        return dial(env, host, port, trace).await;
    };
    let to_proxy = |failure: Failure| {
        // No socket at all is the exporter's failure, whatever it was dialling.
        if failure.reason == Reason::ExporterResources {
            return failure;
        }
        Failure::new(
            Reason::Proxy,
            format!(
                "proxy {}:{} unreachable: {}",
                proxy.host, proxy.port, failure.detail
            ),
        )
    };
    let mut stream = dial(env, &proxy.host, proxy.port, trace)
        .await
        .map_err(to_proxy)?;
    if tunnel {
        // An IPv6 literal in brackets.
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        proxy_tunnel(&mut stream, &authority, proxy.authorization.as_ref())
            .await
            .map_err(|e| Failure::new(Reason::Proxy, e.to_string()))?;
    }
    Ok(stream)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::clock::SystemClock;
    use crate::net::resolver::StaticResolver;
    use crate::net::tls::http_client_config;

    /// A proxy that answers the first request with `answer` and hands back its head.
    async fn proxy(answer: &'static str) -> (Proxy, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let proxy = Proxy {
            host: "127.0.0.1".to_owned(),
            port,
            authorization: None,
        };
        (proxy, task)
    }

    async fn send_through(proxy: &Proxy, url: &str) -> Result<u16, Failure> {
        let env = ProbeEnv {
            resolver: Arc::new(StaticResolver::new()),
            clock: Arc::new(SystemClock),
        };
        let tls = http_client_config(None, false).unwrap();
        let route = Route {
            tls: &tls,
            server_name: None,
            proxy: Some(proxy),
        };
        let url = Url::parse(url).unwrap();
        let mut trace = Trace::default();
        let headers = HeaderMap::new();
        let body = Bytes::new();
        let (response, _connection) =
            send(&env, route, Method::GET, &url, &headers, body, &mut trace).await?;
        Ok(response.status().as_u16())
    }

    fn first_line(head: &str) -> &str {
        head.lines().next().unwrap_or_default()
    }

    fn with_credentials(mut proxy: Proxy) -> Proxy {
        // "u:secret"
        proxy.authorization = Some(HeaderValue::from_static("Basic dTpzZWNyZXQ="));
        proxy
    }

    #[tokio::test]
    async fn plain_http_through_a_proxy_asks_it_for_the_absolute_url() {
        let (addr, seen) = proxy("HTTP/1.1 204 No Content\r\n\r\n").await;
        let status = send_through(&addr, "http://glitchtip.invalid:8000/_health/?x=1").await;
        assert_eq!(status.unwrap(), 204);
        let head = seen.await.unwrap();
        assert_eq!(
            first_line(&head),
            "GET http://glitchtip.invalid:8000/_health/?x=1 HTTP/1.1"
        );
        assert!(
            !head.to_ascii_lowercase().contains("proxy-authorization"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn plain_http_through_a_proxy_carries_its_credentials() {
        let (addr, seen) = proxy("HTTP/1.1 204 No Content\r\n\r\n").await;
        let status = send_through(&with_credentials(addr), "http://glitchtip.invalid/").await;
        assert_eq!(status.unwrap(), 204);
        let head = seen.await.unwrap();
        assert!(
            head.contains("proxy-authorization: Basic dTpzZWNyZXQ=\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_forwarding_proxy_asking_for_credentials_is_proxy_not_status() {
        let (addr, _seen) =
            proxy("HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n").await;
        let failure = send_through(&addr, "http://glitchtip.invalid/")
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Proxy);
        assert_eq!(failure.status, Some(407));
    }

    #[tokio::test]
    async fn the_tunnel_request_carries_the_proxy_credentials() {
        let (addr, seen) = proxy("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let failure = send_through(&with_credentials(addr), "https://glitchtip.invalid/")
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Proxy);
        assert_eq!(failure.detail, "proxy refused CONNECT with status 407");
        assert_eq!(
            seen.await.unwrap(),
            "CONNECT glitchtip.invalid:443 HTTP/1.1\r\nHost: glitchtip.invalid:443\r\nProxy-Authorization: Basic dTpzZWNyZXQ=\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn https_through_a_proxy_that_refuses_the_tunnel_is_proxy() {
        let (addr, seen) = proxy("HTTP/1.1 403 Forbidden\r\n\r\n").await;
        let failure = send_through(&addr, "https://glitchtip.invalid/")
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Proxy);
        assert_eq!(failure.detail, "proxy refused CONNECT with status 403");
        assert_eq!(
            first_line(&seen.await.unwrap()),
            "CONNECT glitchtip.invalid:443 HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn an_unreachable_proxy_is_proxy_not_connect() {
        // A port that was just free: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = Proxy {
            host: "127.0.0.1".to_owned(),
            port,
            authorization: None,
        };
        for url in ["http://glitchtip.invalid/", "https://glitchtip.invalid/"] {
            let failure = send_through(&proxy, url).await.unwrap_err();
            assert_eq!(failure.reason, Reason::Proxy, "{url}");
            assert!(
                failure
                    .detail
                    .starts_with(&format!("proxy 127.0.0.1:{port} unreachable: ")),
                "{}",
                failure.detail
            );
        }
    }

    #[tokio::test]
    async fn an_ipv6_literal_goes_through_the_tunnel_in_brackets() {
        let (addr, seen) = proxy("HTTP/1.1 403 Forbidden\r\n\r\n").await;
        let failure = send_through(&addr, "https://[::1]:8443/")
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Proxy);
        assert_eq!(
            first_line(&seen.await.unwrap()),
            "CONNECT [::1]:8443 HTTP/1.1"
        );
    }
}
