//! The running exporter: the config in force, the state of every check, the scheduler
//! tasks (interval mode), single-flight probes (scrape mode), `/probe`, and reload.
//!
//! Locks here are std mutexes held only for map look-ups and state updates, never across
//! an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checks::{CheckSpec, Dispatcher, Outcome, Prober};
use crate::clock::{Clock, SystemClock, unix_seconds};
use crate::config::{Config, ConfigError, ConfigSource, Mode, defaults};
use crate::heartbeat::Heartbeats;
use crate::metrics::Metrics;
use crate::net::resolver::{Resolver, SystemResolver};
use crate::queue::Queues;
use crate::scheduler::{self, ResultSink};
use crate::state::{CheckState, Transition};

/// `(target, check)`.
pub type CheckKey = (String, String);

type SharedProbe = Shared<BoxFuture<'static, ()>>;

/// What the exporter takes from outside; tests replace each part.
pub struct Deps {
    /// Name resolution for probes.
    pub resolver: Arc<dyn Resolver>,
    /// Wall-clock time for timestamps and certificate validity.
    pub clock: Arc<dyn Clock>,
    /// The prober; `None` builds the real dispatcher with `resolver` and `clock`.
    pub prober: Option<Arc<dyn Prober>>,
}

impl Default for Deps {
    fn default() -> Self {
        Self {
            resolver: Arc::new(SystemResolver),
            clock: Arc::new(SystemClock),
            prober: None,
        }
    }
}

/// One check's place: its spec, state, and the probe in flight (scrape mode).
struct Slot {
    spec: Arc<CheckSpec>,
    // std Mutex: nothing async happens while held.
    state: Mutex<CheckState>,
    /// Set when a reload removed the check, so that a probe still in flight does not bring
    /// its series back.
    removed: AtomicBool,
    inflight: Mutex<Option<SharedProbe>>,
    last_started: Mutex<Option<Instant>>,
}

impl Slot {
    fn new(spec: Arc<CheckSpec>) -> Arc<Self> {
        Arc::new(Self {
            spec,
            state: Mutex::new(CheckState::default()),
            removed: AtomicBool::new(false),
            inflight: Mutex::new(None),
            last_started: Mutex::new(None),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A check's state as the landing page shows it.
#[derive(Debug, Clone)]
pub struct CheckView {
    /// The check.
    pub spec: Arc<CheckSpec>,
    /// Its state.
    pub state: CheckState,
}

/// Errors of `/probe`.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Occurs when the `target` parameter names no configured target.
    #[error("unknown target {0:?}: /probe?target= takes a configured target name")]
    UnknownTarget(String),
    /// Occurs when the `check` parameter names no check of the target.
    #[error("unknown check {check:?} for target {target:?}")]
    UnknownCheck {
        /// The target.
        target: String,
        /// The check asked for.
        check: String,
    },
}

/// The running exporter.
pub struct Exporter {
    source: ConfigSource,
    config: RwLock<Arc<Config>>,
    slots: RwLock<BTreeMap<CheckKey, Arc<Slot>>>,
    /// `/probe` keeps its own consecutive-failure counts, apart from the scheduler's.
    probe_states: Mutex<HashMap<CheckKey, CheckState>>,
    versions: Mutex<HashMap<String, String>>,
    metrics: Arc<Metrics>,
    /// Writes the `/metrics` text ahead of scrapes ([`Metrics::write_ahead`]).
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Worker heartbeats: their own state, state file and series.
    heartbeats: Arc<Heartbeats>,
    /// GlitchTip's queues in Redis/Valkey: one reader per target that has a queue table.
    queues: Arc<Queues>,
    prober: Arc<dyn Prober>,
    clock: Arc<dyn Clock>,
    tasks: Mutex<HashMap<CheckKey, (CancellationToken, JoinHandle<()>)>>,
    started: AtomicBool,
    stopping: AtomicBool,
}

impl Exporter {
    /// Loads the config from `source` and builds the exporter (nothing runs yet).
    pub fn new(source: ConfigSource, deps: Deps) -> Result<Arc<Self>, ConfigError> {
        let config = source.load()?;
        Ok(Self::with_config(source, config, deps))
    }

    /// Builds the exporter around an already loaded config.
    pub fn with_config(source: ConfigSource, config: Config, deps: Deps) -> Arc<Self> {
        let prober = deps.prober.unwrap_or_else(|| {
            Arc::new(Dispatcher::new(deps.resolver.clone(), deps.clock.clone()))
        });
        let metrics = Arc::new(Metrics::for_exporter());
        metrics.config_loaded(true, unix_seconds(deps.clock.now()));
        let slots = config
            .checks()
            .map(|spec| {
                (
                    (spec.target.clone(), spec.name.clone()),
                    Slot::new(spec.clone()),
                )
            })
            .collect();
        let probe_states = config
            .checks()
            .map(|spec| {
                (
                    (spec.target.clone(), spec.name.clone()),
                    CheckState::default(),
                )
            })
            .collect();
        let heartbeats = Heartbeats::new(&config, deps.clock.clone());
        Arc::new(Self {
            source,
            heartbeats,
            queues: Queues::new(deps.resolver.clone(), deps.clock.clone()),
            config: RwLock::new(Arc::new(config)),
            slots: RwLock::new(slots),
            probe_states: Mutex::new(probe_states),
            versions: Mutex::new(HashMap::new()),
            metrics,
            writer: Mutex::new(None),
            prober,
            clock: deps.clock,
            tasks: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        })
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts the scheduler tasks (interval mode); idempotent.
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let config = self.config();
        tracing::info!(
            mode = config.mode.as_str(),
            targets = config.targets.len(),
            checks = config.checks().count(),
            "exporter started"
        );
        for (spec, worst) in config.over_budget() {
            tracing::warn!(
                target_name = %spec.target,
                check = %spec.name,
                worst_case_seconds = worst.as_secs(),
                "interval + 2 × timeout + retry_interval + 30 s exceeds the 60 s alert budget"
            );
        }
        if config.mode == Mode::Interval {
            let slots: Vec<Arc<Slot>> = self.slots_snapshot();
            for slot in slots {
                self.spawn_task(&slot);
            }
        }
        // Queue readers run on their own interval in both modes.
        self.queues.apply(&config);
        // In both modes, since a reload may switch to interval mode; in scrape mode it
        // seldom finds anything to write (each scrape writes the text it sends).
        *lock(&self.writer) = Some(tokio::spawn(Metrics::write_ahead(self.metrics.clone())));
    }

    fn slots_snapshot(&self) -> Vec<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn spawn_task(self: &Arc<Self>, slot: &Arc<Slot>) {
        let cancel = CancellationToken::new();
        let sink: Arc<dyn ResultSink> = Arc::new(SlotSink {
            exporter: Arc::downgrade(self),
            slot: slot.clone(),
        });
        let handle = tokio::spawn(scheduler::run_check(
            slot.spec.clone(),
            self.prober.clone(),
            sink,
            cancel.clone(),
        ));
        let key = (slot.spec.target.clone(), slot.spec.name.clone());
        if let Some((old, _)) = lock(&self.tasks).insert(key, (cancel, handle)) {
            old.cancel();
        }
    }

    /// Stops every scheduler task and waits for them, at most `deadline`.
    pub async fn stop(&self, deadline: Duration) {
        self.stopping.store(true, Ordering::Release);
        let tasks: Vec<_> = lock(&self.tasks).drain().map(|(_, t)| t).collect();
        for (cancel, _) in &tasks {
            cancel.cancel();
        }
        let all = futures::future::join_all(tasks.into_iter().map(|(_, h)| h));
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("scheduler tasks did not stop within the shutdown timeout");
        }
        self.queues.stop(deadline).await;
        if let Some(writer) = lock(&self.writer).take() {
            writer.abort();
        }
    }

    /// Whether the exporter serves traffic (not shutting down).
    pub fn ready(&self) -> bool {
        !self.stopping.load(Ordering::Acquire)
    }

    /// Records an outcome for a slot; answers its consecutive failures.
    fn record(&self, slot: &Slot, outcome: Outcome) -> u32 {
        let now = self.clock.now();
        let version = outcome.version.clone();
        let state = lock(&slot.state);
        if slot.removed.load(Ordering::Acquire) {
            return state.consecutive_failures;
        }
        let mut state = state;
        let transition = state.record(outcome, now);
        self.metrics.record_check(&slot.spec, &state);
        log_transition(&slot.spec, &state, transition);
        let failures = state.consecutive_failures;
        drop(state);
        if let Some(version) = version {
            let mut versions = lock(&self.versions);
            let previous = versions.insert(slot.spec.target.clone(), version.clone());
            if previous.as_deref() != Some(version.as_str()) {
                self.metrics
                    .set_version(&slot.spec.target, previous.as_deref(), &version);
            }
        }
        failures
    }

    /// Scrape mode: runs every due check (at most one probe in flight per check; later
    /// scrapes share it) and waits for them. `scrape_deadline` comes from Prometheus.
    pub async fn scrape(self: &Arc<Self>, scrape_deadline: Option<Duration>) {
        let now = Instant::now();
        let mut waits = Vec::new();
        for slot in self.slots_snapshot() {
            let mut inflight = lock(&slot.inflight);
            if let Some(running) = inflight.as_ref() {
                waits.push(running.clone());
                continue;
            }
            let mut last_started = lock(&slot.last_started);
            let due =
                last_started.is_none_or(|t| now.duration_since(t) >= slot.spec.schedule.interval);
            if !due {
                continue;
            }
            *last_started = Some(now);
            drop(last_started);
            let deadline = scrape_deadline.map_or(slot.spec.schedule.timeout, |d| {
                d.min(slot.spec.schedule.timeout)
            });
            let this = self.clone();
            let task_slot = slot.clone();
            // A task, so that the probe completes even if every scrape waiting on it goes
            // away. Its last step clears `inflight`, which we hold locked until it is set.
            let handle = tokio::spawn(async move {
                let outcome = this.prober.probe(&task_slot.spec, deadline).await;
                this.record(&task_slot, outcome);
                lock(&task_slot.inflight).take();
            });
            let shared = async move {
                let _ = handle.await;
            }
            .boxed()
            .shared();
            *inflight = Some(shared.clone());
            waits.push(shared);
        }
        futures::future::join_all(waits).await;
    }

    /// `/probe?target=NAME[&check=NAME]`: runs the target's checks now into a fresh
    /// registry and answers its text. Consecutive failures are tracked per check across
    /// `/probe` requests, apart from the scheduler's.
    pub async fn probe_target(
        &self,
        target: &str,
        check: Option<&str>,
        scrape_deadline: Option<Duration>,
    ) -> Result<Vec<u8>, ProbeError> {
        let config = self.config();
        let t = config
            .target(target)
            .ok_or_else(|| ProbeError::UnknownTarget(target.to_owned()))?;
        let specs: Vec<Arc<CheckSpec>> = t
            .checks
            .iter()
            // The canary runs on its own schedule only: each run stores an event.
            .filter(|c| !c.is_canary())
            .filter(|c| check.is_none_or(|name| c.name == name))
            .cloned()
            .collect();
        if let (Some(name), true) = (check, specs.is_empty()) {
            return Err(ProbeError::UnknownCheck {
                target: target.to_owned(),
                check: name.to_owned(),
            });
        }
        let outcomes = futures::future::join_all(specs.iter().map(|spec| {
            let deadline =
                scrape_deadline.map_or(spec.schedule.timeout, |d| d.min(spec.schedule.timeout));
            self.prober.probe(spec, deadline)
        }))
        .await;
        let metrics = Metrics::new();
        let now = self.clock.now();
        let mut states = lock(&self.probe_states);
        for (spec, outcome) in specs.iter().zip(outcomes) {
            let version = outcome.version.clone();
            let key = (spec.target.clone(), spec.name.clone());
            let Some(state) = states.get_mut(&key) else {
                continue; // removed by a reload meanwhile
            };
            state.record(outcome, now);
            metrics.record_check(spec, state);
            if let Some(version) = version {
                metrics.set_version(&spec.target, None, &version);
            }
        }
        drop(states);
        Ok(metrics.render())
    }

    /// The `/metrics` text.
    pub fn render(&self) -> Vec<u8> {
        crate::metrics::concat(&self.render_chunks())
    }

    /// The `/metrics` text in pieces to send one after the other: the check series' text
    /// (15 MB at 10,000 checks) is shared by every scrape until a result changes, never
    /// copied. Shows every change made before the call.
    pub fn render_chunks(&self) -> Vec<bytes::Bytes> {
        let mut chunks = self.metrics.render_chunks();
        chunks.push(self.render_rest().into());
        chunks
    }

    /// What a `/metrics` scrape sends. Interval mode: the check series as written ahead in
    /// the background, at most about a second behind the newest result (see
    /// [`Metrics::render_chunks_ahead`]), so that a scrape of 10,000 checks writes nothing.
    /// Scrape mode: every result of the scrape's own probes ([`Exporter::render_chunks`]).
    pub fn scrape_chunks(&self) -> Vec<bytes::Bytes> {
        let mut chunks = match self.config().mode {
            Mode::Scrape => self.metrics.render_chunks(),
            Mode::Interval => self.metrics.render_chunks_ahead(),
        };
        chunks.push(self.render_rest().into());
        chunks
    }

    /// The series rendered at every scrape, after the check series.
    fn render_rest(&self) -> Vec<u8> {
        let mut text = self.heartbeats.render(self.clock.now());
        // From the running checks, not the config: a reload that leaves a canary unchanged
        // keeps its slot (and the runtime its task records into).
        let canaries: Vec<Arc<CheckSpec>> = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|slot| slot.spec.is_canary())
            .map(|slot| slot.spec.clone())
            .collect();
        text.extend_from_slice(&crate::canary::metrics::render(&canaries));
        text.extend_from_slice(&self.queues.render());
        text
    }

    /// The injected clock's time.
    pub fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    /// The worker heartbeats.
    pub fn heartbeats(&self) -> Arc<Heartbeats> {
        self.heartbeats.clone()
    }

    /// Every check with its state, sorted by target and check.
    pub fn views(&self) -> Vec<CheckView> {
        self.slots_snapshot()
            .into_iter()
            .map(|slot| CheckView {
                spec: slot.spec.clone(),
                state: lock(&slot.state).clone(),
            })
            .collect()
    }

    /// The GlitchTip version last read from `target`.
    pub fn version(&self, target: &str) -> Option<String> {
        lock(&self.versions).get(target).cloned()
    }

    /// Reads the config again from its source and applies it. On error the config in force
    /// stays, and `glitchtip_exporter_config_last_reload_successful` says 0.
    ///
    /// Loading reads files, so it runs on a blocking thread, never on an async worker, and
    /// is given up after [`defaults::RELOAD_DEADLINE`].
    pub async fn reload(self: &Arc<Self>) -> Result<(), ConfigError> {
        let source = self.source.clone();
        let loading = tokio::task::spawn_blocking(move || source.load());
        let loaded = match tokio::time::timeout(defaults::RELOAD_DEADLINE, loading).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(_)) => Err(ConfigError::Parse {
                origin: "reload".to_owned(),
                message: "the config loader stopped unexpectedly".to_owned(),
            }),
            Err(_) => Err(ConfigError::Unfinished {
                deadline: defaults::RELOAD_DEADLINE,
            }),
        };
        match loaded {
            Ok(config) => {
                self.apply(config);
                self.metrics
                    .config_loaded(true, unix_seconds(self.clock.now()));
                Ok(())
            }
            Err(e) => {
                self.metrics.config_loaded(false, 0.0);
                tracing::error!(error = %e, "config reload failed; the previous config stays in force");
                Err(e)
            }
        }
    }

    /// Applies a new config: removed and changed checks stop and lose their series; new
    /// and changed ones start fresh. `listen` and `mode` need a restart.
    pub fn apply(self: &Arc<Self>, new: Config) {
        let old = self.config();
        if old.listen != new.listen || old.mode != new.mode {
            tracing::warn!("server.listen and server.mode take effect only after a restart");
        }
        let mode = old.mode;
        let wanted: BTreeMap<CheckKey, Arc<CheckSpec>> = new
            .checks()
            .map(|s| ((s.target.clone(), s.name.clone()), s.clone()))
            .collect();
        let mut removed = Vec::new();
        let mut added = Vec::new();
        {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<CheckKey> = slots.keys().cloned().collect();
            for key in keys {
                let keep = wanted
                    .get(&key)
                    .is_some_and(|spec| spec.fingerprint == slots[&key].spec.fingerprint);
                if !keep {
                    if let Some(slot) = slots.remove(&key) {
                        removed.push(slot);
                    }
                }
            }
            for (key, spec) in &wanted {
                if !slots.contains_key(key) {
                    let slot = Slot::new(spec.clone());
                    slots.insert(key.clone(), slot.clone());
                    added.push(slot);
                }
            }
        }
        for slot in &removed {
            let key = (slot.spec.target.clone(), slot.spec.name.clone());
            if let Some((cancel, _)) = lock(&self.tasks).remove(&key) {
                cancel.cancel();
            }
            let _state = lock(&slot.state);
            slot.removed.store(true, Ordering::Release);
            self.metrics.remove_check(&key.0, &key.1);
        }
        {
            let mut states = lock(&self.probe_states);
            states.retain(|key, _| {
                wanted.contains_key(key)
                    && !removed
                        .iter()
                        .any(|s| (&s.spec.target, &s.spec.name) == (&key.0, &key.1))
            });
            for key in wanted.keys() {
                states.entry(key.clone()).or_default();
            }
        }
        {
            let mut versions = lock(&self.versions);
            let still_read: Vec<&str> = new
                .checks()
                .filter(|c| c.reads_version())
                .map(|c| c.target.as_str())
                .collect();
            versions.retain(|target, version| {
                let keep = still_read.contains(&target.as_str());
                if !keep {
                    self.metrics.remove_version(target, version);
                }
                keep
            });
        }
        tracing::info!(
            removed = removed.len(),
            added = added.len(),
            checks = wanted.len(),
            "config applied"
        );
        self.heartbeats.apply(&new);
        if self.started.load(Ordering::Acquire) {
            self.queues.apply(&new);
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        if mode == Mode::Interval && self.started.load(Ordering::Acquire) {
            for slot in &added {
                self.spawn_task(slot);
            }
        }
    }
}

/// Connects a scheduler task to its slot without keeping the exporter alive.
struct SlotSink {
    exporter: std::sync::Weak<Exporter>,
    slot: Arc<Slot>,
}

impl ResultSink for SlotSink {
    fn record(&self, _spec: &CheckSpec, outcome: Outcome) -> u32 {
        match self.exporter.upgrade() {
            Some(exporter) => exporter.record(&self.slot, outcome),
            None => 0,
        }
    }

    fn started(&self, lag: Duration) {
        if let Some(exporter) = self.exporter.upgrade() {
            exporter.metrics.schedule_lag(lag);
        }
    }
}

fn log_transition(spec: &CheckSpec, state: &CheckState, transition: Transition) {
    let Some(outcome) = &state.last else {
        return;
    };
    let (target, check) = (spec.target.as_str(), spec.name.as_str());
    let reason = outcome.reason.as_str();
    let status = outcome.status.unwrap_or(0);
    let detail = outcome.detail.as_deref().unwrap_or("");
    match transition {
        Transition::First if outcome.success() => {
            tracing::debug!(target_name = target, check, "check up")
        }
        Transition::First | Transition::Failed | Transition::ReasonChanged => tracing::warn!(
            target_name = target,
            check,
            reason,
            status,
            detail,
            consecutive_failures = state.consecutive_failures,
            "check failing"
        ),
        Transition::Recovered => tracing::info!(target_name = target, check, "check recovered"),
        Transition::Unchanged => {}
    }
}
