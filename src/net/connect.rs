//! TCP connections for probes: every probe opens a fresh one, so that the connect and TLS
//! phases it reports are real. Optionally through an HTTP proxy (`CONNECT` tunnel).

use std::io;
use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resolver::Resolver;

/// The longest proxy answer to a `CONNECT` that is read before giving up.
const MAX_PROXY_RESPONSE_BYTES: usize = 8 * 1024;

/// The addresses of `host` (an IP literal skips the resolver); the error says why there
/// are none, for a `dns` failure.
pub async fn resolve(
    resolver: &dyn Resolver,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match resolver.resolve(host, port).await {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err("name resolved to no address".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// A connection as the protocol on top sees it: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Ends a connection's driver task when its user is done, finished or dropped by its
/// deadline, so that a silent server never keeps a task alive.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to the first address that accepts, trying them in order; the last error wins.
pub async fn tcp_connect(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Probes send one small request: do not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether a failed connect is the exporter's own doing: no socket could be opened
/// (EMFILE, ENFILE: out of file descriptors; ENOBUFS, ENOMEM: out of kernel memory). The
/// target was never tried, so this must not read as the target being unreachable.
pub fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// An HTTP proxy: where it is, and the credentials it asks for, if any.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The `Proxy-Authorization` value (`Basic …`), marked sensitive; sent on `CONNECT`
    /// and on every request forwarded in absolute form.
    pub authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for Proxy {
    // Not derived: the authorization value holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authorization", &self.authorization.is_some())
            .finish()
    }
}

/// Asks an HTTP proxy on `stream` to open a tunnel to `authority` (`host:port`), with
/// `authorization` as `Proxy-Authorization` when given.
pub async fn proxy_tunnel(
    stream: &mut TcpStream,
    authority: &str,
    authorization: Option<&HeaderValue>,
) -> io::Result<()> {
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
    if let Some(value) = authorization {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(value.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_PROXY_RESPONSE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "proxy answer to CONNECT is too long",
            ));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "proxy closed the connection during CONNECT",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status_line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(()),
        Some(code) => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("proxy refused CONNECT with status {code}"),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "proxy answered CONNECT with no HTTP status line",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_the_exporters_failure() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(
                is_out_of_resources(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::ECONNREFUSED, libc::ENETUNREACH, libc::ETIMEDOUT] {
            assert!(
                !is_out_of_resources(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }
}
