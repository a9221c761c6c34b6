//! The `tls` check against real TLS servers on 127.0.0.1, with certificates made here
//! (rcgen) relative to the manual clock: the exact value of every `glitchtip_tls_*` series
//! for each kind of good and bad certificate, and the failures that leave no certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use glitchtip_exporter::config::{ConfigError, ConfigSource};
use glitchtip_exporter::net::tls::provider;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::helpers::{self, CLOCK_START, Samples, TEST_HOST};
use crate::stub;

const DAY: i64 = 86_400;
/// The manual clock's time, which every validity period here is relative to.
const NOW: i64 = CLOCK_START as i64;
const ROOT_CN: &str = "Test Root CA";

// ---------------------------------------------------------------------------------------
// Certificates

/// Parameters for a certificate valid from `NOW + not_before` to `NOW + not_after` (days).
fn params(
    cn: &str,
    sans: &[&str],
    not_before: i64,
    not_after: i64,
    serial: u64,
) -> CertificateParams {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    // rcgen takes the `time` crate's type, which this crate does not name: count from the
    // epoch.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + Duration::from_secs(secs(NOW + not_before * DAY));
    p.not_after = epoch + Duration::from_secs(secs(NOW + not_after * DAY));
    p.serial_number = Some(SerialNumber::from(serial));
    p
}

fn secs(unix: i64) -> u64 {
    u64::try_from(unix).unwrap()
}

fn ca_params(cn: &str, not_before: i64, not_after: i64, serial: u64) -> CertificateParams {
    let mut p = params(cn, &[], not_before, not_after, serial);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn leaf_params(sans: &[&str], not_before: i64, not_after: i64, serial: u64) -> CertificateParams {
    let mut p = params(sans[0], sans, not_before, not_after, serial);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p
}

/// A CA: its certificate and what it signs with.
pub(crate) struct Ca {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub(crate) fn root_ca(cn: &str, not_after: i64) -> Ca {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(cn, -1000, not_after, 1);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

fn intermediate_ca(cn: &str, not_after: i64, by: &Ca) -> Ca {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(cn, -500, not_after, 2);
    let cert = params.signed_by(&key, &by.issuer).unwrap();
    Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate and its key.
pub(crate) struct Leaf {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) key: KeyPair,
}

pub(crate) fn leaf(sans: &[&str], not_before: i64, not_after: i64, by: &Ca) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(sans, not_before, not_after, 0x1234)
        .signed_by(&key, &by.issuer)
        .unwrap();
    Leaf {
        der: cert.der().clone(),
        key,
    }
}

fn self_signed_leaf(sans: &[&str], not_before: i64, not_after: i64) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(sans, not_before, not_after, 0x1234)
        .self_signed(&key)
        .unwrap();
    Leaf {
        der: cert.der().clone(),
        key,
    }
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// A TLS server

/// Serves `chain` with `key` on 127.0.0.1: every connection shakes hands and gets a small
/// HTTP 200, so that HTTP checks can run against it too.
async fn start_tls_server(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> TlsServer {
    start_tls_server_speaking(rustls::DEFAULT_VERSIONS, chain, key).await
}

/// [`start_tls_server`] offering only `versions`.
async fn start_tls_server_speaking(
    versions: &[&'static rustls::SupportedProtocolVersion],
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
) -> TlsServer {
    let key = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    // CertifiedKey::new does not check the chain, so that a test can serve anything.
    start_with(versions, Arc::new(CertifiedKey::new(chain, key))).await
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

struct TlsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_with(
    versions: &[&'static rustls::SupportedProtocolVersion],
    certified: Arc<CertifiedKey>,
) -> TlsServer {
    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
    start_answering(versions, certified, answer.to_vec()).await
}

/// [`start_with`] answering every request with `answer`.
async fn start_answering(
    versions: &[&'static rustls::SupportedProtocolVersion],
    certified: Arc<CertifiedKey>,
    answer: Vec<u8>,
) -> TlsServer {
    let answer: Arc<[u8]> = answer.into();
    serve_tls(versions, certified, move |mut tls| {
        let answer = answer.clone();
        async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls.write_all(&answer).await;
            let _ = tls.shutdown().await;
        }
    })
    .await
}

type ServerTls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Accepts TLS connections on 127.0.0.1 with `certified` and hands each to `handle`.
async fn serve_tls<F, Fut>(
    versions: &[&'static rustls::SupportedProtocolVersion],
    certified: Arc<CertifiedKey>,
    handle: F,
) -> TlsServer
where
    F: Fn(ServerTls) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(certified)));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = Arc::new(handle);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, handle) = (acceptor.clone(), handle.clone());
            connections.spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    handle(tls).await;
                }
            });
            while connections.try_join_next().is_some() {}
        }
    });
    TlsServer { addr, task }
}

// ---------------------------------------------------------------------------------------
// The exporter

/// A CA file in a temporary directory.
fn ca_file(pems: &[&str]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pems.concat()).unwrap();
    file
}

/// Target `gt` at `https://glitchtip.test:PORT` trusting `ca`, with only the tls check.
fn config(port: u16, ca: &Path, extra: &str) -> String {
    format!(
        r#"
[server]
mode = "scrape"
[targets.gt]
url = "https://{TEST_HOST}:{port}"
default_checks = false
[targets.gt.tls]
ca_file = "{ca}"
[targets.gt.checks.tls]
timeout = "2s"
{extra}
"#,
        ca = ca.display()
    )
}

/// Scrapes once.
async fn scrape(toml: &str) -> Samples {
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(toml, deps).await;
    let m = exporter.metrics().await;
    exporter.stop().await;
    m
}

/// Serves `chain` and scrapes once, trusting `trusted`.
async fn scrape_chain(
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
    trusted: &[&str],
) -> Samples {
    let server = start_tls_server(chain, key).await;
    let ca = ca_file(trusted);
    scrape(&config(server.addr.port(), ca.path(), "")).await
}

/// The expected `glitchtip_tls_*` values of target `gt`; `None` means absent. Times are
/// days relative to the clock.
struct Expect {
    reason: &'static str,
    valid: Option<f64>,
    expiry_days: Option<i64>,
    leaf_days: Option<i64>,
    earliest_presented_days: Option<i64>,
    earliest_verified_days: Option<i64>,
}

const NO_CERTIFICATE: Expect = Expect {
    reason: "",
    valid: None,
    expiry_days: None,
    leaf_days: None,
    earliest_presented_days: None,
    earliest_verified_days: None,
};

fn assert_tls(m: &Samples, e: &Expect) {
    let reasons = m.find("glitchtip_tls_failure_reason", &[("target", "gt")]);
    assert_eq!(reasons.len(), 1, "one reason series: {reasons:?}");
    assert_eq!(reasons[0].0["reason"], e.reason);
    assert_eq!(reasons[0].1, 1.0);

    let value = |name: &str, labels: &[(&str, &str)]| {
        let found = m.find(name, labels);
        assert!(found.len() <= 1, "{name}{labels:?}: {found:?}");
        found.first().map(|(_, v)| *v)
    };
    let target = [("target", "gt")];
    assert_eq!(value("glitchtip_tls_cert_valid", &target), e.valid, "valid");
    assert_eq!(
        value("glitchtip_tls_cert_expiry_seconds", &target),
        e.expiry_days.map(|d| (d * DAY) as f64),
        "expiry seconds"
    );
    for (cert, days) in [
        ("leaf", e.leaf_days),
        ("earliest_presented", e.earliest_presented_days),
        ("earliest_verified", e.earliest_verified_days),
    ] {
        assert_eq!(
            value(
                "glitchtip_tls_cert_not_after_timestamp_seconds",
                &[("target", "gt"), ("cert", cert)]
            ),
            days.map(|d| (NOW + d * DAY) as f64),
            "notAfter of {cert}"
        );
    }
    let info = m.find("glitchtip_tls_cert_info", &target);
    assert_eq!(info.len(), usize::from(e.valid.is_some()), "{info:?}");

    // The core series of check="tls".
    let up = if e.reason == "none" { 1.0 } else { 0.0 };
    assert_eq!(m.check("glitchtip_up", "gt", "tls"), up);
    let core = match e.reason {
        "none" => "none",
        "dns" | "connect" | "timeout" | "proxy" => e.reason,
        _ => "tls",
    };
    assert_eq!(m.reason("gt", "tls"), core);
    assert_eq!(
        m.check("glitchtip_consecutive_failures", "gt", "tls"),
        1.0 - up
    );
}

fn version(m: &Samples) -> Vec<String> {
    m.find("glitchtip_tls_version_info", &[("target", "gt")])
        .into_iter()
        .map(|(l, v)| {
            assert_eq!(v, 1.0);
            l["version"].clone()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Certificates good and bad

#[tokio::test]
async fn valid_chain_through_an_intermediate() {
    let root = root_ca(ROOT_CN, 3650);
    let inter = intermediate_ca("Test Intermediate CA", 1000, &root);
    let leaf = leaf(&[TEST_HOST], -365, 90, &inter);
    let server = start_tls_server(vec![leaf.der.clone(), inter.der.clone()], &leaf.key).await;
    let ca = ca_file(&[&root.pem]);
    // The default checks: an https:// target gets the tls check without asking.
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"https://{TEST_HOST}:{}\"\n[targets.gt.tls]\nca_file = \"{}\"\n",
        server.addr.port(),
        ca.path().display()
    );
    let m = scrape(&toml).await;
    assert_tls(
        &m,
        &Expect {
            reason: "none",
            valid: Some(1.0),
            expiry_days: Some(90),
            leaf_days: Some(90),
            earliest_presented_days: Some(90),
            earliest_verified_days: Some(90),
        },
    );
    assert_eq!(version(&m), ["TLS 1.3"]);
    let info = m.find("glitchtip_tls_cert_info", &[("target", "gt")]);
    let labels = &info[0].0;
    assert_eq!(labels["subject"], format!("CN={TEST_HOST}"));
    assert_eq!(labels["issuer"], "CN=Test Intermediate CA");
    assert_eq!(labels["serial"], "1234");
    assert_eq!(labels["fingerprint_sha256"], sha256_hex(&leaf.der));
    assert_eq!(info[0].1, 1.0);
    // The default HTTP checks run too (the certificate is judged on the real clock there,
    // so their result is not asserted).
    assert!(m.has("glitchtip_up", &[("check", "health")]));
    // The TLS check's phases are real.
    assert!(
        m.get(
            "glitchtip_probe_phase_seconds",
            &[("check", "tls"), ("phase", "tls")]
        ) > 0.0
    );
}

#[tokio::test]
async fn leaf_expired() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -100, -2, &root);
    let m = scrape_chain(vec![leaf.der.clone()], &leaf.key, &[&root.pem]).await;
    assert_tls(
        &m,
        &Expect {
            reason: "expired",
            valid: Some(0.0),
            expiry_days: Some(-2),
            leaf_days: Some(-2),
            earliest_presented_days: Some(-2),
            earliest_verified_days: None,
        },
    );
    // The handshake completed: the version is known even though the certificate is bad.
    assert_eq!(version(&m), ["TLS 1.3"]);
}

#[tokio::test]
async fn leaf_not_yet_valid() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], 1, 91, &root);
    let m = scrape_chain(vec![leaf.der.clone()], &leaf.key, &[&root.pem]).await;
    assert_tls(
        &m,
        &Expect {
            reason: "not_yet_valid",
            valid: Some(0.0),
            expiry_days: Some(91),
            leaf_days: Some(91),
            earliest_presented_days: Some(91),
            earliest_verified_days: None,
        },
    );
}

#[tokio::test]
async fn leaf_expiring_in_5_days_is_still_valid() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -85, 5, &root);
    let m = scrape_chain(vec![leaf.der.clone()], &leaf.key, &[&root.pem]).await;
    assert_tls(
        &m,
        &Expect {
            reason: "none",
            valid: Some(1.0),
            expiry_days: Some(5),
            leaf_days: Some(5),
            earliest_presented_days: Some(5),
            earliest_verified_days: Some(5),
        },
    );
    assert_eq!(
        m.get("glitchtip_tls_cert_expiry_seconds", &[("target", "gt")]),
        432_000.0
    );
}

#[tokio::test]
async fn intermediate_expiring_before_the_leaf_is_the_earliest() {
    let root = root_ca(ROOT_CN, 3650);
    let inter = intermediate_ca("Test Intermediate CA", 10, &root);
    let leaf = leaf(&[TEST_HOST], -20, 60, &inter);
    let m = scrape_chain(
        vec![leaf.der.clone(), inter.der.clone()],
        &leaf.key,
        &[&root.pem],
    )
    .await;
    assert_tls(
        &m,
        &Expect {
            reason: "none",
            valid: Some(1.0),
            expiry_days: Some(10),
            leaf_days: Some(60),
            earliest_presented_days: Some(10),
            earliest_verified_days: Some(10),
        },
    );
}

#[tokio::test]
async fn root_from_the_ca_file_counts_in_the_verified_chain() {
    // The root is not presented, but its certificate is known from the CA file.
    let root = root_ca(ROOT_CN, 20);
    let inter = intermediate_ca("Test Intermediate CA", 30, &root);
    let leaf = leaf(&[TEST_HOST], -20, 60, &inter);
    let m = scrape_chain(
        vec![leaf.der.clone(), inter.der.clone()],
        &leaf.key,
        &[&root.pem],
    )
    .await;
    assert_tls(
        &m,
        &Expect {
            reason: "none",
            valid: Some(1.0),
            expiry_days: Some(20),
            leaf_days: Some(60),
            earliest_presented_days: Some(30),
            earliest_verified_days: Some(20),
        },
    );
}

#[tokio::test]
async fn expired_cross_signed_certificate_that_clients_skip_does_not_count() {
    // The intermediate is also presented cross-signed by a legacy root, and that copy has
    // expired; clients build the path through the current one.
    let root = root_ca(ROOT_CN, 3650);
    let legacy = root_ca("Legacy Root CA", 3650);
    let inter_key = KeyPair::generate().unwrap();
    let inter_params = ca_params("Test Intermediate CA", -500, 1000, 2);
    let inter_der = inter_params
        .signed_by(&inter_key, &root.issuer)
        .unwrap()
        .der()
        .clone();
    let cross_der = ca_params("Test Intermediate CA", -900, -30, 3)
        .signed_by(&inter_key, &legacy.issuer)
        .unwrap()
        .der()
        .clone();
    let inter = Issuer::new(inter_params, inter_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_der = leaf_params(&[TEST_HOST], -10, 90, 7)
        .signed_by(&leaf_key, &inter)
        .unwrap()
        .der()
        .clone();
    let m = scrape_chain(
        vec![leaf_der, cross_der, inter_der],
        &leaf_key,
        &[&root.pem],
    )
    .await;
    assert_tls(
        &m,
        &Expect {
            reason: "none",
            valid: Some(1.0),
            expiry_days: Some(90),
            leaf_days: Some(90),
            earliest_presented_days: Some(-30),
            earliest_verified_days: Some(90),
        },
    );
}

#[tokio::test]
async fn wrong_host_name() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&["other.test"], -10, 90, &root);
    let m = scrape_chain(vec![leaf.der.clone()], &leaf.key, &[&root.pem]).await;
    // The chain itself verifies, so the expiry is that of the verified chain.
    assert_tls(
        &m,
        &Expect {
            reason: "hostname_mismatch",
            valid: Some(0.0),
            expiry_days: Some(90),
            leaf_days: Some(90),
            earliest_presented_days: Some(90),
            earliest_verified_days: Some(90),
        },
    );
}

#[tokio::test]
async fn self_signed() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = self_signed_leaf(&[TEST_HOST], -10, 90);
    let m = scrape_chain(vec![leaf.der.clone()], &leaf.key, &[&root.pem]).await;
    assert_tls(&m, &unverified_90_days("self_signed"));
    let info = m.find("glitchtip_tls_cert_info", &[("target", "gt")]);
    assert_eq!(info[0].0["issuer"], format!("CN={TEST_HOST}"));
}

#[tokio::test]
async fn unknown_ca() {
    let trusted = root_ca(ROOT_CN, 3650);
    let unknown = root_ca("Unknown CA", 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &unknown);
    let m = scrape_chain(
        vec![leaf.der.clone(), unknown.der.clone()],
        &leaf.key,
        &[&trusted.pem],
    )
    .await;
    assert_tls(&m, &unverified_90_days("unknown_issuer"));
}

#[tokio::test]
async fn several_problems_report_the_first_in_order() {
    // Expired, self-signed and for another name: expired wins.
    let root = root_ca(ROOT_CN, 3650);
    let leaf = self_signed_leaf(&["other.test"], -100, -1);
    let m = scrape_chain(vec![leaf.der.clone()], &leaf.key, &[&root.pem]).await;
    assert_tls(
        &m,
        &Expect {
            reason: "expired",
            valid: Some(0.0),
            expiry_days: Some(-1),
            leaf_days: Some(-1),
            earliest_presented_days: Some(-1),
            earliest_verified_days: None,
        },
    );
    // For another name and self-signed: the name wins.
    let leaf = self_signed_leaf(&["other.test"], -10, 10);
    let m = scrape_chain(vec![leaf.der.clone()], &leaf.key, &[&root.pem]).await;
    assert_eq!(
        m.find("glitchtip_tls_failure_reason", &[("target", "gt")])[0].0["reason"],
        "hostname_mismatch"
    );
}

#[tokio::test]
async fn https_http_check_against_an_expired_certificate_is_reason_tls() {
    // Expired on the manual clock and on the real one (the HTTP checks verify with rustls
    // at the real time).
    let root = root_ca(ROOT_CN, 3650);
    let key = KeyPair::generate().unwrap();
    let mut p = leaf_params(&[TEST_HOST], 0, 0, 9);
    p.not_before = rcgen::date_time_ymd(2000, 1, 1);
    p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let der = p.signed_by(&key, &root.issuer).unwrap().der().clone();
    let server = start_tls_server(vec![der], &key).await;
    let ca = ca_file(&[&root.pem]);
    let m = scrape(&config(
        server.addr.port(),
        ca.path(),
        "[targets.gt.checks.page]\npath = \"/\"\ntimeout = \"2s\"",
    ))
    .await;
    assert_eq!(m.check("glitchtip_up", "gt", "page"), 0.0);
    assert_eq!(m.reason("gt", "page"), "tls");
    assert_eq!(m.reason("gt", "tls"), "tls");
    let reasons = m.find("glitchtip_tls_failure_reason", &[("target", "gt")]);
    assert_eq!(reasons[0].0["reason"], "expired");
    assert_eq!(
        m.get("glitchtip_tls_cert_expiry_seconds", &[("target", "gt")]),
        (978_307_200 - NOW) as f64
    );
}

// ---------------------------------------------------------------------------------------
// Time comes from the injected clock

#[tokio::test]
async fn clock_moved_past_not_after_flips_valid_to_expired() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -10, 3, &root);
    let server = start_tls_server(vec![leaf.der.clone()], &leaf.key).await;
    let ca = ca_file(&[&root.pem]);
    let (deps, clock) = helpers::deps();
    let exporter = helpers::start(&config(server.addr.port(), ca.path(), ""), deps).await;

    let m = exporter.probe("gt").await;
    assert_tls(
        &m,
        &Expect {
            reason: "none",
            valid: Some(1.0),
            expiry_days: Some(3),
            leaf_days: Some(3),
            earliest_presented_days: Some(3),
            earliest_verified_days: Some(3),
        },
    );

    // One second past notAfter: the same certificate is now expired.
    clock.advance(Duration::from_secs(3 * DAY as u64 + 1));
    let m = exporter.probe("gt").await;
    assert_eq!(m.get("glitchtip_tls_cert_valid", &[("target", "gt")]), 0.0);
    assert_eq!(
        m.find("glitchtip_tls_failure_reason", &[("target", "gt")])[0].0["reason"],
        "expired"
    );
    assert_eq!(
        m.get("glitchtip_tls_cert_expiry_seconds", &[("target", "gt")]),
        -1.0
    );
    assert!(!m.has(
        "glitchtip_tls_cert_not_after_timestamp_seconds",
        &[("cert", "earliest_verified")]
    ));
    exporter.stop().await;
}

// ---------------------------------------------------------------------------------------
// No certificate: the certificate series are absent and the reason says why

/// A leaf for 90 more days, read, whose chain does not verify for `reason`.
fn unverified_90_days(reason: &'static str) -> Expect {
    Expect {
        reason,
        valid: Some(0.0),
        expiry_days: Some(90),
        leaf_days: Some(90),
        earliest_presented_days: Some(90),
        earliest_verified_days: None,
    }
}

fn no_certificate(reason: &'static str) -> Expect {
    Expect {
        reason,
        ..NO_CERTIFICATE
    }
}

async fn scrape_url(host: &str, port: u16, timeout: &str) -> (Samples, f64) {
    let root = root_ca(ROOT_CN, 3650);
    let ca = ca_file(&[&root.pem]);
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"https://{host}:{port}\"\ndefault_checks = false\n[targets.gt.tls]\nca_file = \"{}\"\n[targets.gt.checks.tls]\ntimeout = \"{timeout}\"\n",
        ca.path().display()
    );
    let m = scrape(&toml).await;
    let duration = m.check("glitchtip_probe_duration_seconds", "gt", "tls");
    (m, duration)
}

#[tokio::test]
async fn garbage_instead_of_tls_is_handshake() {
    let (addr, _server) = stub::start_garbage_server().await;
    let (m, duration) = scrape_url(TEST_HOST, addr.port(), "2s").await;
    assert_tls(&m, &no_certificate("handshake"));
    assert!(version(&m).is_empty());
    assert!(duration < 2.0, "within the deadline: {duration}");
}

#[tokio::test]
async fn stalled_handshake_is_timeout() {
    let (addr, _server) = stub::start_silent_server().await;
    let (m, duration) = scrape_url(TEST_HOST, addr.port(), "500ms").await;
    assert_tls(&m, &no_certificate("timeout"));
    assert!(
        (0.5..1.5).contains(&duration),
        "at the deadline: {duration}"
    );
    let tls_phase = m.get(
        "glitchtip_probe_phase_seconds",
        &[("check", "tls"), ("phase", "tls")],
    );
    assert!(
        tls_phase >= 0.4,
        "the time went into the handshake: {tls_phase}"
    );
}

#[tokio::test]
async fn name_that_does_not_resolve_is_dns() {
    let (m, _) = scrape_url("no-such-host.test", 443, "2s").await;
    assert_tls(&m, &no_certificate("dns"));
}

#[tokio::test]
async fn connection_refused_is_connect() {
    let addr = stub::refused_addr();
    let (m, _) = scrape_url(TEST_HOST, addr.port(), "2s").await;
    assert_tls(&m, &no_certificate("connect"));
}

#[tokio::test]
async fn unparseable_certificate_is_handshake() {
    let key = KeyPair::generate().unwrap();
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    let server = start_tls_server(vec![garbage], &key).await;
    let (m, duration) = scrape_url(TEST_HOST, server.addr.port(), "2s").await;
    assert_tls(&m, &no_certificate("handshake"));
    assert!(duration < 2.0, "within the deadline: {duration}");
}

/// A leaf (its root untrusted) followed by copies of its root: far more than the 64 KiB a
/// TLS handshake message may carry.
fn huge_chain() -> (Leaf, Vec<CertificateDer<'static>>) {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &root);
    let mut chain = vec![leaf.der.clone()];
    while chain.iter().map(|c| c.len()).sum::<usize>() < 100 * 1024 {
        chain.push(root.der.clone());
    }
    (leaf, chain)
}

#[tokio::test]
async fn huge_chain_is_read_over_tls_1_2_and_its_expiry_is_known() {
    // rustls refuses it; the prober reads it off the wire of a TLS 1.2 handshake.
    let (leaf, chain) = huge_chain();
    let server = start_tls_server(chain, &leaf.key).await;
    let (m, duration) = scrape_url(TEST_HOST, server.addr.port(), "2s").await;
    assert_tls(&m, &unverified_90_days("unknown_issuer"));
    assert!(duration < 2.0, "within the deadline: {duration}");
}

#[tokio::test]
async fn huge_chain_from_a_server_without_tls_1_2_leaves_no_certificate() {
    let (leaf, chain) = huge_chain();
    let server = start_tls_server_speaking(&[&rustls::version::TLS13], chain, &leaf.key).await;
    let (m, duration) = scrape_url(TEST_HOST, server.addr.port(), "2s").await;
    assert_tls(&m, &no_certificate("handshake"));
    assert!(duration < 2.0, "within the deadline: {duration}");
}

// ---------------------------------------------------------------------------------------
// Certificates rustls refuses, whose expiry is still known

/// `content` as one DER element of `tag`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xffff => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// The elements of the DER sequence `seq`, each whole (tag and length included).
fn elements(seq: &[u8]) -> Vec<&[u8]> {
    let content_start = |d: &[u8]| match d[1] {
        n @ 0..=0x7f => (2, usize::from(n)),
        0x81 => (3, usize::from(d[2])),
        0x82 => (4, usize::from(d[2]) << 8 | usize::from(d[3])),
        _ => (
            5,
            usize::from(d[2]) << 16 | usize::from(d[3]) << 8 | usize::from(d[4]),
        ),
    };
    let (head, _) = content_start(seq);
    let mut rest = &seq[head..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (h, len) = content_start(rest);
        out.push(&rest[..h + len]);
        rest = &rest[h + len..];
    }
    out
}

/// A leaf for [`TEST_HOST`] signed by `by` whose key is a P-521 one: rcgen (ring) cannot
/// make one, so a P-256 leaf gets a P-521 public key and is signed again by `by`.
fn p521_leaf(by: &Ca) -> CertificateDer<'static> {
    use rcgen::SigningKey as _;
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(&[TEST_HOST], -10, 90, 0x1234)
        .signed_by(&key, &by.issuer)
        .unwrap();
    let outer = elements(cert.der());
    let mut tbs: Vec<Vec<u8>> = elements(outer[0]).into_iter().map(<[u8]>::to_vec).collect();
    // id-ecPublicKey, secp521r1; an uncompressed point of 2 × 66 bytes.
    let algorithm = [
        der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
        der(0x06, &[0x2b, 0x81, 0x04, 0x00, 0x23]),
    ]
    .concat();
    let mut point = vec![0x00, 0x04];
    point.extend_from_slice(&[0x5a; 132]);
    // [0] version, serial, signature, issuer, validity, subject, then the key.
    tbs[6] = der(0x30, &[der(0x30, &algorithm), der(0x03, &point)].concat());
    let tbs = der(0x30, &tbs.concat());
    let mut signature = vec![0x00];
    signature.extend(by.issuer.key().sign(&tbs).unwrap());
    let whole = der(
        0x30,
        &[tbs, outer[1].to_vec(), der(0x03, &signature)].concat(),
    );
    CertificateDer::from(whole)
}

/// A server key that claims P-521 (ECDSA with SHA-512), as a server with a P-521
/// certificate does when the client offers it; its signatures are never checked (ring has
/// no P-521).
#[derive(Debug)]
struct P521Key;

impl rustls::sign::SigningKey for P521Key {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&rustls::SignatureScheme::ECDSA_NISTP521_SHA512)
            .then(|| Box::new(P521Key) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ECDSA
    }
}

impl rustls::sign::Signer for P521Key {
    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(der(0x30, &[der(0x02, &[1]), der(0x02, &[1])].concat()))
    }

    fn scheme(&self) -> rustls::SignatureScheme {
        rustls::SignatureScheme::ECDSA_NISTP521_SHA512
    }
}

#[tokio::test]
async fn p521_leaf_fails_the_handshake_and_its_expiry_is_known() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = p521_leaf(&root);
    let server = start_with(
        rustls::DEFAULT_VERSIONS,
        Arc::new(CertifiedKey::new(vec![leaf], Arc::new(P521Key))),
    )
    .await;
    let ca = ca_file(&[&root.pem]);
    let m = scrape(&config(server.addr.port(), ca.path(), "")).await;
    // The chain verifies; the handshake signature cannot be checked.
    let expect = Expect {
        earliest_verified_days: Some(90),
        ..unverified_90_days("handshake")
    };
    assert_tls(&m, &expect);
    assert!(version(&m).is_empty());
}

#[tokio::test]
async fn unsupported_critical_extension_is_named_and_its_expiry_is_known() {
    let root = root_ca(ROOT_CN, 3650);
    let key = KeyPair::generate().unwrap();
    let mut params = leaf_params(&[TEST_HOST], -10, 90, 0x1234);
    let mut extension =
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], der(0x05, &[]));
    extension.set_criticality(true);
    params.custom_extensions.push(extension);
    let cert = params.signed_by(&key, &root.issuer).unwrap();
    let m = scrape_chain(vec![cert.der().clone()], &key, &[&root.pem]).await;
    assert_tls(&m, &unverified_90_days("unsupported_critical_extension"));
}

#[tokio::test]
async fn certificate_over_64_kib_fails_the_handshake_and_its_expiry_is_known() {
    let root = root_ca(ROOT_CN, 3650);
    let key = KeyPair::generate().unwrap();
    let mut params = leaf_params(&[TEST_HOST], -10, 90, 0x1234);
    // A non-critical extension nobody reads, 70 000 bytes long.
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 55555, 2],
            der(0x04, &[0xab; 70_000]),
        ));
    let cert = params.signed_by(&key, &root.issuer).unwrap();
    assert!(cert.der().len() > 64 * 1024);
    let m = scrape_chain(vec![cert.der().clone()], &key, &[&root.pem]).await;
    // Read off the wire of a TLS 1.2 handshake; webpki, as clients, cannot parse a
    // certificate this large.
    assert_tls(&m, &unverified_90_days("invalid_certificate"));
}

// ---------------------------------------------------------------------------------------
// Config and reload

#[tokio::test]
async fn address_points_the_check_of_an_http_target_at_a_tls_port() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &root);
    let server = start_tls_server(vec![leaf.der.clone()], &leaf.key).await;
    let ca = ca_file(&[&root.pem]);
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"http://127.0.0.1:9\"\ndefault_checks = false\n[targets.gt.checks.tls]\naddress = \"{TEST_HOST}:{}\"\ntls = {{ ca_file = \"{}\" }}\n",
        server.addr.port(),
        ca.path().display()
    );
    let m = scrape(&toml).await;
    assert_tls(
        &m,
        &Expect {
            reason: "none",
            valid: Some(1.0),
            expiry_days: Some(90),
            leaf_days: Some(90),
            earliest_presented_days: Some(90),
            earliest_verified_days: Some(90),
        },
    );
}

#[tokio::test]
async fn server_name_overrides_the_name_checked() {
    // Connect to the IP literal, verify the certificate for glitchtip.test.
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &root);
    let server = start_tls_server(vec![leaf.der.clone()], &leaf.key).await;
    let ca = ca_file(&[&root.pem]);
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"https://127.0.0.1:{}\"\ndefault_checks = false\n[targets.gt.tls]\nca_file = \"{}\"\nserver_name = \"{TEST_HOST}\"\n[targets.gt.checks.tls]\n",
        server.addr.port(),
        ca.path().display()
    );
    let m = scrape(&toml).await;
    assert_eq!(m.get("glitchtip_tls_cert_valid", &[("target", "gt")]), 1.0);
}

#[tokio::test]
async fn disabling_the_check_by_reload_removes_every_tls_series() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &root);
    let server = start_tls_server(vec![leaf.der.clone()], &leaf.key).await;
    let ca = ca_file(&[&root.pem]);
    let (deps, _clock) = helpers::deps();
    let toml = config(server.addr.port(), ca.path(), "");
    let exporter = helpers::start(&toml, deps).await;
    let m = exporter.metrics().await;
    assert!(m.names().iter().any(|n| n.starts_with("glitchtip_tls_")));

    let without = config(
        server.addr.port(),
        ca.path(),
        "enabled = false\n[targets.gt.checks.page]\npath = \"/\"",
    );
    let r = exporter.reload(&without).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = exporter.metrics().await;
    let left: Vec<_> =
        m.0.iter()
            .filter(|(n, l, _)| {
                n.starts_with("glitchtip_tls_") || l.get("check").map(String::as_str) == Some("tls")
            })
            .collect();
    assert!(left.is_empty(), "{left:?}");
    exporter.stop().await;
}

/// Loads `toml` as a config file.
fn load(toml: &str) -> Result<glitchtip_exporter::config::Config, ConfigError> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), toml).unwrap();
    ConfigSource {
        file: Some(file.path().to_owned()),
        env: Some(Default::default()),
        ..Default::default()
    }
    .load()
}

fn load_err(toml: &str) -> String {
    match load(toml) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

/// The message after "config file PATH: " (a temporary path without ": " in it).
fn message_tail(message: &str) -> &str {
    message.split_once(": ").map_or(message, |(_, tail)| tail)
}

#[test]
fn http_only_key_on_the_tls_check_is_named() {
    let err = load_err(
        "[targets.prod]\nurl = \"https://glitchtip.example.com\"\n[targets.prod.checks.tls]\nkeyword = \"ok\"\n",
    );
    assert_eq!(
        message_tail(&err),
        "targets.prod.checks.tls.keyword: no such key on the tls check, which takes enabled, address, interval, timeout, retry_interval and tls = { ca_file, server_name }"
    );
}

#[test]
fn insecure_skip_verify_on_the_tls_check_is_refused() {
    let err = load_err(
        "[targets.prod]\nurl = \"https://glitchtip.example.com\"\n[targets.prod.checks.tls]\ntls = { insecure_skip_verify = true }\n",
    );
    assert_eq!(
        message_tail(&err),
        "targets.prod.checks.tls.tls.insecure_skip_verify: no such key on the tls check, which always verifies the certificate and reports the result"
    );
    // On the target it applies to the HTTP checks only; the tls check still verifies.
    let config = load(
        "[targets.prod]\nurl = \"https://glitchtip.example.com\"\ntls = { insecure_skip_verify = true }\n",
    )
    .unwrap();
    let target = config.target("prod").unwrap();
    let tls = target.checks.iter().find(|c| c.name == "tls").unwrap();
    assert!(!tls.tls_insecure());
}

#[test]
fn tls_check_on_an_http_target_needs_an_address() {
    let config = load("[targets.prod]\nurl = \"http://glitchtip.example.com\"\n").unwrap();
    assert!(
        config
            .target("prod")
            .unwrap()
            .checks
            .iter()
            .all(|c| c.name != "tls"),
        "no tls check by default on http://"
    );
    let err = load_err(
        "[targets.prod]\nurl = \"http://glitchtip.example.com\"\n[targets.prod.checks.tls]\ninterval = \"1m\"\n",
    );
    assert_eq!(
        message_tail(&err),
        "targets.prod.checks.tls.address: a \"host:port\" to connect to, since the target URL \"http://glitchtip.example.com/\" is not https://"
    );
    for bad in [
        "glitchtip.example.com",
        "glitchtip.example.com:0",
        ":443",
        "::1:443",
    ] {
        let err = load_err(&format!(
            "[targets.prod]\nurl = \"http://glitchtip.example.com\"\n[targets.prod.checks.tls]\naddress = \"{bad}\"\n"
        ));
        assert_eq!(
            message_tail(&err),
            format!(
                "targets.prod.checks.tls.address: a \"host:port\" such as \"glitchtip.example.com:443\", got {bad:?}"
            )
        );
    }
    assert!(load(
        "[targets.prod]\nurl = \"http://glitchtip.example.com\"\n[targets.prod.checks.tls]\naddress = \"[::1]:8443\"\n"
    )
    .is_ok());
}

#[test]
fn address_on_an_http_check_is_refused() {
    let err = load_err(
        "[targets.prod]\nurl = \"https://glitchtip.example.com\"\n[targets.prod.checks.health]\naddress = \"x:1\"\n",
    );
    assert_eq!(
        message_tail(&err),
        "targets.prod.checks.health.address: no `address` on an HTTP check: only the tls check takes one (use `url` here)"
    );
}

#[test]
fn missing_ca_file_of_the_tls_check_names_the_path() {
    let err = load_err(
        "[targets.prod]\nurl = \"https://glitchtip.example.com\"\ndefault_checks = false\n[targets.prod.checks.tls]\ntls = { ca_file = \"/nonexistent/ca.pem\" }\n",
    );
    assert!(
        message_tail(&err).starts_with(
            "targets.prod.checks.tls.tls.ca_file: a readable PEM file of CA certificates (cannot read CA file /nonexistent/ca.pem: "
        ),
        "{err}"
    );
}

#[test]
fn default_checks_false_drops_the_tls_check_too() {
    let config = load(
        "[targets.prod]\nurl = \"https://glitchtip.example.com\"\ndefault_checks = false\n[targets.prod.checks.x]\npath = \"/\"\n",
    )
    .unwrap();
    let names: Vec<_> = config
        .target("prod")
        .unwrap()
        .checks
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["x"]);
}

// ---------------------------------------------------------------------------------------
// Protocol version and proxy

#[tokio::test]
async fn tls_1_2_server_reports_its_version() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &root);
    let server = start_tls_server_speaking(
        &[&rustls::version::TLS12],
        vec![leaf.der.clone()],
        &leaf.key,
    )
    .await;
    let ca = ca_file(&[&root.pem]);
    let m = scrape(&config(server.addr.port(), ca.path(), "")).await;
    assert_eq!(version(&m), ["TLS 1.2"]);
    assert_eq!(m.get("glitchtip_tls_cert_valid", &[("target", "gt")]), 1.0);
}

/// A CONNECT proxy on 127.0.0.1 that tunnels every request to `upstream` and keeps the
/// request lines it saw.
async fn start_connect_proxy(
    upstream: SocketAddr,
) -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<String>>>,
    JoinHandle<()>,
) {
    start_connect_proxy_asking(upstream, None).await
}

/// [`start_connect_proxy`] that answers 407 unless the request carries
/// `Proxy-Authorization: <credentials>`.
async fn start_connect_proxy_asking(
    upstream: SocketAddr,
    credentials: Option<&'static str>,
) -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<String>>>,
    JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut tunnels = tokio::task::JoinSet::new();
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tunnels.spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                log.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or_default().to_owned());
                if let Some(credentials) = credentials {
                    let authorized = head.lines().any(|line| {
                        line.split_once(':').is_some_and(|(name, value)| {
                            name.eq_ignore_ascii_case("proxy-authorization")
                                && value.trim() == credentials
                        })
                    });
                    if !authorized {
                        let _ = client
                            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"p\"\r\n\r\n")
                            .await;
                        return;
                    }
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
            while tunnels.try_join_next().is_some() {}
        }
    });
    (addr, seen, task)
}

#[tokio::test]
async fn target_proxy_is_tunnelled_through() {
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &root);
    let server = start_tls_server(vec![leaf.der.clone()], &leaf.key).await;
    let (proxy, seen, proxy_task) = start_connect_proxy(server.addr).await;
    let ca = ca_file(&[&root.pem]);
    // The target's port is unused: only the proxy knows the way.
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"https://{TEST_HOST}:1\"\nproxy = \"http://{proxy}\"\ndefault_checks = false\n[targets.gt.tls]\nca_file = \"{}\"\n[targets.gt.checks.tls]\n",
        ca.path().display()
    );
    let m = scrape(&toml).await;
    proxy_task.abort();
    assert_eq!(m.get("glitchtip_tls_cert_valid", &[("target", "gt")]), 1.0);
    assert_eq!(
        *seen.lock().unwrap(),
        [format!("CONNECT {TEST_HOST}:1 HTTP/1.1")]
    );
}

#[tokio::test]
async fn proxy_credentials_open_the_tunnel_and_without_them_the_reason_is_proxy() {
    let root = root_ca(ROOT_CN, 3650);
    // Valid at the real time too, which the HTTP checks' verifier uses.
    let leaf = leaf(&[TEST_HOST], -900, 900, &root);
    let server = start_tls_server(vec![leaf.der.clone()], &leaf.key).await;
    // monitor:hunter2
    let (proxy, seen, proxy_task) =
        start_connect_proxy_asking(server.addr, Some("Basic bW9uaXRvcjpodW50ZXIy")).await;
    let ca = ca_file(&[&root.pem]);
    let right = crate::redirects::secret_file("hunter2");
    let wrong = crate::redirects::secret_file("hunter3");
    let toml = |password: &Path| {
        format!(
            "[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"https://{TEST_HOST}:1\"\nproxy = \"http://{proxy}\"\nproxy_auth = {{ username = \"monitor\", password = {{ file = \"{}\" }} }}\ndefault_checks = false\n[targets.gt.tls]\nca_file = \"{}\"\n[targets.gt.checks.tls]\n[targets.gt.checks.health]\npath = \"/\"\nexpect_status = [200]\n",
            password.display(),
            ca.path().display()
        )
    };
    let m = scrape(&toml(right.path())).await;
    assert_eq!(m.get("glitchtip_tls_cert_valid", &[("target", "gt")]), 1.0);
    assert_eq!(m.reason("gt", "health"), "none");
    assert_eq!(seen.lock().unwrap().len(), 2);

    let m = scrape(&toml(wrong.path())).await;
    proxy_task.abort();
    assert_tls(&m, &no_certificate("proxy"));
    assert_eq!(m.reason("gt", "health"), "proxy");
}

#[tokio::test]
async fn a_redirect_from_https_to_http_is_refused_unless_allowed() {
    let plain = crate::redirects::Recorder::start(|_| crate::redirects::ok()).await;
    let root = root_ca(ROOT_CN, 3650);
    // Valid at the real time too, which the HTTP checks' verifier uses.
    let leaf = leaf(&[TEST_HOST], -900, 900, &root);
    let key = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(leaf.key.serialize_der().into()))
        .unwrap();
    let answer = crate::redirects::redirect(&format!("http://{TEST_HOST}:{}/", plain.addr.port()));
    let server = start_answering(
        rustls::DEFAULT_VERSIONS,
        Arc::new(CertifiedKey::new(vec![leaf.der.clone()], key)),
        answer.into_bytes(),
    )
    .await;
    let ca = ca_file(&[&root.pem]);
    let token = crate::redirects::secret_file("t0ken");
    let toml = |allow: bool| {
        format!(
            "[server]\nmode = \"scrape\"\n[targets.gt]\nurl = \"https://{TEST_HOST}:{}\"\ndefault_checks = false\n[targets.gt.tls]\nca_file = \"{}\"\n[targets.gt.checks.health]\npath = \"/\"\nfollow_redirects = true\nallow_https_to_http_redirect = {allow}\nbearer_token = {{ file = \"{}\" }}\n",
            server.addr.port(),
            ca.path().display(),
            token.path().display()
        )
    };
    let m = scrape(&toml(false)).await;
    assert_eq!(m.reason("gt", "health"), "http");
    assert_eq!(m.check("glitchtip_http_status_code", "gt", "health"), 302.0);
    assert!(plain.heads().is_empty(), "{:?}", plain.heads());

    let m = scrape(&toml(true)).await;
    assert_eq!(m.reason("gt", "health"), "none");
    let heads = plain.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    // Another scheme is another origin: the token stays behind.
    assert!(!heads[0].contains("authorization"), "{}", heads[0]);
}

#[tokio::test]
async fn key_that_does_not_match_the_certificate_fails_the_handshake_after_it_was_read() {
    // The server signs with another key than the certificate's: no client completes the
    // handshake, but the certificate arrived and its expiry is known.
    let root = root_ca(ROOT_CN, 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &root);
    let other_key = KeyPair::generate().unwrap();
    let m = scrape_chain(vec![leaf.der.clone()], &other_key, &[&root.pem]).await;
    assert_tls(
        &m,
        &Expect {
            reason: "handshake",
            valid: Some(0.0),
            expiry_days: Some(90),
            leaf_days: Some(90),
            earliest_presented_days: Some(90),
            earliest_verified_days: Some(90),
        },
    );
    assert!(version(&m).is_empty());
}

// ---------------------------------------------------------------------------------------
// A self-signed certificate marked CA, trusted through ca_file

/// A certificate as `openssl req -x509 -addext subjectAltName=…` makes it: self-signed,
/// basicConstraints CA:TRUE, no key usage or extended key usage (openssl's default
/// `v3_ca`), for 127.0.0.1 and localhost. Valid around both the manual clock and the real
/// time (the HTTP checks verify at the real time).
fn openssl_like_self_signed() -> (Leaf, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = params("127.0.0.1", &["127.0.0.1", "localhost"], -1000, 3650, 7);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    let pem = cert.pem();
    (
        Leaf {
            der: cert.der().clone(),
            key,
        },
        pem,
    )
}

/// Target `gt` at `https://127.0.0.1:PORT` trusting `ca`, with the tls check and one HTTP
/// check `page`.
fn self_signed_config(port: u16, ca: &Path) -> String {
    format!(
        r#"
[server]
mode = "scrape"
[targets.gt]
url = "https://127.0.0.1:{port}"
default_checks = false
timeout = "2s"
[targets.gt.tls]
ca_file = "{ca}"
[targets.gt.checks.tls]
[targets.gt.checks.page]
path = "/"
"#,
        ca = ca.display()
    )
}

#[tokio::test]
async fn trusted_self_signed_ca_certificate_is_valid_for_http_and_tls_checks() {
    let (cert, pem) = openssl_like_self_signed();
    let server = start_tls_server(vec![cert.der.clone()], &cert.key).await;
    let ca = ca_file(&[&pem]);
    let m = scrape(&self_signed_config(server.addr.port(), ca.path())).await;
    assert_eq!(m.check("glitchtip_up", "gt", "page"), 1.0);
    assert_eq!(m.reason("gt", "page"), "none");
    assert_tls(
        &m,
        &Expect {
            reason: "none",
            valid: Some(1.0),
            expiry_days: Some(3650),
            leaf_days: Some(3650),
            earliest_presented_days: Some(3650),
            earliest_verified_days: Some(3650),
        },
    );
}

#[tokio::test]
async fn untrusted_self_signed_ca_certificate_still_fails() {
    // The same kind of certificate, but the CA file holds another one.
    let (cert, _) = openssl_like_self_signed();
    let (_, other_pem) = openssl_like_self_signed();
    let server = start_tls_server(vec![cert.der.clone()], &cert.key).await;
    let ca = ca_file(&[&other_pem]);
    let m = scrape(&self_signed_config(server.addr.port(), ca.path())).await;
    assert_eq!(m.check("glitchtip_up", "gt", "page"), 0.0);
    assert_eq!(m.reason("gt", "page"), "tls");
    assert_eq!(m.check("glitchtip_up", "gt", "tls"), 0.0);
    assert_eq!(m.get("glitchtip_tls_cert_valid", &[("target", "gt")]), 0.0);
    let reasons = m.find("glitchtip_tls_failure_reason", &[("target", "gt")]);
    assert_eq!(reasons[0].0["reason"], "invalid_certificate");
}

#[tokio::test]
async fn trusted_self_signed_ca_certificate_for_another_name_fails() {
    // Trusted as it is, the certificate must still name the server.
    let key = KeyPair::generate().unwrap();
    let mut p = params("other.test", &["other.test"], -1000, 3650, 8);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    let server = start_tls_server(vec![cert.der().clone()], &key).await;
    let ca = ca_file(&[&cert.pem()]);
    let m = scrape(&self_signed_config(server.addr.port(), ca.path())).await;
    assert_eq!(m.reason("gt", "page"), "tls");
    let reasons = m.find("glitchtip_tls_failure_reason", &[("target", "gt")]);
    assert_eq!(reasons[0].0["reason"], "hostname_mismatch");
}

/// Terminates TLS with `cert` on 127.0.0.1 and relays each connection to `backend`.
async fn start_tls_relay(cert: &Leaf, backend: SocketAddr) -> TlsServer {
    let key = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(cert.key.serialize_der().into()))
        .unwrap();
    let certified = Arc::new(CertifiedKey::new(vec![cert.der.clone()], key));
    serve_tls(
        rustls::DEFAULT_VERSIONS,
        certified,
        move |mut tls| async move {
            let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        },
    )
    .await
}

#[tokio::test]
async fn canary_trusts_a_self_signed_ca_certificate_from_ca_file() {
    use crate::stub_ingest::{self, KEY, PROJECT_ID, StubIngest, TOKEN};
    let stub = StubIngest::start(stub_ingest::Mode::Healthy {
        visible_after: Duration::from_millis(100),
    })
    .await;
    let (cert, pem) = openssl_like_self_signed();
    let relay = start_tls_relay(&cert, stub.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    std::fs::write(
        dir.path().join("dsn"),
        format!(
            "https://{KEY}@127.0.0.1:{}/{PROJECT_ID}\n",
            relay.addr.port()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let toml = format!(
        r#"
[targets.stub]
url = "https://127.0.0.1:{port}"
default_checks = false
[targets.stub.tls]
ca_file = "{ca}"
[targets.stub.canary]
dsn = {{ file = "{dir}/dsn" }}
token = {{ file = "{dir}/token" }}
organization = "{org}"
interval = "600ms"
timeout = "500ms"
"#,
        port = relay.addr.port(),
        ca = ca.display(),
        dir = dir.path().display(),
        org = stub_ingest::ORG,
    );
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    let s = exporter
        .wait_for("a visible canary", &["glitchtip_ingest"], |s| {
            !s.find(
                "glitchtip_probe_failure_reason",
                &[("target", "stub"), ("check", "canary")],
            )
            .is_empty()
        })
        .await;
    assert_eq!(s.reason("stub", "canary"), "none");
    assert_eq!(s.get("glitchtip_ingest_up", &[("target", "stub")]), 1.0);
    assert_eq!(stub.violations(), Vec::<String>::new());
    exporter.stop().await;
}

/// The landing page names the TLS reason in words and the days until expiry.
#[tokio::test]
async fn landing_page_says_the_tls_reason_in_words_and_days_to_expiry() {
    let trusted = root_ca(ROOT_CN, 3650);
    let unknown = root_ca("Unknown CA", 3650);
    let leaf = leaf(&[TEST_HOST], -10, 90, &unknown);
    let server = start_tls_server(vec![leaf.der.clone(), unknown.der.clone()], &leaf.key).await;
    let ca = ca_file(&[&trusted.pem]);
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&config(server.addr.port(), ca.path(), ""), deps).await;
    exporter.metrics().await;
    let page = exporter.get("/").await.body;
    exporter.stop().await;
    assert!(
        page.contains(
            "TLS: the chain does not lead to a trusted root (unknown_issuer); expires in 90 days"
        ),
        "{page}"
    );
    assert!(page.contains("1 of 1 checks failing"), "{page}");
}
