//! One read of GlitchTip's queue keys: connect, authenticate, detect the layout, read.
//!
//! Read-only by construction: the only commands sent are `AUTH` (by the client, when a
//! password is set), `SELECT` (when the URL names a database other than 0), `PING`,
//! `EXISTS`, `SCAN … MATCH … COUNT …`, `LLEN` and `GET` — never `KEYS`, never a write,
//! never a pop. An ACL user allowed only these works (see the README).
//!
//! The connection is made here (injected resolver, TCP, rustls for `rediss://`) and handed
//! to the `redis` crate, so that tests never reach the system resolver and TLS uses the
//! exporter's one crypto provider. A fresh connection per read: nothing stale survives a
//! Redis restart.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, RedisError, ServerErrorKind};

use super::config::{LayoutChoice, QueueSpec};
use crate::clock::{Clock, unix_seconds};
use crate::config::defaults::{MAX_LABEL_VALUE_CHARS, QUEUE_PREFIXES};
use crate::net::connect::{AbortOnDrop, Io, resolve, tcp_connect};
use crate::net::resolver::Resolver;

/// The queues of the vtasks layout: ready lists `<prefix>:q:<name>`.
pub const VTASKS_QUEUES: [&str; 3] = ["default", "ingest", "failed"];
/// The Celery queue (GlitchTip 5.x).
pub const CELERY_QUEUE: &str = "celery";
/// Most periodic tasks reported: a bound on the `task` label's values.
pub const MAX_TASKS: usize = 32;
/// `SCAN … COUNT`: keys looked at per round trip.
const SCAN_COUNT: usize = 1000;
/// Most `SCAN` round trips per pattern (10 million keys looked at), so that a huge
/// keyspace cannot keep a read busy past its deadline for nothing.
const MAX_SCAN_ROUNDS: usize = 10_000;

/// Why the last read failed, from a fixed set: the `reason` label of
/// `glitchtip_queue_failure_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QueueReason {
    /// The read succeeded.
    #[default]
    None,
    /// The host name did not resolve.
    Dns,
    /// The TCP connection failed or broke.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// No complete read within the timeout.
    Timeout,
    /// Wrong or missing password (`WRONGPASS`, `NOAUTH`).
    Auth,
    /// The ACL user may not run a command the read needs (`NOPERM`).
    Denied,
    /// Neither GlitchTip layout's keys exist (wrong server or database?).
    UnknownLayout,
    /// Any other server error or unexpected answer.
    Error,
}

impl QueueReason {
    /// Every reason.
    pub const ALL: [QueueReason; 9] = [
        QueueReason::None,
        QueueReason::Dns,
        QueueReason::Connect,
        QueueReason::Tls,
        QueueReason::Timeout,
        QueueReason::Auth,
        QueueReason::Denied,
        QueueReason::UnknownLayout,
        QueueReason::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueReason::None => "none",
            QueueReason::Dns => "dns",
            QueueReason::Connect => "connect",
            QueueReason::Tls => "tls",
            QueueReason::Timeout => "timeout",
            QueueReason::Auth => "auth",
            QueueReason::Denied => "denied",
            QueueReason::UnknownLayout => "unknown_layout",
            QueueReason::Error => "error",
        }
    }
}

/// The layout found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Celery's list `celery`.
    Celery,
    /// django-vtasks with this key prefix.
    Vtasks {
        /// `{vt}` or `vt` (or the configured one).
        prefix: String,
    },
}

impl Layout {
    /// The `layout` label value.
    pub fn name(&self) -> &'static str {
        match self {
            Layout::Celery => "celery",
            Layout::Vtasks { .. } => "vtasks",
        }
    }

    /// The `prefix` label value (empty for Celery).
    pub fn prefix(&self) -> &str {
        match self {
            Layout::Celery => "",
            Layout::Vtasks { prefix } => prefix,
        }
    }
}

/// What one read found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// `None` when the read succeeded.
    pub reason: QueueReason,
    /// For logs: never a secret.
    pub detail: Option<String>,
    /// The layout read.
    pub layout: Option<Layout>,
    /// `(queue, length)`.
    pub lengths: Vec<(String, u64)>,
    /// `(task, seconds since its last run)` at the time of the read (vtasks only).
    pub last_run_ages: Vec<(String, f64)>,
    /// Live workers (`<prefix>:alive:*` keys), when configured and vtasks.
    pub workers: Option<u64>,
}

impl Reading {
    fn failed(reason: QueueReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: Some(detail.into()),
            ..Self::default()
        }
    }
}

/// Reads once; the caller owns the deadline (a read cut by it is a `timeout`).
pub async fn read(spec: &QueueSpec, resolver: &Arc<dyn Resolver>, clock: &dyn Clock) -> Reading {
    let (mut conn, _driver) = match connect(spec, resolver).await {
        Ok(c) => c,
        Err(reading) => return reading,
    };
    match read_layout(spec, &mut conn, clock).await {
        Ok(reading) => reading,
        Err(e) => {
            let (reason, detail) = classify(&e);
            Reading::failed(reason, detail)
        }
    }
}

async fn connect(
    spec: &QueueSpec,
    resolver: &Arc<dyn Resolver>,
) -> Result<(MultiplexedConnection, AbortOnDrop), Reading> {
    let addrs = resolve(resolver.as_ref(), &spec.host, spec.port)
        .await
        .map_err(|e| Reading::failed(QueueReason::Dns, e))?;
    let stream = tcp_connect(&addrs)
        .await
        .map_err(|e| Reading::failed(QueueReason::Connect, e.to_string()))?;
    let io: Box<dyn Io> = match &spec.tls {
        Some(tls) => Box::new(
            tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(tls.server_name.clone(), stream)
                .await
                .map_err(|e| Reading::failed(QueueReason::Tls, e.to_string()))?,
        ),
        None => Box::new(stream),
    };
    // No CLIENT SETINFO: the ACL user needs no more than the read commands.
    let mut info = RedisConnectionInfo::default()
        .set_skip_set_lib_name()
        .set_db(spec.db);
    if let Some(user) = &spec.username {
        info = info.set_username(user);
    }
    if let Some(password) = &spec.password {
        info = info.set_password(password.expose());
    }
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(spec.timeout))
        .set_connection_timeout(Some(spec.timeout));
    let (conn, driver) = MultiplexedConnection::new_with_config(&info, io, config)
        .await
        .map_err(|e| {
            let (reason, detail) = classify(&e);
            Reading::failed(reason, detail)
        })?;
    Ok((conn, AbortOnDrop(tokio::spawn(driver))))
}

/// A redis error as a reason and a detail (the server's message names no secret).
fn classify(e: &RedisError) -> (QueueReason, String) {
    let code = e.code().unwrap_or_default();
    let reason =
        if e.kind() == ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH") {
            QueueReason::Auth
        } else if e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) || code == "NOPERM" {
            QueueReason::Denied
        } else if e.is_timeout() {
            QueueReason::Timeout
        } else if e.is_io_error() || e.is_connection_refusal() {
            QueueReason::Connect
        } else {
            QueueReason::Error
        };
    (reason, e.to_string())
}

async fn read_layout(
    spec: &QueueSpec,
    conn: &mut MultiplexedConnection,
    clock: &dyn Clock,
) -> Result<Reading, RedisError> {
    redis::cmd("PING").query_async::<()>(conn).await?;
    let candidates: Vec<String> = match &spec.prefix {
        Some(p) => vec![p.clone()],
        None => QUEUE_PREFIXES.iter().map(|p| (*p).to_owned()).collect(),
    };
    if spec.layout != LayoutChoice::Celery {
        for prefix in &candidates {
            // Keys that exist even when every queue is empty (an empty list does not).
            let scheduler = scan(conn, &format!("{prefix}:scheduler:*"), usize::MAX).await?;
            if !scheduler.is_empty() || has_queue(conn, prefix).await? {
                return read_vtasks(spec, conn, clock, prefix, &scheduler).await;
            }
        }
        if spec.layout == LayoutChoice::Vtasks {
            // Configured, and no key under any candidate prefix yet: empty queues.
            let prefix = candidates.first().cloned().unwrap_or_default();
            return read_vtasks(spec, conn, clock, &prefix, &[]).await;
        }
    }
    let celery = redis::cmd("EXISTS")
        .arg(CELERY_QUEUE)
        .query_async::<u64>(conn)
        .await?
        > 0
        || !scan(conn, "_kombu.binding.*", 1).await?.is_empty();
    if celery || spec.layout == LayoutChoice::Celery {
        let length = llen(conn, CELERY_QUEUE).await?;
        return Ok(Reading {
            layout: Some(Layout::Celery),
            lengths: vec![(CELERY_QUEUE.to_owned(), length)],
            ..Reading::default()
        });
    }
    Ok(Reading::failed(
        QueueReason::UnknownLayout,
        "no GlitchTip queue keys: neither <prefix>:scheduler:* (6.x) nor celery/_kombu.binding.* (5.x); check the URL's database number",
    ))
}

async fn has_queue(conn: &mut MultiplexedConnection, prefix: &str) -> Result<bool, RedisError> {
    let mut cmd = redis::cmd("EXISTS");
    for queue in VTASKS_QUEUES {
        cmd.arg(format!("{prefix}:q:{queue}"));
    }
    Ok(cmd.query_async::<u64>(conn).await? > 0)
}

async fn read_vtasks(
    spec: &QueueSpec,
    conn: &mut MultiplexedConnection,
    clock: &dyn Clock,
    prefix: &str,
    scheduler_keys: &[String],
) -> Result<Reading, RedisError> {
    let mut lengths = Vec::with_capacity(VTASKS_QUEUES.len());
    for queue in VTASKS_QUEUES {
        lengths.push((
            queue.to_owned(),
            llen(conn, &format!("{prefix}:q:{queue}")).await?,
        ));
    }
    let last_run_prefix = format!("{prefix}:scheduler:vtasks_last_run:");
    let mut tasks: Vec<&str> = scheduler_keys
        .iter()
        .filter_map(|k| k.strip_prefix(&last_run_prefix))
        .filter(|t| !t.is_empty())
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    tasks.truncate(MAX_TASKS);
    let mut last_run_ages = Vec::with_capacity(tasks.len());
    for task in tasks {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("{last_run_prefix}{task}"))
            .query_async(conn)
            .await?;
        // The scheduler stores `str(datetime.timestamp())`; a key gone or unreadable
        // since the scan is skipped.
        let Some(epoch) = value
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|e| e.is_finite())
        else {
            continue;
        };
        // A worker clock ahead of the exporter's would give a negative age: 0.
        let age = (unix_seconds(clock.now()) - epoch).max(0.0);
        let label: String = task.chars().take(MAX_LABEL_VALUE_CHARS).collect();
        last_run_ages.push((label, age));
    }
    let workers = if spec.workers {
        Some(
            scan(conn, &format!("{prefix}:alive:*"), usize::MAX)
                .await?
                .len() as u64,
        )
    } else {
        None
    };
    Ok(Reading {
        layout: Some(Layout::Vtasks {
            prefix: prefix.to_owned(),
        }),
        lengths,
        last_run_ages,
        workers,
        ..Reading::default()
    })
}

async fn llen(conn: &mut MultiplexedConnection, key: &str) -> Result<u64, RedisError> {
    redis::cmd("LLEN").arg(key).query_async::<u64>(conn).await
}

/// Every key matching `pattern` (`SCAN`, never `KEYS`), stopping after `limit` found.
async fn scan(
    conn: &mut MultiplexedConnection,
    pattern: &str,
    limit: usize,
) -> Result<Vec<String>, RedisError> {
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    for _ in 0..MAX_SCAN_ROUNDS {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        found.extend(keys);
        if next == 0 || found.len() >= limit {
            break;
        }
        cursor = next;
    }
    // SCAN may return a key twice.
    found.sort_unstable();
    found.dedup();
    Ok(found)
}
