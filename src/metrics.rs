//! The metric contract: every series the exporter exposes.
//!
//! Call sites read as intent (`metrics.record_check(&spec, &state)`); label plumbing lives
//! here. Every check series is a projection of a [`CheckState`], so recording is idempotent
//! and a fresh [`Metrics`] (one `/probe` request) is filled the same way as the long-lived
//! one.
//!
//! The check and TLS series (about 17 per check: 174,000 lines, 15 MB for 10,000 checks)
//! are not prometheus-crate metrics. Each check keeps one row of plain values, its float
//! values already formatted when its result is recorded, and [`Metrics::render`] writes the
//! text straight from the rows, in about 6 ms for 10,000 checks, without the crate's
//! `gather()` into intermediate families (0.3 s; see `benches/render.rs`). The output is
//! the crate's text format byte for byte: families sorted by name, labels by name, series
//! by label values, values formatted as `f64`'s `Display`. The few exporter series that
//! seldom change (build info, config reloads, schedule lag) stay in a prometheus
//! `Registry` and are merged in by name; process metrics are appended on every render.
//!
//! Rendering is cached: the text is written again only after something changed (a
//! generation counter says so), and the cached text is shared, not copied, by every scrape
//! until then. In interval mode results change all the time (170 a second at 10,000
//! checks), so the exporter also writes the text ahead, in the background, at most once
//! per [`METRICS_WRITE_GAP`] while results change ([`Metrics::write_ahead`]), and a scrape
//! sends the ready text when only results changed since and it is not too old
//! ([`Metrics::render_chunks_ahead`]); other changes (a reload, a removed check) are shown
//! at the next scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use bytes::Bytes;
use prometheus::core::Collector;
use prometheus::{Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, Opts, Registry, TextEncoder};

use crate::checks::tls::{CHECK_NAME as TLS_CHECK, VERSIONS as TLS_VERSIONS};
use crate::checks::{CheckKind, CheckSpec, Phase, Reason, TlsFindings, TlsReason};
use crate::clock::unix_seconds;
use crate::config::defaults::{METRICS_MAX_STALE_GAPS, METRICS_WRITE_GAP};
use crate::state::CheckState;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of `glitchtip_exporter_schedule_lag_seconds`: a healthy scheduler stays in the
/// first ones; the 1 s bucket is the bound the scheduler is held to at 10,000 checks.
const LAG_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Every series of one registry.
pub struct Metrics {
    /// The exporter's own seldom-changing series; merged into the text by name.
    registry: Registry,
    /// Config load results; only in the exporter's registry, not in `/probe` answers.
    reload: Option<(Gauge, Gauge)>,
    /// How late scheduled probes start; only in the exporter's registry.
    schedule_lag: Option<Histogram>,
    /// Process metrics, encoded on every render since they change all the time.
    process: Option<Registry>,
    // std Mutex: nothing async happens while held, here or in the render below.
    series: Mutex<Series>,
    /// Bumped after every change, so that the cached text is known stale.
    generation: AtomicU64,
    /// Bumped after every change that is not a probe result (a removed check or version,
    /// a config load): a text older than that is never sent.
    structure: AtomicU64,
    /// Woken by every change: the background writer waits on it.
    changes: Notify,
    /// The last text and what it shows; held only to look or swap, never while writing.
    cache: Mutex<Cache>,
    /// Held while a text is written, so that one write serves every scrape that waits for
    /// it. std Mutex: nothing async happens while held.
    writing: Mutex<()>,
    /// Texts written so far (the tests count them).
    writes: AtomicU64,
    /// How long the background writer waits between two writes, in µs (see
    /// [`METRICS_WRITE_GAP`]).
    gap_micros: AtomicU64,
}

/// The last text and what it shows.
#[derive(Default)]
struct Cache {
    text: Option<Text>,
    /// The text before the last, kept so that its memory is written into next time when
    /// no answer still holds it: a fresh 15 MB at 10,000 checks costs page faults.
    spare: Option<Bytes>,
}

/// One written text.
struct Text {
    /// The generation and structure counts read before it was written: it shows every
    /// change up to them.
    generation: u64,
    structure: u64,
    written: Instant,
    bytes: Bytes,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn register(registry: &Registry, collector: impl Collector + 'static) {
    registry
        .register(Box::new(collector))
        .expect("each metric is registered once");
}

fn plain_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::with_opts(Opts::new(name, help)).expect("valid metric definition");
    register(registry, g.clone());
    g
}

impl Metrics {
    /// The long-lived registry of `/metrics`: check series, exporter info and process
    /// metrics.
    pub fn for_exporter() -> Self {
        let metrics = Self::new();
        let build = GaugeVec::new(
            Opts::new(
                "glitchtip_exporter_build_info",
                "Constant 1, labelled with the exporter's version and git revision.",
            ),
            &["version", "revision"],
        )
        .expect("valid metric definition");
        register(&metrics.registry, build.clone());
        build
            .with_label_values(&[crate::VERSION, crate::REVISION])
            .set(1.0);
        let process = Registry::new();
        register(
            &process,
            prometheus::process_collector::ProcessCollector::for_self(),
        );
        register(&process, runtime::RuntimeCollector::new());
        let reload = (
            plain_gauge(
                &metrics.registry,
                "glitchtip_exporter_config_last_reload_successful",
                "1 when the last config load or reload succeeded, 0 when it failed (the previous config stays in force).",
            ),
            plain_gauge(
                &metrics.registry,
                "glitchtip_exporter_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load or reload.",
            ),
        );
        let schedule_lag = Histogram::with_opts(
            HistogramOpts::new(
                "glitchtip_exporter_schedule_lag_seconds",
                "How late interval-mode probes start against their schedule: the time from when a probe was due to when its task ran.",
            )
            .buckets(LAG_BUCKETS.to_vec()),
        )
        .expect("valid metric definition");
        register(&metrics.registry, schedule_lag.clone());
        Self {
            process: Some(process),
            reload: Some(reload),
            schedule_lag: Some(schedule_lag),
            ..metrics
        }
    }

    /// A registry with the check series only: what one `/probe` request answers.
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
            reload: None,
            schedule_lag: None,
            process: None,
            series: Mutex::new(Series::default()),
            generation: AtomicU64::new(0),
            structure: AtomicU64::new(0),
            changes: Notify::new(),
            cache: Mutex::new(Cache::default()),
            writing: Mutex::new(()),
            writes: AtomicU64::new(0),
            gap_micros: AtomicU64::new(micros(METRICS_WRITE_GAP)),
        }
    }

    /// A probe result changed a series.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
        self.changes.notify_one();
    }

    /// Something other than a probe result changed a series: the next scrape shows it.
    fn changed_structure(&self) {
        self.structure.fetch_add(1, Ordering::Release);
        self.changed();
    }

    /// Sets every series of `spec` from `state`. Before the first probe nothing is set, so
    /// the series are absent rather than 0.
    pub fn record_check(&self, spec: &CheckSpec, state: &CheckState) {
        self.set_check(spec, state, false);
    }

    /// Sets the series of a check whose settings a reload changed from the state it keeps:
    /// its row is written afresh, so that nothing only the old settings showed stays (a
    /// keyword match no longer asked for), and replaced under one lock, so that no scrape
    /// finds the check's series absent.
    pub fn replace_check(&self, spec: &CheckSpec, state: &CheckState) {
        self.set_check(spec, state, true);
        self.changed_structure();
    }

    fn set_check(&self, spec: &CheckSpec, state: &CheckState, fresh: bool) {
        if state.last.is_none() {
            return;
        }
        {
            let mut series = lock(&self.series);
            let group = match series.checks.get_mut(spec.name.as_str()) {
                Some(group) => group,
                None => series
                    .checks
                    .entry(spec.name.clone())
                    .or_insert_with(|| Group::new(&spec.name)),
            };
            match group.rows.get_mut(spec.target.as_str()) {
                Some(row) if !fresh => row.set(spec, state),
                _ => {
                    let mut row = CheckRow::new(&spec.target);
                    row.set(spec, state);
                    group.rows.insert(spec.target.clone(), row);
                }
            }
        }
        if let (CheckKind::Tls(_), Some(outcome)) = (&spec.kind, &state.last) {
            self.record_tls(&spec.target, outcome.tls.as_ref());
        }
        self.changed();
    }

    /// Sets the `glitchtip_tls_*` series of `target` from the TLS check's findings. Without
    /// a certificate the certificate series go (so that a network blip is not a bad
    /// certificate) and the reason says why; `None` removes every TLS series.
    pub fn record_tls(&self, target: &str, findings: Option<&TlsFindings>) {
        {
            let mut series = lock(&self.series);
            let series = &mut *series;
            match findings {
                None => series.remove_tls(target),
                Some(findings) => {
                    let row = series
                        .tls
                        .entry(target.to_owned())
                        .or_insert_with(|| TlsRow::new(target));
                    row.reason = findings.reason;
                    row.version = findings.version;
                    let info = findings.certificate.as_ref().map(|cert| CertInfo {
                        fingerprint_sha256: cert.fingerprint_sha256.clone(),
                        issuer: cert.issuer.clone(),
                        serial: cert.serial.clone(),
                        subject: cert.subject.clone(),
                        target: target.to_owned(),
                    });
                    if row.cert.as_ref().map(|c| &c.info) != info.as_ref()
                        && let Some(old) = row.cert.take()
                    {
                        series.cert_info.remove(&old.info);
                    }
                    row.cert = match (findings.certificate.as_ref(), info) {
                        (Some(cert), Some(info)) => {
                            if !series.cert_info.contains_key(&info) {
                                series.cert_info.insert(info.clone(), info.labels());
                            }
                            Some(CertRow {
                                valid: cert.valid,
                                expiry: float(cert.expiry_seconds),
                                not_after: [
                                    Some(float(cert.earliest_presented_not_after)),
                                    cert.earliest_verified_not_after.map(float),
                                    Some(float(cert.leaf_not_after)),
                                ],
                                info,
                            })
                        }
                        _ => None,
                    };
                }
            }
        }
        self.changed();
    }

    /// Removes every series of a check that is gone (removed by a reload).
    pub fn remove_check(&self, target: &str, check: &str) {
        {
            let mut series = lock(&self.series);
            if let Some(group) = series.checks.get_mut(check) {
                group.rows.remove(target);
                if group.rows.is_empty() {
                    series.checks.remove(check);
                }
            }
            if check == TLS_CHECK {
                series.remove_tls(target);
            }
        }
        self.changed_structure();
    }

    /// Shows `version` for `target` (one version series per target), removing the series
    /// of `previous`.
    pub fn set_version(&self, target: &str, previous: Option<&str>, version: &str) {
        {
            let mut series = lock(&self.series);
            if let Some(old) = previous.filter(|old| *old != version)
                && series.versions.get(target).map(|(v, _)| v.as_str()) == Some(old)
            {
                series.versions.remove(target);
            }
            let labels = labels(&[("target", target), ("version", version)]);
            series
                .versions
                .insert(target.to_owned(), (version.to_owned(), labels));
        }
        self.changed();
    }

    /// Removes the version series of a target that is gone.
    pub fn remove_version(&self, target: &str, version: &str) {
        {
            let mut series = lock(&self.series);
            if series.versions.get(target).map(|(v, _)| v.as_str()) == Some(version) {
                series.versions.remove(target);
            }
        }
        self.changed_structure();
    }

    /// Records the result of a config load or reload at `unix_time`.
    pub fn config_loaded(&self, ok: bool, unix_time: f64) {
        if let Some((success, timestamp)) = &self.reload {
            success.set(if ok { 1.0 } else { 0.0 });
            if ok {
                timestamp.set(unix_time);
            }
        }
        self.changed_structure();
    }

    /// Records that a scheduled probe started `lag` after it was due. Not part of the
    /// cached text's generation: a histogram this busy would make every scrape render.
    pub fn schedule_lag(&self, lag: Duration) {
        if let Some(histogram) = &self.schedule_lag {
            histogram.observe(lag.as_secs_f64());
        }
    }

    /// The text exposition format, in pieces to send one after the other: the check
    /// series and exporter series (written again only when something changed, shared
    /// otherwise), then the process metrics. Shows every change made before the call.
    pub fn render_chunks(&self) -> Vec<Bytes> {
        self.with_process(self.render_series())
    }

    /// As [`Metrics::render_chunks`], but sends the text written ahead by
    /// [`Metrics::write_ahead`] when only probe results changed since it was written and it
    /// is less than [`METRICS_MAX_STALE_GAPS`] write gaps old: at most about one gap
    /// behind the newest result, without a write of its own.
    pub fn render_chunks_ahead(&self) -> Vec<Bytes> {
        let structure = self.structure.load(Ordering::Acquire);
        let generation = self.generation.load(Ordering::Acquire);
        let max_age = self.gap() * METRICS_MAX_STALE_GAPS;
        let ready = lock(&self.cache).text.as_ref().and_then(|text| {
            (text.structure >= structure
                && (text.generation >= generation || text.written.elapsed() < max_age))
                .then(|| text.bytes.clone())
        });
        match ready {
            Some(bytes) => self.with_process(bytes),
            None => self.render_chunks(),
        }
    }

    /// The text exposition format, in one piece.
    pub fn render(&self) -> Vec<u8> {
        concat(&self.render_chunks())
    }

    fn with_process(&self, series: Bytes) -> Vec<Bytes> {
        let mut chunks = vec![series];
        if let Some(process) = &self.process {
            chunks.push(Bytes::from(encode(&process.gather())));
        }
        chunks
    }

    /// Writes the text again when something changed since the last one; answers how long
    /// that took (`None`: nothing to write). Blocks for the write (milliseconds at 10,000
    /// checks): call it off the async workers.
    pub fn refresh(&self) -> Option<Duration> {
        if self
            .cached(self.generation.load(Ordering::Acquire))
            .is_some()
        {
            return None;
        }
        let start = std::time::Instant::now();
        self.render_series();
        Some(start.elapsed())
    }

    /// Interval mode's background writer: after each change, waits one write gap (so that
    /// the changes of that gap make one write), then writes the text off the async workers;
    /// a write that takes long stretches the gap to 50 times its duration. Runs until
    /// dropped.
    pub async fn write_ahead(metrics: std::sync::Arc<Self>) {
        loop {
            metrics.changes.notified().await;
            tokio::time::sleep(metrics.gap()).await;
            let m = metrics.clone();
            let Ok(took) = tokio::task::spawn_blocking(move || m.refresh()).await else {
                continue;
            };
            if let Some(took) = took {
                let gap = METRICS_WRITE_GAP.max(took * 50);
                metrics.gap_micros.store(micros(gap), Ordering::Relaxed);
            }
        }
    }

    /// Texts written so far.
    #[cfg(test)]
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn gap(&self) -> Duration {
        Duration::from_micros(self.gap_micros.load(Ordering::Relaxed))
    }

    /// The current text: the cached one when it shows every change made so far, else a
    /// new one.
    fn render_series(&self) -> Bytes {
        // Read before the text is written: a change after these reads leaves it stale.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(bytes) = self.cached(generation) {
            return bytes;
        }
        let _writing = lock(&self.writing);
        // Another write may have finished while this one waited.
        if let Some(bytes) = self.cached(generation) {
            return bytes;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let structure = self.structure.load(Ordering::Acquire);
        // The text before the last one, when no answer still holds it.
        let spare = lock(&self.cache).spare.take();
        let mut buf = match spare.map(Bytes::try_into_mut) {
            Some(Ok(old)) => {
                let mut old = Vec::from(old);
                old.clear();
                old
            }
            _ => Vec::new(),
        };
        let families = self.registry.gather();
        lock(&self.series).write(&mut buf, &families);
        let bytes = Bytes::from(buf);
        let text = Text {
            generation,
            structure,
            written: Instant::now(),
            bytes: bytes.clone(),
        };
        let mut cache = lock(&self.cache);
        cache.spare = cache.text.replace(text).map(|old| old.bytes);
        self.writes.fetch_add(1, Ordering::Relaxed);
        bytes
    }

    /// The cached text when it shows every change up to `generation`. The lag histogram
    /// moves with every probe but is not worth a write of its own: it is fresh whenever
    /// anything else changed.
    fn cached(&self, generation: u64) -> Option<Bytes> {
        let cache = lock(&self.cache);
        let text = cache.text.as_ref()?;
        (text.generation >= generation).then(|| text.bytes.clone())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The pieces of a text, joined.
pub fn concat(chunks: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
    out
}

fn encode(families: &[prometheus::proto::MetricFamily]) -> Vec<u8> {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(families, &mut buf);
    buf
}

/// What the check and TLS series show: plain values, grouped and ordered as the text
/// lists them.
#[derive(Default)]
struct Series {
    /// By check name, then target name: the order of the `{check, target}` series.
    checks: BTreeMap<String, Group>,
    /// By target name.
    tls: BTreeMap<String, TlsRow>,
    /// Every `glitchtip_tls_cert_info` series in their order: raw labels to the escaped
    /// `{...} ` text.
    cert_info: BTreeMap<CertInfo, Box<str>>,
    /// `glitchtip_version_info`: target name to the version and the escaped `{...} ` text.
    versions: BTreeMap<String, (String, Box<str>)>,
}

impl Series {
    fn remove_tls(&mut self, target: &str) {
        if let Some(row) = self.tls.remove(target)
            && let Some(cert) = row.cert
        {
            self.cert_info.remove(&cert.info);
        }
    }
}

/// The checks of one name, across targets.
struct Group {
    /// `{check="NAME",`, escaped.
    head: Box<str>,
    rows: BTreeMap<String, CheckRow>,
}

impl Group {
    fn new(check: &str) -> Self {
        let mut head = String::from("{check=\"");
        escape_into(&mut head, check);
        head.push_str("\",");
        Self {
            head: head.into(),
            rows: BTreeMap::new(),
        }
    }
}

/// One check's series values, as of its last recorded state.
struct CheckRow {
    /// `target="NAME"} `, escaped: the end of every series line of this check.
    tail: Box<str>,
    up: bool,
    status: u16,
    consecutive_failures: u32,
    reason: Reason,
    keyword_match: Option<bool>,
    tls_insecure: bool,
    successes: u64,
    failures: u64,
    down_total: u64,
    has_last_success: bool,
    has_last_run: bool,
    /// The float values, formatted once when recorded, one after the other; `ends` says
    /// where each ends. Their places: [`DURATION`], [`PHASES`]…, [`LAST_SUCCESS`],
    /// [`LAST_RUN`].
    floats: String,
    ends: [u16; FLOATS],
}

/// The places of a [`CheckRow`]'s float values: the duration, the phases in `Phase::ALL`
/// order, the last success (empty when none), the last run.
const DURATION: usize = 0;
const PHASES: usize = 1;
const LAST_SUCCESS: usize = PHASES + Phase::ALL.len();
const LAST_RUN: usize = LAST_SUCCESS + 1;
const FLOATS: usize = LAST_RUN + 1;

impl CheckRow {
    fn new(target: &str) -> Self {
        let mut tail = String::from("target=\"");
        escape_into(&mut tail, target);
        tail.push_str("\"} ");
        Self {
            tail: tail.into(),
            up: false,
            status: 0,
            consecutive_failures: 0,
            reason: Reason::None,
            keyword_match: None,
            tls_insecure: false,
            successes: 0,
            failures: 0,
            down_total: 0,
            has_last_success: false,
            has_last_run: false,
            floats: String::new(),
            ends: [0; FLOATS],
        }
    }

    fn set(&mut self, spec: &CheckSpec, state: &CheckState) {
        let Some(outcome) = &state.last else {
            return;
        };
        self.up = outcome.success();
        self.status = outcome.status.unwrap_or(0);
        self.consecutive_failures = state.consecutive_failures;
        self.reason = outcome.reason;
        if spec.has_body_expectations() {
            self.keyword_match = Some(outcome.body_match.unwrap_or(false));
        }
        self.tls_insecure |= spec.tls_insecure();
        // Counters never go down, whatever the state says.
        self.successes = self.successes.max(state.successes);
        self.failures = self.failures.max(state.failures);
        self.down_total = self.down_total.max(state.down_total);
        self.has_last_success = state.last_success.is_some();
        self.has_last_run = state.last_run.is_some();

        self.floats.clear();
        let mut slot = 0;
        let mut push = |row: &mut Self, value: Option<f64>| {
            if let Some(value) = value {
                write_float(&mut row.floats, value);
            }
            row.ends[slot] = u16::try_from(row.floats.len()).unwrap_or(u16::MAX);
            slot += 1;
        };
        push(self, Some(outcome.duration.as_secs_f64()));
        for phase in Phase::ALL {
            push(self, Some(outcome.trace.get(phase).as_secs_f64()));
        }
        push(self, state.last_success.map(unix_seconds));
        push(self, state.last_run.map(unix_seconds));
    }

    fn float(&self, slot: usize) -> &str {
        let start = if slot == 0 {
            0
        } else {
            usize::from(self.ends[slot - 1])
        };
        self.floats
            .get(start..usize::from(self.ends[slot]))
            .unwrap_or("NaN")
    }
}

/// One target's TLS check findings.
struct TlsRow {
    /// `target="NAME"} `, escaped.
    tail: Box<str>,
    /// `{target="NAME",`, escaped: for the series whose other label sorts after `target`.
    head: Box<str>,
    reason: TlsReason,
    version: Option<&'static str>,
    cert: Option<CertRow>,
}

impl TlsRow {
    fn new(target: &str) -> Self {
        let mut escaped = String::new();
        escape_into(&mut escaped, target);
        Self {
            tail: format!("target=\"{escaped}\"}} ").into(),
            head: format!("{{target=\"{escaped}\",").into(),
            reason: TlsReason::None,
            version: None,
            cert: None,
        }
    }
}

struct CertRow {
    valid: bool,
    expiry: String,
    /// `earliest_presented`, `earliest_verified`, `leaf`: the `cert` label's order.
    not_after: [Option<String>; 3],
    info: CertInfo,
}

const CERT_LABELS: [&str; 3] = ["earliest_presented", "earliest_verified", "leaf"];

/// The labels of a `glitchtip_tls_cert_info` series, raw, in label-name order (so that the
/// derived order is the order of the series).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CertInfo {
    fingerprint_sha256: String,
    issuer: String,
    serial: String,
    subject: String,
    target: String,
}

impl CertInfo {
    fn labels(&self) -> Box<str> {
        labels(&[
            ("fingerprint_sha256", &self.fingerprint_sha256),
            ("issuer", &self.issuer),
            ("serial", &self.serial),
            ("subject", &self.subject),
            ("target", &self.target),
        ])
    }
}

/// `{a="1",b="2"} `, escaped; `pairs` in label-name order.
fn labels(pairs: &[(&str, &str)]) -> Box<str> {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(name);
        out.push_str("=\"");
        escape_into(&mut out, value);
        out.push('"');
    }
    out.push_str("} ");
    out.into()
}

/// The families written from [`Series`], sorted by name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    CheckDownTotal,
    CheckTlsInsecure,
    ConsecutiveFailures,
    HttpStatusCode,
    KeywordMatch,
    LastSuccess,
    ProbeDuration,
    ProbeFailureReason,
    ProbeLastRun,
    ProbePhase,
    ProbesTotal,
    TlsCertExpiry,
    TlsCertInfo,
    TlsCertNotAfter,
    TlsCertValid,
    TlsFailureReason,
    TlsVersionInfo,
    Up,
    VersionInfo,
}

impl Family {
    const ALL: [Family; 19] = [
        Family::CheckDownTotal,
        Family::CheckTlsInsecure,
        Family::ConsecutiveFailures,
        Family::HttpStatusCode,
        Family::KeywordMatch,
        Family::LastSuccess,
        Family::ProbeDuration,
        Family::ProbeFailureReason,
        Family::ProbeLastRun,
        Family::ProbePhase,
        Family::ProbesTotal,
        Family::TlsCertExpiry,
        Family::TlsCertInfo,
        Family::TlsCertNotAfter,
        Family::TlsCertValid,
        Family::TlsFailureReason,
        Family::TlsVersionInfo,
        Family::Up,
        Family::VersionInfo,
    ];

    /// Name, `# TYPE` and HELP text.
    fn describe(self) -> (&'static str, &'static str, &'static str) {
        use Family::*;
        match self {
            CheckDownTotal => (
                "glitchtip_check_down_total",
                "counter",
                "Times the check reached 2 consecutive failures, so that a run of failures is counted even when it ends between two scrapes.",
            ),
            CheckTlsInsecure => (
                "glitchtip_check_tls_insecure",
                "gauge",
                "1 when the check skips TLS certificate verification (tls.insecure_skip_verify = true); absent otherwise.",
            ),
            ConsecutiveFailures => (
                "glitchtip_consecutive_failures",
                "gauge",
                "Failed probes since the last successful one; 0 after a success.",
            ),
            HttpStatusCode => (
                "glitchtip_http_status_code",
                "gauge",
                "HTTP status of the last probe's answer; 0 when no answer arrived.",
            ),
            KeywordMatch => (
                "glitchtip_keyword_match",
                "gauge",
                "1 when the last answer's body met the check's keyword, regex and JSON expectations, 0 when not; only for checks that have one.",
            ),
            LastSuccess => (
                "glitchtip_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last successful probe; absent before the first success.",
            ),
            ProbeDuration => (
                "glitchtip_probe_duration_seconds",
                "gauge",
                "Duration of the last probe, from start to result.",
            ),
            ProbeFailureReason => (
                "glitchtip_probe_failure_reason",
                "gauge",
                "Constant 1; the reason label says why the last probe failed (none when it succeeded): none, dns, connect, tls, timeout, status, keyword, json, body_too_large, http, proxy, exporter_resources.",
            ),
            ProbeLastRun => (
                "glitchtip_probe_last_run_timestamp_seconds",
                "gauge",
                "Unix time the last probe finished; when it stops advancing, the exporter's scheduler has stalled.",
            ),
            ProbePhase => (
                "glitchtip_probe_phase_seconds",
                "gauge",
                "Duration of each phase of the last probe: resolve, connect, tls, processing (request sent to response headers), transfer (body).",
            ),
            ProbesTotal => (
                "glitchtip_probes_total",
                "counter",
                "Probes run, by result (success or failure).",
            ),
            TlsCertExpiry => (
                "glitchtip_tls_cert_expiry_seconds",
                "gauge",
                "Seconds until the earliest notAfter of the chain clients rely on: the verified chain when it verifies, else the presented certificates; negative once expired. Present whenever a certificate arrived, valid or not.",
            ),
            TlsCertInfo => (
                "glitchtip_tls_cert_info",
                "gauge",
                "Constant 1, labelled with the leaf certificate's subject, issuer, serial (hex) and SHA-256 fingerprint (hex); values capped at 64 characters.",
            ),
            TlsCertNotAfter => (
                "glitchtip_tls_cert_not_after_timestamp_seconds",
                "gauge",
                "Unix time of notAfter: cert=leaf, cert=earliest_presented (earliest of the presented certificates), cert=earliest_verified (earliest of the verified chain, only when it verifies).",
            ),
            TlsCertValid => (
                "glitchtip_tls_cert_valid",
                "gauge",
                "1 when the chain verifies to a trusted root, is within its validity period and matches the host name, 0 when not; absent when no certificate arrived.",
            ),
            TlsFailureReason => (
                "glitchtip_tls_failure_reason",
                "gauge",
                "Constant 1; the reason label says why the TLS check failed (none when it succeeded): none, expired, not_yet_valid, hostname_mismatch, self_signed, unknown_issuer, bad_signature, unsupported_critical_extension, invalid_certificate, handshake, dns, connect, timeout, proxy, exporter_resources.",
            ),
            TlsVersionInfo => (
                "glitchtip_tls_version_info",
                "gauge",
                "Constant 1, labelled with the TLS version the last handshake negotiated.",
            ),
            Up => (
                "glitchtip_up",
                "gauge",
                "1 when the check's last probe met every expectation, 0 when it failed.",
            ),
            VersionInfo => (
                "glitchtip_version_info",
                "gauge",
                "Constant 1, labelled with the GlitchTip version the target reports in /api/settings/.",
            ),
        }
    }
}

/// Label values in the order the text sorts them (by their text, not by declaration).
fn sorted<T: Copy>(all: &[T], label: impl Fn(T) -> &'static str) -> Vec<T> {
    let mut v = all.to_vec();
    v.sort_by_key(|x| label(*x));
    v
}

impl Series {
    /// Writes every family, the registry's `families` merged in by name.
    fn write(&self, buf: &mut Vec<u8>, families: &[prometheus::proto::MetricFamily]) {
        // Room for the whole text at once, also at the first render: growing a 15 MB
        // buffer by doubling would copy it several times.
        let rows: usize = self.checks.values().map(|g| g.rows.len()).sum();
        buf.reserve(rows * 1_600 + self.tls.len() * 1_000 + self.versions.len() * 128 + 8_192);
        let mut others = families.iter().peekable();
        let phases = sorted(&Phase::ALL, Phase::as_str);
        let reasons = sorted(&Reason::ALL, Reason::as_str);
        let tls_reasons = sorted(&TlsReason::ALL, TlsReason::as_str);
        for family in Family::ALL {
            let (name, kind, help) = family.describe();
            while let Some(other) = others.next_if(|f| f.name() < name) {
                buf.extend_from_slice(&encode(std::slice::from_ref(other)));
            }
            let start = buf.len();
            header(buf, name, kind, help);
            let headed = buf.len();
            self.write_family(buf, family, name, &phases, &reasons, &tls_reasons);
            // Families without a series are left out, as the prometheus crate does.
            if buf.len() == headed {
                buf.truncate(start);
            }
        }
        for other in others {
            buf.extend_from_slice(&encode(std::slice::from_ref(other)));
        }
    }

    fn write_family(
        &self,
        buf: &mut Vec<u8>,
        family: Family,
        name: &str,
        phases: &[Phase],
        reasons: &[Reason],
        tls_reasons: &[TlsReason],
    ) {
        // Each line is a prefix shared by many lines (`name{check="C",` and the label that
        // sorts between check and target), the row's `target="T"} `, and the value: three
        // copies, so that 170,000 lines take milliseconds.
        let mut prefix = Vec::with_capacity(128);
        let start = |prefix: &mut Vec<u8>, head: &str, extra: &str| {
            prefix.clear();
            prefix.extend_from_slice(name.as_bytes());
            prefix.extend_from_slice(head.as_bytes());
            prefix.extend_from_slice(extra.as_bytes());
        };
        let line = |buf: &mut Vec<u8>, prefix: &[u8], tail: &str, value: Value<'_>| {
            buf.extend_from_slice(prefix);
            buf.extend_from_slice(tail.as_bytes());
            value.write(buf);
        };
        let mut each = |buf: &mut Vec<u8>, value: &dyn Fn(&CheckRow) -> Option<Value<'_>>| {
            for group in self.checks.values() {
                start(&mut prefix, &group.head, "");
                for row in group.rows.values() {
                    if let Some(v) = value(row) {
                        line(buf, &prefix, &row.tail, v);
                    }
                }
            }
        };
        match family {
            Family::CheckDownTotal => each(buf, &|r| Some(Value::Count(r.down_total))),
            Family::CheckTlsInsecure => each(buf, &|r| r.tls_insecure.then_some(Value::Int(1))),
            Family::ConsecutiveFailures => each(buf, &|r| {
                Some(Value::Int(u64::from(r.consecutive_failures)))
            }),
            Family::HttpStatusCode => each(buf, &|r| Some(Value::Int(u64::from(r.status)))),
            Family::KeywordMatch => each(buf, &|r| r.keyword_match.map(Value::bool)),
            Family::LastSuccess => each(buf, &|r| {
                r.has_last_success
                    .then(|| Value::Text(r.float(LAST_SUCCESS)))
            }),
            Family::ProbeDuration => each(buf, &|r| Some(Value::Text(r.float(DURATION)))),
            Family::ProbeLastRun => each(buf, &|r| {
                r.has_last_run.then(|| Value::Text(r.float(LAST_RUN)))
            }),
            Family::Up => each(buf, &|r| Some(Value::bool(r.up))),
            Family::ProbeFailureReason => {
                for group in self.checks.values() {
                    for reason in reasons {
                        let extra = format!("reason=\"{}\",", reason.as_str());
                        start(&mut prefix, &group.head, &extra);
                        for row in group.rows.values().filter(|r| r.reason == *reason) {
                            line(buf, &prefix, &row.tail, Value::Int(1));
                        }
                    }
                }
            }
            Family::ProbePhase => {
                for group in self.checks.values() {
                    for phase in phases {
                        let extra = format!("phase=\"{}\",", phase.as_str());
                        start(&mut prefix, &group.head, &extra);
                        let slot = PHASES + *phase as usize;
                        for row in group.rows.values() {
                            line(buf, &prefix, &row.tail, Value::Text(row.float(slot)));
                        }
                    }
                }
            }
            Family::ProbesTotal => {
                for group in self.checks.values() {
                    start(&mut prefix, &group.head, "result=\"failure\",");
                    for row in group.rows.values() {
                        line(buf, &prefix, &row.tail, Value::Count(row.failures));
                    }
                    start(&mut prefix, &group.head, "result=\"success\",");
                    for row in group.rows.values() {
                        line(buf, &prefix, &row.tail, Value::Count(row.successes));
                    }
                }
            }
            Family::TlsCertExpiry => {
                start(&mut prefix, "{", "");
                for row in self.tls.values() {
                    if let Some(cert) = &row.cert {
                        line(buf, &prefix, &row.tail, Value::Text(&cert.expiry));
                    }
                }
            }
            Family::TlsCertInfo => {
                start(&mut prefix, "", "");
                for labels in self.cert_info.values() {
                    line(buf, &prefix, labels, Value::Int(1));
                }
            }
            Family::TlsCertNotAfter => {
                for (i, label) in CERT_LABELS.iter().enumerate() {
                    start(&mut prefix, "{", &format!("cert=\"{label}\","));
                    for row in self.tls.values() {
                        let value = row.cert.as_ref().and_then(|c| c.not_after[i].as_deref());
                        if let Some(value) = value {
                            line(buf, &prefix, &row.tail, Value::Text(value));
                        }
                    }
                }
            }
            Family::TlsCertValid => {
                start(&mut prefix, "{", "");
                for row in self.tls.values() {
                    if let Some(cert) = &row.cert {
                        line(buf, &prefix, &row.tail, Value::bool(cert.valid));
                    }
                }
            }
            Family::TlsFailureReason => {
                for reason in tls_reasons {
                    start(
                        &mut prefix,
                        "{",
                        &format!("reason=\"{}\",", reason.as_str()),
                    );
                    for row in self.tls.values().filter(|r| r.reason == *reason) {
                        line(buf, &prefix, &row.tail, Value::Int(1));
                    }
                }
            }
            Family::TlsVersionInfo => {
                start(&mut prefix, "", "");
                for row in self.tls.values() {
                    // Only the versions the label can name, as before.
                    if let Some(version) = row.version.filter(|v| TLS_VERSIONS.contains(v)) {
                        buf.extend_from_slice(&prefix);
                        buf.extend_from_slice(row.head.as_bytes());
                        buf.extend_from_slice(b"version=\"");
                        buf.extend_from_slice(version.as_bytes());
                        buf.extend_from_slice(b"\"} ");
                        Value::Int(1).write(buf);
                    }
                }
            }
            Family::VersionInfo => {
                start(&mut prefix, "", "");
                for (_, labels) in self.versions.values() {
                    line(buf, &prefix, labels, Value::Int(1));
                }
            }
        }
    }
}

/// A sample value.
#[derive(Clone, Copy)]
enum Value<'a> {
    /// An integer-valued gauge.
    Int(u64),
    /// A counter, exposed as the `f64` the prometheus crate would hold.
    Count(u64),
    /// A float already formatted.
    Text(&'a str),
}

impl Value<'_> {
    fn bool(b: bool) -> Self {
        Value::Int(u64::from(b))
    }

    /// Writes the value and the end of the line.
    fn write(self, buf: &mut Vec<u8>) {
        match self {
            Value::Int(n) => buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            // Above 2^53 an f64 no longer holds every integer: show what it would hold.
            Value::Count(n) if n > 1 << 53 => {
                let mut s = String::new();
                write_float(&mut s, n as f64);
                buf.extend_from_slice(s.as_bytes());
            }
            Value::Count(n) => buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            Value::Text(s) => buf.extend_from_slice(s.as_bytes()),
        }
        buf.push(b'\n');
    }
}

/// Formats `value` as the prometheus crate does (`f64`'s `Display`): integers without a
/// fraction, no exponent, `NaN`, `inf`.
fn write_float(out: &mut String, value: f64) {
    // Integers are most values and the cheapest to write; -0 keeps its sign as in Display.
    if value.fract() == 0.0 && value.abs() < 1e15 && !(value == 0.0 && value.is_sign_negative()) {
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        let _ = write!(out, "{value}");
    }
}

fn float(value: f64) -> String {
    let mut s = String::new();
    write_float(&mut s, value);
    s
}

fn header(buf: &mut Vec<u8>, name: &str, kind: &str, help: &str) {
    buf.extend_from_slice(b"# HELP ");
    buf.extend_from_slice(name.as_bytes());
    buf.push(b' ');
    // HELP escapes backslash and newline, not quotes.
    for c in help.bytes() {
        match c {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            c => buf.push(c),
        }
    }
    buf.extend_from_slice(b"\n# TYPE ");
    buf.extend_from_slice(name.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(kind.as_bytes());
    buf.push(b'\n');
}

/// Appends a label value escaped for the text format: `\`, `"` and newline.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod oracle;
mod runtime;
#[cfg(test)]
mod tests;
