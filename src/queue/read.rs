//! One read of GlitchTip's queues, whatever the backend: what a read found
//! ([`Reading`]), why it failed ([`QueueReason`]), and the pure interpretation of what the
//! servers answer ([`parse_last_run`]). The readers themselves are
//! [`super::valkey`] and [`super::postgres`].

use std::sync::Arc;

use super::config::{Backend, QueueSpec};
use super::watch::SchedulerReason;
use crate::clock::Clock;
use crate::net::resolver::Resolver;

/// Most periodic tasks reported: a bound on the `task` label's values.
pub const MAX_TASKS: usize = 32;
/// A last run this far ahead of the exporter's clock is a clock difference (age 0);
/// further ahead it is no last run at all.
pub const MAX_CLOCK_AHEAD_SECONDS: f64 = 60.0;

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
    /// A reply was larger than the reader takes (1 MiB), or more keys matched a pattern
    /// than it counts: a huge value, an endless reply, or not GlitchTip's server.
    ReplyTooLarge,
    /// Any other server error or unexpected answer.
    Error,
    /// The exporter could not open a socket (out of file descriptors): its own failure,
    /// the server was never tried.
    ExporterResources,
}

impl QueueReason {
    /// Every reason.
    pub const ALL: [QueueReason; 11] = [
        QueueReason::None,
        QueueReason::Dns,
        QueueReason::Connect,
        QueueReason::Tls,
        QueueReason::Timeout,
        QueueReason::Auth,
        QueueReason::Denied,
        QueueReason::UnknownLayout,
        QueueReason::ReplyTooLarge,
        QueueReason::Error,
        QueueReason::ExporterResources,
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
            QueueReason::ReplyTooLarge => "reply_too_large",
            QueueReason::Error => "error",
            QueueReason::ExporterResources => "exporter_resources",
        }
    }
}

/// The reason of a failed TCP connect: `exporter_resources` when no socket could be
/// opened (the exporter's failure), else `connect`.
pub(crate) fn connect_reason(e: &std::io::Error) -> QueueReason {
    if crate::net::connect::is_out_of_resources(e) {
        QueueReason::ExporterResources
    } else {
        QueueReason::Connect
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
    /// django-vtasks' database backend (tables `db_queuedtask`, `db_vtaskmetadata`).
    Database,
}

impl Layout {
    /// The `layout` label value.
    pub fn name(&self) -> &'static str {
        match self {
            Layout::Celery => "celery",
            Layout::Vtasks { .. } => "vtasks",
            Layout::Database => "database",
        }
    }

    /// The `prefix` label value (empty for Celery).
    pub fn prefix(&self) -> &str {
        match self {
            Layout::Celery | Layout::Database => "",
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
    /// Live workers (`<prefix>:alive:*` keys, `worker_alive:*` rows), when configured
    /// and vtasks or database.
    pub workers: Option<u64>,
    /// `(queue, status, tasks)`: every task by status (database only).
    pub statuses: Vec<(String, String, u64)>,
    /// `(queue, seconds)`: age of the oldest task that may run now (database only).
    pub oldest_ages: Vec<(String, f64)>,
    /// The scheduler judged from its heartbeat tasks over successive reads (vtasks and
    /// database, with `scheduler_tasks`); set by the reader's loop, not by one read.
    pub scheduler: Option<SchedulerReason>,
}

impl Reading {
    pub(super) fn failed(reason: QueueReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: Some(detail.into()),
            ..Self::default()
        }
    }
}

/// Reads once with the spec's backend; the caller owns the deadline (a read cut by it is a
/// `timeout`). `hint`: the layout an earlier read of this reader found.
pub async fn read(
    spec: &QueueSpec,
    resolver: &Arc<dyn Resolver>,
    clock: &dyn Clock,
    hint: Option<&Layout>,
) -> Reading {
    match spec.backend {
        Backend::Valkey => super::valkey::read(spec, resolver, clock, hint).await,
        Backend::Database => super::postgres::read(spec, resolver, clock).await,
    }
}

/// Why a last-run value is no last run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LastRunError {
    /// Not a decimal number (django-vtasks writes `str(datetime.timestamp())`).
    #[error("a last-run value is not a number of seconds since 1970")]
    NotANumber,
    /// Negative, infinite or not a number.
    #[error("a last-run value is out of range")]
    OutOfRange,
}

/// A scheduler last-run value as stored by django-vtasks (`"1733300000.123456"`, epoch
/// seconds as text; surrounding ASCII white space allowed) as epoch seconds. Pure, for
/// fuzzing: any bytes give a value or an error, never a panic.
pub fn parse_last_run(value: &[u8]) -> Result<f64, LastRunError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| LastRunError::NotANumber)?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    // Digits, one dot, an exponent at most: no "inf", "nan", "+", hex or words.
    if text.is_empty()
        || text.len() > 64
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-'))
    {
        return Err(LastRunError::NotANumber);
    }
    let epoch: f64 = text.parse().map_err(|_| LastRunError::NotANumber)?;
    if !epoch.is_finite() || epoch < 0.0 {
        return Err(LastRunError::OutOfRange);
    }
    Ok(epoch)
}

/// The age of a last run at `now` (both epoch seconds): 0 for a run slightly ahead of
/// the exporter's clock, `None` for one over [`MAX_CLOCK_AHEAD_SECONDS`] ahead.
pub fn last_run_age(epoch: f64, now: f64) -> Option<f64> {
    let age = now - epoch;
    (age >= -MAX_CLOCK_AHEAD_SECONDS).then_some(age.max(0.0))
}

#[cfg(test)]
mod tests {

    /// Out of descriptors is the exporter's failure, never the server's `connect`.
    #[test]
    fn a_socket_the_exporter_cannot_open_is_its_own_failure() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(connect_reason(&emfile), QueueReason::ExporterResources);
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(connect_reason(&refused), QueueReason::Connect);
    }

    use super::*;

    #[test]
    fn last_run_values() {
        assert_eq!(parse_last_run(b"1733300000.125"), Ok(1_733_300_000.125));
        assert_eq!(parse_last_run(b" 1733300000\n"), Ok(1_733_300_000.0));
        assert_eq!(parse_last_run(b"1.7333e9"), Ok(1.7333e9));
        for bad in [
            &b""[..],
            b"abc",
            b"inf",
            b"NaN",
            b"+1",
            b"0x10",
            b"1 2",
            b"\xff",
        ] {
            assert_eq!(
                parse_last_run(bad),
                Err(LastRunError::NotANumber),
                "{bad:?}"
            );
        }
        assert_eq!(parse_last_run(b"-5"), Err(LastRunError::OutOfRange));
        assert_eq!(parse_last_run(b"1e400"), Err(LastRunError::OutOfRange));
        assert_eq!(parse_last_run(&[b'1'; 100]), Err(LastRunError::NotANumber));
    }

    #[test]
    fn ages_ahead_of_the_clock() {
        assert_eq!(last_run_age(100.0, 130.5), Some(30.5));
        assert_eq!(last_run_age(150.0, 130.0), Some(0.0));
        assert_eq!(last_run_age(191.0, 130.0), None);
    }
}
