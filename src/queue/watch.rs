//! Whether GlitchTip 6's scheduler lives, judged from its heartbeat tasks' last runs over
//! successive reads — `glitchtip_queue_scheduler_up`.
//!
//! A missing last-run key is never "nothing to report". django-vtasks 3.1.0's scheduler can
//! die while its worker lives on; when the broker was a Valkey without persistence, every
//! `vtasks_last_run` key is gone after the restart and no age is left to grow. So each
//! reader remembers (in memory, per target) which heartbeat tasks it has seen and since
//! when each is missing:
//!
//! - a heartbeat task present: stale when its age is over the task's limit (`stale`);
//! - a task seen earlier and now missing: down once missing for as long as its limit
//!   (`vanished`: the keys went away, e.g. with a broker restart, and were never written
//!   again);
//! - no heartbeat task seen since the reader started: down once missing for as long as
//!   the smallest limit (`missing`: no scheduler has run since the broker or the reader
//!   started).
//!
//! Tasks never seen (e.g. `uptime-dispatch-checks` where uptime checks are off) do not
//! count while another one is seen. Time is the injected clock's.
//!
//! After the broker could not be read (a Valkey or PostgreSQL outage), a task's age counts
//! from the broker's return at the most: a scheduler that resumes within its limit (as
//! django-vtasks 3.2.0 does within seconds) is never judged stale for the outage itself,
//! while one that died with the outage (3.1.0) is, one limit after the return.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Why the scheduler is judged down, from a fixed set: the `reason` label of
/// `glitchtip_queue_scheduler_failure_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchedulerReason {
    /// Every heartbeat task seen ran within its limit.
    #[default]
    None,
    /// A heartbeat task's last run is older than its limit.
    Stale,
    /// A heartbeat task seen earlier has had no last-run key for longer than its limit.
    Vanished,
    /// No heartbeat task's last-run key since the reader started, for longer than the
    /// smallest limit.
    Missing,
}

impl SchedulerReason {
    /// Every reason.
    pub const ALL: [SchedulerReason; 4] = [
        SchedulerReason::None,
        SchedulerReason::Stale,
        SchedulerReason::Vanished,
        SchedulerReason::Missing,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerReason::None => "none",
            SchedulerReason::Stale => "stale",
            SchedulerReason::Vanished => "vanished",
            SchedulerReason::Missing => "missing",
        }
    }
}

/// What one target's reader remembers between reads. Bounded: only configured tasks.
#[derive(Debug, Default)]
pub struct Watch {
    /// Heartbeat tasks whose last-run key was present at least once.
    seen: BTreeSet<String>,
    /// Heartbeat tasks missing now, with the (unix) time they were first found missing.
    missing_since: BTreeMap<String, f64>,
    /// A read failed since the last successful one.
    outage: bool,
    /// The (unix) time of the first successful read after a failed one.
    back_since: Option<f64>,
}

impl Watch {
    /// Notes a failed read: the broker (or the way to it) was down.
    pub fn unreachable(&mut self) {
        self.outage = true;
    }

    /// Judges one successful read: `ages` holds `(task, age in seconds)` of every last-run
    /// key read, `now` the reader's clock in unix seconds. `None` when no task is
    /// configured.
    pub fn judge(
        &mut self,
        tasks: &[(String, Duration)],
        ages: &[(String, f64)],
        now: f64,
    ) -> Option<SchedulerReason> {
        let smallest = tasks.iter().map(|(_, limit)| *limit).min()?;
        if std::mem::take(&mut self.outage) {
            self.back_since = Some(now);
        }
        // An age counts from the broker's return at the most.
        let since_back = self.back_since.map_or(f64::INFINITY, |t| now - t);
        self.missing_since
            .retain(|task, _| tasks.iter().any(|(t, _)| t == task));
        self.seen
            .retain(|task| tasks.iter().any(|(t, _)| t == task));
        let mut vanished = false;
        let mut stale = false;
        for (task, limit) in tasks {
            let limit = limit.as_secs_f64();
            match ages.iter().find(|(t, _)| t == task) {
                Some((_, age)) => {
                    self.missing_since.remove(task);
                    self.seen.insert(task.clone());
                    stale |= age.min(since_back) > limit;
                }
                None => {
                    let since = *self.missing_since.entry(task.clone()).or_insert(now);
                    // `>=`: with reads every 15 s, a 30 s limit is met by the third read.
                    vanished |= self.seen.contains(task) && now - since >= limit;
                }
            }
        }
        if vanished {
            return Some(SchedulerReason::Vanished);
        }
        if stale {
            return Some(SchedulerReason::Stale);
        }
        if self.seen.is_empty() {
            let since = self.missing_since.values().copied().fold(now, f64::min);
            if now - since >= smallest.as_secs_f64() {
                return Some(SchedulerReason::Missing);
            }
        }
        Some(SchedulerReason::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks() -> Vec<(String, Duration)> {
        vec![
            (
                "send-alert-notifications".to_owned(),
                Duration::from_secs(150),
            ),
            ("uptime-dispatch-checks".to_owned(), Duration::from_secs(30)),
        ]
    }

    fn ages(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(t, a)| ((*t).to_owned(), *a)).collect()
    }

    /// django-vtasks 3.2.0 after a 40 s broker outage: the keys are 40 s old at the first
    /// read after the return and fresh a few seconds later — never stale. 3.1.0 (dead):
    /// stale one limit (30 s) after the return.
    #[test]
    fn a_broker_outage_alone_is_not_a_stale_scheduler() {
        let mut w = Watch::default();
        let fresh = ages(&[
            ("uptime-dispatch-checks", 1.0),
            ("send-alert-notifications", 20.0),
        ]);
        assert_eq!(
            w.judge(&tasks(), &fresh, 1000.0),
            Some(SchedulerReason::None)
        );
        w.unreachable();
        let old = |age: f64| {
            ages(&[
                ("uptime-dispatch-checks", age),
                ("send-alert-notifications", age),
            ])
        };
        // Back at 1045: keys 45 s old, but the broker only just returned.
        assert_eq!(
            w.judge(&tasks(), &old(45.0), 1045.0),
            Some(SchedulerReason::None)
        );
        // 3.2.0 resumed: fresh again.
        let mut resumed = Watch {
            ..Default::default()
        };
        resumed.unreachable();
        assert_eq!(
            resumed.judge(&tasks(), &old(45.0), 1045.0),
            Some(SchedulerReason::None)
        );
        assert_eq!(
            resumed.judge(&tasks(), &fresh, 1060.0),
            Some(SchedulerReason::None)
        );
        // 3.1.0 stays dead: stale once 30 s have passed since the return.
        assert_eq!(
            w.judge(&tasks(), &old(60.0), 1060.0),
            Some(SchedulerReason::None)
        );
        assert_eq!(
            w.judge(&tasks(), &old(76.0), 1076.0),
            Some(SchedulerReason::Stale)
        );
    }

    #[test]
    fn healthy_then_keys_vanish_with_a_broker_restart() {
        let mut w = Watch::default();
        let both = ages(&[
            ("uptime-dispatch-checks", 1.0),
            ("send-alert-notifications", 20.0),
        ]);
        assert_eq!(
            w.judge(&tasks(), &both, 1000.0),
            Some(SchedulerReason::None)
        );
        // The broker restarted without persistence; a live scheduler writes them again
        // within seconds, a dead one never.
        assert_eq!(w.judge(&tasks(), &[], 1040.0), Some(SchedulerReason::None));
        assert_eq!(w.judge(&tasks(), &[], 1069.5), Some(SchedulerReason::None));
        assert_eq!(
            w.judge(&tasks(), &[], 1070.0),
            Some(SchedulerReason::Vanished)
        );
        // Back: up again.
        assert_eq!(
            w.judge(&tasks(), &both, 1080.0),
            Some(SchedulerReason::None)
        );
    }

    #[test]
    fn a_stale_heartbeat_task_is_stale_at_once_and_a_daily_task_never_counts() {
        let mut w = Watch::default();
        let old = ages(&[
            ("uptime-dispatch-checks", 31.0),
            ("perform-maintenance", 80_000.0),
        ]);
        assert_eq!(
            w.judge(&tasks(), &old, 1000.0),
            Some(SchedulerReason::Stale)
        );
        let fresh = ages(&[
            ("uptime-dispatch-checks", 1.0),
            ("perform-maintenance", 80_000.0),
        ]);
        assert_eq!(
            w.judge(&tasks(), &fresh, 1015.0),
            Some(SchedulerReason::None)
        );
    }

    #[test]
    fn never_seen_is_missing_after_the_smallest_limit() {
        let mut w = Watch::default();
        assert_eq!(w.judge(&tasks(), &[], 1000.0), Some(SchedulerReason::None));
        assert_eq!(w.judge(&tasks(), &[], 1029.5), Some(SchedulerReason::None));
        assert_eq!(
            w.judge(&tasks(), &[], 1030.0),
            Some(SchedulerReason::Missing)
        );
    }

    #[test]
    fn a_task_never_seen_does_not_count_while_another_is_seen() {
        // Uptime checks off: only send-alert-notifications runs.
        let mut w = Watch::default();
        let alerts = ages(&[("send-alert-notifications", 40.0)]);
        for now in [1000.0, 1100.0, 2000.0] {
            assert_eq!(w.judge(&tasks(), &alerts, now), Some(SchedulerReason::None));
        }
        let late = ages(&[("send-alert-notifications", 151.0)]);
        assert_eq!(
            w.judge(&tasks(), &late, 2100.0),
            Some(SchedulerReason::Stale)
        );
    }

    #[test]
    fn no_configured_task_no_judgement() {
        assert_eq!(Watch::default().judge(&[], &[], 1.0), None);
    }
}
