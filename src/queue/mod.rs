//! GlitchTip's worker internals, read from its Redis/Valkey or (django-vtasks' database
//! backend) PostgreSQL: queue lengths, the scheduler's last run of each periodic task
//! (6.x), whether the scheduler lives, and live workers.
//!
//! Separate from [`crate::checks`] because nothing about GlitchTip's HTTP side is probed:
//! one reader task per target reads a few keys or rows on its own interval, in interval
//! and scrape mode alike, and keeps the last [`read::Reading`]; [`metrics`] renders the
//! readings at scrape time. Reading is strictly read-only ([`valkey`], [`postgres`]).
//!
//! - [`config`]: `[targets.<name>.queue]`, raw and validated.
//! - [`read`]: what a read found, its failure reasons, the pure parsing of values.
//! - [`valkey`], [`postgres`]: connecting, detecting the layout, reading, one per backend.
//! - [`capped`]: the per-reply byte budget both readers' connections go through.
//! - [`watch`]: the scheduler judged over successive reads (a key that vanished).
//! - [`metrics`]: the `glitchtip_queue_*`, `glitchtip_scheduler_last_run_age_seconds` and
//!   `glitchtip_workers` series.

pub mod capped;
pub mod config;
pub mod metrics;
pub mod postgres;
pub mod read;
pub mod valkey;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

pub use config::{QueueSpec, RawQueue};
pub use read::parse_last_run;
use read::{QueueReason, Reading};

use crate::clock::Clock;
use crate::config::Config;
use crate::net::resolver::Resolver;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One target's reader.
struct Reader {
    spec: Arc<QueueSpec>,
    /// The last reading; `None` before the first. std Mutex: nothing async while held.
    last: Arc<Mutex<Option<Reading>>>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// Every target's queue reader.
pub struct Queues {
    resolver: Arc<dyn Resolver>,
    clock: Arc<dyn Clock>,
    // std Mutex: nothing async happens while held.
    readers: Mutex<BTreeMap<String, Reader>>,
}

impl Queues {
    /// No reader yet; [`Self::apply`] starts them.
    pub fn new(resolver: Arc<dyn Resolver>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            resolver,
            clock,
            readers: Mutex::new(BTreeMap::new()),
        })
    }

    /// Takes the queue tables of `config`: removed ones stop and lose their series, new
    /// and changed ones start (reading at once), unchanged ones keep running. Needs a
    /// tokio runtime; without one nothing starts.
    pub fn apply(&self, config: &Config) {
        let wanted: BTreeMap<&str, &Arc<QueueSpec>> = config
            .targets
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.queue.as_ref()?)))
            .collect();
        let mut readers = lock(&self.readers);
        readers.retain(|target, reader| {
            let keep = wanted
                .get(target.as_str())
                .is_some_and(|spec| spec.fingerprint == reader.spec.fingerprint);
            if !keep {
                reader.cancel.cancel();
            }
            keep
        });
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (target, spec) in wanted {
            if readers.contains_key(target) {
                continue;
            }
            let last = Arc::new(Mutex::new(None));
            let cancel = CancellationToken::new();
            let task = runtime.spawn(run(
                (*spec).clone(),
                self.resolver.clone(),
                self.clock.clone(),
                last.clone(),
                cancel.clone(),
            ));
            readers.insert(
                target.to_owned(),
                Reader {
                    spec: (*spec).clone(),
                    last,
                    cancel,
                    task: Some(task),
                },
            );
        }
    }

    /// Stops every reader and waits for them, at most `deadline`.
    pub async fn stop(&self, deadline: Duration) {
        let tasks: Vec<JoinHandle<()>> = lock(&self.readers)
            .values_mut()
            .filter_map(|r| {
                r.cancel.cancel();
                r.task.take()
            })
            .collect();
        let _ = tokio::time::timeout(deadline, futures::future::join_all(tasks)).await;
    }

    /// The queue series of every reader that has read, in the text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let views: Vec<(String, Reading)> = lock(&self.readers)
            .iter()
            .filter_map(|(target, r)| Some((target.clone(), lock(&r.last).clone()?)))
            .collect();
        metrics::render(&views)
    }
}

/// Reads `spec` every interval until `cancel` fires.
async fn run(
    spec: Arc<QueueSpec>,
    resolver: Arc<dyn Resolver>,
    clock: Arc<dyn Clock>,
    last: Arc<Mutex<Option<Reading>>>,
    cancel: CancellationToken,
) {
    let mut next = Instant::now();
    // What this reader remembers across reads: the layout found, the heartbeat tasks seen.
    let mut layout: Option<read::Layout> = None;
    let mut watch = watch::Watch::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sleep_until(next) => {}
        }
        let started = Instant::now();
        let reading = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(
                spec.timeout,
                read::read(&spec, &resolver, clock.as_ref(), layout.as_ref()),
            ) => {
                r.unwrap_or_else(|_| Reading {
                    reason: QueueReason::Timeout,
                    detail: Some(format!(
                        "no complete read within {}",
                        humantime::format_duration(spec.timeout)
                    )),
                    ..Reading::default()
                })
            }
        };
        let mut reading = reading;
        if reading.reason == QueueReason::None {
            layout.clone_from(&reading.layout);
            if matches!(
                reading.layout,
                Some(read::Layout::Vtasks { .. } | read::Layout::Database)
            ) {
                reading.scheduler = watch.judge(
                    &spec.scheduler_tasks,
                    &reading.last_run_ages,
                    crate::clock::unix_seconds(clock.now()),
                );
            }
        } else {
            watch.unreachable();
        }
        let previous = lock(&last).replace(reading.clone());
        log_change(&spec, previous.as_ref(), &reading);
        next = crate::scheduler::after(started, spec.interval).max(Instant::now());
    }
}

/// One log line per change of state (never a secret: details are I/O and server
/// messages).
fn log_change(spec: &QueueSpec, previous: Option<&Reading>, now: &Reading) {
    let target = spec.target.as_str();
    match (previous.and_then(|r| r.workers), now.workers) {
        (before, Some(0)) if before != Some(0) => {
            tracing::warn!(target_name = target, "no live GlitchTip worker")
        }
        (Some(0), Some(n)) if n > 0 => {
            tracing::info!(
                target_name = target,
                workers = n,
                "GlitchTip workers alive again"
            )
        }
        _ => {}
    }
    let before = previous.map(|r| r.reason);
    match (before, now.reason) {
        (Some(b), n) if b == n => {}
        (_, QueueReason::None) => tracing::info!(
            target_name = target,
            layout = now.layout.as_ref().map_or("", read::Layout::name),
            prefix = now.layout.as_ref().map_or("", read::Layout::prefix),
            "queue read"
        ),
        (_, reason) => tracing::warn!(
            target_name = target,
            reason = reason.as_str(),
            detail = now.detail.as_deref().unwrap_or(""),
            "queue read failing"
        ),
    }
    let scheduler_before = previous.and_then(|p| p.scheduler);
    match now.scheduler {
        Some(s) if Some(s) != scheduler_before && s != watch::SchedulerReason::None => {
            tracing::warn!(
                target_name = target,
                reason = s.as_str(),
                "scheduler stale: GlitchTip's scheduler ran no heartbeat task within its limit"
            )
        }
        Some(watch::SchedulerReason::None)
            if scheduler_before.is_some_and(|b| b != watch::SchedulerReason::None) =>
        {
            tracing::info!(target_name = target, "scheduler running again")
        }
        _ => {}
    }
}
