//! One read of GlitchTip's queue keys in Redis/Valkey: connect, authenticate, detect the
//! layout, read.
//!
//! Read-only by construction: the only commands sent are `AUTH` (by the client, when a
//! password is set), `SELECT` (when the URL names a database other than 0), `PING`,
//! `EXISTS`, `SCAN … MATCH … COUNT …`, `LLEN` and `GET` — never `KEYS`, never a write,
//! never a pop. An ACL user allowed only these works (see the README).
//!
//! The connection is made here (injected resolver, TCP, rustls for `rediss://`) and handed
//! to the `redis` crate, so that tests never reach the system resolver and TLS uses the
//! exporter's one crypto provider. A fresh connection per read: nothing stale survives a
//! Redis restart. Every reply is capped ([`super::capped`]): one command at a time, each
//! with a budget of [`QUEUE_MAX_REPLY_BYTES`].

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ErrorKind, FromRedisValue, RedisConnectionInfo, RedisError,
    ServerErrorKind,
};

use super::capped::{Budget, Capped};
use super::config::{LayoutChoice, QueueSpec};
use super::read::{Layout, MAX_TASKS, QueueReason, Reading, last_run_age, parse_last_run};
use crate::clock::{Clock, unix_seconds};
use crate::config::defaults::{MAX_LABEL_VALUE_CHARS, QUEUE_MAX_REPLY_BYTES, QUEUE_PREFIXES};
use crate::net::connect::{AbortOnDrop, Io, resolve, tcp_connect};
use crate::net::resolver::Resolver;

/// The queues of the vtasks layout: ready lists `<prefix>:q:<name>`.
pub const VTASKS_QUEUES: [&str; 3] = ["default", "ingest", "failed"];
/// The Celery queue (GlitchTip 5.x).
pub const CELERY_QUEUE: &str = "celery";
/// `SCAN … COUNT`: keys looked at per round trip.
const SCAN_COUNT: usize = 1000;
/// Most `SCAN` round trips per pattern (10 million keys looked at), so that a huge
/// keyspace cannot keep a read busy past its deadline for nothing.
const MAX_SCAN_ROUNDS: usize = 10_000;
/// Most keys one pattern may match (live workers, scheduler keys): more is not
/// GlitchTip's layout, and would only cost memory (`reply_too_large`).
pub const MAX_SCAN_KEYS: usize = 10_000;

/// A failed read: its reason and a detail for the log (never a secret).
struct Fail(QueueReason, String);

type Result<T> = std::result::Result<T, Fail>;

/// A connection whose every reply is capped.
struct Conn {
    conn: MultiplexedConnection,
    budget: Arc<Budget>,
    _driver: AbortOnDrop,
}

impl Conn {
    /// Sends `cmd` and waits for its reply, with a full reply budget.
    async fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T> {
        self.budget.reset();
        cmd.query_async(&mut self.conn)
            .await
            .map_err(|e| fail(&e, &self.budget))
    }
}

/// Reads once; the caller owns the deadline (a read cut by it is a `timeout`).
pub async fn read(
    spec: &QueueSpec,
    resolver: &Arc<dyn Resolver>,
    clock: &dyn Clock,
    hint: Option<&Layout>,
) -> Reading {
    let result = match connect(spec, resolver).await {
        Ok(mut conn) => read_layout(spec, &mut conn, clock, hint).await,
        Err(f) => Err(f),
    };
    result.unwrap_or_else(|Fail(reason, detail)| Reading::failed(reason, detail))
}

async fn connect(spec: &QueueSpec, resolver: &Arc<dyn Resolver>) -> Result<Conn> {
    let addrs = resolve(resolver.as_ref(), &spec.host, spec.port)
        .await
        .map_err(|e| Fail(QueueReason::Dns, e))?;
    let stream = tcp_connect(&addrs)
        .await
        .map_err(|e| Fail(super::read::connect_reason(&e), e.to_string()))?;
    let io: Box<dyn Io> = match &spec.tls {
        Some(tls) => Box::new(
            tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(tls.server_name.clone(), stream)
                .await
                .map_err(|e| Fail(QueueReason::Tls, e.to_string()))?,
        ),
        None => Box::new(stream),
    };
    let budget = Budget::new(QUEUE_MAX_REPLY_BYTES);
    let io = Capped::new(io, budget.clone());
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
        .map_err(|e| fail(&e, &budget))?;
    Ok(Conn {
        conn,
        budget,
        _driver: AbortOnDrop(tokio::spawn(driver)),
    })
}

/// A redis error as a reason and a detail (the server's message names no secret).
fn fail(e: &RedisError, budget: &Budget) -> Fail {
    if budget.exceeded() {
        return Fail(
            QueueReason::ReplyTooLarge,
            format!("a reply is longer than {} bytes", budget.limit()),
        );
    }
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
    Fail(reason, e.to_string())
}

async fn read_layout(
    spec: &QueueSpec,
    conn: &mut Conn,
    clock: &dyn Clock,
    hint: Option<&Layout>,
) -> Result<Reading> {
    conn.query::<()>(&redis::cmd("PING")).await?;
    let candidates: Vec<String> = match &spec.prefix {
        Some(p) => vec![p.clone()],
        None => QUEUE_PREFIXES.iter().map(|p| (*p).to_owned()).collect(),
    };
    if spec.layout != LayoutChoice::Celery {
        for prefix in &candidates {
            // Keys that exist even when every queue is empty (an empty list does not);
            // after a restart without persistence only the workers' liveness keys may be
            // left.
            let scheduler = scan(conn, &format!("{prefix}:scheduler:*"), MAX_SCAN_KEYS).await?;
            if !scheduler.is_empty()
                || has_queue(conn, prefix).await?
                || !scan(conn, &format!("{prefix}:alive:*"), 1)
                    .await?
                    .is_empty()
            {
                return read_vtasks(spec, conn, clock, prefix, &scheduler).await;
            }
        }
        // Configured, or found by an earlier read, and no key under any candidate prefix
        // now: empty queues, and a scheduler that has written nothing since the restart.
        let remembered = match hint {
            Some(Layout::Vtasks { prefix }) if candidates.contains(prefix) => Some(prefix.clone()),
            _ => None,
        };
        if let Some(prefix) = remembered
            .or_else(|| (spec.layout == LayoutChoice::Vtasks).then(|| candidates[0].clone()))
        {
            return read_vtasks(spec, conn, clock, &prefix, &[]).await;
        }
    }
    let celery = conn
        .query::<u64>(redis::cmd("EXISTS").arg(CELERY_QUEUE))
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
    Err(Fail(
        QueueReason::UnknownLayout,
        "no GlitchTip queue keys: neither <prefix>:scheduler:*, <prefix>:q:* or <prefix>:alive:* (6.x) nor celery/_kombu.binding.* (5.x); check the URL's database number".to_owned(),
    ))
}

async fn has_queue(conn: &mut Conn, prefix: &str) -> Result<bool> {
    let mut cmd = redis::cmd("EXISTS");
    for queue in VTASKS_QUEUES {
        cmd.arg(format!("{prefix}:q:{queue}"));
    }
    Ok(conn.query::<u64>(&cmd).await? > 0)
}

async fn read_vtasks(
    spec: &QueueSpec,
    conn: &mut Conn,
    clock: &dyn Clock,
    prefix: &str,
    scheduler_keys: &[String],
) -> Result<Reading> {
    let mut lengths = Vec::with_capacity(VTASKS_QUEUES.len());
    for queue in VTASKS_QUEUES {
        lengths.push((
            queue.to_owned(),
            llen(conn, &format!("{prefix}:q:{queue}")).await?,
        ));
    }
    let last_run_prefix = format!("{prefix}:scheduler:vtasks_last_run:");
    // The heartbeat tasks first: read even when the scan did not see them.
    let mut tasks: Vec<&str> = spec
        .scheduler_tasks
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    let mut found: Vec<&str> = scheduler_keys
        .iter()
        .filter_map(|k| k.strip_prefix(&last_run_prefix))
        .filter(|t| !t.is_empty() && !tasks.contains(t))
        .collect();
    found.sort_unstable();
    found.dedup();
    tasks.extend(found);
    tasks.truncate(MAX_TASKS);
    let now = unix_seconds(clock.now());
    let mut last_run_ages = Vec::with_capacity(tasks.len());
    for task in tasks {
        let value: Option<Vec<u8>> = conn
            .query(redis::cmd("GET").arg(format!("{last_run_prefix}{task}")))
            .await?;
        // A key gone, unreadable or far in the future counts as no last run.
        let Some(age) = value
            .and_then(|v| parse_last_run(&v).ok())
            .and_then(|epoch| last_run_age(epoch, now))
        else {
            continue;
        };
        let label: String = task.chars().take(MAX_LABEL_VALUE_CHARS).collect();
        last_run_ages.push((label, age));
    }
    let workers = if spec.workers {
        Some(
            scan(conn, &format!("{prefix}:alive:*"), MAX_SCAN_KEYS)
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

async fn llen(conn: &mut Conn, key: &str) -> Result<u64> {
    conn.query::<u64>(redis::cmd("LLEN").arg(key)).await
}

/// Every key matching `pattern` (`SCAN`, never `KEYS`), stopping once `limit` are found;
/// more than [`MAX_SCAN_KEYS`] is `reply_too_large`.
async fn scan(conn: &mut Conn, pattern: &str, limit: usize) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    for _ in 0..MAX_SCAN_ROUNDS {
        let (next, keys): (u64, Vec<String>) = conn
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT),
            )
            .await?;
        found.extend(keys);
        if found.len() > MAX_SCAN_KEYS {
            return Err(Fail(
                QueueReason::ReplyTooLarge,
                format!("more than {MAX_SCAN_KEYS} keys match {pattern}"),
            ));
        }
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
