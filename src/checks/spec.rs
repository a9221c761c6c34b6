//! Typed, validated check definitions, built once by the config loader.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use regex::Regex;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use url::Url;

use crate::net::connect::Proxy;
use crate::net::x509::TrustRoots;

/// One check of one target.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Target name (the `target` label).
    pub target: String,
    /// Check name (the `check` label).
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// What it does.
    pub kind: CheckKind,
    /// Hash of every input that defines the check, secrets included (hashed), so that a
    /// reload restarts exactly the checks that changed.
    pub fingerprint: u64,
}

impl CheckSpec {
    /// Whether the check has a keyword, regex or JSON expectation (and so exports
    /// `glitchtip_keyword_match`).
    pub fn has_body_expectations(&self) -> bool {
        match &self.kind {
            CheckKind::Http(check) => !check.body.is_empty(),
            CheckKind::Tls(_) | CheckKind::Canary(_) => false,
        }
    }

    /// Whether the check reads the GlitchTip version.
    pub fn reads_version(&self) -> bool {
        match &self.kind {
            CheckKind::Http(check) => check.version_field.is_some(),
            CheckKind::Tls(_) | CheckKind::Canary(_) => false,
        }
    }

    /// Whether the check skips certificate verification.
    pub fn tls_insecure(&self) -> bool {
        match &self.kind {
            CheckKind::Http(check) => check.insecure_skip_verify,
            // The TLS check always verifies: reporting validity is its purpose.
            CheckKind::Tls(_) => false,
            CheckKind::Canary(check) => check.insecure_skip_verify,
        }
    }

    /// Whether this is a target's ingest canary, which runs on its own schedule only
    /// (never for `/probe`: each run stores an event).
    pub fn is_canary(&self) -> bool {
        matches!(self.kind, CheckKind::Canary(_))
    }
}

/// Timing of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// Time between probes (interval mode); least time between probes (scrape mode).
    pub interval: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// Delay of the quick re-probe after a first failure.
    pub retry_interval: Duration,
}

/// The kinds of check; one prober each.
#[derive(Debug, Clone)]
// Built once per check at config load and shared in an Arc: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum CheckKind {
    /// An HTTP request with expectations on the answer.
    Http(HttpCheck),
    /// A TLS handshake whose certificate chain is judged (the `tls` check).
    Tls(TlsCheck),
    /// The ingest canary (the `canary` check): an event sent, then looked for through the
    /// API ([`crate::canary`]).
    Canary(Arc<crate::canary::CanaryCheck>),
}

/// The TLS check of a target: one handshake, the presented chain judged apart from it.
#[derive(Debug, Clone)]
pub struct TlsCheck {
    /// Host to connect to: a name or an IP literal (without brackets).
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// SNI and the name the certificate must carry.
    pub server_name: ServerName<'static>,
    /// Trust anchors, built once at config load.
    pub roots: Arc<TrustRoots>,
    /// HTTP proxy (the target's), tunnelled through with `CONNECT`.
    pub proxy: Option<Proxy>,
}

/// An HTTP check.
#[derive(Clone)]
pub struct HttpCheck {
    /// Request method.
    pub method: Method,
    /// Absolute URL.
    pub url: Url,
    /// Extra headers; secret values are marked sensitive.
    pub headers: HeaderMap,
    /// Request body.
    pub request_body: Option<bytes::Bytes>,
    /// Accepted status codes.
    pub expect_status: StatusSet,
    /// Expectations on the body.
    pub body: BodyExpectations,
    /// JSON field whose value is the GlitchTip version.
    pub version_field: Option<JsonPath>,
    /// Follow redirects (otherwise the first answer counts).
    pub follow_redirects: bool,
    /// Most redirects followed.
    pub max_redirects: u32,
    /// Headers dropped, besides `Authorization`, `Cookie` and `Proxy-Authorization`, once
    /// a redirect leaves the check's origin.
    pub sensitive_headers: Vec<http::HeaderName>,
    /// Whether a redirect from `https://` to `http://` is followed.
    pub allow_https_to_http_redirect: bool,
    /// Most body bytes read.
    pub max_body_bytes: u64,
    /// TLS client configuration, shared by every check with the same options.
    pub tls: Arc<ClientConfig>,
    /// Certificate verification is skipped.
    pub insecure_skip_verify: bool,
    /// SNI and verification name instead of the URL's host.
    pub server_name: Option<ServerName<'static>>,
    /// HTTP proxy, when one is configured.
    pub proxy: Option<Proxy>,
}

impl std::fmt::Debug for HttpCheck {
    // Not derived: header values may be secrets, and the TLS config is large.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCheck")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("expect_status", &self.expect_status)
            .field("body", &self.body)
            .field("follow_redirects", &self.follow_redirects)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish_non_exhaustive()
    }
}

/// Accepted status codes: a list of inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    /// Whether `code` is accepted.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Expectations on a response body; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct BodyExpectations {
    /// Substring.
    pub keyword: Option<String>,
    /// Regular expression.
    pub regex: Option<Regex>,
    /// JSON field expectation.
    pub json: Option<JsonExpectation>,
}

impl BodyExpectations {
    /// Whether there is no expectation at all.
    pub fn is_empty(&self) -> bool {
        self.keyword.is_none() && self.regex.is_none() && self.json.is_none()
    }
}

/// A JSON field that must exist (not null), or equal a value.
#[derive(Debug, Clone)]
pub struct JsonExpectation {
    /// Where.
    pub path: JsonPath,
    /// What it must equal, if anything.
    pub equals: Option<serde_json::Value>,
}

/// A dot-separated path into a JSON document; numeric segments also index arrays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    /// Parses `a.b.0.c`; `None` for an empty path or an empty segment.
    pub fn parse(path: &str) -> Option<Self> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return None;
        }
        Some(Self(segments))
    }

    /// The value at this path, if present.
    pub fn lookup<'v>(&self, mut value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        for segment in &self.0 {
            value = match value {
                serde_json::Value::Object(map) => map.get(segment)?,
                serde_json::Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}
