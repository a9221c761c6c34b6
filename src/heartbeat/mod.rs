//! Worker heartbeats: a job (or GlitchTip's own uptime monitor, run by its worker) pings
//! `/heartbeat/{name}` after each successful run; the exporter remembers the last ping and
//! exports its age, so that a stalled worker is an alert even while every HTTP endpoint
//! stays green.
//!
//! Separate from [`crate::checks`] because the direction is reversed: nothing is probed, the
//! state arrives from outside and must survive restarts ([`store`]), and the metrics depend
//! on the time of the scrape, not on the time of a result ([`metrics`]).
//!
//! - [`config`]: `[heartbeats.<name>]`, raw and validated.
//! - [`schedule`]: interval or cron schedule in a time zone.
//! - [`store`]: the state files: a snapshot and a journal, fsynced before a ping is
//!   answered.
//! - [`writer`]: the bounded write queue and the writer thread (group commit, snapshots).
//! - [`metrics`]: the heartbeat series, computed at scrape time.
//! - [`mod@routes`]: the HTTP endpoints ([`routes()`] builds them).
//!
//! Time comes from the exporter's injected [`Clock`].

pub mod config;
pub mod metrics;
pub mod routes;
pub mod schedule;
pub mod store;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::clock::{Clock, unix_seconds};
use crate::config::Config;
pub use config::{HeartbeatSpec, RawHeartbeat};
use metrics::{HeartbeatMetrics, View};
pub use routes::routes;
use store::{HeartbeatState, Journal, Loaded, States, from_millis, millis};

/// Most bytes of a ping's body read; a longer body is answered 413 and changes nothing.
pub const MAX_BODY_BYTES: usize = 10 * 1024;
/// Most bytes of a ping's body kept as the last message in the state file.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// What a ping reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    /// A run succeeded (`/heartbeat/{name}`, or exit status 0).
    Success,
    /// A run started.
    Start,
    /// A run failed (`/fail`, or exit status 1–255).
    Fail,
}

impl PingKind {
    /// Every value of the `kind` label, `rejected` included.
    pub const ALL_KINDS: [&'static str; 4] = ["success", "start", "fail", "rejected"];

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PingKind::Success => "success",
            PingKind::Start => "start",
            PingKind::Fail => "fail",
        }
    }
}

/// Whether a request may ping a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Known name, right token.
    Accepted,
    /// No heartbeat of that name.
    Unknown,
    /// Known name, wrong or missing token.
    Rejected,
}

/// Why a ping was not saved.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// Occurs when a reload removed the heartbeat while the ping was being handled.
    #[error("the heartbeat is no longer configured")]
    Gone,
    /// Occurs when the heartbeat already has [`writer::MAX_WAITING_PER_HEARTBEAT`] pings
    /// waiting to be written (or all heartbeats [`writer::MAX_WAITING`]); nothing changed.
    #[error("too many pings are waiting to be written")]
    Busy,
    /// Occurs when the state could not be written; nothing changed.
    #[error("the state file cannot be written")]
    NotSaved,
}

/// Every heartbeat: specs, state, and the series. Dropping it ends its writer thread.
pub struct Heartbeats {
    shared: Arc<Shared>,
}

/// What the handlers and the writer thread share.
struct Shared {
    clock: Arc<dyn Clock>,
    state_file: PathBuf,
    // std Mutex: nothing async happens while held.
    inner: Mutex<Inner>,
    queue: writer::Queue,
    /// The files; only the writer thread (and start-up, before it takes pings) uses them.
    storage: Mutex<Storage>,
    metrics: HeartbeatMetrics,
    /// What the log last said of each heartbeat (`up`, `late`, `failed`, `unknown`), so
    /// that each change is logged once; one entry per configured heartbeat.
    logged: Mutex<BTreeMap<String, &'static str>>,
    /// Rejected pings since the last line about them, and when that line was written: at
    /// most one line per [`REJECTED_LOG_EVERY`].
    rejected_log: Mutex<(Option<SystemTime>, u64)>,
}

/// How often, at most, rejected pings are logged (debug): a client with a wrong token may
/// ping every second.
const REJECTED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

struct Inner {
    specs: BTreeMap<String, HeartbeatSpec>,
    /// What is saved: the states on disk.
    states: States,
    /// The newest success ping of a heartbeat that could not be saved (Unix milliseconds):
    /// pings arrive, so the heartbeat is not known to be late. Memory only.
    unsaved: BTreeMap<String, i64>,
    /// Whether the state file has been read; it is not touched at all while no heartbeat
    /// is configured.
    loaded: bool,
}

#[derive(Default)]
struct Storage {
    /// `None` until opened (or while it cannot be).
    journal: Option<Journal>,
    /// A bad state file that could not be moved aside: it is kept as it is, never
    /// overwritten, so nothing is written.
    keep_as_is: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Heartbeats {
    /// The heartbeats of `config`, with the state kept in its state file. Reads the files
    /// and writes a snapshot at once (blocking: this runs before the server accepts
    /// anything), so that a heartbeat's first-configured time survives a restart even
    /// before its first ping. Starts the writer thread.
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> Arc<Self> {
        let shared = Arc::new(Shared {
            clock,
            state_file: config.state_file.clone(),
            inner: Mutex::new(Inner {
                specs: BTreeMap::new(),
                states: States::new(),
                unsaved: BTreeMap::new(),
                loaded: false,
            }),
            queue: writer::Queue::default(),
            storage: Mutex::new(Storage::default()),
            metrics: HeartbeatMetrics::new(),
            logged: Mutex::new(BTreeMap::new()),
            rejected_log: Mutex::new((None, 0)),
        });
        shared.update_specs(config);
        if !config.heartbeats.is_empty() {
            // Also folds in what the journal held, cut lines dropped.
            shared.compact();
        }
        let writer = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("heartbeat-writer".to_owned())
            .spawn(move || {
                // A bug must not leave pings waiting forever: they are answered 503.
                let run = std::panic::AssertUnwindSafe(|| writer.run_writer());
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("the heartbeat writer thread failed: pings are answered 503");
                    writer.queue.stop();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the heartbeat writer thread: pings are answered 503");
            shared.queue.stop();
        }
        Arc::new(Self { shared })
    }

    /// Takes the heartbeats of a reloaded config: removed ones lose their state and series,
    /// added ones start now, the others keep everything (first-configured time included).
    /// The writer writes a snapshot when the set changed.
    pub fn apply(&self, config: &Config) {
        if config.state_file != self.shared.state_file {
            tracing::warn!("server.state_file takes effect only after a restart");
        }
        if self.shared.update_specs(config) {
            self.shared.queue.compact(None);
        }
    }

    /// Has the writer fold the journal into a new snapshot, and waits until it did (or
    /// failed, or the writer is gone).
    pub async fn compact(&self) {
        let (done, compacted) = tokio::sync::oneshot::channel();
        self.shared.queue.compact(Some(done));
        let _ = compacted.await;
    }

    /// Checks a request's tokens against heartbeat `name`; counts unknown and rejected
    /// requests.
    pub fn authenticate(&self, name: &str, tokens: &[&[u8]]) -> Auth {
        let inner = lock(&self.shared.inner);
        let Some(spec) = inner.specs.get(name) else {
            drop(inner);
            self.unknown_request();
            return Auth::Unknown;
        };
        // Every candidate is compared, so the time does not tell which one matched.
        let ok = tokens
            .iter()
            .fold(false, |ok, t| spec.token.matches(t) | ok);
        drop(inner);
        if ok {
            Auth::Accepted
        } else {
            self.shared.metrics.ping(name, "rejected");
            let now = self.shared.clock.now();
            let mut log = lock(&self.shared.rejected_log);
            log.1 += 1;
            let due = log.0.is_none_or(|last| {
                now.duration_since(last)
                    .is_ok_and(|d| d >= REJECTED_LOG_EVERY)
            });
            if due {
                tracing::debug!(
                    heartbeat = name,
                    rejected = log.1,
                    "heartbeat pings rejected (wrong or missing token) since the last such line"
                );
                *log = (Some(now), 0);
            }
            Auth::Rejected
        }
    }

    /// Counts a request for an unknown heartbeat or action.
    pub fn unknown_request(&self) {
        self.shared.metrics.unknown();
        tracing::debug!("heartbeat request for an unknown name or action");
    }

    /// Saves a ping of an authenticated request: its journal line is fsynced before this
    /// returns `Ok`, so that a ping answered 2xx survives a crash. The ping is saved even if
    /// the request goes away meanwhile.
    pub async fn record(
        &self,
        name: &str,
        kind: PingKind,
        message: Option<String>,
    ) -> Result<(), PingError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let clock = &self.shared.clock;
        let queued = self.shared.queue.push(name, || writer::Ping {
            kind,
            at_ms: millis(clock.now()),
            message,
            reply,
        });
        if queued.is_err() {
            self.shared
                .metrics
                .unsaved(name, metrics::Unsaved::QueueFull);
            tracing::debug!(
                heartbeat = name,
                "heartbeat ping answered 503: too many pings waiting to be written"
            );
            return Err(PingError::Busy);
        }
        match answer.await {
            Ok(writer::Saved::Yes) => Ok(()),
            Ok(writer::Saved::Gone) => Err(PingError::Gone),
            Ok(writer::Saved::Failed) | Err(_) => Err(PingError::NotSaved),
        }
    }

    /// Most pings of one heartbeat that were waiting to be written at once, since the
    /// start (bounded by [`writer::MAX_WAITING_PER_HEARTBEAT`]).
    pub fn queue_peak(&self) -> usize {
        self.shared.queue.peak()
    }

    /// Pings waiting to be written now, all heartbeats together.
    pub fn queue_len(&self) -> usize {
        self.shared.queue.waiting()
    }

    /// For tests: holds the writer (pings wait in the queue, or get 503 once it is full)
    /// until the guard is dropped.
    #[doc(hidden)]
    pub fn hold_writes(self: &Arc<Self>) -> WritesHeld {
        self.shared.queue.pause(true);
        WritesHeld(self.clone())
    }

    /// The heartbeat series as of `now`, in the text exposition format.
    pub fn render(&self, now: SystemTime) -> Vec<u8> {
        // Held while rendering, so that a reload cannot remove a heartbeat between
        // computing its view and setting its series.
        let inner = lock(&self.shared.inner);
        let views = evaluate_all(&inner, now);
        log_changes(&mut lock(&self.shared.logged), &inner, &views);
        self.shared.metrics.render(&views)
    }

    /// Every heartbeat as of `now`, sorted by name (for the landing page).
    pub fn views(&self, now: SystemTime) -> Vec<View> {
        evaluate_all(&lock(&self.shared.inner), now)
    }
}

/// Holds the writer while it lives; see [`Heartbeats::hold_writes`].
#[doc(hidden)]
pub struct WritesHeld(Arc<Heartbeats>);

impl Drop for WritesHeld {
    fn drop(&mut self) {
        self.0.shared.queue.pause(false);
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.shared.queue.stop();
    }
}

impl Shared {
    /// Replaces the specs; answers whether the set of names changed (so a snapshot must be
    /// written).
    fn update_specs(&self, config: &Config) -> bool {
        let now = millis(self.clock.now());
        let mut inner = lock(&self.inner);
        if !inner.loaded && !config.heartbeats.is_empty() {
            inner.states = self.load();
            inner.loaded = true;
        }
        let wanted: BTreeMap<String, HeartbeatSpec> = config
            .heartbeats
            .iter()
            .map(|h| (h.name.clone(), h.clone()))
            .collect();
        let mut changed = false;
        let Inner {
            specs,
            states,
            unsaved,
            ..
        } = &mut *inner;
        states.retain(|name, _| {
            let keep = wanted.contains_key(name);
            changed |= !keep;
            keep
        });
        unsaved.retain(|name, _| wanted.contains_key(name));
        for name in specs.keys() {
            if !wanted.contains_key(name) {
                self.metrics.remove(name);
            }
        }
        for name in wanted.keys() {
            if !specs.contains_key(name) {
                self.metrics.add(name);
            }
            if !states.contains_key(name) {
                states.insert(
                    name.clone(),
                    HeartbeatState {
                        first_configured_ms: now,
                        ..HeartbeatState::default()
                    },
                );
                changed = true;
            }
        }
        *specs = wanted;
        changed
    }

    /// Reads the snapshot and the journal; sets the load gauge.
    fn load(&self) -> States {
        let now = self.clock.now();
        let (mut states, snapshot) = match store::load(&self.state_file, now) {
            Loaded::Found(states) => (states, Loaded::Found(())),
            Loaded::Missing => (States::new(), Loaded::Missing),
            Loaded::Bad { problem, moved_to } => (States::new(), Loaded::Bad { problem, moved_to }),
        };
        let journal = store::journal_path(&self.state_file);
        let (entries, journal_loaded) = store::load_journal(&journal, now);
        let lines = entries.len();
        let found = matches!(snapshot, Loaded::Found(())) || lines > 0;
        states.extend(entries);
        let mut ok = true;
        for (path, loaded) in [(&self.state_file, snapshot), (&journal, journal_loaded)] {
            if let Loaded::Bad { problem, moved_to } = loaded {
                ok = false;
                self.bad_file(path, &problem, moved_to);
            }
        }
        let path = self.state_file.display().to_string();
        if ok && !found {
            tracing::info!(path, "no heartbeat state file yet: starting fresh");
        } else if ok {
            tracing::info!(
                path,
                heartbeats = states.len(),
                journal_lines = lines,
                "heartbeat state loaded"
            );
        }
        self.metrics.load_ok(ok);
        states
    }

    /// Logs a state file that could not be used; one that could not be moved aside is kept
    /// as it is (nothing is written while it is there).
    fn bad_file(&self, path: &Path, problem: &store::Problem, moved_to: std::io::Result<PathBuf>) {
        let path = path.display().to_string();
        match moved_to {
            Ok(aside) => tracing::error!(
                path,
                problem = %problem,
                moved_to = %aside.display(),
                "the heartbeat state file cannot be used: moved it aside and starting fresh"
            ),
            Err(e) => {
                lock(&self.storage).keep_as_is = true;
                tracing::error!(
                    path,
                    problem = %problem,
                    rename_error = %e,
                    "the heartbeat state file cannot be used and could not be moved aside: \
                     keeping it as it is, starting fresh, and saving nothing (pings are answered 503)"
                );
            }
        }
    }
}

fn evaluate_all(inner: &Inner, now: SystemTime) -> Vec<View> {
    inner
        .specs
        .values()
        .filter_map(|spec| {
            let state = inner.states.get(&spec.name)?;
            let unsaved = inner.unsaved.get(&spec.name).copied();
            Some(assess(spec, state, unsaved, now))
        })
        .collect()
}

/// One log line per change of a heartbeat's state, noticed when the series are rendered
/// (each scrape): late and failed at warn, recovered at info.
fn log_changes(logged: &mut BTreeMap<String, &'static str>, inner: &Inner, views: &[View]) {
    logged.retain(|name, _| inner.specs.contains_key(name));
    for view in views {
        let failed = inner.states.get(&view.name).is_some_and(|s| s.failed);
        let word = match (view.up, view.unknown, failed) {
            (true, _, _) => "up",
            (false, true, _) => "unknown",
            (false, false, true) => "failed",
            (false, false, false) => "late",
        };
        let before = logged.insert(view.name.clone(), word).unwrap_or("up");
        if before == word {
            continue;
        }
        let heartbeat = view.name.as_str();
        let age_seconds = view.age_seconds.round() as u64;
        match word {
            "late" => tracing::warn!(
                heartbeat,
                age_seconds,
                "heartbeat late: no success ping before its deadline, or a run that did not finish"
            ),
            "failed" => tracing::warn!(heartbeat, "heartbeat failed: its job sent a fail ping"),
            "up" => tracing::info!(heartbeat, was = before, "heartbeat recovered"),
            _ => tracing::debug!(
                heartbeat,
                "heartbeat unknown: pings arrive but cannot be saved"
            ),
        }
    }
}

/// What a ping does to a heartbeat's state at `now` (Unix milliseconds).
pub fn apply_ping(state: &mut HeartbeatState, kind: PingKind, now: i64, message: Option<String>) {
    match kind {
        PingKind::Success => {
            if let Some(started) = state.started_ms.take() {
                state.last_duration_ms = Some(now.saturating_sub(started).max(0));
            }
            state.last_success_ms = Some(now);
            state.failed = false;
        }
        PingKind::Start => state.started_ms = Some(now),
        PingKind::Fail => {
            state.started_ms = None;
            state.failed = true;
            state.last_fail_ms = Some(now);
        }
    }
    if message.is_some() {
        state.last_message = message;
    }
}

/// The latest time shown (series and landing page): 9999-12-31T23:59:59Z, the last second
/// RFC 3339 can write. A deadline further away is shown as this.
pub const LATEST_SHOWN: f64 = 253_402_300_799.0;

fn shown(t: SystemTime) -> f64 {
    unix_seconds(t).min(LATEST_SHOWN)
}

/// A heartbeat as the metrics show it at `now`.
pub fn evaluate(spec: &HeartbeatSpec, state: &HeartbeatState, now: SystemTime) -> View {
    assess(spec, state, None, now)
}

/// When a heartbeat whose last success (or first configured time) was at `base` counts as
/// missed; `None` when never (or past what a `SystemTime` holds).
fn deadline_after(spec: &HeartbeatSpec, base: SystemTime) -> Option<SystemTime> {
    spec.expect
        .next_due(base)
        .and_then(|due| due.checked_add(spec.grace))
}

/// [`evaluate`], knowing the newest success ping that could not be saved (`unsaved`, Unix
/// milliseconds): a heartbeat late by what is saved but not by that ping is `unknown`.
fn assess(
    spec: &HeartbeatSpec,
    state: &HeartbeatState,
    unsaved: Option<i64>,
    now: SystemTime,
) -> View {
    let base = from_millis(state.last_success_ms.unwrap_or(state.first_configured_ms));
    let deadline = deadline_after(spec, base);
    let missed = deadline.is_some_and(|d| now > d);
    let unknown = missed
        && unsaved
            .map(from_millis)
            .filter(|&u| u > base)
            .is_some_and(|u| deadline_after(spec, u).is_none_or(|d| now <= d));
    let start_overdue = state
        .started_ms
        .map(from_millis)
        .and_then(|s| s.checked_add(spec.grace))
        .is_some_and(|limit| now > limit);
    View {
        name: spec.name.clone(),
        up: !missed && !state.failed && !start_overdue,
        unknown,
        age_seconds: now.duration_since(base).map_or(0.0, |d| d.as_secs_f64()),
        last_seen: state.last_success_ms.map(|ms| shown(from_millis(ms))),
        deadline: deadline.map(shown),
        last_duration: state.last_duration_ms.map(|ms| ms as f64 / 1000.0),
    }
}

/// Keeps at most [`MAX_MESSAGE_BYTES`] of a body, cut at a character boundary; an empty
/// body is no message.
pub fn message(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE_BYTES)]);
    let mut end = text.len().min(MAX_MESSAGE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_owned())
}

#[cfg(test)]
mod tests;
