//! Certificate chains judged apart from the handshake: parsing (`x509-parser`) and
//! verification (`rustls-webpki`) as pure functions over the certificates a server
//! presented, at a given instant.
//!
//! A prober that wants to report on a bad certificate cannot let the handshake verify it:
//! the handshake would refuse an expired or self-signed chain before anything could be
//! read from it. So the prober accepts whatever chain arrives and asks [`inspect`] what it
//! is worth, at the time of the injected clock, against the same trust as the HTTP checks
//! ([`super::tls::root_store`]: webpki-roots plus an optional extra CA file).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::tls::{TlsConfigError, is_trusted_leaf, provider, trust};

/// The trust a chain is verified against, built once when the config is loaded.
pub struct TrustRoots {
    anchors: Vec<TrustAnchor<'static>>,
    /// The extra CA certificates' own `notAfter`, by the trust anchor each became: a trust
    /// anchor carries no validity, so a root's expiry is known only when its certificate
    /// is (the built-in roots are anchors without certificates).
    known: Vec<(TrustAnchor<'static>, i64)>,
    /// Hash of the extra CA certificates, so that a reload notices a changed CA file.
    digest: u64,
    /// The extra CA certificates as read: a server certificate that is one of them is
    /// trusted as it is (see [`super::tls::is_trusted_leaf`]).
    trusted: Vec<CertificateDer<'static>>,
}

impl TrustRoots {
    /// The built-in roots plus the certificates of `ca_file`, if any. The errors name the
    /// file, as for the HTTP checks.
    pub fn load(ca_file: Option<&Path>) -> Result<Self, TlsConfigError> {
        let (roots, trusted) = trust(ca_file)?;
        let anchors = roots.roots;
        let mut known = Vec::new();
        let mut hasher = DefaultHasher::new();
        for der in &trusted {
            der.as_ref().hash(&mut hasher);
            // root_store accepted every one of them; a failure here only loses the root's
            // expiry.
            let Ok(anchor) = webpki::anchor_from_trusted_cert(der) else {
                continue;
            };
            if let Some(times) = validity(der) {
                known.push((anchor.to_owned(), times.not_after));
            }
        }
        Ok(Self {
            anchors,
            known,
            digest: hasher.finish(),
            trusted,
        })
    }

    /// A hash of the extra CA certificates (not of the built-in roots).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    fn root_not_after(&self, anchor: &TrustAnchor<'_>) -> Option<i64> {
        self.known
            .iter()
            .find(|(known, _)| {
                known.subject.as_ref() == anchor.subject.as_ref()
                    && known.subject_public_key_info.as_ref()
                        == anchor.subject_public_key_info.as_ref()
            })
            .map(|(_, not_after)| *not_after)
    }
}

impl std::fmt::Debug for TrustRoots {
    // Not derived: a hundred and more anchors say nothing in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoots")
            .field("anchors", &self.anchors.len())
            .field("extra_with_certificate", &self.known.len())
            .finish()
    }
}

/// A certificate problem. The order is the precedence: when several apply, the first one
/// is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// The leaf, or a certificate the verification needed, is past its `notAfter`.
    Expired,
    /// The leaf, or a certificate the verification needed, is before its `notBefore`.
    NotYetValid,
    /// The leaf does not name the server (SAN DNS name or IP address).
    HostnameMismatch,
    /// The chain does not verify and the leaf is its own issuer.
    SelfSigned,
    /// The chain does not lead to a trusted root: unknown CA or missing intermediate.
    UnknownIssuer,
    /// A certificate's signature does not verify with its issuer's key.
    BadSignature,
    /// A certificate carries a critical extension that clients do not understand.
    UnsupportedCriticalExtension,
    /// A certificate clients refuse for what it is rather than who signed it: not for a
    /// TLS server (key usage), a CA used as a leaf, an unsupported signature algorithm,
    /// malformed fields.
    InvalidCertificate,
}

impl Problem {
    /// The problem a verifier error names; `self_issued` tells an untrusted self-signed
    /// leaf from an unknown issuer.
    fn of(error: &webpki::Error, self_issued: bool) -> Self {
        use webpki::Error as E;
        match error {
            E::CertExpired { .. } => Problem::Expired,
            E::CertNotValidYet { .. } => Problem::NotYetValid,
            E::UnknownIssuer if self_issued => Problem::SelfSigned,
            // Path building gave up before it found a way to a trusted root.
            E::UnknownIssuer
            | E::MaximumSignatureChecksExceeded
            | E::MaximumPathBuildCallsExceeded
            | E::MaximumPathDepthExceeded => Problem::UnknownIssuer,
            E::InvalidSignatureForPublicKey => Problem::BadSignature,
            E::UnsupportedCriticalExtension => Problem::UnsupportedCriticalExtension,
            _ => Problem::InvalidCertificate,
        }
    }
}

/// What a presented chain is worth at one instant. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The leaf's `notAfter`.
    pub leaf_not_after: i64,
    /// The earliest `notAfter` among the presented certificates that could be parsed.
    pub earliest_presented: i64,
    /// The earliest `notAfter` of the verified path — leaf, intermediates, and the root
    /// when its certificate is known (from the extra CA file); `None` when the chain does
    /// not verify to a trusted root.
    pub earliest_verified: Option<i64>,
    /// The first problem; `None` when the chain verifies, is valid now and names the
    /// server.
    pub problem: Option<Problem>,
    /// Who the leaf is, for the info metric (not length-capped here).
    pub leaf: LeafIdentity,
}

impl ChainReport {
    /// The `notAfter` clients rely on: the verified path's earliest when the chain
    /// verifies (an extra expired cross-signed certificate that clients skip does not
    /// count), else the earliest presented.
    pub fn relied_not_after(&self) -> i64 {
        self.earliest_verified.unwrap_or(self.earliest_presented)
    }
}

/// The leaf certificate's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafIdentity {
    /// Subject distinguished name, RFC 4514 style (`CN=glitchtip.example.com`).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, lowercase hexadecimal without leading zeros.
    pub serial: String,
    /// SHA-256 of the certificate's DER, lowercase hexadecimal.
    pub fingerprint_sha256: String,
}

/// Why a chain could not be judged at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Occurs when the server sent an empty certificate list.
    #[error("the server presented no certificate")]
    Empty,
    /// Occurs when the leaf certificate is not DER-encoded X.509.
    #[error("the server's certificate is not valid X.509: {0}")]
    Unparseable(String),
}

/// Judges `chain` (leaf first, as presented) for `server_name` against `roots` at `now`.
pub fn inspect(
    chain: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    roots: &TrustRoots,
    now: SystemTime,
) -> Result<ChainReport, ChainError> {
    let (leaf_der, intermediates) = chain.split_first().ok_or(ChainError::Empty)?;
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| ChainError::Unparseable(e.to_string()))?;
    let leaf_times = Validity {
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
    };
    let earliest_presented = intermediates
        .iter()
        .filter_map(|der| validity(der).map(|v| v.not_after))
        .fold(leaf_times.not_after, i64::min);

    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    let algorithms = provider().signature_verification_algorithms.all;
    let (earliest_verified, chain_error, name_ok) = match EndEntityCert::try_from(leaf_der) {
        Ok(ee) => {
            let verified = ee.verify_for_usage(
                algorithms,
                &roots.anchors,
                intermediates,
                UnixTime::since_unix_epoch(since_epoch),
                KeyUsage::server_auth(),
                None,
                None,
            );
            let (earliest, error) = match verified {
                Ok(path) => {
                    let path_not_after = path
                        .intermediate_certificates()
                        .filter_map(|cert| validity(&cert.der()).map(|v| v.not_after))
                        .chain(roots.root_not_after(path.anchor()))
                        .fold(leaf_times.not_after, i64::min);
                    (Some(path_not_after), None)
                }
                // A server certificate that is itself trusted (a self-signed one marked CA,
                // as `openssl req -x509` makes it) is its own verified path.
                Err(_) if is_trusted_leaf(&roots.trusted, leaf_der) => {
                    (Some(leaf_times.not_after), None)
                }
                Err(e) => (None, Some(e)),
            };
            let name_ok = ee.verify_is_valid_for_subject_name(server_name).is_ok();
            (earliest, error, Some(name_ok))
        }
        // x509-parser read it but webpki cannot: it verifies nothing, and whom it names
        // is not known (not a mismatch: the reason is why webpki refused it).
        Err(e) => (None, Some(e), None),
    };

    let expired = now_secs > leaf_times.not_after
        || matches!(chain_error, Some(webpki::Error::CertExpired { .. }));
    let not_yet_valid = now_secs < leaf_times.not_before
        || matches!(chain_error, Some(webpki::Error::CertNotValidYet { .. }));
    let problem = if expired {
        Some(Problem::Expired)
    } else if not_yet_valid {
        Some(Problem::NotYetValid)
    } else if name_ok == Some(false) {
        Some(Problem::HostnameMismatch)
    } else {
        let self_issued = leaf.subject().as_raw() == leaf.issuer().as_raw();
        chain_error.map(|e| Problem::of(&e, self_issued))
    };

    Ok(ChainReport {
        leaf_not_after: leaf_times.not_after,
        earliest_presented,
        earliest_verified,
        problem,
        leaf: LeafIdentity {
            subject: leaf.subject().to_string(),
            issuer: leaf.issuer().to_string(),
            serial: leaf.serial.to_str_radix(16),
            fingerprint_sha256: hex(ring::digest::digest(&ring::digest::SHA256, leaf_der).as_ref()),
        },
    })
}

/// A certificate's validity period, Unix seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validity {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// The validity period of a DER certificate, if it parses.
pub(crate) fn validity(der: &[u8]) -> Option<Validity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    use super::*;

    const T: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn params(sans: &[&str], not_before: u64, not_after: u64) -> CertificateParams {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut p = CertificateParams::new(sans).unwrap();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        p.not_before = epoch + Duration::from_secs(not_before);
        p.not_after = epoch + Duration::from_secs(not_after);
        p
    }

    /// A trusted root (in a CA file) and a leaf for `glitchtip.test` it signed.
    fn chain(not_before: u64, not_after: u64) -> (TrustRoots, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = params(&[], T - 1000 * DAY, T + 1000 * DAY);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = params(&["glitchtip.test"], not_before, not_after)
            .signed_by(&key, &issuer)
            .unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), ca_cert.pem()).unwrap();
        let roots = TrustRoots::load(Some(file.path())).unwrap();
        (roots, leaf.der().clone())
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn name() -> ServerName<'static> {
        ServerName::try_from("glitchtip.test").unwrap()
    }

    #[test]
    fn clock_moved_past_not_after_turns_a_valid_chain_expired() {
        let not_after = T + 3 * DAY;
        let (roots, leaf) = chain(T - DAY, not_after);
        let before = inspect(std::slice::from_ref(&leaf), &name(), &roots, at(T)).unwrap();
        assert_eq!(before.problem, None);
        assert_eq!(before.earliest_verified, Some(not_after as i64));
        assert_eq!(before.relied_not_after(), not_after as i64);
        // notAfter itself is still inside the validity period.
        let at_end = inspect(std::slice::from_ref(&leaf), &name(), &roots, at(not_after));
        assert_eq!(at_end.unwrap().problem, None);

        let after = inspect(&[leaf], &name(), &roots, at(not_after + 1)).unwrap();
        assert_eq!(after.problem, Some(Problem::Expired));
        assert_eq!(after.earliest_verified, None);
        assert_eq!(after.relied_not_after(), not_after as i64);
        assert_eq!(after.leaf_not_after, not_after as i64);
    }

    #[test]
    fn clock_before_not_before_is_not_yet_valid() {
        let (roots, leaf) = chain(T + DAY, T + 90 * DAY);
        let report = inspect(&[leaf], &name(), &roots, at(T)).unwrap();
        assert_eq!(report.problem, Some(Problem::NotYetValid));
        assert_eq!(report.earliest_presented, (T + 90 * DAY) as i64);
    }

    #[test]
    fn other_name_is_a_hostname_mismatch_of_a_verified_chain() {
        let (roots, leaf) = chain(T - DAY, T + DAY);
        let other = ServerName::try_from("other.test").unwrap();
        let report = inspect(&[leaf], &other, &roots, at(T)).unwrap();
        assert_eq!(report.problem, Some(Problem::HostnameMismatch));
        assert_eq!(report.earliest_verified, Some((T + DAY) as i64));
    }

    /// A trusted root, and the leaf `leaf` signed by `signer` in the root's name (the
    /// root's own key unless another is given).
    fn judged(leaf: CertificateParams, signer: Option<KeyPair>) -> Option<Problem> {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = params(&[], T - 1000 * DAY, T + 1000 * DAY);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, signer.unwrap_or(ca_key));
        let key = KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&key, &issuer).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), ca_cert.pem()).unwrap();
        let roots = TrustRoots::load(Some(file.path())).unwrap();
        inspect(&[leaf.der().clone()], &name(), &roots, at(T))
            .unwrap()
            .problem
    }

    #[test]
    fn each_verifier_error_is_the_problem_it_names() {
        let leaf = || params(&["glitchtip.test"], T - DAY, T + DAY);
        assert_eq!(judged(leaf(), None), None);
        // Signed in the root's name with another key.
        let forger = KeyPair::generate().unwrap();
        assert_eq!(judged(leaf(), Some(forger)), Some(Problem::BadSignature));
        // A CA certificate serving as the leaf.
        let mut ca_leaf = leaf();
        ca_leaf.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        assert_eq!(judged(ca_leaf, None), Some(Problem::InvalidCertificate));
        // Only for TLS clients, not servers.
        let mut client_only = leaf();
        client_only.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        assert_eq!(judged(client_only, None), Some(Problem::InvalidCertificate));
        // webpki cannot even parse it: not a hostname mismatch, which was reported before.
        let mut critical = leaf();
        let mut extension =
            rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![5, 0]);
        extension.set_criticality(true);
        critical.custom_extensions.push(extension);
        assert_eq!(
            judged(critical, None),
            Some(Problem::UnsupportedCriticalExtension)
        );
    }

    #[test]
    fn leaf_identity_is_read() {
        let (roots, leaf) = chain(T - DAY, T + DAY);
        let report = inspect(std::slice::from_ref(&leaf), &name(), &roots, at(T)).unwrap();
        assert_eq!(report.leaf.subject, "CN=rcgen self signed cert");
        assert_eq!(report.leaf.issuer, "CN=rcgen self signed cert");
        assert_eq!(report.leaf.fingerprint_sha256.len(), 64);
        assert!(!report.leaf.serial.is_empty());
    }

    #[test]
    fn empty_or_unparseable_chain_is_an_error_not_a_panic() {
        let roots = TrustRoots::load(None).unwrap();
        assert_eq!(inspect(&[], &name(), &roots, at(T)), Err(ChainError::Empty));
        for garbage in [&b""[..], b"\x30", b"\x30\x03\x02\x01\x00", &[0xff; 300]] {
            let der = CertificateDer::from(garbage.to_vec());
            assert!(matches!(
                inspect(&[der], &name(), &roots, at(T)),
                Err(ChainError::Unparseable(_))
            ));
        }
    }

    #[test]
    fn unparseable_intermediate_is_skipped_and_fails_verification() {
        let (roots, leaf) = chain(T - DAY, T + DAY);
        let junk = CertificateDer::from(vec![0x30, 0x00]);
        let report = inspect(&[leaf, junk], &name(), &roots, at(T)).unwrap();
        // The leaf is signed by a trusted root directly: the junk is simply not needed.
        assert_eq!(report.problem, None);
        assert_eq!(report.earliest_presented, (T + DAY) as i64);
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let err = TrustRoots::load(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read CA file /nonexistent/ca.pem: "),
            "{err}"
        );
    }
}
