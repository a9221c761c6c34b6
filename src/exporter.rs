//! The running exporter: the config in force, the state of every check, the scheduler
//! tasks (interval mode), single-flight probes (scrape mode), `/probe`, and reload.
//!
//! A check's state is keyed by `(target, check)` and outlives its settings: a reload that
//! changes a check's settings (its own keys or `[defaults]`) restarts its probes with the
//! new ones and keeps its state, series and consecutive failures; only a check that is
//! removed, or whose kind changes, starts over.
//!
//! Locks here are std mutexes held only for map look-ups and state updates, never across
//! an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checks::{CheckSpec, Dispatcher, Outcome, Prober};
use crate::clock::{Clock, SystemClock, unix_seconds};
use crate::coalesce::{Coalesced, Job};
use crate::config::{Config, ConfigError, ConfigSource, Mode, defaults};
use crate::heartbeat::Heartbeats;
use crate::metrics::Metrics;
use crate::net::resolver::{Resolver, SystemResolver};
use crate::queue::Queues;
use crate::scheduler::{self, ResultSink};
use crate::state::{CheckState, Transition};

/// `(target, check)`.
pub type CheckKey = (String, String);

/// The least time from one reload's start to the next one's: a flood of reload requests
/// costs at most ten config loads a second, while a lone reload starts at once.
pub const RELOAD_GAP: Duration = Duration::from_millis(100);

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

/// One check's place: its settings and state, and the probe in flight (scrape mode).
struct Slot {
    // std Mutex: nothing async happens while held.
    check: Mutex<Current>,
    /// Set when a reload removed the check, so that a probe still in flight does not bring
    /// its series back.
    removed: AtomicBool,
    inflight: Mutex<Option<SharedProbe>>,
    last_started: Mutex<Option<Instant>>,
}

/// A check's settings and its state, under one lock: a reload swaps the settings and
/// keeps the state.
struct Current {
    spec: Arc<CheckSpec>,
    state: CheckState,
}

impl Slot {
    fn new(spec: Arc<CheckSpec>) -> Arc<Self> {
        Arc::new(Self {
            check: Mutex::new(Current {
                spec,
                state: CheckState::default(),
            }),
            removed: AtomicBool::new(false),
            inflight: Mutex::new(None),
            last_started: Mutex::new(None),
        })
    }

    /// The settings in force.
    fn spec(&self) -> Arc<CheckSpec> {
        lock(&self.check).spec.clone()
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

/// Errors of a reload; the config in force stays.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// Occurs when the config does not load or validate.
    #[error(transparent)]
    Config(Arc<ConfigError>),
    /// Occurs when the reload stopped before it had a result (the load panicked).
    #[error("config reload stopped before it finished; the previous config stays in force")]
    Interrupted,
}

/// What applying a config changed, in checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Checks that are new, or whose kind changed (they start over).
    pub added: usize,
    /// Checks that are gone, or whose kind changed.
    pub removed: usize,
    /// Checks whose settings changed: restarted with the new ones, their state kept.
    pub changed: usize,
    /// Checks in the new config.
    pub checks: usize,
}

impl Applied {
    /// Whether any check was added, removed or changed.
    pub fn any(&self) -> bool {
        self.added + self.removed + self.changed > 0
    }
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
    /// Reloads: at most one runs; the requests made meanwhile share the next one.
    reloads: Arc<Coalesced<Result<(), ReloadError>>>,
    /// The last reload's outcome as logged (`Err`: its message), so that the same outcome
    /// again is logged at debug only.
    reload_logged: Mutex<Result<(), String>>,
    /// Reloads run so far (the tests count them).
    reloads_run: AtomicU64,
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
            reloads: Coalesced::new(RELOAD_GAP),
            reload_logged: Mutex::new(Ok(())),
            reloads_run: AtomicU64::new(0),
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        })
    }

    /// The queue readers' series (text format), for the landing page.
    pub fn queue_text(&self) -> Vec<u8> {
        self.queues.render()
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
        for target in &config.targets {
            let checks: Vec<&str> = config
                .checks()
                .filter(|c| c.target == target.name)
                .map(|c| c.name.as_str())
                .collect();
            tracing::info!(
                target_name = %target.name,
                // Without user name, password or query, in case one holds a credential.
                url = %crate::config::display_url(&target.url),
                checks = %checks.join(","),
                mode = config.mode.as_str(),
                "target"
            );
        }
        // The same warnings, in the same words, as `--check-config` prints.
        for warning in config.warnings() {
            tracing::warn!(warning = %warning, "config warning");
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

    /// Starts the task of a slot with the settings in force, replacing (cancelling) the one
    /// it had. The first probe comes after the check's spread offset, or after
    /// `retry_interval` when its state so far is one failure (the quick re-probe it was
    /// waiting for).
    fn spawn_task(self: &Arc<Self>, slot: &Arc<Slot>) {
        let (spec, failures) = {
            let check = lock(&slot.check);
            (check.spec.clone(), check.state.consecutive_failures)
        };
        let cancel = CancellationToken::new();
        let sink: Arc<dyn ResultSink> = Arc::new(SlotSink {
            exporter: Arc::downgrade(self),
            slot: slot.clone(),
        });
        let first = scheduler::first_delay(&spec, failures);
        let key = (spec.target.clone(), spec.name.clone());
        let handle = tokio::spawn(scheduler::run_check_after(
            spec,
            self.prober.clone(),
            sink,
            cancel.clone(),
            first,
        ));
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

    /// Records the outcome of a probe of `spec` for a slot; answers its consecutive
    /// failures. A probe of settings a reload replaced, or of a removed check, is not
    /// recorded: it tested what is no longer configured.
    fn record(&self, slot: &Slot, spec: &CheckSpec, outcome: Outcome) -> u32 {
        let now = self.clock.now();
        let version = outcome.version.clone();
        let failures = {
            let mut check = lock(&slot.check);
            let current = std::ptr::eq(spec, Arc::as_ptr(&check.spec));
            if !current || slot.removed.load(Ordering::Acquire) {
                return check.state.consecutive_failures;
            }
            let transition = check.state.record(outcome, now);
            self.metrics.record_check(&check.spec, &check.state);
            log_transition(&check.spec, &check.state, transition);
            check.state.consecutive_failures
        };
        if let Some(version) = version {
            let mut versions = lock(&self.versions);
            let previous = versions.insert(spec.target.clone(), version.clone());
            if previous.as_deref() != Some(version.as_str()) {
                self.metrics
                    .set_version(&spec.target, previous.as_deref(), &version);
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
            let spec = slot.spec();
            let mut inflight = lock(&slot.inflight);
            if let Some(running) = inflight.as_ref() {
                waits.push(running.clone());
                continue;
            }
            let mut last_started = lock(&slot.last_started);
            let due = last_started.is_none_or(|t| now.duration_since(t) >= spec.schedule.interval);
            if !due {
                continue;
            }
            *last_started = Some(now);
            drop(last_started);
            let deadline =
                scrape_deadline.map_or(spec.schedule.timeout, |d| d.min(spec.schedule.timeout));
            let this = self.clone();
            let task_slot = slot.clone();
            // A task, so that the probe completes even if every scrape waiting on it goes
            // away. Its last step clears `inflight`, which we hold locked until it is set.
            let handle = tokio::spawn(async move {
                let outcome = this.prober.probe(&spec, deadline).await;
                this.record(&task_slot, &spec, outcome);
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
            .map(|slot| slot.spec())
            .filter(|spec| spec.is_canary())
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
            .map(|slot| {
                let check = lock(&slot.check);
                CheckView {
                    spec: check.spec.clone(),
                    state: check.state.clone(),
                }
            })
            .collect()
    }

    /// The GlitchTip version last read from `target`.
    pub fn version(&self, target: &str) -> Option<String> {
        lock(&self.versions).get(target).cloned()
    }

    /// Reads the config again from its source and applies it (`POST /-/reload`, `SIGHUP`).
    /// At most one reload runs at a time: a call made meanwhile waits for the next one,
    /// which starts after the call and so sees every change made before it. On error the
    /// config in force stays, and `glitchtip_exporter_config_last_reload_successful` says 0.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ReloadError> {
        let this = self.clone();
        let job: Job<Result<(), ReloadError>> =
            Arc::new(move || this.clone().reload_once().boxed());
        let result = self.reloads.run(job).await;
        result.unwrap_or(Err(ReloadError::Interrupted))
    }

    /// One reload: the config is read and validated off the async workers (it reads
    /// files), then applied.
    async fn reload_once(self: Arc<Self>) -> Result<(), ReloadError> {
        self.reloads_run.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        let loading = tokio::task::spawn_blocking(move || this.source.load());
        // Reading is bounded and never blocks on a FIFO; the deadline is the last guard,
        // against a stalled file system.
        let result = match tokio::time::timeout(defaults::RELOAD_DEADLINE, loading).await {
            Ok(Ok(Ok(config))) => Ok(self.apply(config)),
            Ok(Ok(Err(e))) => Err(ReloadError::Config(Arc::new(e))),
            Ok(Err(_)) => Err(ReloadError::Interrupted),
            Err(_) => Err(ReloadError::Config(Arc::new(ConfigError::Unfinished {
                deadline: defaults::RELOAD_DEADLINE,
            }))),
        };
        match &result {
            Ok(_) => self
                .metrics
                .config_loaded(true, unix_seconds(self.clock.now())),
            Err(_) => self.metrics.config_loaded(false, 0.0),
        }
        self.log_reload(&result);
        result.map(|_| ())
    }

    /// Reloads run so far; requests that shared one count once.
    pub fn reloads_run(&self) -> u64 {
        self.reloads_run.load(Ordering::Relaxed)
    }

    /// Logs a reload's outcome: at info or error when it differs from the last one (or
    /// changed checks), at debug when it is the same again, so that a flood of reloads
    /// does not flood the log.
    fn log_reload(&self, result: &Result<Applied, ReloadError>) {
        let outcome = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        let new = {
            let mut logged = lock(&self.reload_logged);
            let new = *logged != outcome;
            *logged = outcome;
            new
        };
        match result {
            Ok(a) if new || a.any() => tracing::info!(
                added = a.added,
                removed = a.removed,
                changed = a.changed,
                checks = a.checks,
                "config reloaded"
            ),
            Ok(_) => tracing::debug!("config reloaded; nothing changed"),
            Err(e) if new => tracing::error!(
                error = %e,
                "config reload failed; the previous config stays in force"
            ),
            Err(e) => tracing::debug!(error = %e, "config reload failed again the same way"),
        }
    }

    /// Applies a new config. Checks that are gone, or whose kind changed, stop and lose
    /// their state and series; new ones start fresh; checks whose settings changed restart
    /// with the new settings and keep their state and series. `listen` and `mode` need a
    /// restart.
    pub fn apply(self: &Arc<Self>, new: Config) -> Applied {
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
        let mut changed = Vec::new();
        {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<CheckKey> = slots.keys().cloned().collect();
            for key in keys {
                let running = slots[&key].spec();
                match wanted.get(&key) {
                    Some(spec) if spec.fingerprint == running.fingerprint => {}
                    Some(spec) if same_kind(spec, &running) => {
                        changed.push((slots[&key].clone(), spec.clone()));
                    }
                    _ => removed.extend(slots.remove(&key)),
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
            let check = lock(&slot.check);
            let key = (check.spec.target.clone(), check.spec.name.clone());
            if let Some((cancel, _)) = lock(&self.tasks).remove(&key) {
                cancel.cancel();
            }
            slot.removed.store(true, Ordering::Release);
            self.metrics.remove_check(&key.0, &key.1);
        }
        for (slot, spec) in &changed {
            let mut check = lock(&slot.check);
            check.spec = spec.clone();
            self.metrics.replace_check(&check.spec, &check.state);
            drop(check);
            // Scrape mode: probed with the new settings at the next scrape.
            *lock(&slot.last_started) = None;
        }
        {
            let gone: Vec<CheckKey> = removed
                .iter()
                .map(|slot| {
                    let spec = slot.spec();
                    (spec.target.clone(), spec.name.clone())
                })
                .collect();
            let mut states = lock(&self.probe_states);
            states.retain(|key, _| wanted.contains_key(key) && !gone.contains(key));
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
        let applied = Applied {
            added: added.len(),
            removed: removed.len(),
            changed: changed.len(),
            checks: wanted.len(),
        };
        self.heartbeats.apply(&new);
        if self.started.load(Ordering::Acquire) {
            self.queues.apply(&new);
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        if mode == Mode::Interval && self.started.load(Ordering::Acquire) {
            let restarted = changed.iter().map(|(slot, _)| slot);
            for slot in added.iter().chain(restarted) {
                self.spawn_task(slot);
            }
        }
        applied
    }
}

/// Whether two settings of one check probe the same kind of thing (HTTP, TLS, canary), so
/// that the state of one means something for the other.
fn same_kind(a: &CheckSpec, b: &CheckSpec) -> bool {
    std::mem::discriminant(&a.kind) == std::mem::discriminant(&b.kind)
}

/// Connects a scheduler task to its slot without keeping the exporter alive.
struct SlotSink {
    exporter: std::sync::Weak<Exporter>,
    slot: Arc<Slot>,
}

impl ResultSink for SlotSink {
    fn record(&self, spec: &CheckSpec, outcome: Outcome) -> u32 {
        match self.exporter.upgrade() {
            Some(exporter) => exporter.record(&self.slot, spec, outcome),
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
    let failing = |message: &str| {
        tracing::warn!(
            target_name = target,
            check,
            reason = outcome.reason.as_str(),
            status = outcome.status.unwrap_or(0),
            detail = outcome.detail.as_deref().unwrap_or(""),
            consecutive_failures = state.consecutive_failures,
            "{message}"
        )
    };
    match transition {
        Transition::First if outcome.success() => {
            tracing::debug!(target_name = target, check, "check up")
        }
        Transition::First | Transition::Failed | Transition::ReasonChanged => {
            failing("check failing")
        }
        Transition::Recovered => tracing::info!(
            target_name = target,
            check,
            // Failures just before, as far as the recent results reach.
            after_failures = state
                .recent
                .iter()
                .rev()
                .skip(1)
                .take_while(|r| r.reason != crate::checks::Reason::None)
                .count(),
            "check recovered"
        ),
        Transition::Unchanged => {}
    }
    if !outcome.success() && state.consecutive_failures == crate::state::DOWN_AFTER_FAILURES {
        failing("check down: failed twice in a row, its alert fires");
    }
}

#[cfg(test)]
mod tests {
    use futures::future::BoxFuture;

    use super::*;
    use crate::checks::Reason;

    /// Fails every probe with a 500 after 10 ms.
    struct Failing;

    impl Prober for Failing {
        fn probe<'a>(&'a self, _: &'a CheckSpec, _: Duration) -> BoxFuture<'a, Outcome> {
            Box::pin(async {
                let takes = Duration::from_millis(10);
                tokio::time::sleep(takes).await;
                Outcome::for_test(Reason::Status, Some(500), takes)
            })
        }
    }

    const TARGET: &str = "[targets.t]\nurl = \"http://127.0.0.1:9/\"\n";

    /// A started exporter whose probes all fail, with [`TARGET`] as its config file.
    fn failing_exporter() -> (Arc<Exporter>, tempfile::NamedTempFile) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), TARGET).unwrap();
        let source = ConfigSource {
            file: Some(file.path().to_owned()),
            env: Some(Default::default()),
            ..Default::default()
        };
        let deps = Deps {
            prober: Some(Arc::new(Failing)),
            ..Deps::default()
        };
        let exporter = Exporter::new(source, deps).unwrap();
        exporter.start();
        (exporter, file)
    }

    /// The `health` check's consecutive failures as the state and as `/metrics` show them
    /// (`None`: no series).
    fn health(exporter: &Exporter) -> (u32, Option<u32>) {
        let state = exporter
            .views()
            .into_iter()
            .find(|v| v.spec.name == "health")
            .map_or(0, |v| v.state.consecutive_failures);
        let text = String::from_utf8(exporter.render()).unwrap();
        let series = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("glitchtip_consecutive_failures{check=\"health\",target=\"t\"} ")
            })
            .map(|v| v.parse().unwrap());
        (state, series)
    }

    /// Regression (#18): a reload that changed a failing check's settings, or any
    /// `[defaults]` key, dropped its series for about 10 s and restarted its count at 1,
    /// so that a firing GlitchTipCheckDown (`glitchtip_consecutive_failures >= 2`)
    /// resolved and fired again.
    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_the_state_and_series_of_a_changed_check() {
        let (exporter, file) = failing_exporter();
        let step = Duration::from_millis(100);
        // Up to the interval (10 s) for the first probe, 3 s to the quick re-probe.
        for _ in 0..150 {
            if health(&exporter).0 >= 2 {
                break;
            }
            tokio::time::sleep(step).await;
        }
        assert_eq!(health(&exporter), (2, Some(2)));

        let changes = [
            (
                "[defaults] timeout",
                format!("[defaults]\ntimeout = \"4s\"\n{TARGET}"),
            ),
            (
                "[defaults] retry_interval",
                format!("[defaults]\ntimeout = \"4s\"\nretry_interval = \"2s\"\n{TARGET}"),
            ),
            (
                "the check's own timeout",
                format!("{TARGET}[targets.t.checks.health]\ntimeout = \"3s\"\n"),
            ),
            (
                "the check's own expect_status",
                format!(
                    "{TARGET}[targets.t.checks.health]\ntimeout = \"3s\"\nexpect_status = [200, 204]\n"
                ),
            ),
        ];
        for (what, toml) in changes {
            let (before, _) = health(&exporter);
            std::fs::write(file.path(), toml).unwrap();
            exporter.reload().await.unwrap();
            let mut last = before;
            // Every 100 ms until the check was probed with the new settings: the series
            // is there, the alert condition holds, the count goes on from where it was.
            for _ in 0..150 {
                let (state, series) = health(&exporter);
                assert_eq!(series, Some(state), "{what}: series present and current");
                assert!(state >= last && state >= 2, "{what}: {last} then {state}");
                last = state;
                if state > before {
                    break;
                }
                tokio::time::sleep(step).await;
            }
            assert_eq!(last, before + 1, "{what}: counted on from {before}");
        }
        assert_eq!(exporter.reloads_run(), 4);
        exporter.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_check_loses_its_state_and_series() {
        let (exporter, file) = failing_exporter();
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(health(&exporter).1.is_some_and(|n| n >= 1));
        let without = format!("{TARGET}[targets.t.checks.health]\nenabled = false\n");
        std::fs::write(file.path(), without).unwrap();
        exporter.reload().await.unwrap();
        assert_eq!(health(&exporter), (0, None));
        std::fs::write(file.path(), TARGET).unwrap();
        exporter.reload().await.unwrap();
        assert_eq!(health(&exporter), (0, None), "back, but from nothing");
        exporter.stop(Duration::from_secs(1)).await;
    }
}
