//! The TLS prober: its own handshake, which reads the full presented chain whatever it is
//! worth, then judges that chain with [`crate::net::x509`] at the injected clock's time.
//!
//! The handshake accepts any certificate (the handshake signatures are still checked
//! against the presented key), so that an expired, self-signed, misnamed or unknown-CA
//! chain is read instead of refused: the expiry metrics matter most exactly when the
//! certificate is bad. The chain is recorded before the handshake signature is checked (a
//! P-521 key, which ring cannot verify, still yields its chain), and a Certificate message
//! over rustls's 64 KiB limit is read off the wire of a second, TLS 1.2-only handshake
//! ([`crate::net::wire`]). Only when no certificate arrives (DNS, connect, proxy, timeout,
//! a handshake that fails before the certificate) are there no certificate findings.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{InvalidMessage, ProtocolVersion};
use tokio::net::TcpStream;

use super::{Failure, Found, Phase, ProbeEnv, Reason, TlsCheck, Trace};
use crate::clock::unix_seconds;
use crate::config::defaults::MAX_LABEL_VALUE_CHARS;
use crate::net::connect::Io;
use crate::net::exchange::open;
use crate::net::tls::{AcceptAnyCertificate, provider};
use crate::net::wire::Tap;
use crate::net::x509::{self, Problem};

/// The name of the TLS check of a target (the `check` label), reserved for it.
pub const CHECK_NAME: &str = "tls";

/// Why the TLS check failed, from a fixed set: the values of the `reason` label of
/// `glitchtip_tls_failure_reason`. When several certificate problems apply, the first in
/// [`TlsReason::ALL`] order wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsReason {
    /// The chain verifies to a trusted root, is within its validity and names the server.
    None,
    /// A certificate is past its `notAfter`.
    Expired,
    /// A certificate is before its `notBefore`.
    NotYetValid,
    /// The leaf does not name the server.
    HostnameMismatch,
    /// The leaf is self-signed and not trusted.
    SelfSigned,
    /// The chain does not lead to a trusted root.
    UnknownIssuer,
    /// A certificate's signature does not verify with its issuer's key.
    BadSignature,
    /// A certificate carries a critical extension clients do not understand.
    UnsupportedCriticalExtension,
    /// A certificate clients refuse for what it is (key usage, a CA as leaf, signature
    /// algorithm, malformed fields).
    InvalidCertificate,
    /// The TLS handshake failed (not TLS, unparseable certificate, protocol error).
    Handshake,
    /// The host name did not resolve.
    Dns,
    /// The TCP connection (or the proxy tunnel) failed.
    Connect,
    /// The deadline passed before the handshake finished.
    Timeout,
    /// The configured HTTP proxy failed (unreachable, tunnel refused, 407).
    Proxy,
    /// The exporter could not open a socket (out of file descriptors): its own failure.
    ExporterResources,
}

impl TlsReason {
    /// Every reason, in precedence order.
    pub const ALL: [TlsReason; 15] = [
        TlsReason::None,
        TlsReason::Expired,
        TlsReason::NotYetValid,
        TlsReason::HostnameMismatch,
        TlsReason::SelfSigned,
        TlsReason::UnknownIssuer,
        TlsReason::BadSignature,
        TlsReason::UnsupportedCriticalExtension,
        TlsReason::InvalidCertificate,
        TlsReason::Handshake,
        TlsReason::Dns,
        TlsReason::Connect,
        TlsReason::Timeout,
        TlsReason::Proxy,
        TlsReason::ExporterResources,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsReason::None => "none",
            TlsReason::Expired => "expired",
            TlsReason::NotYetValid => "not_yet_valid",
            TlsReason::HostnameMismatch => "hostname_mismatch",
            TlsReason::SelfSigned => "self_signed",
            TlsReason::UnknownIssuer => "unknown_issuer",
            TlsReason::BadSignature => "bad_signature",
            TlsReason::UnsupportedCriticalExtension => "unsupported_critical_extension",
            TlsReason::InvalidCertificate => "invalid_certificate",
            TlsReason::Handshake => "handshake",
            TlsReason::Dns => "dns",
            TlsReason::Connect => "connect",
            TlsReason::Timeout => "timeout",
            TlsReason::Proxy => "proxy",
            TlsReason::ExporterResources => "exporter_resources",
        }
    }

    /// The TLS reason of a probe that ended without a certificate.
    pub fn without_certificate(core: Reason) -> Self {
        match core {
            Reason::Dns => TlsReason::Dns,
            Reason::Connect => TlsReason::Connect,
            Reason::Timeout => TlsReason::Timeout,
            Reason::Proxy => TlsReason::Proxy,
            Reason::ExporterResources => TlsReason::ExporterResources,
            _ => TlsReason::Handshake,
        }
    }
}

impl From<Problem> for TlsReason {
    fn from(problem: Problem) -> Self {
        match problem {
            Problem::Expired => TlsReason::Expired,
            Problem::NotYetValid => TlsReason::NotYetValid,
            Problem::HostnameMismatch => TlsReason::HostnameMismatch,
            Problem::SelfSigned => TlsReason::SelfSigned,
            Problem::UnknownIssuer => TlsReason::UnknownIssuer,
            Problem::BadSignature => TlsReason::BadSignature,
            Problem::UnsupportedCriticalExtension => TlsReason::UnsupportedCriticalExtension,
            Problem::InvalidCertificate => TlsReason::InvalidCertificate,
        }
    }
}

/// The TLS protocol versions [`TlsFindings::version`] can name.
pub const VERSIONS: [&str; 2] = ["TLS 1.2", "TLS 1.3"];

/// What a TLS probe found, for the `glitchtip_tls_*` series.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFindings {
    /// The current reason.
    pub reason: TlsReason,
    /// The negotiated protocol version (one of [`VERSIONS`]); `None` when the handshake did
    /// not complete.
    pub version: Option<&'static str>,
    /// `None` when no certificate arrived: then every certificate series is absent.
    pub certificate: Option<CertificateFindings>,
}

impl TlsFindings {
    /// Findings of a probe that ended before a certificate arrived.
    pub fn without_certificate(reason: TlsReason) -> Self {
        Self {
            reason,
            version: None,
            certificate: None,
        }
    }
}

/// What the presented chain is worth. Times are Unix seconds; label values are capped at
/// [`MAX_LABEL_VALUE_CHARS`].
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateFindings {
    /// The chain verifies to a trusted root, is valid now and names the server, and the
    /// handshake completed.
    pub valid: bool,
    /// Seconds from the probe's clock time to the `notAfter` clients rely on (the verified
    /// path's earliest when it verifies, else the earliest presented); negative once
    /// expired.
    pub expiry_seconds: f64,
    /// The leaf's `notAfter`.
    pub leaf_not_after: f64,
    /// The earliest `notAfter` among the presented certificates.
    pub earliest_presented_not_after: f64,
    /// The earliest `notAfter` of the verified path; `None` unless the chain verifies.
    pub earliest_verified_not_after: Option<f64>,
    /// Leaf subject.
    pub subject: String,
    /// Leaf issuer.
    pub issuer: String,
    /// Leaf serial number, hexadecimal.
    pub serial: String,
    /// SHA-256 of the leaf's DER, hexadecimal.
    pub fingerprint_sha256: String,
}

/// Probes `check` once. The dispatcher owns the deadline.
///
/// A probe that read a certificate answers `Ok` — with reason `Tls` when the certificate
/// or the rest of the handshake failed — and the findings; one that did not answers the
/// failure, which the dispatcher turns into findings without a certificate.
pub async fn probe(check: &TlsCheck, env: &ProbeEnv, trace: &mut Trace) -> Result<Found, Failure> {
    let stream = connect(check, env, trace).await?;

    trace.enter(Phase::Tls);
    let (mut attempt, _) = handshake(stream, rustls::DEFAULT_VERSIONS, check).await;
    if attempt.chain.is_none() && attempt.too_large {
        // rustls refuses a Certificate message over 64 KiB, and TLS 1.3 encrypts it: ask
        // again offering only TLS 1.2, which sends it in the clear, and read it off the
        // wire. A server without TLS 1.2 leaves the probe without a certificate.
        if let Ok(stream) = connect(check, env, trace).await {
            trace.enter(Phase::Tls);
            let (retry, tap) = handshake(Tap::new(stream), &[&rustls::version::TLS12], check).await;
            attempt.chain = match (retry.chain, tap) {
                (Some(chain), _) => Some(chain),
                // rustls stopped reading at the message's length: read the rest.
                (None, Some(tap)) => tap.certificates().await,
                (None, None) => None,
            };
        }
    }
    trace.close();
    let Attempt {
        chain,
        version,
        error: handshake_error,
        ..
    } = attempt;
    let Some(chain) = chain else {
        let detail = handshake_error.unwrap_or_else(|| "no certificate arrived".to_owned());
        return Err(Failure::new(Reason::Tls, detail));
    };

    let now = env.clock.now();
    let report = x509::inspect(&chain, &check.server_name, &check.roots, now)
        .map_err(|e| Failure::new(Reason::Tls, e.to_string()))?;
    let reason = match (report.problem, &handshake_error) {
        (Some(problem), _) => TlsReason::from(problem),
        (None, Some(_)) => TlsReason::Handshake,
        (None, None) => TlsReason::None,
    };
    let detail = match (reason, handshake_error) {
        (TlsReason::None, _) => None,
        (TlsReason::Handshake, Some(error)) => Some(error),
        (other, _) => Some(format!("certificate problem: {}", other.as_str())),
    };
    let now = unix_seconds(now);
    let certificate = CertificateFindings {
        valid: reason == TlsReason::None,
        expiry_seconds: report.relied_not_after() as f64 - now,
        leaf_not_after: report.leaf_not_after as f64,
        earliest_presented_not_after: report.earliest_presented as f64,
        earliest_verified_not_after: report.earliest_verified.map(|t| t as f64),
        subject: cap(&report.leaf.subject),
        issuer: cap(&report.leaf.issuer),
        serial: cap(&report.leaf.serial),
        fingerprint_sha256: cap(&report.leaf.fingerprint_sha256),
    };
    Ok(Found {
        reason: if reason == TlsReason::None {
            Reason::None
        } else {
            Reason::Tls
        },
        detail,
        tls: Some(TlsFindings {
            reason,
            version,
            certificate: Some(certificate),
        }),
        ..Found::default()
    })
}

/// A connection to the check's server, through the proxy's tunnel when there is one.
async fn connect(
    check: &TlsCheck,
    env: &ProbeEnv,
    trace: &mut Trace,
) -> Result<TcpStream, Failure> {
    let proxy = check.proxy.as_ref();
    open(env, &check.host, check.port, proxy, true, trace).await
}

/// What one handshake left: the presented chain, whatever it is worth, and how it ended.
struct Attempt {
    chain: Option<Vec<CertificateDer<'static>>>,
    version: Option<&'static str>,
    error: Option<String>,
    /// rustls refused a handshake message over its 64 KiB limit.
    too_large: bool,
}

/// One handshake with `check`'s server over `stream`, offering `versions`; the stream comes
/// back when the handshake failed.
async fn handshake<S: Io + 'static>(
    stream: S,
    versions: &[&'static rustls::SupportedProtocolVersion],
    check: &TlsCheck,
) -> (Attempt, Option<S>) {
    // One verifier per probe, since it holds that probe's chain; the expensive part (the
    // trust roots) lives in the check.
    let recorder = Arc::new(AcceptAnyCertificate::recording(provider()));
    let handshake = tokio_rustls::TlsConnector::from(recorder.client_config_speaking(versions))
        .connect(check.server_name.clone(), stream)
        .into_fallible()
        .await;
    let (version, error, too_large) = match &handshake {
        Ok(tls) => (
            tls.get_ref().1.protocol_version().map(version_label),
            None,
            false,
        ),
        Err((e, _)) => {
            let too_large = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|inner| {
                    matches!(
                        inner,
                        rustls::Error::InvalidMessage(InvalidMessage::HandshakePayloadTooLarge)
                    )
                });
            (None, Some(e.to_string()), too_large)
        }
    };
    let stream = handshake.err().map(|(_, stream)| stream);
    let attempt = Attempt {
        chain: recorder.take_chain(),
        version,
        error,
        too_large,
    };
    (attempt, stream)
}

fn version_label(version: ProtocolVersion) -> &'static str {
    // The client offers only TLS 1.2 and 1.3, so nothing else can be negotiated.
    match version {
        ProtocolVersion::TLSv1_2 => VERSIONS[0],
        _ => VERSIONS[1],
    }
}

/// A server-supplied label value, capped in length.
fn cap(value: &str) -> String {
    value.chars().take(MAX_LABEL_VALUE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn reasons_are_the_contract_in_precedence_order() {
        let labels: Vec<&str> = TlsReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "none",
                "expired",
                "not_yet_valid",
                "hostname_mismatch",
                "self_signed",
                "unknown_issuer",
                "bad_signature",
                "unsupported_critical_extension",
                "invalid_certificate",
                "handshake",
                "dns",
                "connect",
                "timeout",
                "proxy",
                "exporter_resources"
            ]
        );
    }

    fn findings(fingerprint: &str) -> TlsFindings {
        TlsFindings {
            reason: TlsReason::None,
            version: Some("TLS 1.3"),
            certificate: Some(CertificateFindings {
                valid: true,
                expiry_seconds: 86_400.0,
                leaf_not_after: 1_800_086_400.0,
                earliest_presented_not_after: 1_800_086_400.0,
                earliest_verified_not_after: Some(1_800_086_400.0),
                subject: "CN=glitchtip.test".to_owned(),
                issuer: "CN=Test CA".to_owned(),
                serial: "1234".to_owned(),
                fingerprint_sha256: fingerprint.to_owned(),
            }),
        }
    }

    fn rendered(metrics: &Metrics) -> String {
        String::from_utf8(metrics.render()).unwrap()
    }

    #[test]
    fn changed_certificate_replaces_its_info_series() {
        let metrics = Metrics::new();
        metrics.record_tls("gt", Some(&findings("aaaa")));
        assert!(rendered(&metrics).contains("fingerprint_sha256=\"aaaa\""));
        metrics.record_tls("gt", Some(&findings("bbbb")));
        let text = rendered(&metrics);
        assert!(text.contains("fingerprint_sha256=\"bbbb\""), "{text}");
        assert!(!text.contains("fingerprint_sha256=\"aaaa\""), "{text}");
    }

    #[test]
    fn no_certificate_removes_the_certificate_series_and_keeps_the_reason() {
        let metrics = Metrics::new();
        metrics.record_tls("gt", Some(&findings("aaaa")));
        metrics.record_tls(
            "gt",
            Some(&TlsFindings::without_certificate(TlsReason::Connect)),
        );
        let text = rendered(&metrics);
        for gone in [
            "glitchtip_tls_cert_valid{",
            "glitchtip_tls_cert_expiry_seconds{",
            "glitchtip_tls_cert_not_after_timestamp_seconds{",
            "glitchtip_tls_cert_info{",
            "glitchtip_tls_version_info{",
            "reason=\"none\"",
        ] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        assert!(
            text.contains("glitchtip_tls_failure_reason{reason=\"connect\",target=\"gt\"} 1"),
            "{text}"
        );
        metrics.record_tls("gt", None);
        assert!(!rendered(&metrics).contains("glitchtip_tls_"));
    }
}
