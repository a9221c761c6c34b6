//! One HTTP/1.1 exchange for the canary: resolve through the injected resolver, connect
//! (through the target's proxy, if any), TLS with the configuration built at config load,
//! send, read the answer up to a limit.
//!
//! The exchange is the HTTP prober's own ([`crate::net::exchange::send`], hyper's
//! connection API over a fresh connection) rather than a pooled client, so that a failure
//! has the same reason as in the core checks (`dns`, `connect`, `tls`), no proxy is ever
//! taken from the environment, and tests never reach the system resolver. A canary sends
//! one request to ingest and a few to the API per interval: a fresh connection each costs
//! nothing that matters.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use url::Url;

use crate::checks::{Failure, Phase, ProbeEnv, Reason, Trace};
use crate::net::exchange::{self, Proxy, Route};

/// Most bytes of an answer read: an issue search for one event id is a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How to reach one side (ingest or API): built once at config load.
#[derive(Clone)]
pub struct Connection {
    /// TLS client configuration (the target's `ca_file` and `insecure_skip_verify`).
    pub tls: Arc<ClientConfig>,
    /// SNI and verification name instead of the URL's host.
    pub server_name: Option<ServerName<'static>>,
    /// HTTP proxy (the target's), tunnelled through with `CONNECT` for https.
    pub proxy: Option<Proxy>,
}

impl Connection {
    /// The route of an exchange over this connection.
    fn route(&self) -> Route<'_> {
        Route {
            tls: &self.tls,
            server_name: self.server_name.as_ref(),
            proxy: self.proxy.as_ref(),
        }
    }
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
    let (response, _connection) =
        exchange::send(env, connection.route(), method, url, headers, body, trace).await?;
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
