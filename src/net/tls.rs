//! rustls client configurations.
//!
//! A configuration (root store, extra CA, verification policy) is built once per distinct
//! set of options when the config is loaded and shared by every check that uses it:
//! building one per probe would parse the root store on the hot path.
//!
//! Trust is the Mozilla root program as shipped in `webpki-roots`, compiled into the binary,
//! so that the static binary behaves the same on every host, plus an optional extra CA file
//! (PEM) per target or check for private CAs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::x509::TrustRoots;

/// Errors building a TLS client configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// Occurs when the CA file cannot be read (missing, not a regular file, too large).
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        /// The configured path.
        path: PathBuf,
        /// Why.
        source: crate::files::FileError,
    },
    /// Occurs when the CA file is not valid PEM.
    #[error("CA file {path} is not valid PEM: {source}")]
    BadPem {
        /// The configured path.
        path: PathBuf,
        /// What the PEM parser objected to.
        source: rustls::pki_types::pem::Error,
    },
    /// Occurs when the CA file holds no PEM certificate.
    #[error("CA file {path} holds no PEM certificate")]
    NoCertificates {
        /// The configured path.
        path: PathBuf,
    },
    /// Occurs when a certificate of the CA file is not a usable trust anchor.
    #[error("CA file {path} holds a certificate that is not a usable CA: {source}")]
    BadCertificate {
        /// The configured path.
        path: PathBuf,
        /// What rustls objected to.
        source: rustls::Error,
    },
}

/// The process-wide crypto provider (ring): one choice, made here.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The built-in trust anchors plus the certificates of `ca_file`, if any.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsConfigError> {
    trust(ca_file).map(|(roots, _)| roots)
}

/// [`root_store`] and the certificates of `ca_file` as read (none without one).
pub(crate) fn trust(
    ca_file: Option<&Path>,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsConfigError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(path) = ca_file else {
        return Ok((roots, Vec::new()));
    };
    let certs = read_pem_certs(path)?;
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|source| TlsConfigError::BadCertificate {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok((roots, certs))
}

/// Reads every PEM certificate of `path`; an empty file is an error.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = crate::files::read_bounded(path, crate::files::MAX_FILE_BYTES).map_err(|source| {
        TlsConfigError::ReadCa {
            path: path.to_owned(),
            source,
        }
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsConfigError::BadPem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// A client configuration for HTTP/1.1 probes.
pub fn http_client_config(
    ca_file: Option<&Path>,
    insecure_skip_verify: bool,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let mut config = if insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider())))
            .with_no_client_auth()
    } else {
        let (roots, trusted) = trust(ca_file)?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("a root store with the built-in roots is never empty");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustedLeafVerifier { inner, trusted }))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every probe makes a full handshake: a resumed session would skip the certificate
    // (a replaced, expired certificate would go unseen until the ticket expires) and make
    // the `tls` phase time a resumption's.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// Whether `leaf` is, byte for byte, one of the `trusted` certificates of a CA file.
pub fn is_trusted_leaf(trusted: &[CertificateDer<'_>], leaf: &[u8]) -> bool {
    trusted.iter().any(|cert| cert.as_ref() == leaf)
}

/// The configured trust (webpki-roots plus the CA file) that also accepts a server
/// certificate that is itself in the CA file, as curl and Go's crypto/x509 (so
/// blackbox_exporter) do: a self-signed certificate made with `openssl req -x509` is marked
/// CA:TRUE, which webpki refuses as a server's certificate (`CaUsedAsEndEntity`). Such a
/// certificate must still be valid now and name the server; the handshake signatures are
/// verified with its key as always, so the server proves it holds the key.
#[derive(Debug)]
struct TrustedLeafVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The CA file's certificates, as read.
    trusted: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for TrustedLeafVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if verified.is_ok() || !is_trusted_leaf(&self.trusted, end_entity) {
            return verified;
        }
        use rustls::CertificateError as E;
        let validity = super::x509::validity(end_entity).ok_or(E::BadEncoding)?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < validity.not_before {
            return Err(E::NotValidYet.into());
        }
        if now > validity.not_after {
            return Err(E::Expired.into());
        }
        webpki::EndEntityCert::try_from(end_entity)
            .and_then(|ee| ee.verify_is_valid_for_subject_name(server_name))
            .map_err(|_| E::NotValidForName)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds each distinct client configuration, and each distinct set of trust roots of the
/// TLS check, once while a config is loaded.
#[derive(Default)]
pub struct ClientConfigCache {
    built: HashMap<(Option<PathBuf>, bool), Arc<ClientConfig>>,
    roots: HashMap<Option<PathBuf>, Arc<TrustRoots>>,
}

impl ClientConfigCache {
    /// The TLS check's trust roots for this CA file, loaded on first use.
    pub fn trust_roots(
        &mut self,
        ca_file: Option<&Path>,
    ) -> Result<Arc<TrustRoots>, TlsConfigError> {
        let key = ca_file.map(Path::to_owned);
        if let Some(roots) = self.roots.get(&key) {
            return Ok(roots.clone());
        }
        let roots = Arc::new(TrustRoots::load(ca_file)?);
        self.roots.insert(key, roots.clone());
        Ok(roots)
    }

    /// A hash of the CA file's certificates (0 without one), for the fingerprint of the
    /// checks that use it: a CA file rewritten in place then restarts them on reload.
    pub fn ca_digest(&mut self, ca_file: Option<&Path>) -> Result<u64, TlsConfigError> {
        match ca_file {
            Some(_) => Ok(self.trust_roots(ca_file)?.digest()),
            None => Ok(0),
        }
    }

    /// The configuration for these options, built on first use.
    pub fn get(
        &mut self,
        ca_file: Option<&Path>,
        insecure_skip_verify: bool,
    ) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let key = (ca_file.map(Path::to_owned), insecure_skip_verify);
        if let Some(config) = self.built.get(&key) {
            return Ok(config.clone());
        }
        let config = http_client_config(ca_file, insecure_skip_verify)?;
        self.built.insert(key, config.clone());
        Ok(config)
    }
}

/// A verifier that accepts any certificate chain — still checking that the handshake
/// signatures are made with the presented key. Behind `insecure_skip_verify`, and, in its
/// recording form, behind the TLS check, which must read the chain even when clients would
/// reject it and verifies it separately.
#[derive(Debug)]
pub struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
    /// The presented chain, when recording. std Mutex: written once during the handshake,
    /// read after it.
    chain: Option<Mutex<Option<Vec<CertificateDer<'static>>>>>,
}

impl AcceptAnyCertificate {
    /// Accepts without keeping anything.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            chain: None,
        }
    }

    /// Accepts and keeps the presented chain for [`Self::take_chain`]; one per handshake.
    pub fn recording(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            chain: Some(Mutex::new(None)),
        }
    }

    /// A client configuration using this verifier.
    pub fn client_config(self: &Arc<Self>) -> Arc<ClientConfig> {
        self.client_config_speaking(rustls::DEFAULT_VERSIONS)
    }

    /// [`Self::client_config`] offering only `versions`.
    pub fn client_config_speaking(
        self: &Arc<Self>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        // One handshake per configuration: a session cache would never be used.
        config.resumption = Resumption::disabled();
        Arc::new(config)
    }

    /// The chain presented in the handshake (leaf first), when recording.
    pub fn take_chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.chain
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(slot) = &self.chain {
            let chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(chain);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self
            .provider
            .signature_verification_algorithms
            .supported_schemes();
        // When recording, also P-521, which ring cannot verify: a server with such a key
        // then sends its certificate (else it gives up before) and the handshake fails
        // only after the chain was recorded, so that its expiry is known.
        if self.chain.is_some() && !schemes.contains(&SignatureScheme::ECDSA_NISTP521_SHA512) {
            schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        }
        schemes
    }
}
