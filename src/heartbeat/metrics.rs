//! The heartbeat series, in a registry of their own.
//!
//! Age and `up` depend on "now", so unlike the check series (cached in
//! [`crate::metrics::Metrics`] until a result changes) these are set from the store and the
//! injected clock on every scrape, then encoded and appended to `/metrics`. They are never
//! part of `/probe` answers.

use std::sync::Mutex;

use prometheus::{Encoder, GaugeVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

use super::PingKind;

/// One heartbeat as the metrics show it at a given time.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The configured name.
    pub name: String,
    /// Not missed, not failed, no overdue start.
    pub up: bool,
    /// Seconds since the last success ping (or since first configured).
    pub age_seconds: f64,
    /// Unix time of the last success ping.
    pub last_seen: Option<f64>,
    /// Unix time after which the heartbeat counts as missed.
    pub deadline: Option<f64>,
    /// Seconds from `start` to success of the last run that sent both.
    pub last_duration: Option<f64>,
}

/// Every heartbeat series.
pub(super) struct HeartbeatMetrics {
    registry: Registry,
    up: GaugeVec,
    age: GaugeVec,
    last_seen: GaugeVec,
    deadline: GaugeVec,
    last_duration: GaugeVec,
    pings: IntCounterVec,
    unknown: IntCounter,
    write_errors: IntCounter,
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
        let pings = IntCounterVec::new(
            Opts::new(
                "glitchtip_heartbeat_pings_total",
                "Pings received for a configured heartbeat, by kind: success, start, fail (a fail ping or a non-zero exit status), rejected (wrong or missing token; nothing changed). Only pings that were saved count, apart from rejected.",
            ),
            &["heartbeat", "kind"],
        )
        .expect("valid metric definition");
        r.register(Box::new(pings.clone()))
            .expect("each metric is registered once");
        Self {
            up: gauge(
                &r,
                "glitchtip_heartbeat_up",
                "1 while the heartbeat is on time; 0 once its deadline passed without a success ping, after a fail ping (until the next success), or when a start ping was not followed by success or fail within the grace.",
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
            unknown: counter(
                &r,
                "glitchtip_heartbeat_unknown_requests_total",
                "Heartbeat requests for a name or action that is not configured, answered 404 without any change.",
            ),
            write_errors: counter(
                &r,
                "glitchtip_exporter_state_write_errors_total",
                "Failed writes of the state file; each ping that needed one was answered 500 and not counted.",
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
    }

    /// Removes every series of a heartbeat that is gone from the config.
    pub(super) fn remove(&self, name: &str) {
        let _render = self.render.lock().unwrap_or_else(|e| e.into_inner());
        for vec in [
            &self.up,
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
    }

    /// Counts a saved ping, or a rejected one (`kind` = `"rejected"`).
    pub(super) fn ping(&self, name: &str, kind: &str) {
        self.pings.with_label_values(&[name, kind]).inc();
    }

    /// Counts a request for an unknown name or action.
    pub(super) fn unknown(&self) {
        self.unknown.inc();
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
