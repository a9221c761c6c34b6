//! `[targets.<name>.queue]`: the raw form as written, and its validation into a
//! [`QueueSpec`]. Kept beside the queue code; [`crate::config`] calls [`build`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use url::Url;

use crate::config::defaults::MAX_LABEL_VALUE_CHARS;
use crate::config::raw::{RawSecret, RawTls};
use crate::config::{ConfigError, Context, Fingerprint, Secret, defaults, read_secret, within};
use crate::net::tls::{AcceptAnyCertificate, provider, root_store};

/// `[targets.<name>.queue]`, as written.
#[derive(Debug, Default, Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// `false` turns the queue reading off without removing the table.
    pub enabled: Option<bool>,
    /// `redis://host:6379/0` or `rediss://…` (TLS), or
    /// `postgres://user@host:5432/glitchtip?sslmode=verify-full` (django-vtasks' database
    /// backend); a user name is allowed, a password is not (use `password`).
    pub url: Option<String>,
    /// The password: `{ file = "..." }` or `{ env = "VAR" }`.
    pub password: Option<RawSecret>,
    /// `auto` (default), `celery` (GlitchTip 5.x and older) or `vtasks` (6.x).
    pub layout: Option<String>,
    /// The django-vtasks key prefix; default: `{vt}`, then `vt`, whichever has keys.
    pub prefix: Option<String>,
    /// Time between two reads.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Deadline of one read (connect, authenticate, read).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Export `glitchtip_workers` from the task library's liveness keys (`{vt}:alive:*`,
    /// django-vtasks 3.x on); only where those keys are written.
    pub workers: Option<bool>,
    /// TLS options for `rediss://` and `postgres://…?sslmode=verify-full`.
    pub tls: Option<RawTls>,
    /// The periodic tasks whose last run proves the scheduler alive, each with the
    /// longest age it may reach (`{ "uptime-dispatch-checks" = "30s" }`); `{}`: none.
    pub scheduler_tasks: Option<BTreeMap<String, String>>,
}

/// Where GlitchTip 6 keeps its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Redis/Valkey (`redis://`, `rediss://`): Celery (5.x) or django-vtasks (6.x) keys.
    Valkey,
    /// PostgreSQL (`postgres://`): django-vtasks' database backend, GlitchTip 6's
    /// all-in-one mode without Valkey.
    Database,
}

/// Which key layout to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayoutChoice {
    /// Detect it from the keys present.
    Auto,
    /// Celery (GlitchTip 5.x and older): list `celery`.
    Celery,
    /// django-vtasks (GlitchTip 6.x): lists `<prefix>:q:*`, scheduler and liveness keys.
    Vtasks,
}

/// A Redis/Valkey password, exposed for the `AUTH` command only. Its `Debug` output never
/// shows it.
pub type Password = Secret;

/// TLS for `rediss://`.
#[derive(Clone)]
pub struct QueueTls {
    /// Client configuration (no ALPN).
    pub config: Arc<ClientConfig>,
    /// The name the certificate must carry.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for QueueTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A validated queue reader of one target.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// Target name (the `target` label).
    pub target: String,
    /// Redis/Valkey or PostgreSQL.
    pub backend: Backend,
    /// Host (an IPv6 literal without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database number (`SELECT`, when not 0); Redis/Valkey only.
    pub db: i64,
    /// Database name; PostgreSQL only.
    pub dbname: String,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<Password>,
    /// TLS, for `rediss://`.
    pub tls: Option<QueueTls>,
    /// Key layout.
    pub layout: LayoutChoice,
    /// The vtasks prefix; `None`: try [`defaults::QUEUE_PREFIXES`].
    pub prefix: Option<String>,
    /// Time between reads.
    pub interval: Duration,
    /// Deadline of one read.
    pub timeout: Duration,
    /// Whether `glitchtip_workers` is exported.
    pub workers: bool,
    /// The periodic tasks that prove the scheduler alive, with their longest age, sorted
    /// by name; empty: no scheduler judgement.
    pub scheduler_tasks: Vec<(String, Duration)>,
    /// Hash of every input, secrets included (hashed): a reload restarts the reader only
    /// when it changed.
    pub fingerprint: u64,
}

/// Validates the queue table of target `target_name`; `None` when `enabled = false`.
pub fn build(
    target_name: &str,
    raw: &RawQueue,
    ctx: &Context<'_>,
) -> Result<Option<QueueSpec>, ConfigError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let key = format!("targets.{target_name}.queue");
    let field = |f: &str| format!("{key}.{f}");
    let example = "a URL such as \"redis://valkey:6379/0\", \"rediss://valkey:6380/0\" or \"postgres://exporter@db:5432/glitchtip\"";
    let text = raw
        .url
        .as_deref()
        .ok_or_else(|| ctx.invalid(&field("url"), format!("{example} (required)")))?;
    // Never repeat the URL in an error: it might hold a password.
    let url = Url::parse(text)
        .map_err(|_| ctx.invalid(&field("url"), format!("{example}, got an unreadable URL")))?;
    if url.password().is_some() {
        return Err(ctx.invalid(
            &field("url"),
            "a URL without a password: set password = { file = \"...\" } or { env = \"VAR\" }"
                .to_owned(),
        ));
    }
    let (backend, tls_mode) = match url.scheme() {
        "redis" => (Backend::Valkey, TlsMode::Off),
        "rediss" => (Backend::Valkey, TlsMode::Verify),
        "postgres" | "postgresql" => (Backend::Database, sslmode(&url, ctx, &field("url"))?),
        other => {
            return Err(ctx.invalid(&field("url"), format!("{example}, got scheme {other:?}")));
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ctx.invalid(&field("url"), format!("{example}, got no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let path = url.path().trim_matches('/');
    if url.fragment().is_some() || (backend == Backend::Valkey && url.query().is_some()) {
        return Err(ctx.invalid(
            &field("url"),
            format!("{example}, without a query or fragment"),
        ));
    }
    let (port, db, dbname) = match backend {
        Backend::Valkey => {
            let db = match path {
                "" => 0,
                n => n.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| {
                    ctx.invalid(
                        &field("url"),
                        format!("{example}: the path is the database number, got {n:?}"),
                    )
                })?,
            };
            (url.port().unwrap_or(6379), db, String::new())
        }
        Backend::Database => {
            let name = percent_decode(path)
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .ok_or_else(|| {
                    ctx.invalid(
                        &field("url"),
                        format!("{example}: the path is the database name, got none"),
                    )
                })?;
            (url.port().unwrap_or(5432), 0, name)
        }
    };
    let username = match url.username() {
        "" => None,
        name => Some(
            percent_decode(name)
                .ok_or_else(|| ctx.invalid(&field("url"), "a readable user name".to_owned()))?,
        ),
    };
    if backend == Backend::Database && username.is_none() {
        return Err(ctx.invalid(
            &field("url"),
            "a user name in a postgres:// URL, such as \"postgres://glitchtip_exporter@db:5432/glitchtip\""
                .to_owned(),
        ));
    }
    let mut fingerprint = Fingerprint::default();
    let password = match &raw.password {
        Some(source) => {
            let p = read_secret(source, &field("password"), ctx)?;
            fingerprint.secret(p.expose());
            Some(p)
        }
        None => None,
    };

    if backend == Backend::Database {
        for (k, set) in [
            ("layout", raw.layout.is_some()),
            ("prefix", raw.prefix.is_some()),
        ] {
            if set {
                return Err(ctx.invalid(
                    &field(k),
                    "no such setting with a postgres:// URL (the tables are django-vtasks')"
                        .to_owned(),
                ));
            }
        }
    }
    let layout = match raw.layout.as_deref().unwrap_or("auto") {
        "auto" => LayoutChoice::Auto,
        "celery" => LayoutChoice::Celery,
        "vtasks" => LayoutChoice::Vtasks,
        other => {
            return Err(ctx.invalid(
                &field("layout"),
                format!("\"auto\", \"celery\" (GlitchTip 5.x) or \"vtasks\" (6.x), got {other:?}"),
            ));
        }
    };
    let prefix = match &raw.prefix {
        None => None,
        Some(_) if layout == LayoutChoice::Celery => {
            return Err(ctx.invalid(
                &field("prefix"),
                "no prefix with layout = \"celery\" (the prefix is django-vtasks')".to_owned(),
            ));
        }
        Some(p)
            if !p.is_empty()
                && p.bytes().all(|b| {
                    b.is_ascii_graphic() && !matches!(b, b'*' | b'?' | b'[' | b']' | b'\\')
                }) =>
        {
            Some(p.clone())
        }
        Some(p) => {
            return Err(ctx.invalid(
                &field("prefix"),
                format!("a key prefix such as \"{{vt}}\" without spaces or * ? [ ] \\, got {p:?}"),
            ));
        }
    };
    let workers = raw.workers.unwrap_or(match backend {
        Backend::Valkey => defaults::QUEUE_WORKERS,
        Backend::Database => defaults::QUEUE_WORKERS_DATABASE,
    });
    if workers && layout == LayoutChoice::Celery {
        return Err(ctx.invalid(
            &field("workers"),
            "false with layout = \"celery\": Celery writes no liveness keys".to_owned(),
        ));
    }

    let interval = raw.interval.unwrap_or(defaults::QUEUE_INTERVAL);
    let timeout = raw.timeout.unwrap_or(defaults::QUEUE_TIMEOUT);
    for (k, value) in [("interval", interval), ("timeout", timeout)] {
        if value.is_zero() {
            return Err(ctx.invalid(
                &field(k),
                "a duration above zero, such as \"15s\"".to_owned(),
            ));
        }
        within(value, &defaults::TIMING_RANGE).map_err(|e| ctx.invalid(&field(k), e))?;
    }
    if timeout > interval {
        return Err(ctx.invalid(
            &field("timeout"),
            format!(
                "a timeout no longer than the interval ({}), got {}",
                humantime::format_duration(interval),
                humantime::format_duration(timeout)
            ),
        ));
    }

    let scheduler_tasks = scheduler_tasks(raw, ctx, &field("scheduler_tasks"))?;
    let tls = match (&raw.tls, tls_mode) {
        (Some(_), TlsMode::Off | TlsMode::Encrypt) => {
            return Err(ctx.invalid(
                &field("tls"),
                "TLS options only with a rediss:// URL or sslmode=verify-full".to_owned(),
            ));
        }
        (_, TlsMode::Off) => None,
        (tls, mode) => {
            let tls = tls.clone().unwrap_or_default();
            let config = if mode == TlsMode::Encrypt || tls.insecure_skip_verify.unwrap_or(false) {
                Arc::new(AcceptAnyCertificate::new(provider())).client_config()
            } else {
                let ca_file = tls.ca_file.as_deref().map(|p| ctx.path(p));
                let roots = root_store(ca_file.as_deref()).map_err(|e| {
                    ctx.invalid(
                        &field("tls.ca_file"),
                        format!("a readable PEM file of CA certificates ({e})"),
                    )
                })?;
                Arc::new(
                    ClientConfig::builder_with_provider(provider())
                        .with_safe_default_protocol_versions()
                        .expect("ring supports the default protocol versions")
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            };
            let name = tls.server_name.clone().unwrap_or_else(|| host.clone());
            let server_name = ServerName::try_from(name.clone()).map_err(|_| {
                ctx.invalid(
                    &field("tls.server_name"),
                    format!("a DNS name or IP address, got {name:?}"),
                )
            })?;
            Some(QueueTls {
                config,
                server_name,
            })
        }
    };

    fingerprint.add(raw).add(&target_name);
    Ok(Some(QueueSpec {
        target: target_name.to_owned(),
        backend,
        host,
        port,
        db,
        dbname,
        username,
        password,
        tls,
        layout,
        prefix,
        interval,
        timeout,
        workers,
        scheduler_tasks,
        fingerprint: fingerprint.finish(),
    }))
}

/// How a connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// Plain TCP.
    Off,
    /// TLS, any certificate (PostgreSQL's `sslmode=require`).
    Encrypt,
    /// TLS, the certificate verified (`rediss://`, `sslmode=verify-full`).
    Verify,
}

/// A `postgres://` URL's `sslmode` (its only query parameter): `disable` (the default),
/// `require` or `verify-full`. `prefer` and `allow` are refused: they fall back to plain
/// text without a word.
fn sslmode(url: &Url, ctx: &Context<'_>, key: &str) -> Result<TlsMode, ConfigError> {
    let mut mode = TlsMode::Off;
    for (name, value) in url.query_pairs() {
        mode = match (name.as_ref(), value.as_ref()) {
            ("sslmode", "disable") => TlsMode::Off,
            ("sslmode", "require") => TlsMode::Encrypt,
            ("sslmode", "verify-full") => TlsMode::Verify,
            ("sslmode", other) => {
                return Err(ctx.invalid(
                    key,
                    format!("sslmode disable, require or verify-full, got {other:?}"),
                ));
            }
            (other, _) => {
                return Err(ctx.invalid(
                    key,
                    format!("no query parameter other than sslmode, got {other:?}"),
                ));
            }
        };
    }
    Ok(mode)
}

/// `scheduler_tasks`, sorted by name; the GlitchTip 6 schedule when not set.
fn scheduler_tasks(
    raw: &RawQueue,
    ctx: &Context<'_>,
    key: &str,
) -> Result<Vec<(String, Duration)>, ConfigError> {
    let Some(tasks) = &raw.scheduler_tasks else {
        return Ok(defaults::QUEUE_SCHEDULER_TASKS
            .iter()
            .map(|(name, age)| ((*name).to_owned(), *age))
            .collect());
    };
    let mut out = Vec::with_capacity(tasks.len());
    for (name, age) in tasks {
        // Letters, digits and - _ . : only: the names go into the PostgreSQL reader's SQL.
        if name.is_empty()
            || name.len() > MAX_LABEL_VALUE_CHARS
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(ctx.invalid(
                key,
                format!(
                    "task names of 1 to {MAX_LABEL_VALUE_CHARS} letters, digits, -, _, . or :, got {name:?}"
                ),
            ));
        }
        let age = humantime::parse_duration(age)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ctx.invalid(
                    &format!("{key}.{name}"),
                    format!("a duration above zero, such as \"30s\", got {age:?}"),
                )
            })?;
        out.push((name.clone(), age));
    }
    if out.len() > super::read::MAX_TASKS {
        return Err(ctx.invalid(
            key,
            format!(
                "at most {} tasks, got {}",
                super::read::MAX_TASKS,
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// `%XX`-decodes a URL's user name or path.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
