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
//! - [`store`]: the state file, written atomically before a ping is answered.
//! - [`metrics`]: the heartbeat series, computed at scrape time.
//! - [`mod@routes`]: the HTTP endpoints ([`routes()`] builds them).
//!
//! Time comes from the exporter's injected [`Clock`].

pub mod config;
pub mod metrics;
pub mod routes;
pub mod schedule;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::clock::{Clock, unix_seconds};
use crate::config::Config;
pub use config::{HeartbeatSpec, RawHeartbeat};
use metrics::{HeartbeatMetrics, View};
pub use routes::routes;
use store::{HeartbeatState, Loaded, States, from_millis, millis};

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
    /// Occurs when the state file could not be written; nothing changed.
    #[error("cannot write the state file {path}: {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// Every heartbeat: specs, state, and the series.
pub struct Heartbeats {
    clock: Arc<dyn Clock>,
    state_file: PathBuf,
    // std Mutex: nothing async happens while held.
    inner: Mutex<Inner>,
    /// Serializes writers of the state file. A ping holds it from taking its snapshot until
    /// its write is done and applied, so that no two writes interleave and the file never
    /// goes back in time. tokio Mutex: held across the write.
    writer: tokio::sync::Mutex<()>,
    metrics: HeartbeatMetrics,
}

struct Inner {
    specs: BTreeMap<String, HeartbeatSpec>,
    states: States,
    /// Whether the state file has been read; it is not touched at all while no heartbeat
    /// is configured.
    loaded: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Heartbeats {
    /// The heartbeats of `config`, with the state kept in its state file. Reads the file
    /// and, when heartbeats were added or removed since, writes it back at once (blocking:
    /// this runs before the server accepts anything), so that a heartbeat's first-configured
    /// time survives a restart even before its first ping.
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> Arc<Self> {
        let this = Arc::new(Self {
            clock,
            state_file: config.state_file.clone(),
            inner: Mutex::new(Inner {
                specs: BTreeMap::new(),
                states: States::new(),
                loaded: false,
            }),
            writer: tokio::sync::Mutex::new(()),
            metrics: HeartbeatMetrics::new(),
        });
        if this.update_specs(config) {
            let snapshot = lock(&this.inner).states.clone();
            let _ = this.finish_write(store::write(&this.state_file, &snapshot), None);
        }
        this
    }

    /// Takes the heartbeats of a reloaded config: removed ones lose their state and series,
    /// added ones start now, the others keep everything (first-configured time included).
    /// The state file is rewritten in the background when the set changed.
    pub fn apply(self: &Arc<Self>, config: &Config) {
        if config.state_file != self.state_file {
            tracing::warn!("server.state_file takes effect only after a restart");
        }
        if !self.update_specs(config) {
            return;
        }
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { this.persist().await });
            }
            Err(_) => {
                let snapshot = lock(&this.inner).states.clone();
                let _ = this.finish_write(store::write(&this.state_file, &snapshot), None);
            }
        }
    }

    /// Replaces the specs; answers whether the set of names changed (so the file must be
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
        let Inner { specs, states, .. } = &mut *inner;
        states.retain(|name, _| {
            let keep = wanted.contains_key(name);
            changed |= !keep;
            keep
        });
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

    fn load(&self) -> States {
        let path = self.state_file.display().to_string();
        match store::load(&self.state_file, self.clock.now()) {
            Loaded::Found(states) => {
                tracing::info!(path, heartbeats = states.len(), "heartbeat state loaded");
                states
            }
            Loaded::Missing => {
                tracing::info!(path, "no heartbeat state file yet: starting fresh");
                States::new()
            }
            Loaded::Unreadable(e) => {
                tracing::error!(path, error = %e, "cannot read the heartbeat state file: starting fresh");
                States::new()
            }
            Loaded::Corrupt { error, moved_to } => {
                match moved_to {
                    Ok(aside) => tracing::warn!(
                        path,
                        error,
                        moved_to = %aside.display(),
                        "the heartbeat state file is corrupt: moved it aside and starting fresh"
                    ),
                    Err(e) => tracing::warn!(
                        path,
                        error,
                        rename_error = %e,
                        "the heartbeat state file is corrupt and could not be moved aside: starting fresh"
                    ),
                }
                States::new()
            }
        }
    }

    /// Checks a request's tokens against heartbeat `name`; counts unknown and rejected
    /// requests.
    pub fn authenticate(&self, name: &str, tokens: &[&[u8]]) -> Auth {
        let inner = lock(&self.inner);
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
            self.metrics.ping(name, "rejected");
            tracing::debug!(
                heartbeat = name,
                "heartbeat ping rejected: wrong or missing token"
            );
            Auth::Rejected
        }
    }

    /// Counts a request for an unknown heartbeat or action.
    pub fn unknown_request(&self) {
        self.metrics.unknown();
        tracing::debug!("heartbeat request for an unknown name or action");
    }

    /// Saves a ping of an authenticated request: the state file is written before this
    /// returns `Ok`, so that a ping answered 2xx survives a crash. Runs to completion even
    /// if the request goes away.
    pub async fn record(
        self: &Arc<Self>,
        name: &str,
        kind: PingKind,
        message: Option<String>,
    ) -> Result<(), PingError> {
        let this = self.clone();
        let name = name.to_owned();
        match tokio::spawn(async move { this.record_inner(&name, kind, message).await }).await {
            Ok(result) => result,
            Err(join) => Err(PingError::Write {
                path: self.state_file.clone(),
                source: std::io::Error::other(join),
            }),
        }
    }

    async fn record_inner(
        &self,
        name: &str,
        kind: PingKind,
        message: Option<String>,
    ) -> Result<(), PingError> {
        let _writer = self.writer.lock().await;
        let now = millis(self.clock.now());
        let snapshot = {
            let inner = lock(&self.inner);
            let mut states = inner.states.clone();
            let state = states.get_mut(name).ok_or(PingError::Gone)?;
            apply_ping(state, kind, now, message.clone());
            states
        };
        let path = self.state_file.clone();
        let written = tokio::task::spawn_blocking(move || store::write(&path, &snapshot))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join)));
        if let Err(e) = self.finish_write(written, Some(name)) {
            return Err(PingError::Write {
                path: self.state_file.clone(),
                source: e,
            });
        }
        // Nothing else changed this heartbeat meanwhile (writers are serialized), so doing
        // the same step again gives exactly what was written.
        let mut inner = lock(&self.inner);
        if let Some(state) = inner.states.get_mut(name) {
            apply_ping(state, kind, now, message);
            drop(inner);
            self.metrics.ping(name, kind.as_str());
            tracing::debug!(heartbeat = name, kind = kind.as_str(), "heartbeat ping");
        }
        Ok(())
    }

    /// Writes the current state (after a reload changed the set of heartbeats).
    async fn persist(&self) {
        let _writer = self.writer.lock().await;
        let snapshot = lock(&self.inner).states.clone();
        let path = self.state_file.clone();
        let written = tokio::task::spawn_blocking(move || store::write(&path, &snapshot))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join)));
        let _ = self.finish_write(written, None);
    }

    /// Logs and counts a failed write.
    fn finish_write(
        &self,
        written: std::io::Result<()>,
        heartbeat: Option<&str>,
    ) -> std::io::Result<()> {
        if let Err(e) = &written {
            self.metrics.write_error();
            let path = self.state_file.display().to_string();
            match heartbeat {
                Some(heartbeat) => tracing::error!(
                    path,
                    heartbeat,
                    error = %e,
                    "cannot write the heartbeat state file: the ping was answered 500 and not saved"
                ),
                None => tracing::error!(path, error = %e, "cannot write the heartbeat state file"),
            }
        }
        written
    }

    /// The heartbeat series as of `now`, in the text exposition format.
    pub fn render(&self, now: SystemTime) -> Vec<u8> {
        // Held while rendering, so that a reload cannot remove a heartbeat between
        // computing its view and setting its series.
        let inner = lock(&self.inner);
        self.metrics.render(&Self::evaluate_all(&inner, now))
    }

    /// Every heartbeat as of `now`, sorted by name (for the landing page).
    pub fn views(&self, now: SystemTime) -> Vec<View> {
        Self::evaluate_all(&lock(&self.inner), now)
    }

    fn evaluate_all(inner: &Inner, now: SystemTime) -> Vec<View> {
        inner
            .specs
            .values()
            .filter_map(|spec| {
                let state = inner.states.get(&spec.name)?;
                Some(evaluate(spec, state, now))
            })
            .collect()
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

/// A heartbeat as the metrics show it at `now`.
pub fn evaluate(spec: &HeartbeatSpec, state: &HeartbeatState, now: SystemTime) -> View {
    let base = from_millis(state.last_success_ms.unwrap_or(state.first_configured_ms));
    let deadline = spec
        .expect
        .next_due(base)
        .and_then(|due| due.checked_add(spec.grace));
    let missed = deadline.is_some_and(|d| now > d);
    let start_overdue = state
        .started_ms
        .map(from_millis)
        .and_then(|s| s.checked_add(spec.grace))
        .is_some_and(|limit| now > limit);
    View {
        name: spec.name.clone(),
        up: !missed && !state.failed && !start_overdue,
        age_seconds: now.duration_since(base).map_or(0.0, |d| d.as_secs_f64()),
        last_seen: state
            .last_success_ms
            .map(|ms| unix_seconds(from_millis(ms))),
        deadline: deadline.map(unix_seconds),
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
