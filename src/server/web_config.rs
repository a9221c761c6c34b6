//! The exporter's own endpoints protected the way Prometheus exporters protect theirs: a
//! web-config file in the exporter-toolkit format (`--web.config.file`), so that operators
//! reuse the file they already have.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # PEM chain, leaf first
//!   key_file: server.key           # PEM private key (PKCS#8, PKCS#1 or SEC1)
//!   min_version: TLS12             # TLS12 (default) or TLS13; older versions are refused
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
//!   client_ca_file: clients-ca.crt
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt hashes only
//! ```
//!
//! The file is parsed into a plain tree first and validated here by hand, so that no
//! message ever quotes a value of the file (a password written where a hash belongs is
//! never echoed): messages name the file, the key and what was expected. Relative paths are
//! relative to the web-config file's folder, as in exporter-toolkit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::Value;

use crate::net::tls::provider;

/// Largest web-config, certificate or key file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The validated web config.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS for the listener; `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Users allowed by basic authentication; `None`: no authentication.
    pub users: Option<Arc<BasicAuthUsers>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "users",
                &self
                    .users
                    .as_ref()
                    .map(|u| u.hashes.keys().collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// Errors reading or validating a web-config file.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// Occurs when the file (or a file it names) cannot be read.
    #[error("{}: {}{expected}", file.display(), if key.is_empty() { String::new() } else { format!("{key}: ") })]
    Invalid {
        /// The web-config file.
        file: PathBuf,
        /// The key, as a dotted path (empty for the file itself).
        key: String,
        /// What was expected, and what was found (never a value of the file).
        expected: String,
    },
}

/// Users and their bcrypt hashes.
pub struct BasicAuthUsers {
    hashes: BTreeMap<String, String>,
    /// A hash to verify against for an unknown user, so that an unknown user costs the
    /// same time as a known one with a wrong password.
    decoy: String,
    /// `digest(user, password)` of credentials verified before: bcrypt costs tens of
    /// milliseconds by design; a scrape every 15 s would pay it every time. Bounded.
    verified: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
}

/// Most remembered successful logins; beyond it, the memory is cleared.
const MAX_REMEMBERED: usize = 64;

impl BasicAuthUsers {
    /// Whether `user` with `password` may pass. Takes about the same time for an unknown
    /// user, a wrong password and a right one (the first time); blocking (bcrypt): call it
    /// off the async workers.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if self.remembered(user, password) {
            return true;
        }
        let key = login_digest(user, password);
        let (hash, known) = match self.hashes.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy.as_str(), false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }

    /// Whether `user` with `password` passed [`Self::verify`] before: a hash and a lookup,
    /// cheap enough for the async workers, so that Prometheus's logins need not queue
    /// behind a flood of wrong passwords. Only credentials already proven right answer
    /// faster, which tells the client nothing its 200 did not.
    pub fn remembered(&self, user: &str, password: &str) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&login_digest(user, password))
    }
}

/// Reads and validates the web-config file at `path`. Blocking (file reads).
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let invalid = |key: &str, expected: String| WebConfigError::Invalid {
        file: path.to_owned(),
        key: key.to_owned(),
        expected,
    };
    let bytes = read_bounded(path).map_err(|e| invalid("", e))?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| invalid("", "a UTF-8 YAML file".to_owned()))?;
    if text.trim().is_empty() {
        return Ok(WebConfig::default());
    }
    let tree: Value = serde_saphyr::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        invalid("", format!("valid YAML{at}"))
    })?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let top = match tree {
        Value::Null => return Ok(WebConfig::default()),
        Value::Object(map) => map,
        _ => return Err(invalid("", "a mapping at the top level".to_owned())),
    };
    let mut config = WebConfig::default();
    for (key, value) in &top {
        match key.as_str() {
            "tls_server_config" => {
                config.tls = tls(value, folder, &invalid)?;
            }
            "basic_auth_users" => {
                config.users = users(value, &invalid)?;
            }
            "http_server_config" => {
                return Err(invalid(
                    key,
                    "not supported by glitchtip-exporter (HTTP/2 and headers are fixed)".to_owned(),
                ));
            }
            _ => {
                return Err(invalid(
                    key,
                    "an unknown key; expected tls_server_config or basic_auth_users".to_owned(),
                ));
            }
        }
    }
    Ok(config)
}

type Invalid<'a> = dyn Fn(&str, String) -> WebConfigError + 'a;

fn tls(
    value: &Value,
    folder: &Path,
    invalid: &Invalid<'_>,
) -> Result<Option<Arc<ServerConfig>>, WebConfigError> {
    const KEY: &str = "tls_server_config";
    let map = match value {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        _ => return Err(invalid(KEY, "a mapping".to_owned())),
    };
    let mut cert_file = None;
    let mut key_file = None;
    let mut client_ca_file = None;
    let mut client_auth = ClientAuth::None;
    let mut min_version = Version::Tls12;
    let mut max_version = Version::Tls13;
    for (key, value) in map {
        let full = format!("{KEY}.{key}");
        let text = || match value {
            Value::String(s) if !s.is_empty() => Ok(s.as_str()),
            _ => Err(invalid(&full, "a non-empty string".to_owned())),
        };
        match key.as_str() {
            "cert_file" => cert_file = Some((full.clone(), folder.join(text()?))),
            "key_file" => key_file = Some((full.clone(), folder.join(text()?))),
            "client_ca_file" => client_ca_file = Some((full.clone(), folder.join(text()?))),
            "client_auth_type" => client_auth = ClientAuth::parse(text()?, &full, invalid)?,
            "min_version" => min_version = Version::parse(text()?, &full, invalid)?,
            "max_version" => max_version = Version::parse(text()?, &full, invalid)?,
            "cert" | "key" => {
                return Err(invalid(
                    &full,
                    "not supported inline: name a file with cert_file / key_file".to_owned(),
                ));
            }
            _ => {
                return Err(invalid(
                    &full,
                    "an unknown key; expected cert_file, key_file, min_version, max_version, \
                     client_auth_type or client_ca_file"
                        .to_owned(),
                ));
            }
        }
    }
    let (cert_key, cert_path) =
        cert_file.ok_or_else(|| invalid(&format!("{KEY}.cert_file"), "to be set".to_owned()))?;
    let (key_key, key_path) =
        key_file.ok_or_else(|| invalid(&format!("{KEY}.key_file"), "to be set".to_owned()))?;
    if max_version < min_version {
        return Err(invalid(
            &format!("{KEY}.max_version"),
            "a version no older than min_version".to_owned(),
        ));
    }
    let chain = certificates(&cert_path).map_err(|e| invalid(&cert_key, e))?;
    let key = private_key(&key_path).map_err(|e| invalid(&key_key, e))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match (min_version, max_version) {
        (Version::Tls13, _) => &[&rustls::version::TLS13],
        (Version::Tls12, Version::Tls12) => &[&rustls::version::TLS12],
        (Version::Tls12, Version::Tls13) => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| invalid(KEY, format!("a usable TLS version range: {e}")))?;
    let builder = match (client_auth, client_ca_file) {
        (ClientAuth::None, None) => builder.with_no_client_auth(),
        (ClientAuth::None, Some((ca_key, _))) => {
            return Err(invalid(
                &ca_key,
                "set only with client_auth_type RequireAndVerifyClientCert or \
                 VerifyClientCertIfGiven"
                    .to_owned(),
            ));
        }
        (_, None) => {
            return Err(invalid(
                &format!("{KEY}.client_ca_file"),
                "to be set when client_auth_type verifies client certificates".to_owned(),
            ));
        }
        (mode, Some((ca_key, ca_path))) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(&ca_path).map_err(|e| invalid(&ca_key, e))? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(&ca_key, format!("CA certificates: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = match mode {
                ClientAuth::IfGiven => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| invalid(&ca_key, format!("usable CA certificates: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        let found = match e {
            rustls::Error::InconsistentKeys(_) => "it does not match the certificate".to_owned(),
            other => other.to_string(),
        };
        invalid(
            &key_key,
            format!("the private key of the certificate in cert_file, {found}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn users(
    value: &Value,
    invalid: &Invalid<'_>,
) -> Result<Option<Arc<BasicAuthUsers>>, WebConfigError> {
    const KEY: &str = "basic_auth_users";
    let map = match value {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        _ => {
            return Err(invalid(
                KEY,
                "a mapping of user names to bcrypt hashes".to_owned(),
            ));
        }
    };
    let mut hashes = BTreeMap::new();
    for (user, hash) in map {
        let key = format!("{KEY}.{user}");
        let not_a_hash = || {
            invalid(
                &key,
                "a bcrypt hash ($2a$, $2b$ or $2y$, cost and 53 characters, as made by \
                 htpasswd -nBC 10 USER)"
                    .to_owned(),
            )
        };
        let hash = match hash {
            Value::String(s) => s,
            _ => return Err(not_a_hash()),
        };
        if user.contains(':') || user.is_empty() {
            return Err(invalid(
                KEY,
                "user names without ':' and not empty".to_owned(),
            ));
        }
        // Validated here, not at the first login: a password written where a hash belongs
        // (or a truncated hash) is refused at start-up. The value is never repeated.
        let Ok(parts) = hash.parse::<bcrypt::HashParts>() else {
            return Err(not_a_hash());
        };
        // Every login (and the decoy hash at load) costs 2^cost rounds: cost 31 would take
        // about a day.
        if !(4..=16).contains(&parts.get_cost()) {
            return Err(invalid(&key, "a bcrypt hash of cost 4 to 16".to_owned()));
        }
        hashes.insert(user.clone(), hash.clone());
    }
    if hashes.is_empty() {
        return Ok(None);
    }
    // Same cost as the configured hashes, so an unknown user costs as much as a known one.
    let cost = hashes
        .values()
        .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
        .map(|p| p.get_cost())
        .max()
        .unwrap_or(bcrypt::DEFAULT_COST);
    let decoy = bcrypt::hash("glitchtip-exporter decoy", cost)
        .map_err(|e| invalid(KEY, format!("bcrypt hashes of a usable cost: {e}")))?;
    Ok(Some(Arc::new(BasicAuthUsers {
        hashes,
        decoy,
        verified: Default::default(),
    })))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    IfGiven,
    Require,
}

impl ClientAuth {
    fn parse(s: &str, key: &str, invalid: &Invalid<'_>) -> Result<Self, WebConfigError> {
        match s {
            "NoClientCert" => Ok(Self::None),
            "VerifyClientCertIfGiven" => Ok(Self::IfGiven),
            "RequireAndVerifyClientCert" => Ok(Self::Require),
            "RequestClientCert" | "RequireAnyClientCert" => Err(invalid(
                key,
                "a mode that verifies client certificates (RequireAndVerifyClientCert or \
                 VerifyClientCertIfGiven): unverified client certificates prove nothing"
                    .to_owned(),
            )),
            _ => Err(invalid(
                key,
                "one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                    .to_owned(),
            )),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    Tls12,
    Tls13,
}

impl Version {
    fn parse(s: &str, key: &str, invalid: &Invalid<'_>) -> Result<Self, WebConfigError> {
        match s {
            "TLS12" => Ok(Self::Tls12),
            "TLS13" => Ok(Self::Tls13),
            "TLS10" | "TLS11" => Err(invalid(
                key,
                "TLS12 or TLS13: TLS 1.0 and 1.1 are broken and not offered".to_owned(),
            )),
            _ => Err(invalid(key, "TLS12 or TLS13".to_owned())),
        }
    }
}

/// A regular file of at most [`MAX_FILE_BYTES`]; a FIFO or device is refused without
/// being opened for reading in a way that could block.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let cannot =
        |e: std::io::Error| format!("a readable file, cannot read {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("a regular file, {} is not one", path.display()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "a file of at most {MAX_FILE_BYTES} bytes, {} is larger",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "a file of at most {MAX_FILE_BYTES} bytes, {} is larger",
            path.display()
        ));
    }
    Ok(bytes)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_bounded(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("PEM certificates, {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        return Err(format!("PEM certificates, {} holds none", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_bounded(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|_| format!("a PEM private key, {} holds none", path.display()))
}

/// SHA-256 of a login, so that remembered logins keep no password.
fn login_digest(user: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(user.len() as u64).to_be_bytes());
    ctx.update(user.as_bytes());
    ctx.update(password.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
#[path = "web_config_tests.rs"]
mod tests;
