//! The config as written: serde structures that mirror `exporter.toml` key for key.
//!
//! Everything is optional here so that a default check can be overridden field by field;
//! [`super::validate`] turns this raw form into typed values once. Unknown keys are
//! rejected everywhere (`deny_unknown_fields`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    #[serde(default)]
    pub server: RawServer,
    /// `[defaults]`
    #[serde(default)]
    pub defaults: RawSchedule,
    /// `[targets.<name>]`
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    /// `[heartbeats.<name>]`
    #[serde(default)]
    pub heartbeats: BTreeMap<String, crate::heartbeat::RawHeartbeat>,
}

/// `[server]`: how the exporter itself runs.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address to listen on, `host:port`.
    pub listen: Option<String>,
    /// `interval` or `scrape`.
    pub mode: Option<String>,
    /// How long shutdown waits for running probes and open requests.
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub shutdown_timeout: Option<Duration>,
    /// File that keeps heartbeat state across restarts (relative: to the working directory).
    pub state_file: Option<PathBuf>,
    /// Deadline for a complete request head, from the connection's start or the end of
    /// the previous answer.
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    /// Most open client connections (absent: derived from the open-file limit).
    pub max_connections: Option<u64>,
    /// Most bytes of a request head (request line and headers).
    pub max_header_bytes: Option<u64>,
    /// Most `/probe` requests answered at once.
    pub max_concurrent_probes: Option<u64>,
}

/// Timing and size settings that `[defaults]`, a target and a check can each set; the most
/// specific one wins.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Time between two probes of a check (interval mode), or the least time between two
    /// probes (scrape mode).
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub interval: Option<Duration>,
    /// Deadline of one probe.
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub timeout: Option<Duration>,
    /// Delay of the one quick re-probe after a first failure (interval mode).
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub retry_interval: Option<Duration>,
    /// Most bytes of a response body read.
    pub max_body_bytes: Option<u64>,
}

/// `[targets.<name>]`: one GlitchTip instance.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Base URL of the instance.
    pub url: Option<String>,
    /// Whether the default checks (health, database, api, dashboard) are added.
    #[serde(default, deserialize_with = "super::strict::boolean::deserialize")]
    pub default_checks: Option<bool>,
    /// See [`RawSchedule::interval`].
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub interval: Option<Duration>,
    /// See [`RawSchedule::timeout`].
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub timeout: Option<Duration>,
    /// See [`RawSchedule::retry_interval`].
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub retry_interval: Option<Duration>,
    /// See [`RawSchedule::max_body_bytes`].
    pub max_body_bytes: Option<u64>,
    /// Headers sent with every check of this target (e.g. `Host`).
    pub headers: Option<BTreeMap<String, String>>,
    /// TLS options for this target's checks.
    pub tls: Option<RawTls>,
    /// HTTP proxy for this target's checks; none by default, whatever the environment says.
    pub proxy: Option<String>,
    /// Basic credentials for `proxy`.
    pub proxy_auth: Option<RawBasicAuth>,
    /// Headers dropped when a redirect leaves the origin (besides `Authorization`,
    /// `Cookie` and `Proxy-Authorization`, which always are).
    pub sensitive_headers: Option<Vec<String>>,
    /// `[targets.<name>.checks.<name>]`
    #[serde(default)]
    pub checks: BTreeMap<String, RawCheck>,
    /// `[targets.<name>.canary]`: the ingest canary (opt-in).
    pub canary: Option<crate::canary::RawCanary>,
    /// `[targets.<name>.queue]`: GlitchTip's queues in Redis/Valkey (opt-in).
    pub queue: Option<crate::queue::RawQueue>,
}

/// TLS options.
#[derive(Debug, Default, Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Extra PEM CA certificates trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (reported in `glitchtip_check_tls_insecure`).
    #[serde(default, deserialize_with = "super::strict::boolean::deserialize")]
    pub insecure_skip_verify: Option<bool>,
    /// Name to send as SNI and to verify the certificate against, instead of the URL's host.
    pub server_name: Option<String>,
}

/// `[targets.<name>.checks.<name>]`: one HTTP check, or the `tls` check (which takes only
/// `enabled`, `address`, the timing keys and `tls`).
#[derive(Debug, Default, Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// `false` removes the check (a default one included).
    #[serde(default, deserialize_with = "super::strict::boolean::deserialize")]
    pub enabled: Option<bool>,
    /// HTTP method.
    pub method: Option<String>,
    /// Path (with query) relative to the target URL.
    pub path: Option<String>,
    /// Absolute URL, instead of `path`.
    pub url: Option<String>,
    /// Request body.
    pub body: Option<String>,
    /// Accepted status codes: numbers and `"200-299"` ranges.
    pub expect_status: Option<Vec<RawStatus>>,
    /// Substring the body must contain.
    pub keyword: Option<String>,
    /// Regular expression the body must match.
    pub regex: Option<String>,
    /// JSON expectation on the body.
    pub json: Option<RawJson>,
    /// JSON field whose value feeds `glitchtip_version_info`.
    pub version_field: Option<String>,
    /// Extra request headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// `Authorization: Bearer` token.
    pub bearer_token: Option<RawSecret>,
    /// HTTP basic authentication.
    pub basic_auth: Option<RawBasicAuth>,
    /// See [`RawSchedule::interval`].
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub interval: Option<Duration>,
    /// See [`RawSchedule::timeout`].
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub timeout: Option<Duration>,
    /// See [`RawSchedule::retry_interval`].
    #[serde(default, deserialize_with = "super::strict::duration::deserialize")]
    pub retry_interval: Option<Duration>,
    /// See [`RawSchedule::max_body_bytes`].
    pub max_body_bytes: Option<u64>,
    /// Follow redirects instead of judging the first answer.
    #[serde(default, deserialize_with = "super::strict::boolean::deserialize")]
    pub follow_redirects: Option<bool>,
    /// Most redirects followed.
    pub max_redirects: Option<u32>,
    /// TLS options for this check.
    pub tls: Option<RawTls>,
    /// HTTP proxy for this check.
    pub proxy: Option<String>,
    /// Basic credentials for this check's `proxy`.
    pub proxy_auth: Option<RawBasicAuth>,
    /// See [`RawTarget::sensitive_headers`]; added to the target's.
    pub sensitive_headers: Option<Vec<String>>,
    /// Follow a redirect from `https://` to `http://` (refused by default).
    #[serde(default, deserialize_with = "super::strict::boolean::deserialize")]
    pub allow_https_to_http_redirect: Option<bool>,
    /// `host:port` the `tls` check connects to instead of the target URL's host and port
    /// (the `tls` check only).
    pub address: Option<String>,
}

/// One entry of `expect_status`.
#[derive(Debug, Clone, Deserialize, Hash)]
#[serde(untagged)]
pub enum RawStatus {
    /// A single code.
    Code(i64),
    /// `"200"` or `"200-299"`.
    Text(String),
}

/// `json = { path = "version" }` or `json = { path = "a.b", equals = "x" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJson {
    /// Dot-separated field path; numeric segments index arrays.
    pub path: String,
    /// The value the field must equal; without it, the field must exist and not be null.
    pub equals: Option<serde_json::Value>,
}

impl std::hash::Hash for RawJson {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.path.hash(state);
        self.equals.as_ref().map(|v| v.to_string()).hash(state);
    }
}

pub use super::secrets::{RawBasicAuth, RawSecret, Refused};
