//! One read of django-vtasks' database backend (GlitchTip 6 "all in one", `VALKEY_URL`
//! empty): tables `db_queuedtask` and `db_vtaskmetadata` in PostgreSQL.
//!
//! Read-only by construction and bounded: one connection per read, the session set
//! read-only with a statement timeout at start-up (`default_transaction_read_only`,
//! `statement_timeout` = the read's timeout), and one batch of five statements in one round
//! trip: `BEGIN READ ONLY`, three aggregate or `LIMIT`ed `SELECT`s and a count, `COMMIT`.
//! Text values are cut in SQL (`left(…, 64)`) and the whole reply is capped at
//! [`QUEUE_MAX_REPLY_BYTES`] ([`super::capped`]). A role with `SELECT` on the two tables
//! is enough (see the README's GRANT recipe).
//!
//! The connection is made here (injected resolver, TCP, rustls) and handed to
//! `tokio-postgres`, as the Redis reader does with the `redis` crate.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};
use tokio_postgres::{SimpleQueryMessage, SimpleQueryRow};

use super::capped::{Budget, Capped};
use super::config::{QueueSpec, QueueTls};
use super::read::{Layout, MAX_TASKS, QueueReason, Reading, last_run_age, parse_last_run};
use crate::clock::{Clock, unix_seconds};
use crate::config::defaults::{MAX_LABEL_VALUE_CHARS, QUEUE_MAX_REPLY_BYTES};
use crate::net::connect::{AbortOnDrop, resolve, tcp_connect};
use crate::net::resolver::Resolver;

/// The `db_vtaskmetadata` key prefix of the scheduler's last runs.
const LAST_RUN_PREFIX: &str = "vtasks_last_run:";
/// Most `(queue, status)` groups read: a bound on the `queue` label's values.
const MAX_GROUPS: usize = 64;

/// The statements of one read, in one batch. `{tasks}`: the heartbeat tasks, quoted (their
/// names are checked to hold no quote); `{limit}` bounds.
fn batch(spec: &QueueSpec) -> String {
    let tasks = spec
        .scheduler_tasks
        .iter()
        .map(|(t, _)| format!("'{t}'"))
        .collect::<Vec<_>>();
    let heartbeat = if tasks.is_empty() {
        "false".to_owned()
    } else {
        format!(
            "substr(key, {}) IN ({})",
            LAST_RUN_PREFIX.len() + 1,
            tasks.join(", ")
        )
    };
    let label = MAX_LABEL_VALUE_CHARS;
    let prefix_len = LAST_RUN_PREFIX.len();
    format!(
        "BEGIN READ ONLY;\n\
         SELECT left(queue, {label}), status, count(*) FROM db_queuedtask \
         GROUP BY queue, status ORDER BY queue, status LIMIT {MAX_GROUPS};\n\
         SELECT left(queue, {label}), extract(epoch FROM min(created_at)) FROM db_queuedtask \
         WHERE status = 'QUEUED' AND (run_after IS NULL OR run_after <= now()) \
         GROUP BY queue ORDER BY queue LIMIT {MAX_GROUPS};\n\
         SELECT left(substr(key, {start}), {label}), left(value, 64) FROM db_vtaskmetadata \
         WHERE left(key, {prefix_len}) = '{LAST_RUN_PREFIX}' \
         ORDER BY {heartbeat} DESC, key LIMIT {MAX_TASKS};\n\
         SELECT count(*) FROM db_vtaskmetadata \
         WHERE left(key, 13) = 'worker_alive:' AND expires_at > now();\n\
         COMMIT",
        start = prefix_len + 1,
    )
}

/// Reads once; the caller owns the deadline (a read cut by it is a `timeout`).
pub async fn read(spec: &QueueSpec, resolver: &Arc<dyn Resolver>, clock: &dyn Clock) -> Reading {
    match read_tables(spec, resolver, clock).await {
        Ok(r) => r,
        Err((reason, detail)) => Reading::failed(reason, detail),
    }
}

type Fail = (QueueReason, String);

async fn read_tables(
    spec: &QueueSpec,
    resolver: &Arc<dyn Resolver>,
    clock: &dyn Clock,
) -> Result<Reading, Fail> {
    let addrs = resolve(resolver.as_ref(), &spec.host, spec.port)
        .await
        .map_err(|e| (QueueReason::Dns, e))?;
    let stream = tcp_connect(&addrs)
        .await
        .map_err(|e| (super::read::connect_reason(&e), e.to_string()))?;
    let budget = Budget::new(QUEUE_MAX_REPLY_BYTES);
    let tls_failed = Arc::new(AtomicBool::new(false));
    let connector = Rustls {
        tls: spec.tls.clone(),
        failed: tls_failed.clone(),
    };
    let mut config = tokio_postgres::Config::new();
    config
        .dbname(&spec.dbname)
        .application_name("glitchtip-exporter")
        .ssl_mode(if spec.tls.is_some() {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Disable
        })
        .options(format!(
            "-c default_transaction_read_only=on -c statement_timeout={}",
            spec.timeout.as_millis().max(1)
        ));
    if let Some(user) = &spec.username {
        config.user(user);
    }
    if let Some(password) = &spec.password {
        config.password(password.expose());
    }
    let why = |e: &tokio_postgres::Error| classify(e, &budget, &tls_failed);
    let (client, connection) = config
        .connect_raw(Capped::new(stream, budget.clone()), connector)
        .await
        .map_err(|e| why(&e))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let messages = client
        .simple_query(&batch(spec))
        .await
        .map_err(|e| why(&e))?;
    let now = unix_seconds(clock.now());
    interpret(&messages, now, spec.workers).map_err(|detail| (QueueReason::Error, detail))
}

/// The batch's answer as a reading: statement 1 counts by queue and status, 2 the oldest
/// runnable task per queue, 3 the last runs, 4 the live workers.
fn interpret(
    messages: &[SimpleQueryMessage],
    now: f64,
    workers_wanted: bool,
) -> Result<Reading, String> {
    let mut statement = 0usize;
    let mut reading = Reading {
        layout: Some(Layout::Database),
        ..Reading::default()
    };
    let mut failed = 0u64;
    let mut workers = None;
    for message in messages {
        let row = match message {
            SimpleQueryMessage::CommandComplete(_) => {
                statement += 1;
                continue;
            }
            SimpleQueryMessage::Row(row) => row,
            _ => continue,
        };
        match statement {
            1 => {
                let (queue, status, n) = (text(row, 0)?, text(row, 1)?, count(row, 2)?);
                let status = status.to_ascii_lowercase();
                match status.as_str() {
                    "queued" => reading.lengths.push((queue.to_owned(), n)),
                    "failed" => failed += n,
                    _ => {}
                }
                let status: String = status.chars().take(MAX_LABEL_VALUE_CHARS).collect();
                reading.statuses.push((queue.to_owned(), status, n));
            }
            2 => {
                let queue = text(row, 0)?;
                let epoch = parse_last_run(text(row, 1)?.as_bytes())
                    .map_err(|e| format!("oldest task of queue {queue}: {e}"))?;
                reading
                    .oldest_ages
                    .push((queue.to_owned(), (now - epoch).max(0.0)));
            }
            3 => {
                // A value that is no number, or far in the future, is no last run.
                let task = text(row, 0)?;
                if let Some(age) = parse_last_run(text(row, 1)?.as_bytes())
                    .ok()
                    .and_then(|epoch| last_run_age(epoch, now))
                    && !task.is_empty()
                {
                    reading.last_run_ages.push((task.to_owned(), age));
                }
            }
            4 => workers = Some(count(row, 0)?),
            _ => return Err("unexpected rows from PostgreSQL".to_owned()),
        }
    }
    if statement != 6 {
        return Err(format!("{statement} of 6 statements completed"));
    }
    // Same names as the Valkey layout: failed tasks are one queue.
    reading.lengths.push(("failed".to_owned(), failed));
    reading.workers = if workers_wanted { workers } else { None };
    Ok(reading)
}

fn text(row: &SimpleQueryRow, i: usize) -> Result<&str, String> {
    match row.try_get(i) {
        Ok(Some(v)) => Ok(v),
        _ => Err(format!("column {i}: a value expected")),
    }
}

fn count(row: &SimpleQueryRow, i: usize) -> Result<u64, String> {
    text(row, i)?
        .parse()
        .map_err(|_| format!("column {i}: a count expected"))
}

/// A PostgreSQL error as a reason and a detail (server messages name no secret).
fn classify(e: &tokio_postgres::Error, budget: &Budget, tls_failed: &AtomicBool) -> Fail {
    let reason = if budget.exceeded() {
        QueueReason::ReplyTooLarge
    } else if tls_failed.load(Ordering::SeqCst) {
        QueueReason::Tls
    } else if let Some(code) = e.code() {
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            QueueReason::Auth
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            QueueReason::Denied
        } else if *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::UNDEFINED_COLUMN
            || *code == SqlState::INVALID_CATALOG_NAME
        {
            QueueReason::UnknownLayout
        } else if *code == SqlState::QUERY_CANCELED {
            QueueReason::Timeout
        } else {
            QueueReason::Error
        }
    } else if e.to_string().contains("password missing") {
        QueueReason::Auth
    } else if e.is_closed()
        || std::error::Error::source(e).is_some_and(|s| s.downcast_ref::<io::Error>().is_some())
    {
        QueueReason::Connect
    } else {
        QueueReason::Error
    };
    let detail = match (reason, e.as_db_error()) {
        (QueueReason::ReplyTooLarge, _) => {
            format!("the reply is longer than {} bytes", budget.limit())
        }
        (_, Some(db)) => format!("{}: {}", db.code().code(), db.message()),
        _ => e.to_string(),
    };
    (reason, detail)
}

/// rustls for `tokio-postgres`, with the exporter's configuration; `failed` tells a TLS
/// failure from others. Without TLS configured it is never asked (`sslmode` disable).
struct Rustls {
    tls: Option<QueueTls>,
    failed: Arc<AtomicBool>,
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for Rustls {
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let result = match self.tls {
                Some(tls) => tokio_rustls::TlsConnector::from(tls.config)
                    .connect(tls.server_name, stream)
                    .await
                    .map(|s| RustlsStream(Box::new(s))),
                None => Err(io::Error::other("TLS is not configured")),
            };
            if result.is_err() {
                self.failed.store(true, Ordering::SeqCst);
            }
            result
        })
    }
}

/// A TLS stream to PostgreSQL (no channel binding: SCRAM without `-PLUS`).
struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
