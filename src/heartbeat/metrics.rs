//! The heartbeat series, in a registry of their own.
//!
//! Age and `up` depend on "now", so unlike the check series (cached in
//! [`crate::metrics::Metrics`] until a result changes) these are set from the store and the
//! injected clock on every scrape, then encoded and appended to `/metrics`. They are never
//! part of `/probe` answers.

use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use super::PingKind;

/// One heartbeat as the metrics show it at a given time.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The configured name.
    pub name: String,
    /// Not missed, not failed, no overdue start.
    pub up: bool,
    /// Missed by what is saved, but a success ping that could not be saved came in time:
    /// whether it is late is not known.
    pub unknown: bool,
    /// Seconds since the last success ping (or since first configured).
    pub age_seconds: f64,
    /// Unix time of the last success ping.
    pub last_seen: Option<f64>,
    /// Unix time after which the heartbeat counts as missed.
    pub deadline: Option<f64>,
    /// Seconds from `start` to success of the last run that sent both.
    pub last_duration: Option<f64>,
}

impl View {
    /// `up`, `unknown` or `missed` (the landing page's word).
    pub fn state(&self) -> &'static str {
        match (self.up, self.unknown) {
            (true, _) => "up",
            (false, true) => "unknown",
            (false, false) => "missed",
        }
    }
}

/// Why a ping was answered 503 and not saved: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsaved {
    /// The heartbeat's write queue was full.
    QueueFull,
    /// The state could not be written.
    WriteFailed,
}

impl Unsaved {
    /// Every value.
    pub const ALL: [Unsaved; 2] = [Unsaved::QueueFull, Unsaved::WriteFailed];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Unsaved::QueueFull => "queue_full",
            Unsaved::WriteFailed => "write_failed",
        }
    }
}

/// Every heartbeat series.
pub(super) struct HeartbeatMetrics {
    registry: Registry,
    up: GaugeVec,
    unknown_state: GaugeVec,
    age: GaugeVec,
    last_seen: GaugeVec,
    deadline: GaugeVec,
    last_duration: GaugeVec,
    pings: IntCounterVec,
    unsaved: IntCounterVec,
    unknown: IntCounter,
    write_errors: IntCounter,
    load_ok: Gauge,
    write_ok: Gauge,
    /// Held while the gauges are set and encoded, so that two scrapes at once do not mix
    /// their "now". std Mutex: nothing async happens while held.
    render: Mutex<()>,
}

const H: &[&str] = &["heartbeat"];

fn gauge(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    let vec = GaugeVec::new(Opts::new(name, help), H).expect("valid metric definition");
    registry
        .register(Box::new(vec.clone()))
        .expect("each metric is registered once");
    vec
}

fn plain_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::with_opts(Opts::new(name, help)).expect("valid metric definition");
    g.set(1.0);
    registry
        .register(Box::new(g.clone()))
        .expect("each metric is registered once");
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(vec.clone()))
        .expect("each metric is registered once");
    vec
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help)).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("each metric is registered once");
    c
}

impl HeartbeatMetrics {
    pub(super) fn new() -> Self {
        let r = Registry::new();
        let pings = counter_vec(
            &r,
            "glitchtip_heartbeat_pings_total",
            "Pings received for a configured heartbeat, by kind: success, start, fail (a fail ping or a non-zero exit status), rejected (wrong or missing token; nothing changed). Only pings that were saved count, apart from rejected.",
            &["heartbeat", "kind"],
        );
        let unsaved = counter_vec(
            &r,
            "glitchtip_heartbeat_unsaved_pings_total",
            "Pings with the right token answered 503 and not saved (the sender retries), by reason: queue_full (too many pings of this heartbeat waiting to be written), write_failed (the state file cannot be written).",
            &["heartbeat", "reason"],
        );
        Self {
            up: gauge(
                &r,
                "glitchtip_heartbeat_up",
                "1 while the heartbeat is on time; 0 once its deadline passed without a success ping, after a fail ping (until the next success), or when a start ping was not followed by success or fail within the grace.",
            ),
            unknown_state: gauge(
                &r,
                "glitchtip_heartbeat_unknown",
                "1 while the heartbeat is late by what is saved but a success ping came in time and could not be saved (the state file cannot be written): whether it is late is not known, and GlitchTipHeartbeatMissed does not fire; 0 otherwise.",
            ),
            age: gauge(
                &r,
                "glitchtip_heartbeat_age_seconds",
                "Seconds since the last success ping; before the first ping ever, seconds since the heartbeat was first configured (kept across restarts).",
            ),
            last_seen: gauge(
                &r,
                "glitchtip_heartbeat_last_seen_timestamp_seconds",
                "Unix time of the last success ping; absent before the first one.",
            ),
            deadline: gauge(
                &r,
                "glitchtip_heartbeat_deadline_timestamp_seconds",
                "Unix time after which the heartbeat counts as missed unless a success ping comes: last success (or first configured) + interval + grace, or the next scheduled time after it + grace.",
            ),
            last_duration: gauge(
                &r,
                "glitchtip_heartbeat_last_duration_seconds",
                "Seconds from a start ping to the success ping that completed it, for the last run that sent both; absent until then.",
            ),
            pings,
            unsaved,
            unknown: counter(
                &r,
                "glitchtip_heartbeat_unknown_requests_total",
                "Heartbeat requests for a name or action that is not configured, answered 404 without any change.",
            ),
            write_errors: counter(
                &r,
                "glitchtip_exporter_state_write_errors_total",
                "Failed writes of the heartbeat state (journal or snapshot); each ping that needed one was answered 503 and not saved.",
            ),
            load_ok: plain_gauge(
                &r,
                "glitchtip_exporter_state_load_ok",
                "1 when the heartbeat state was read at start-up (or there was none yet); 0 when the state file or its journal existed but could not be used (moved aside as <file>.corrupt-<unix time>, or kept as it is when that failed), so the heartbeats started fresh.",
            ),
            write_ok: plain_gauge(
                &r,
                "glitchtip_exporter_state_write_ok",
                "1 when the last write of the heartbeat state succeeded (or none was needed yet); 0 after a failed one (read-only or full disk, a bad state file kept as it is): pings are answered 503 until a write succeeds.",
            ),
            registry: r,
            render: Mutex::new(()),
        }
    }

    /// Creates the counters of a heartbeat at 0, so that `increase()` sees its first ping.
    pub(super) fn add(&self, name: &str) {
        for kind in PingKind::ALL_KINDS {
            self.pings.with_label_values(&[name, kind]);
        }
        for reason in Unsaved::ALL {
            self.unsaved.with_label_values(&[name, reason.as_str()]);
        }
    }

    /// Removes every series of a heartbeat that is gone from the config.
    pub(super) fn remove(&self, name: &str) {
        let _render = self.render.lock().unwrap_or_else(|e| e.into_inner());
        for vec in [
            &self.up,
            &self.unknown_state,
            &self.age,
            &self.last_seen,
            &self.deadline,
            &self.last_duration,
        ] {
            let _ = vec.remove_label_values(&[name]);
        }
        for kind in PingKind::ALL_KINDS {
            let _ = self.pings.remove_label_values(&[name, kind]);
        }
        for reason in Unsaved::ALL {
            let _ = self.unsaved.remove_label_values(&[name, reason.as_str()]);
        }
    }

    /// Counts a saved ping, or a rejected one (`kind` = `"rejected"`).
    pub(super) fn ping(&self, name: &str, kind: &str) {
        self.pings.with_label_values(&[name, kind]).inc();
    }

    /// Counts a request for an unknown name or action.
    pub(super) fn unknown(&self) {
        self.unknown.inc();
    }

    /// Counts a ping answered 503 and not saved.
    pub(super) fn unsaved(&self, name: &str, reason: Unsaved) {
        self.unsaved
            .with_label_values(&[name, reason.as_str()])
            .inc();
    }

    /// Whether the state was read at start-up.
    pub(super) fn load_ok(&self, ok: bool) {
        self.load_ok.set(if ok { 1.0 } else { 0.0 });
    }

    /// Whether the last write of the state succeeded.
    pub(super) fn write_ok(&self, ok: bool) {
        self.write_ok.set(if ok { 1.0 } else { 0.0 });
    }

    /// Counts a failed state file write.
    pub(super) fn write_error(&self) {
        self.write_errors.inc();
    }

    /// Sets the gauges from `views` and encodes the registry.
    pub(super) fn render(&self, views: &[View]) -> Vec<u8> {
        let _render = self.render.lock().unwrap_or_else(|e| e.into_inner());
        for v in views {
            let l = [v.name.as_str()];
            self.up
                .with_label_values(&l)
                .set(if v.up { 1.0 } else { 0.0 });
            self.unknown_state
                .with_label_values(&l)
                .set(if v.unknown { 1.0 } else { 0.0 });
            self.age.with_label_values(&l).set(v.age_seconds);
            for (vec, value) in [
                (&self.last_seen, v.last_seen),
                (&self.deadline, v.deadline),
                (&self.last_duration, v.last_duration),
            ] {
                match value {
                    Some(value) => vec.with_label_values(&l).set(value),
                    None => {
                        let _ = vec.remove_label_values(&l);
                    }
                }
            }
        }
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
