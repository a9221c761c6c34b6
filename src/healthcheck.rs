//! `glitchtip-exporter healthcheck`: asks a running exporter's `/-/healthy` and says whether
//! it answered 200, for a container's `HEALTHCHECK` (the image has no shell and no curl).
//!
//! Over `https://` the certificate is not verified: the question is whether this process
//! answers on its own port, and the listener's certificate is usually issued for a name
//! that a check from inside the container does not use.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use url::Url;

use crate::net::tls::{AcceptAnyCertificate, provider};

/// `glitchtip-exporter healthcheck [--url URL] [--timeout DURATION]`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "healthcheck",
    bin_name = "glitchtip-exporter healthcheck",
    about = "Asks a running exporter's /-/healthy: exit 0 when it answers 200, 1 otherwise"
)]
struct HealthcheckCli {
    /// The URL to ask.
    #[arg(long, default_value = DEFAULT_URL, value_name = "URL")]
    url: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// User for basic authentication (the web config's `basic_auth_users`).
    #[arg(long, requires = "basic_auth_password_file", value_name = "USER")]
    basic_auth_user: Option<String>,
    /// File holding that user's password (never on the command line).
    #[arg(long, requires = "basic_auth_user", value_name = "FILE")]
    basic_auth_password_file: Option<std::path::PathBuf>,
}

/// Basic credentials for the request: `Authorization: Basic …`.
fn authorization(user: &str, password_file: &std::path::Path) -> Result<String, String> {
    use base64::Engine as _;
    let bytes = crate::files::read_bounded(password_file, 64 * 1024)
        .map_err(|e| format!("--basic-auth-password-file: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "--basic-auth-password-file: a UTF-8 text file".to_owned())?;
    let password = text.trim_end_matches(['\n', '\r']);
    Ok(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    ))
}

/// Runs the `healthcheck` subcommand when it is the first argument: `None` otherwise.
pub fn main_if_healthcheck() -> Option<std::process::ExitCode> {
    use clap::Parser as _;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != "healthcheck") {
        return None;
    }
    args.remove(1);
    let cli = HealthcheckCli::parse_from(args);
    let auth = match (&cli.basic_auth_user, &cli.basic_auth_password_file) {
        (Some(user), Some(file)) => match authorization(user, file) {
            Ok(value) => Some(value),
            Err(e) => {
                eprintln!("unhealthy: {e}");
                return Some(std::process::ExitCode::FAILURE);
            }
        },
        _ => None,
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(check_with(&cli.url, cli.timeout, auth.as_deref()))
                .map_err(|e| e.to_string())
        });
    Some(match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            std::process::ExitCode::FAILURE
        }
    })
}

/// The URL asked when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:10099/-/healthy";

/// Why the health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// Occurs when the URL is not an `http` or `https` URL with a host.
    #[error("--url must be an http:// or https:// URL with a host, found {0:?}")]
    BadUrl(String),
    /// Occurs when nothing answered within the deadline.
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    /// Occurs when the connection or the exchange failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL asked.
        url: String,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Occurs when the answer was not 200.
    #[error("{0} answered {1}")]
    Status(String, u16),
}

/// Asks `url` once, within `timeout`: `Ok` only for a 200.
pub async fn check(url: &str, timeout: Duration) -> Result<(), HealthcheckError> {
    check_with(url, timeout, None).await
}

/// [`check`] with an `Authorization` header value.
pub async fn check_with(
    url: &str,
    timeout: Duration,
    authorization: Option<&str>,
) -> Result<(), HealthcheckError> {
    let parsed = Url::parse(url).map_err(|_| HealthcheckError::BadUrl(url.to_owned()))?;
    let shown = format!(
        "{}://{}{}",
        parsed.scheme(),
        host_port(&parsed)?,
        parsed.path()
    );
    match tokio::time::timeout(timeout, ask(&parsed, authorization)).await {
        Err(_) => Err(HealthcheckError::Timeout(shown, timeout)),
        Ok(Err(source)) => Err(HealthcheckError::Io { url: shown, source }),
        Ok(Ok(200)) => Ok(()),
        Ok(Ok(status)) => Err(HealthcheckError::Status(shown, status)),
    }
}

fn host_port(url: &Url) -> Result<String, HealthcheckError> {
    let bad = || HealthcheckError::BadUrl(url.as_str().to_owned());
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad());
    }
    let host = url.host_str().ok_or_else(bad)?;
    let port = url.port_or_known_default().ok_or_else(bad)?;
    Ok(format!("{host}:{port}"))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn ask(url: &Url, authorization: Option<&str>) -> Result<u16, BoxError> {
    let authority = host_port(url)?;
    let stream = TcpStream::connect(&authority).await?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut request = http::Request::get(path).header(http::header::HOST, &authority);
    if let Some(value) = authorization {
        let mut value = http::HeaderValue::from_str(value)?;
        value.set_sensitive(true);
        request = request.header(http::header::AUTHORIZATION, value);
    }
    let request = request.body(Empty::<bytes::Bytes>::new())?;
    if url.scheme() == "https" {
        let config = Arc::new(AcceptAnyCertificate::new(provider())).client_config();
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
        let name = ServerName::try_from(host.to_owned())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await?;
        exchange(TokioIo::new(tls), request).await
    } else {
        exchange(TokioIo::new(stream), request).await
    }
}

async fn exchange<T>(io: T, request: http::Request<Empty<bytes::Bytes>>) -> Result<u16, BoxError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // The body is tiny ("Healthy"); read it so that the exchange ends cleanly.
    let _ = response.into_body().collect().await;
    driver.abort();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_url_that_is_not_http_is_refused() {
        for url in [
            "ftp://127.0.0.1/-/healthy",
            "not a url",
            "file:///-/healthy",
        ] {
            let err = check(url, Duration::from_secs(1)).await.unwrap_err();
            assert!(matches!(err, HealthcheckError::BadUrl(_)), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/-/healthy");
        let err = check(&url, Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, HealthcheckError::Io { .. }), "{err}");
    }
}
