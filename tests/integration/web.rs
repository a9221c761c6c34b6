//! Protected endpoints (`--web.config.file`): TLS and basic authentication on every
//! endpoint but the heartbeat pings, mutual TLS, the same 401 for every kind of bad
//! credentials, the lifecycle switch, a clean close for plain HTTP on the TLS port, and
//! reloads that rotate the certificate or keep the old web config. A real TLS client
//! (tokio-rustls) against certificates made here (rcgen).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use glitchtip_exporter::server::Web;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::binary::{Running, run_to_end};
use crate::helpers;

const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse battery staple";
const PATIENCE: Duration = Duration::from_secs(10);
const CONFIG: &str = "[server]\nmode = \"scrape\"\nheader_read_timeout = \"1s\"\n[targets.a]\nurl = \"http://127.0.0.1:9/\"\n";

/// A certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `localhost` and 127.0.0.1: (certificate PEM, key PEM, certificate DER).
    fn leaf(&self) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.serial_number = Some(rand_serial());
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }
}

fn rand_serial() -> rcgen::SerialNumber {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    rcgen::SerialNumber::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A folder with a CA, a server certificate and a web config.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server_der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new();
        let (cert, key, server_der) = ca.leaf();
        std::fs::write(dir.path().join("server.crt"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert.pem()).unwrap();
        Pki {
            dir,
            ca,
            server_der,
        }
    }

    fn web_file(&self) -> PathBuf {
        self.dir.path().join("web.yml")
    }

    /// Writes the web config: TLS with `client_auth` lines, and the one user.
    fn write_web(&self, client_auth: &str) {
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        std::fs::write(
            self.web_file(),
            format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{client_auth}basic_auth_users:\n  {USER}: '{hash}'\n"
            ),
        )
        .unwrap();
    }

    /// A client that trusts the CA, with `identity` as its client certificate.
    fn client(
        &self,
        identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.cert.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// A client certificate signed by `ca`.
fn identity(ca: &Ca) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (cert.der().clone(), key)
}

/// An answer over TLS, and the certificate the server showed.
struct Answer {
    status: u16,
    head: String,
    body: String,
    server_cert: CertificateDer<'static>,
}

/// One request over a fresh TLS connection; `Err` when the handshake or the exchange
/// fails.
async fn tls_request(
    addr: SocketAddr,
    client: &tokio_rustls::TlsConnector,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> std::io::Result<Answer> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(PATIENCE, client.connect(name, tcp))
        .await
        .expect("handshake ends")?;
    let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    tls.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, tls.read_to_end(&mut raw))
        .await
        .expect("answer within patience")?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {head:?}")))?;
    Ok(Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
        server_cert,
    })
}

/// [`tls_request`], which must get an answer.
async fn ask(
    addr: SocketAddr,
    client: &tokio_rustls::TlsConnector,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> Answer {
    tls_request(addr, client, method, path, authorization)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A [`Pki`] with `client_auth` lines, and the exporter with `config` protected by it.
async fn start_protected(
    client_auth: &str,
    config: &str,
    lifecycle: bool,
) -> (Pki, helpers::TestExporter) {
    let pki = Pki::new();
    pki.write_web(client_auth);
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start_web(config, deps, web(&pki, lifecycle)).await;
    (pki, exporter)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn web(pki: &Pki, lifecycle: bool) -> Arc<Web> {
    Web::load(Some(pki.web_file()), lifecycle).unwrap_or_else(|e| panic!("{e}"))
}

const ENDPOINTS: [(&str, &str); 6] = [
    ("GET", "/metrics"),
    ("GET", "/probe?target=nowhere"),
    ("GET", "/"),
    ("GET", "/-/healthy"),
    ("GET", "/-/ready"),
    ("POST", "/-/reload"),
];

#[tokio::test]
async fn tls_and_basic_auth_guard_every_endpoint_but_heartbeat_pings() {
    let (pki, exporter) = start_protected("", CONFIG, true).await;
    let client = pki.client(None);
    let good = basic(USER, PASSWORD);
    let bad = [
        None,
        Some(basic("someone", PASSWORD)),
        Some(basic(USER, "wrong")),
        Some("Basic not-base64!".to_owned()),
        Some("Bearer abc".to_owned()),
    ];
    for (method, path) in ENDPOINTS {
        let mut bodies = Vec::new();
        for auth in &bad {
            let a = ask(exporter.addr, &client, method, path, auth.as_deref()).await;
            assert_eq!(a.status, 401, "{method} {path} with {auth:?}");
            assert!(
                a.head
                    .contains("www-authenticate: basic realm=\"glitchtip-exporter\""),
                "{}",
                a.head
            );
            bodies.push(a.body);
        }
        assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
        let a = ask(exporter.addr, &client, method, path, Some(&good)).await;
        assert_ne!(a.status, 401, "{method} {path} with the right password");
        assert_eq!(a.server_cert, pki.server_der);
    }
    let healthy = ask(exporter.addr, &client, "GET", "/-/healthy", Some(&good)).await;
    assert_eq!((healthy.status, healthy.body.as_str()), (200, "Healthy\n"));
    // Heartbeat pings keep their own tokens: no basic auth asked, over TLS too.
    let ping = ask(exporter.addr, &client, "POST", "/heartbeat/worker", None).await;
    assert_ne!(ping.status, 401, "{}", ping.body);
    exporter.stop().await;
}

#[tokio::test]
async fn mutual_tls_accepts_the_cas_clients_and_refuses_others() {
    let mutual = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n";
    let (pki, exporter) = start_protected(mutual, CONFIG, false).await;
    let good = basic(USER, PASSWORD);
    let ours = pki.client(Some(identity(&pki.ca)));
    let a = ask(exporter.addr, &ours, "GET", "/-/healthy", Some(&good)).await;
    assert_eq!(a.status, 200);
    let stranger = pki.client(Some(identity(&Ca::new())));
    for (what, client) in [
        ("no certificate", pki.client(None)),
        ("another CA", stranger),
    ] {
        let refused = tls_request(exporter.addr, &client, "GET", "/-/healthy", Some(&good)).await;
        assert!(
            refused.is_err(),
            "{what}: answered {}",
            refused.unwrap().status
        );
    }
    exporter.stop().await;
}

#[tokio::test]
async fn lifecycle_reload_is_403_without_the_flag_and_200_with_it() {
    let (deps, _clock) = helpers::deps();
    let off = helpers::start_web(CONFIG, deps, Web::open(false)).await;
    let r = off.post("/-/reload").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            403,
            "lifecycle endpoints are disabled: start with --web.enable-lifecycle to allow POST /-/reload (SIGHUP always reloads)\n"
        )
    );
    off.stop().await;
    let (deps, _clock) = helpers::deps();
    let on = helpers::start_web(CONFIG, deps, Web::open(true)).await;
    let r = on.post("/-/reload").await;
    assert_eq!((r.status, r.body.as_str()), (200, "config reloaded\n"));
    on.stop().await;
}

#[tokio::test]
async fn plain_http_and_silent_clients_on_the_tls_port_are_closed() {
    let (_pki, exporter) = start_protected("", CONFIG, false).await;
    for request in [&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..], b""] {
        let mut tcp = TcpStream::connect(exporter.addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut rest = Vec::new();
        // Closed (end of stream or reset), within the 1 s header deadline and patience.
        let read = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut rest))
            .await
            .expect("the server closes the connection");
        if read.is_ok() {
            assert!(
                !String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"),
                "{rest:?}"
            );
        }
    }
    exporter.stop().await;
}

#[tokio::test]
async fn reload_rotates_the_certificate_and_a_broken_web_config_keeps_the_old_one() {
    let (pki, exporter) = start_protected("", CONFIG, true).await;
    let client = pki.client(None);
    let good = basic(USER, PASSWORD);
    let first = ask(exporter.addr, &client, "GET", "/-/healthy", Some(&good)).await;
    assert_eq!(first.server_cert, pki.server_der);

    let (cert, key, rotated) = pki.ca.leaf();
    std::fs::write(pki.dir.path().join("server.crt"), cert).unwrap();
    std::fs::write(pki.dir.path().join("server.key"), key).unwrap();
    let r = ask(exporter.addr, &client, "POST", "/-/reload", Some(&good)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "config reloaded\n"));
    let after = ask(exporter.addr, &client, "GET", "/-/healthy", Some(&good)).await;
    assert_eq!(after.server_cert, rotated);
    assert_ne!(rotated, pki.server_der);

    // A key that does not exist: refused, naming the file and key; the rotated
    // certificate and the users stay in force.
    std::fs::write(
        pki.web_file(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n",
    )
    .unwrap();
    let r = ask(exporter.addr, &client, "POST", "/-/reload", Some(&good)).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body.contains("web.yml: tls_server_config.key_file"),
        "{}",
        r.body
    );
    let kept = ask(exporter.addr, &client, "GET", "/-/healthy", None).await;
    assert_eq!((kept.status, kept.server_cert), (401, rotated));
    let metrics = ask(exporter.addr, &client, "GET", "/metrics", Some(&good)).await;
    assert!(
        metrics
            .body
            .contains("\nglitchtip_exporter_web_config_last_reload_successful 0\n"),
        "{}",
        metrics.body
    );
    exporter.stop().await;
}

#[tokio::test]
async fn the_reserve_connections_at_the_cap_still_ask_for_credentials() {
    let config = CONFIG.replace(
        "header_read_timeout = \"1s\"",
        "header_read_timeout = \"5s\"\nmax_connections = 1",
    );
    let (pki, exporter) = start_protected("", &config, false).await;
    let client = pki.client(None);
    let good = basic(USER, PASSWORD);
    // Holds the one general connection: handshake done, no request yet.
    let tcp = TcpStream::connect(exporter.addr).await.unwrap();
    let _held = client
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let refused = ask(exporter.addr, &client, "GET", "/metrics", None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let served = ask(exporter.addr, &client, "GET", "/metrics", Some(&good)).await;
    assert_eq!(served.status, 200, "{}", served.body);
    // Really the reserve: it serves nothing but the scrape and health endpoints.
    let landing = ask(exporter.addr, &client, "GET", "/", Some(&good)).await;
    assert_eq!(landing.status, 503, "{}", landing.body);
    assert!(
        served
            .body
            .contains("\nglitchtip_exporter_web_config_last_reload_successful 1\n"),
        "{}",
        served.body
    );
    exporter.stop().await;
}

#[tokio::test]
async fn binary_takes_prometheus_style_flags_and_checks_the_web_config() {
    let pki = Pki::new();
    pki.write_web("");
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), CONFIG).unwrap();
    let web_file = pki.web_file();
    let exporter = Running::start(
        &[
            "--web.listen-address",
            "127.0.0.1:0",
            "--config.file",
            config.path().to_str().unwrap(),
            "--web.config.file",
            web_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let client = pki.client(None);
    let good = basic(USER, PASSWORD);
    let healthy = ask(exporter.addr, &client, "GET", "/-/healthy", Some(&good)).await;
    assert_eq!(healthy.status, 200);
    let reload = ask(exporter.addr, &client, "POST", "/-/reload", Some(&good)).await;
    assert_eq!(reload.status, 403, "no --web.enable-lifecycle");

    // The image's HEALTHCHECK over TLS with basic auth: the password from a file.
    let url = format!("https://{}/-/healthy", exporter.addr);
    let password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password.path(), format!("{PASSWORD}\n")).unwrap();
    let (status, _, stderr) = run_to_end(&[
        "healthcheck",
        "--url",
        &url,
        "--basic-auth-user",
        USER,
        "--basic-auth-password-file",
        password.path().to_str().unwrap(),
    ])
    .await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let (status, _, stderr) = run_to_end(&["healthcheck", "--url", &url]).await;
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("answered 401"), "{stderr}");
    assert!(!stderr.contains(PASSWORD));

    // SIGHUP always reloads: a rotated certificate serves the next connections.
    let (cert, key, rotated) = pki.ca.leaf();
    std::fs::write(pki.dir.path().join("server.crt"), cert).unwrap();
    std::fs::write(pki.dir.path().join("server.key"), key).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &exporter.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let a = ask(exporter.addr, &client, "GET", "/-/healthy", Some(&good)).await;
        if a.server_cert == rotated {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not rotate the certificate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, _) = exporter.terminate().await;
    assert!(status.success());

    // --check-config validates the web config too, and the old flag names still work.
    std::fs::write(&web_file, "basic_auth_users:\n  prometheus: not-a-hash\n").unwrap();
    let (status, _stdout, stderr) = run_to_end(&[
        "--check-config",
        "--config",
        config.path().to_str().unwrap(),
        "--web.config.file",
        web_file.to_str().unwrap(),
    ])
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("web.yml: basic_auth_users.prometheus"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-a-hash"), "{stderr}");
}
