//! Configuration: a TOML file, then environment overrides, then command-line targets.
//!
//! Loading is two steps, as ripgrep does it: the `config` crate reads the file and the
//! `GLITCHTIP_EXPORTER__*` variables into the raw form ([`raw`]), then [`validate`] checks
//! every field once and builds the typed [`Config`] that the rest of the exporter uses.
//! Nothing here touches the network, so `--check-config` is exactly this.

pub mod defaults;
pub mod raw;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rustls::pki_types::ServerName;
use url::Url;

use crate::checks::tls::CHECK_NAME as TLS_CHECK;
use crate::checks::{
    BodyExpectations, CheckKind, CheckSpec, HttpCheck, JsonExpectation, JsonPath, Schedule,
    StatusSet, TlsCheck,
};
use crate::net::tls::ClientConfigCache;
use raw::{RawCheck, RawConfig, RawSecret, RawStatus, RawTarget, RawTls};

/// Prefix of the environment variables that override config keys, `__` between levels:
/// `GLITCHTIP_EXPORTER__TARGETS__PROD__URL`.
pub const ENV_PREFIX: &str = "GLITCHTIP_EXPORTER";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// Interval or scrape mode.
    pub mode: Mode,
    /// How long shutdown waits.
    pub shutdown_timeout: Duration,
    /// The targets, sorted by name.
    pub targets: Vec<Target>,
    /// The heartbeats, sorted by name.
    pub heartbeats: Vec<crate::heartbeat::HeartbeatSpec>,
    /// The file that keeps heartbeat state across restarts.
    pub state_file: PathBuf,
}

impl Config {
    /// Every check of every target.
    pub fn checks(&self) -> impl Iterator<Item = &Arc<CheckSpec>> {
        self.targets.iter().flat_map(|t| t.checks.iter())
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Checks whose worst case from outage to firing alert exceeds the 60 s budget:
    /// `interval + 2 × timeout + retry_interval + 30 s (scrape + evaluation)`.
    pub fn over_budget(&self) -> impl Iterator<Item = (&CheckSpec, Duration)> {
        // The canary has its own budget (2 minutes, see `defaults::CANARY_INTERVAL`).
        self.checks().filter(|c| !c.is_canary()).filter_map(|c| {
            let s = c.schedule;
            // The text of `/metrics` may show a result up to one write gap late.
            let worst = s.interval
                + 2 * s.timeout
                + s.retry_interval
                + defaults::METRICS_WRITE_GAP
                + defaults::SCRAPE_AND_EVALUATION;
            (worst > defaults::ALERT_BUDGET).then_some((c.as_ref(), worst))
        })
    }
}

/// How probes are triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each check on its own schedule; `/metrics` answers from the latest results.
    Interval,
    /// A scrape of `/metrics` runs the due checks and waits for them.
    Scrape,
}

impl Mode {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Interval => "interval",
            Mode::Scrape => "scrape",
        }
    }
}

/// One GlitchTip instance.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name (the `target` label).
    pub name: String,
    /// Base URL.
    pub url: Url,
    /// Enabled checks, sorted by name (the `canary` check included).
    pub checks: Vec<Arc<CheckSpec>>,
    /// Where GlitchTip's queues are read, when `[targets.<name>.queue]` is configured.
    pub queue: Option<Arc<crate::queue::QueueSpec>>,
}

/// Errors loading or validating the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Occurs when the file cannot be read or is not valid TOML of the expected shape
    /// (unknown keys and wrong types included).
    #[error("{origin}: {message}")]
    Parse {
        /// The file (and environment) the config came from.
        origin: String,
        /// What was wrong, with the key.
        message: String,
    },
    /// Occurs when a value has the right type but is not acceptable.
    #[error("{origin}: {key}: {expected}")]
    Invalid {
        /// The file (and environment) the config came from.
        origin: String,
        /// The full key, e.g. `targets.prod.checks.health.timeout`.
        key: String,
        /// What was expected instead.
        expected: String,
    },
}

/// Where a config comes from; kept by the exporter so that a reload reads the same places.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// `--target` values: `URL` or `NAME=URL`.
    pub cli_targets: Vec<String>,
    /// `--listen`, overriding the file.
    pub listen: Option<SocketAddr>,
    /// `--mode`, overriding the file.
    pub mode: Option<String>,
    /// The environment to read overrides from (`None`: the process environment).
    pub env: Option<HashMap<String, String>>,
}

impl ConfigSource {
    /// Reads and validates the config.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = match &self.env {
            Some(env) => env.clone(),
            None => std::env::vars().collect(),
        };
        let overrides: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let origin = match (&self.file, overrides.is_empty()) {
            (Some(file), true) => format!("config file {}", file.display()),
            (Some(file), false) => format!(
                "config file {} with {ENV_PREFIX}__* environment overrides",
                file.display()
            ),
            (None, true) => "command line".to_owned(),
            (None, false) => format!("{ENV_PREFIX}__* environment"),
        };

        let mut builder = config::Config::builder();
        if let Some(file) = &self.file {
            // Read the file ourselves: the config crate's message for a missing file does
            // not name it.
            let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Parse {
                origin: origin.clone(),
                message: format!("cannot read the file: {e}"),
            })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides)),
        );
        let raw: RawConfig = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Parse {
                origin: origin.clone(),
                message: e.to_string().trim_end().to_owned(),
            })?;
        let base_dir = self
            .file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_owned);
        let ctx = Context {
            origin: &origin,
            env: &env,
            base_dir: base_dir.as_deref(),
        };
        validate(raw, self, &ctx)
    }
}

/// What validation needs besides the raw config.
pub struct Context<'a> {
    /// The file (and environment) the config came from, for messages.
    pub origin: &'a str,
    /// The environment, for secrets given as `{ env = "VAR" }`.
    pub env: &'a HashMap<String, String>,
    /// Relative paths (`ca_file`, secret files) are relative to the config file's folder.
    pub base_dir: Option<&'a Path>,
}

impl Context<'_> {
    /// The error for `key`, saying what was expected.
    pub(crate) fn invalid(&self, key: &str, expected: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            key: key.to_owned(),
            expected,
        }
    }

    /// `path`, relative to the config file's folder when relative.
    pub(crate) fn path(&self, path: &Path) -> PathBuf {
        match self.base_dir {
            Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
            _ => path.to_owned(),
        }
    }
}

/// Turns the raw config into typed values, checking every field once.
pub fn validate(
    mut raw: RawConfig,
    source: &ConfigSource,
    ctx: &Context<'_>,
) -> Result<Config, ConfigError> {
    for spec in &source.cli_targets {
        let (name, url) = cli_target(spec).map_err(|e| ctx.invalid("--target", e))?;
        if raw.targets.contains_key(&name) {
            return Err(ctx.invalid(
                "--target",
                format!("target name {name:?} is already configured; use NAME=URL to pick another"),
            ));
        }
        raw.targets.insert(
            name,
            RawTarget {
                url: Some(url),
                ..RawTarget::default()
            },
        );
    }

    let listen = match source.listen {
        Some(addr) => addr,
        None => {
            let text = raw.server.listen.as_deref().unwrap_or(defaults::LISTEN);
            text.parse().map_err(|_| {
                ctx.invalid(
                    "server.listen",
                    format!(
                        "an IP address and port such as \"0.0.0.0:{}\", got {text:?}",
                        defaults::PORT
                    ),
                )
            })?
        }
    };
    let mode_text = source
        .mode
        .clone()
        .or(raw.server.mode.clone())
        .unwrap_or_else(|| "interval".to_owned());
    let mode = match mode_text.as_str() {
        "interval" => Mode::Interval,
        "scrape" => Mode::Scrape,
        other => {
            return Err(ctx.invalid(
                "server.mode",
                format!("\"interval\" or \"scrape\", got {other:?}"),
            ));
        }
    };
    let shutdown_timeout = raw
        .server
        .shutdown_timeout
        .unwrap_or(defaults::SHUTDOWN_TIMEOUT);

    // Heartbeats alone are a valid config: the exporter then only receives pings.
    if raw.targets.is_empty() && raw.heartbeats.is_empty() {
        return Err(ctx.invalid(
            "targets",
            "at least one target: pass --target URL or add a [targets.<name>] table".to_owned(),
        ));
    }

    let mut tls_cache = ClientConfigCache::default();
    let mut targets = Vec::with_capacity(raw.targets.len());
    for (name, target) in &raw.targets {
        let key = format!("targets.{name}");
        check_name(name).map_err(|e| ctx.invalid(&key, e))?;
        targets.push(build_target(name, target, &raw, &mut tls_cache, ctx)?);
    }
    let mut heartbeats = Vec::with_capacity(raw.heartbeats.len());
    for (name, heartbeat) in &raw.heartbeats {
        heartbeats.push(crate::heartbeat::config::build(
            name, heartbeat, &targets, ctx,
        )?);
    }
    let state_file = raw
        .server
        .state_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(defaults::STATE_FILE));
    if state_file.as_os_str().is_empty() || state_file.file_name().is_none() {
        return Err(ctx.invalid(
            "server.state_file",
            format!("a file path such as {:?}", defaults::STATE_FILE),
        ));
    }
    Ok(Config {
        listen,
        mode,
        shutdown_timeout,
        targets,
        heartbeats,
        state_file,
    })
}

fn build_target(
    name: &str,
    target: &RawTarget,
    raw: &RawConfig,
    tls_cache: &mut ClientConfigCache,
    ctx: &Context<'_>,
) -> Result<Target, ConfigError> {
    let key = format!("targets.{name}");
    let url_text = target.url.as_deref().ok_or_else(|| {
        ctx.invalid(
            &format!("{key}.url"),
            "a base URL such as \"https://glitchtip.example.com\"".to_owned(),
        )
    })?;
    let url = parse_http_url(url_text).map_err(|e| ctx.invalid(&format!("{key}.url"), e))?;

    let mut merged: BTreeMap<String, RawCheck> = BTreeMap::new();
    if target.default_checks.unwrap_or(true) {
        for (check_name, check) in defaults::checks() {
            merged.insert(check_name.to_owned(), check);
        }
        // An https:// target's certificate is watched by default.
        if url.scheme() == "https" {
            merged.insert(TLS_CHECK.to_owned(), RawCheck::default());
        }
    }
    for (check_name, over) in &target.checks {
        check_name_valid(check_name)
            .map_err(|e| ctx.invalid(&format!("{key}.checks.{check_name}"), e))?;
        if check_name == crate::canary::CHECK_NAME {
            return Err(ctx.invalid(
                &format!("{key}.checks.{check_name}"),
                format!(
                    "another name: \"canary\" is the ingest canary, configured in [{key}.canary]"
                ),
            ));
        }
        let merged_check = match merged.remove(check_name) {
            Some(base) => overlay(base, over.clone()),
            None => {
                if over.path.is_none()
                    && over.url.is_none()
                    && over.enabled != Some(false)
                    && check_name != TLS_CHECK
                {
                    return Err(ctx.invalid(
                        &format!("{key}.checks.{check_name}"),
                        "a `path` or a `url` (this is not one of the default checks health, database, api, dashboard)".to_owned(),
                    ));
                }
                over.clone()
            }
        };
        merged.insert(check_name.clone(), merged_check);
    }

    let mut checks = Vec::new();
    let mut version_check: Option<String> = None;
    for (check_name, check) in merged {
        if check.enabled == Some(false) {
            continue;
        }
        let check_key = format!("{key}.checks.{check_name}");
        if check_name == TLS_CHECK {
            let input = CheckInput {
                target_name: name,
                base: &url,
                target,
                raw,
                name: &check_name,
                check: &check,
                key: &check_key,
            };
            checks.push(Arc::new(build_tls_check(&input, tls_cache, ctx)?));
            continue;
        }
        if check
            .version_field
            .as_deref()
            .is_some_and(|f| !f.is_empty())
        {
            if let Some(other) = &version_check {
                return Err(ctx.invalid(
                    &format!("{check_key}.version_field"),
                    format!(
                        "at most one check per target reading the version, but {other} and {check_name} both do (set version_field = \"\" on one)"
                    ),
                ));
            }
            version_check = Some(check_name.clone());
        }
        let spec = build_check(
            &CheckInput {
                target_name: name,
                base: &url,
                target,
                raw,
                name: &check_name,
                check: &check,
                key: &check_key,
            },
            tls_cache,
            ctx,
        )?;
        checks.push(Arc::new(spec));
    }
    if let Some(raw_canary) = &target.canary {
        if let Some(spec) =
            crate::canary::config::build(name, &url, target, raw_canary, tls_cache, ctx)?
        {
            checks.push(Arc::new(spec));
            checks.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
    let queue = match &target.queue {
        Some(raw_queue) => crate::queue::config::build(name, raw_queue, ctx)?.map(Arc::new),
        None => None,
    };
    Ok(Target {
        name: name.to_owned(),
        url,
        checks,
        queue,
    })
}

/// Fields set in `over` replace those of `base`.
fn overlay(base: RawCheck, over: RawCheck) -> RawCheck {
    let (over_has_url, over_has_path) = (over.url.is_some(), over.path.is_some());
    RawCheck {
        enabled: over.enabled.or(base.enabled),
        method: over.method.or(base.method),
        // An absolute URL replaces the default path, and the other way round.
        path: if over_has_url {
            over.path
        } else {
            over.path.or(base.path)
        },
        url: if over_has_path {
            over.url
        } else {
            over.url.or(base.url)
        },
        body: over.body.or(base.body),
        expect_status: over.expect_status.or(base.expect_status),
        keyword: over.keyword.or(base.keyword),
        regex: over.regex.or(base.regex),
        json: over.json.or(base.json),
        version_field: over.version_field.or(base.version_field),
        headers: over.headers.or(base.headers),
        bearer_token: over.bearer_token.or(base.bearer_token),
        basic_auth: over.basic_auth.or(base.basic_auth),
        interval: over.interval.or(base.interval),
        timeout: over.timeout.or(base.timeout),
        retry_interval: over.retry_interval.or(base.retry_interval),
        max_body_bytes: over.max_body_bytes.or(base.max_body_bytes),
        follow_redirects: over.follow_redirects.or(base.follow_redirects),
        max_redirects: over.max_redirects.or(base.max_redirects),
        tls: over.tls.or(base.tls),
        proxy: over.proxy.or(base.proxy),
        address: over.address.or(base.address),
    }
}

/// One merged check and where it sits.
struct CheckInput<'a> {
    target_name: &'a str,
    base: &'a Url,
    target: &'a RawTarget,
    raw: &'a RawConfig,
    name: &'a str,
    check: &'a RawCheck,
    key: &'a str,
}

/// The config key a timing value came from: the check, its target, or `[defaults]`.
fn schedule_key(input: &CheckInput<'_>, field: &str, on_check: bool, on_target: bool) -> String {
    if on_check {
        format!("{}.{field}", input.key)
    } else if on_target {
        format!("targets.{}.{field}", input.target_name)
    } else {
        format!("defaults.{field}")
    }
}

/// A check's timing, the most specific setting winning; errors name the key the value
/// came from.
fn check_schedule(input: &CheckInput<'_>, ctx: &Context<'_>) -> Result<Schedule, ConfigError> {
    let CheckInput {
        target, raw, check, ..
    } = *input;
    let invalid = |k: &str, e: String| ctx.invalid(k, e);
    let d = &raw.defaults;
    let schedule = Schedule {
        interval: check
            .interval
            .or(target.interval)
            .or(d.interval)
            .unwrap_or(defaults::INTERVAL),
        timeout: check
            .timeout
            .or(target.timeout)
            .or(d.timeout)
            .unwrap_or(defaults::TIMEOUT),
        retry_interval: check
            .retry_interval
            .or(target.retry_interval)
            .or(d.retry_interval)
            .unwrap_or(defaults::RETRY_INTERVAL),
    };
    let interval_key = schedule_key(
        input,
        "interval",
        check.interval.is_some(),
        target.interval.is_some(),
    );
    let timeout_key = schedule_key(
        input,
        "timeout",
        check.timeout.is_some(),
        target.timeout.is_some(),
    );
    let retry_key = schedule_key(
        input,
        "retry_interval",
        check.retry_interval.is_some(),
        target.retry_interval.is_some(),
    );
    for (k, value) in [
        (&interval_key, schedule.interval),
        (&timeout_key, schedule.timeout),
        (&retry_key, schedule.retry_interval),
    ] {
        if value.is_zero() {
            return Err(invalid(
                k,
                "a duration above zero, such as \"5s\"".to_owned(),
            ));
        }
    }
    if schedule.timeout > schedule.interval {
        return Err(invalid(
            &timeout_key,
            format!(
                "a timeout no longer than the interval ({}), got {}",
                humantime::format_duration(schedule.interval),
                humantime::format_duration(schedule.timeout)
            ),
        ));
    }
    Ok(schedule)
}

fn build_check(
    input: &CheckInput<'_>,
    tls_cache: &mut ClientConfigCache,
    ctx: &Context<'_>,
) -> Result<CheckSpec, ConfigError> {
    let CheckInput {
        target_name,
        base,
        target,
        raw,
        name,
        check,
        key,
    } = *input;
    if check.address.is_some() {
        return Err(ctx.invalid(
            &format!("{key}.address"),
            "no `address` on an HTTP check: only the tls check takes one (use `url` here)"
                .to_owned(),
        ));
    }
    let invalid = |k: &str, e: String| ctx.invalid(k, e);
    let field = |f: &str| format!("{key}.{f}");
    let d = &raw.defaults;
    let schedule = check_schedule(input, ctx)?;
    let max_body_bytes = check
        .max_body_bytes
        .or(target.max_body_bytes)
        .or(d.max_body_bytes)
        .unwrap_or(defaults::MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(invalid(
            &field("max_body_bytes"),
            "a number of bytes above zero".to_owned(),
        ));
    }

    let method_text = check.method.as_deref().unwrap_or("GET");
    let method = match method_text.to_ascii_uppercase().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "OPTIONS" | "PATCH" | "DELETE") => {
            Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET)
        }
        _ => {
            return Err(invalid(
                &field("method"),
                format!("one of GET, HEAD, POST, PUT, OPTIONS, PATCH, DELETE, got {method_text:?}"),
            ));
        }
    };

    let url = match (&check.path, &check.url) {
        (Some(_), Some(_)) => {
            return Err(invalid(key, "either `path` or `url`, not both".to_owned()));
        }
        (Some(path), None) => {
            if !path.starts_with('/') {
                return Err(invalid(
                    &field("path"),
                    format!("a path starting with \"/\", got {path:?}"),
                ));
            }
            // Keep the base URL's own path prefix (GlitchTip behind /glitchtip/).
            let mut joined = base.clone();
            let prefix = base.path().trim_end_matches('/');
            let (p, q) = path
                .split_once('?')
                .map_or((path.as_str(), None), |(p, q)| (p, Some(q)));
            joined.set_path(&format!("{prefix}{p}"));
            joined.set_query(q);
            joined
        }
        (None, Some(url)) => parse_http_url(url).map_err(|e| invalid(&field("url"), e))?,
        (None, None) => base.clone(),
    };

    let expect_status = status_set(check.expect_status.as_deref())
        .map_err(|e| invalid(&field("expect_status"), e))?;

    let regex =
        match check.regex.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| {
                invalid(&field("regex"), format!("a valid regular expression: {e}"))
            })?),
            None => None,
        };
    let json = match &check.json {
        Some(j) => Some(JsonExpectation {
            path: JsonPath::parse(&j.path).ok_or_else(|| {
                invalid(
                    &field("json.path"),
                    format!(
                        "a dot-separated field path such as \"version\", got {:?}",
                        j.path
                    ),
                )
            })?,
            equals: j.equals.clone(),
        }),
        None => None,
    };
    let version_field = match check.version_field.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(JsonPath::parse(p).ok_or_else(|| {
            invalid(
                &field("version_field"),
                format!("a dot-separated field path, got {p:?}"),
            )
        })?),
        None => None,
    };

    let mut headers = HeaderMap::new();
    let mut secret_hasher = DefaultHasher::new();
    for (scope_key, map) in [
        (format!("targets.{target_name}.headers"), &target.headers),
        (field("headers"), &check.headers),
    ] {
        for (k, v) in map.iter().flatten() {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                invalid(
                    &format!("{scope_key}.{k}"),
                    "a valid HTTP header name".to_owned(),
                )
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                invalid(
                    &format!("{scope_key}.{k}"),
                    "a header value of visible ASCII characters".to_owned(),
                )
            })?;
            headers.insert(name, value);
        }
    }
    if check.bearer_token.is_some() && check.basic_auth.is_some() {
        return Err(invalid(
            key,
            "either `bearer_token` or `basic_auth`, not both".to_owned(),
        ));
    }
    if (check.bearer_token.is_some() || check.basic_auth.is_some())
        && headers.contains_key(http::header::AUTHORIZATION)
    {
        return Err(invalid(
            key,
            "an Authorization header from `headers` or from `bearer_token`/`basic_auth`, not both"
                .to_owned(),
        ));
    }
    if let Some(secret) = &check.bearer_token {
        let token = read_secret(secret, &field("bearer_token"), ctx)?;
        token.hash(&mut secret_hasher);
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            invalid(
                &field("bearer_token"),
                "a token of visible ASCII characters".to_owned(),
            )
        })?;
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
    }
    if let Some(auth) = &check.basic_auth {
        use base64::Engine as _;
        let password = read_secret(&auth.password, &field("basic_auth.password"), ctx)?;
        password.hash(&mut secret_hasher);
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{password}", auth.username));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
            invalid(
                &field("basic_auth"),
                "a user name of visible ASCII characters".to_owned(),
            )
        })?;
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
    }

    let tls_raw: RawTls = check.tls.clone().or(target.tls.clone()).unwrap_or_default();
    let tls_key = if check.tls.is_some() {
        field("tls")
    } else {
        format!("targets.{target_name}.tls")
    };
    let insecure_skip_verify = tls_raw.insecure_skip_verify.unwrap_or(false);
    let ca_file = tls_raw.ca_file.as_deref().map(|p| ctx.path(p));
    let tls = tls_cache
        .get(ca_file.as_deref(), insecure_skip_verify)
        .map_err(|e| {
            invalid(
                &format!("{tls_key}.ca_file"),
                format!("a readable PEM file of CA certificates ({e})"),
            )
        })?;
    let server_name = match &tls_raw.server_name {
        Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
            invalid(
                &format!("{tls_key}.server_name"),
                format!("a DNS name or IP address, got {n:?}"),
            )
        })?),
        None => None,
    };

    let proxy = match check.proxy.as_ref().or(target.proxy.as_ref()) {
        Some(p) => {
            let proxy_key = if check.proxy.is_some() {
                field("proxy")
            } else {
                format!("targets.{target_name}.proxy")
            };
            Some(parse_proxy(p).map_err(|e| invalid(&proxy_key, e))?)
        }
        None => None,
    };

    let mut hasher = DefaultHasher::new();
    check.hash(&mut hasher);
    (
        target_name,
        base.as_str(),
        &target.headers,
        &target.tls,
        &target.proxy,
    )
        .hash(&mut hasher);
    (
        schedule.interval,
        schedule.timeout,
        schedule.retry_interval,
        max_body_bytes,
    )
        .hash(&mut hasher);
    secret_hasher.finish().hash(&mut hasher);

    Ok(CheckSpec {
        target: target_name.to_owned(),
        name: name.to_owned(),
        schedule,
        kind: CheckKind::Http(HttpCheck {
            method,
            url,
            headers,
            request_body: check.body.clone().map(bytes::Bytes::from),
            expect_status,
            body: BodyExpectations {
                keyword: check.keyword.clone().filter(|k| !k.is_empty()),
                regex,
                json,
            },
            version_field,
            follow_redirects: check.follow_redirects.unwrap_or(false),
            max_redirects: check.max_redirects.unwrap_or(defaults::MAX_REDIRECTS),
            max_body_bytes,
            tls,
            insecure_skip_verify,
            server_name,
            proxy,
        }),
        fingerprint: hasher.finish(),
    })
}

/// The `tls` check: only `enabled`, `address`, the timing keys and `tls` (`ca_file`,
/// `server_name`) apply; an HTTP-only key is an error naming it.
fn build_tls_check(
    input: &CheckInput<'_>,
    tls_cache: &mut ClientConfigCache,
    ctx: &Context<'_>,
) -> Result<CheckSpec, ConfigError> {
    let CheckInput {
        target_name,
        base,
        target,
        name,
        check,
        key,
        ..
    } = *input;
    let field = |f: &str| format!("{key}.{f}");
    let http_only = [
        ("method", check.method.is_some()),
        ("path", check.path.is_some()),
        ("url", check.url.is_some()),
        ("body", check.body.is_some()),
        ("expect_status", check.expect_status.is_some()),
        ("keyword", check.keyword.is_some()),
        ("regex", check.regex.is_some()),
        ("json", check.json.is_some()),
        ("version_field", check.version_field.is_some()),
        ("headers", check.headers.is_some()),
        ("bearer_token", check.bearer_token.is_some()),
        ("basic_auth", check.basic_auth.is_some()),
        ("max_body_bytes", check.max_body_bytes.is_some()),
        ("follow_redirects", check.follow_redirects.is_some()),
        ("max_redirects", check.max_redirects.is_some()),
        ("proxy", check.proxy.is_some()),
    ];
    if let Some((k, _)) = http_only.iter().find(|(_, set)| *set) {
        return Err(ctx.invalid(
            &field(k),
            "no such key on the tls check, which takes enabled, address, interval, timeout, retry_interval and tls = { ca_file, server_name }".to_owned(),
        ));
    }
    if check
        .tls
        .as_ref()
        .is_some_and(|t| t.insecure_skip_verify.is_some())
    {
        return Err(ctx.invalid(
            &field("tls.insecure_skip_verify"),
            "no such key on the tls check, which always verifies the certificate and reports the result".to_owned(),
        ));
    }
    let schedule = check_schedule(input, ctx)?;

    let (host, port) = match &check.address {
        Some(address) => parse_address(address).map_err(|e| ctx.invalid(&field("address"), e))?,
        None if base.scheme() == "https" => (
            base.host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            base.port_or_known_default().unwrap_or(443),
        ),
        None => {
            return Err(ctx.invalid(
                &field("address"),
                format!(
                    "a \"host:port\" to connect to, since the target URL {:?} is not https://",
                    base.as_str()
                ),
            ));
        }
    };

    // The check's own tls table replaces the target's, as for the HTTP checks.
    let tls_raw: RawTls = check.tls.clone().or(target.tls.clone()).unwrap_or_default();
    let tls_key = if check.tls.is_some() {
        field("tls")
    } else {
        format!("targets.{target_name}.tls")
    };
    let server_name = match &tls_raw.server_name {
        Some(n) => ServerName::try_from(n.clone()).map_err(|_| {
            ctx.invalid(
                &format!("{tls_key}.server_name"),
                format!("a DNS name or IP address, got {n:?}"),
            )
        })?,
        None => ServerName::try_from(host.clone()).map_err(|_| {
            ctx.invalid(
                &format!("{tls_key}.server_name"),
                format!("a DNS name or IP address to verify the certificate against, since {host:?} is not one"),
            )
        })?,
    };
    let ca_file = tls_raw.ca_file.as_deref().map(|p| ctx.path(p));
    // Shared by every TLS check with the same CA file: a copy of the root store per check
    // would cost 15 kB each.
    let roots = tls_cache.trust_roots(ca_file.as_deref()).map_err(|e| {
        ctx.invalid(
            &format!("{tls_key}.ca_file"),
            format!("a readable PEM file of CA certificates ({e})"),
        )
    })?;
    let proxy = match &target.proxy {
        Some(p) => Some(
            parse_proxy(p).map_err(|e| ctx.invalid(&format!("targets.{target_name}.proxy"), e))?,
        ),
        None => None,
    };

    let mut hasher = DefaultHasher::new();
    check.hash(&mut hasher);
    (
        TLS_CHECK,
        target_name,
        base.as_str(),
        &target.tls,
        &target.proxy,
    )
        .hash(&mut hasher);
    (schedule.interval, schedule.timeout, schedule.retry_interval).hash(&mut hasher);
    // A CA file rewritten in place changes the check too.
    roots.digest().hash(&mut hasher);

    Ok(CheckSpec {
        target: target_name.to_owned(),
        name: name.to_owned(),
        schedule,
        kind: CheckKind::Tls(TlsCheck {
            host,
            port,
            server_name,
            roots,
            proxy,
        }),
        fingerprint: hasher.finish(),
    })
}

/// `host:port`, `[v6]:port`; the host without brackets.
fn parse_address(text: &str) -> Result<(String, u16), String> {
    let expected =
        || format!("a \"host:port\" such as \"glitchtip.example.com:443\", got {text:?}");
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(expected)?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| expected())?
            .to_string(),
        None if host.is_empty() || host.contains([':', '[', ']', '/', ' ']) => {
            return Err(expected());
        }
        None => host.to_owned(),
    };
    Ok((host, port))
}

/// An `http://` proxy URL as `(host, port)`.
pub(crate) fn parse_proxy(text: &str) -> Result<(String, u16), String> {
    let u = Url::parse(text)
        .ok()
        .filter(|u| u.scheme() == "http" && u.host_str().is_some())
        .ok_or_else(|| {
            format!("an http:// proxy URL such as \"http://proxy:3128\", got {text:?}")
        })?;
    Ok((
        u.host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        u.port_or_known_default().unwrap_or(80),
    ))
}

fn status_set(raw: Option<&[RawStatus]>) -> Result<StatusSet, String> {
    let Some(raw) = raw else {
        return Ok(StatusSet(vec![(200, 200)]));
    };
    if raw.is_empty() {
        return Err("at least one status code or range".to_owned());
    }
    let code = |n: i64| -> Result<u16, String> {
        u16::try_from(n)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| format!("status codes from 100 to 599, got {n}"))
    };
    let mut ranges = Vec::with_capacity(raw.len());
    for entry in raw {
        let range = match entry {
            RawStatus::Code(n) => {
                let c = code(*n)?;
                (c, c)
            }
            RawStatus::Text(t) => {
                let bad =
                    || format!("a code such as 200 or a range such as \"200-299\", got {t:?}");
                let (lo, hi) = t.split_once('-').unwrap_or((t, t));
                let lo = code(lo.trim().parse().map_err(|_| bad())?)?;
                let hi = code(hi.trim().parse().map_err(|_| bad())?)?;
                if lo > hi {
                    return Err(format!(
                        "a range whose start is not above its end, got {t:?}"
                    ));
                }
                (lo, hi)
            }
        };
        ranges.push(range);
    }
    Ok(StatusSet(ranges))
}

fn parse_http_url(text: &str) -> Result<Url, String> {
    let expected = || format!("an absolute http:// or https:// URL, got {text:?}");
    let url = Url::parse(text).map_err(|_| expected())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(expected());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL without credentials (use basic_auth with a password file)".to_owned());
    }
    Ok(url)
}

/// Reads a secret from its file (relative to the config file's folder) or environment
/// variable (from the environment the config was loaded with).
pub(crate) fn read_secret(
    secret: &RawSecret,
    key: &str,
    ctx: &Context<'_>,
) -> Result<String, ConfigError> {
    let invalid = |k: &str, e: String| ctx.invalid(k, e);
    match (&secret.file, &secret.env) {
        (Some(path), None) => {
            read_secret_file(&ctx.path(path)).map_err(|e| invalid(&format!("{key}.file"), e))
        }
        (None, Some(var)) => match ctx.env.get(var) {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => Err(invalid(
                &format!("{key}.env"),
                format!("environment variable {var} to be set and not empty"),
            )),
        },
        _ => Err(invalid(key, "exactly one of `file` or `env`".to_owned())),
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("a readable file, cannot read {}: {e}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(format!(
            "a file holding the secret, {} is empty",
            path.display()
        ));
    }
    Ok(text.to_owned())
}

/// Target names are label values and environment variable segments: lowercase letters,
/// digits, `_` and `-`, starting with a letter or digit, without `__` (the nesting
/// separator).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a name of at most 63 lowercase letters, digits, '_' and '-', starting with a letter or digit, without \"__\", got {name:?}"
        ))
    }
}

fn check_name_valid(name: &str) -> Result<(), String> {
    check_name(name)
}

/// `URL` or `NAME=URL`; without a name, the host with every other character than a letter
/// or digit turned into `_`.
fn cli_target(spec: &str) -> Result<(String, String), String> {
    if let Some((name, url)) = spec
        .split_once('=')
        .filter(|(n, _)| !n.contains(':') && !n.contains('/'))
    {
        check_name(name)?;
        return Ok((name.to_owned(), url.to_owned()));
    }
    let url = parse_http_url(spec)?;
    let host = url.host_str().unwrap_or_default();
    let mut name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    let name = name.trim_matches('_').to_owned();
    check_name(&name)?;
    Ok((name, spec.to_owned()))
}
