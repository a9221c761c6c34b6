//! Per-check results: the single source of truth.
//!
//! Metrics and the landing page are projections of a [`CheckState`]; counting consecutive
//! failures, successes and "went down" events happens here, the same way in every mode.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::checks::{Outcome, Reason};

/// The consecutive failures at which a check counts as down (what the bundled alerts wait
/// for) and `glitchtip_check_down_total` is incremented.
pub const DOWN_AFTER_FAILURES: u32 = 2;

/// How many results of each check [`CheckState::recent`] keeps (the landing page's strip).
pub const RECENT_RESULTS: usize = 30;

/// One past result, for the landing page's strip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    /// When the probe finished.
    pub at: SystemTime,
    /// Why it failed, or `Reason::None`.
    pub reason: Reason,
}

/// What is known about one check.
#[derive(Debug, Clone, Default)]
pub struct CheckState {
    /// The latest probe's outcome; `None` before the first probe.
    pub last: Option<Outcome>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// When the latest probe finished.
    pub last_run: Option<SystemTime>,
    /// When the latest successful probe finished.
    pub last_success: Option<SystemTime>,
    /// Successful probes so far.
    pub successes: u64,
    /// Failed probes so far.
    pub failures: u64,
    /// Times the check reached [`DOWN_AFTER_FAILURES`] consecutive failures.
    pub down_total: u64,
    /// The latest results, oldest first, at most [`RECENT_RESULTS`].
    pub recent: VecDeque<Recent>,
}

/// How a recorded outcome changed the check, for the one log line per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The first result of this check.
    First,
    /// Success after failure.
    Recovered,
    /// Failure after success.
    Failed,
    /// Still failing, for another reason.
    ReasonChanged,
    /// Nothing new.
    Unchanged,
}

impl CheckState {
    /// Records a probe that finished at `now`.
    pub fn record(&mut self, outcome: Outcome, now: SystemTime) -> Transition {
        let previous = self.last.as_ref().map(|o| o.reason);
        let success = outcome.success();
        if success {
            self.consecutive_failures = 0;
            self.successes += 1;
            self.last_success = Some(now);
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.failures += 1;
            if self.consecutive_failures == DOWN_AFTER_FAILURES {
                self.down_total += 1;
            }
        }
        let reason = outcome.reason;
        if self.recent.len() == RECENT_RESULTS {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent { at: now, reason });
        self.last = Some(outcome);
        self.last_run = Some(now);
        match previous {
            None => Transition::First,
            Some(Reason::None) if !success => Transition::Failed,
            Some(Reason::None) => Transition::Unchanged,
            Some(_) if success => Transition::Recovered,
            Some(before) if before != reason => Transition::ReasonChanged,
            Some(_) => Transition::Unchanged,
        }
    }

    /// Whether the latest probe succeeded; `None` before the first.
    pub fn up(&self) -> Option<bool> {
        self.last.as_ref().map(Outcome::success)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn outcome(reason: Reason) -> Outcome {
        Outcome::for_test(reason, None, Duration::ZERO)
    }

    #[test]
    fn counts_consecutive_failures_and_down_events() {
        let mut s = CheckState::default();
        let t = UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(s.record(outcome(Reason::None), t), Transition::First);
        assert_eq!(s.record(outcome(Reason::Status), t), Transition::Failed);
        assert_eq!((s.consecutive_failures, s.down_total), (1, 0));
        assert_eq!(
            s.record(outcome(Reason::Timeout), t),
            Transition::ReasonChanged
        );
        assert_eq!((s.consecutive_failures, s.down_total), (2, 1));
        assert_eq!(s.record(outcome(Reason::Timeout), t), Transition::Unchanged);
        assert_eq!((s.consecutive_failures, s.down_total), (3, 1));
        assert_eq!(s.record(outcome(Reason::None), t), Transition::Recovered);
        assert_eq!((s.consecutive_failures, s.successes, s.failures), (0, 2, 3));
        assert_eq!(s.last_success, Some(t));
    }

    #[test]
    fn scattered_failures_never_count_as_down() {
        let mut s = CheckState::default();
        let t = UNIX_EPOCH;
        for _ in 0..5 {
            s.record(outcome(Reason::Status), t);
            s.record(outcome(Reason::None), t);
        }
        assert_eq!((s.down_total, s.failures), (0, 5));
    }

    #[test]
    fn keeps_the_latest_results_only() {
        let mut s = CheckState::default();
        for i in 0..100 {
            let reason = if i % 2 == 0 {
                Reason::None
            } else {
                Reason::Dns
            };
            s.record(outcome(reason), UNIX_EPOCH + Duration::from_secs(i));
        }
        assert_eq!(s.recent.len(), RECENT_RESULTS);
        assert_eq!(s.recent[0].at, UNIX_EPOCH + Duration::from_secs(70));
        assert_eq!(s.recent[29].at, UNIX_EPOCH + Duration::from_secs(99));
        assert_eq!(s.recent[29].reason, Reason::Dns);
    }
}
