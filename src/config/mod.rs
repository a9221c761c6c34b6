//! Configuration: a TOML file, then environment overrides, then command-line targets.
//!
//! Loading is two steps, as ripgrep does it: the `config` crate reads the file and the
//! `GLITCHTIP_EXPORTER__*` variables into the raw form ([`raw`]), then [`validate`] checks
//! every field once and builds the typed [`Config`] that the rest of the exporter uses.
//! Nothing here touches the network, so `--check-config` is exactly this.
//!
//! This file holds the loading, the `[server]` keys and the errors. The rest of the
//! validation is split the way the config is: `target.rs` takes one target and what its
//! checks share (timing, the merge of default checks with the configured ones); each kind
//! of check is built in its own file (`http_check.rs`, `tls_check.rs`; the canary, the
//! queue and the heartbeats beside their code, in `canary/config.rs`, `queue/config.rs` and
//! `heartbeat/config.rs`). `secrets.rs` reads secrets from files and the environment,
//! `parse_errors.rs` rewrites the parser's errors so that none quotes a value,
//! `values.rs` holds what several places validate alike (names, URLs, proxies), and
//! `fingerprint.rs` the hash by which a reload tells a changed check from an unchanged one.

mod client_tls;
pub mod defaults;
mod fingerprint;
mod http_check;
mod parse_errors;
mod proxy;
pub mod raw;
mod secrets;
mod strict;
mod target;
mod tls_check;
mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::checks::CheckSpec;
use crate::net::tls::ClientConfigCache;
pub(crate) use client_tls::client_tls;
pub(crate) use fingerprint::Fingerprint;
pub(crate) use proxy::target_proxy;
use raw::{RawConfig, RawTarget};
pub use secrets::Secret;
pub(crate) use secrets::read_secret;
pub use values::display_url;
use values::parse_http_url;
pub(crate) use values::{check_name, within};

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
    /// What one client may hold of the server: deadlines, sizes, connections, probes.
    pub limits: ServerLimits,
}

/// The `[server]` bounds on what clients may hold (README, "Limits"). Changing them takes
/// a restart, like `listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `header_read_timeout`: deadline for a complete request head, counted from the
    /// connection's start or the end of the previous answer (so also the keep-alive idle
    /// deadline); also the longest a request body may stall.
    pub header_read_timeout: Duration,
    /// `max_connections`: open client connections beyond which only the reserve is
    /// served; `None` derives it from the open-file limit at start-up.
    pub max_connections: Option<usize>,
    /// `max_header_bytes`: most bytes of a request line and headers; more is answered 431.
    pub max_header_bytes: usize,
    /// `max_concurrent_probes`: `/probe` requests running at once; more are answered 503.
    pub max_concurrent_probes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            max_connections: None,
            max_header_bytes: defaults::MAX_HEADER_BYTES as usize,
            max_concurrent_probes: defaults::MAX_CONCURRENT_PROBES as usize,
        }
    }
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
            // Saturating: the ranges keep these small, and this must not panic anyway.
            let worst = s
                .interval
                .saturating_add(s.timeout.saturating_mul(2))
                .saturating_add(s.retry_interval)
                .saturating_add(defaults::METRICS_WRITE_GAP)
                .saturating_add(defaults::SCRAPE_AND_EVALUATION);
            (worst > defaults::ALERT_BUDGET).then_some((c.as_ref(), worst))
        })
    }
}

impl Config {
    /// What start-up warns about and `--check-config` prints: each check over the 60 s
    /// alert budget, named by its key, with its worst case.
    pub fn warnings(&self) -> Vec<String> {
        self.over_budget()
            .map(|(spec, worst)| {
                format!(
                    "targets.{}.checks.{}: from outage to firing alert takes up to {} s (interval + 2 × timeout + retry_interval + 31 s), over the {} s alert budget",
                    spec.target,
                    spec.name,
                    worst.as_secs(),
                    defaults::ALERT_BUDGET.as_secs(),
                )
            })
            .collect()
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
    /// Occurs when a reload did not finish reading and validating the config in time (a
    /// stalled file system).
    #[error("the config was not read within {}", humantime::format_duration(*deadline))]
    Unfinished {
        /// The deadline.
        deadline: Duration,
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
/// `Debug` names the environment's variables, never their values (secrets among them).
#[derive(Clone, Default)]
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

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names = self.env.as_ref().map(|env| {
            let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
            names.sort_unstable();
            names
        });
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .field("cli_targets", &self.cli_targets)
            .field("listen", &self.listen)
            .field("mode", &self.mode)
            .field("env_names", &env_names)
            .finish()
    }
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

        let mut text = None;
        let loaded = self.load_from(&origin, &env, &overrides, &mut text);
        match text {
            // Every error about a key of the file names its line and column.
            Some(text) => loaded.map_err(|e| {
                parse_errors::at_line(e, &text, |key| {
                    let var = format!("{ENV_PREFIX}__{}", key.to_uppercase().replace('.', "__"));
                    overrides
                        .keys()
                        .any(|name| *name == var || name.starts_with(&format!("{var}__")))
                })
            }),
            None => loaded,
        }
    }

    fn load_from(
        &self,
        origin: &str,
        env: &HashMap<String, String>,
        overrides: &HashMap<String, String>,
        file_text: &mut Option<String>,
    ) -> Result<Config, ConfigError> {
        let origin = origin.to_owned();
        let mut builder = config::Config::builder();
        if let Some(file) = &self.file {
            // Read the file ourselves: the config crate's message for a missing file does
            // not name it, and it would read a FIFO or /dev/zero without end.
            let parse_error = |message: String| ConfigError::Parse {
                origin: origin.clone(),
                message,
            };
            let bytes = crate::files::read_bounded(file, crate::files::MAX_FILE_BYTES)
                .map_err(|e| parse_error(format!("cannot read the file: {e}")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| parse_error("a UTF-8 text file, it is not".to_owned()))?;
            if let Some(message) = parse_errors::toml_syntax(&text) {
                return Err(parse_error(message));
            }
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
            *file_text = Some(text);
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides.clone())),
        );
        let raw: RawConfig = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| parse_errors::wrap(e, &origin))?;
        let base_dir = self
            .file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_owned);
        let ctx = Context {
            origin: &origin,
            env,
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
    within(shutdown_timeout, &defaults::SHUTDOWN_TIMEOUT_RANGE)
        .map_err(|e| ctx.invalid("server.shutdown_timeout", e))?;

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
        targets.push(target::build(name, target, &raw, &mut tls_cache, ctx)?);
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
    let limits = server_limits(&raw.server, ctx)?;
    Ok(Config {
        listen,
        mode,
        shutdown_timeout,
        targets,
        heartbeats,
        state_file,
        limits,
    })
}

/// The `[server]` limits, each within a range that keeps the server both usable and
/// bounded.
fn server_limits(raw: &raw::RawServer, ctx: &Context<'_>) -> Result<ServerLimits, ConfigError> {
    const HEADER_READ_TIMEOUT: std::ops::RangeInclusive<Duration> =
        Duration::from_millis(100)..=Duration::from_secs(60);
    let header_read_timeout = raw
        .header_read_timeout
        .unwrap_or(defaults::HEADER_READ_TIMEOUT);
    if !HEADER_READ_TIMEOUT.contains(&header_read_timeout) {
        return Err(ctx.invalid(
            "server.header_read_timeout",
            format!(
                "a duration from 100ms to 1m, such as \"5s\", got {}",
                humantime::format_duration(header_read_timeout)
            ),
        ));
    }
    let in_range = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64, what: &str| {
        let value = value.unwrap_or(default);
        if (min..=max).contains(&value) {
            Ok(value as usize)
        } else {
            Err(ctx.invalid(
                &format!("server.{key}"),
                format!("{what} from {min} to {max}, got {value}"),
            ))
        }
    };
    let max_connections = raw
        .max_connections
        .map(|n| {
            in_range(
                "max_connections",
                Some(n),
                n,
                1,
                1 << 20,
                "a number of connections",
            )
        })
        .transpose()?;
    Ok(ServerLimits {
        header_read_timeout,
        max_connections,
        max_header_bytes: in_range(
            "max_header_bytes",
            raw.max_header_bytes,
            defaults::MAX_HEADER_BYTES,
            1024,
            64 * 1024,
            "a size in bytes",
        )?,
        max_concurrent_probes: in_range(
            "max_concurrent_probes",
            raw.max_concurrent_probes,
            defaults::MAX_CONCURRENT_PROBES,
            1,
            1024,
            "a number of requests",
        )?,
    })
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
