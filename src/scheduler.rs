//! Interval mode: one task per check.
//!
//! Start times are spread over the interval by a hash of the check's name, so that many
//! targets do not fire together and a restart keeps the same phase. After a first failure
//! the check is probed again after `retry_interval`, so that the second consecutive
//! failure (what the bundled alerts wait for) is known within seconds; then it returns to
//! its interval. A task restarted by a reload (new settings, state kept) that was waiting
//! for that quick re-probe keeps waiting for it ([`first_delay`]). Tasks use tokio's
//! clock, which tests pause.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::checks::{CheckSpec, Outcome, Prober};

/// Where a probe's outcome goes; answers the check's consecutive failures afterwards.
pub trait ResultSink: Send + Sync + 'static {
    /// Records `outcome` for `spec`.
    fn record(&self, spec: &CheckSpec, outcome: Outcome) -> u32;

    /// Notes that a probe started `lag` after it was due (for
    /// `glitchtip_exporter_schedule_lag_seconds`).
    fn started(&self, _lag: Duration) {}
}

/// The delay before a check's first probe: a stable spread over its interval.
pub fn start_offset(spec: &CheckSpec) -> Duration {
    let mut hasher = DefaultHasher::new();
    (&spec.target, &spec.name).hash(&mut hasher);
    let interval_ms = spec.schedule.interval.as_millis().max(1) as u64;
    Duration::from_millis(hasher.finish() % interval_ms)
}

/// `t + d`, or a year after `t` when that overflows: validation keeps intervals within a
/// day, and a time computed from a configured value must never panic (issue #18).
pub(crate) fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(365 * 24 * 3600))
}

/// The delay before the first probe of a task that starts with `consecutive_failures`
/// carried over (0 for a new check): the quick re-probe after one failure, else the
/// check's spread offset.
pub fn first_delay(spec: &CheckSpec, consecutive_failures: u32) -> Duration {
    if consecutive_failures == 1 {
        spec.schedule.retry_interval
    } else {
        start_offset(spec)
    }
}

/// Probes `spec` on its schedule until `cancel` fires, the first time after its spread
/// offset.
pub async fn run_check(
    spec: Arc<CheckSpec>,
    prober: Arc<dyn Prober>,
    sink: Arc<dyn ResultSink>,
    cancel: CancellationToken,
) {
    let first = start_offset(&spec);
    run_check_after(spec, prober, sink, cancel, first).await;
}

/// Probes `spec` on its schedule until `cancel` fires, the first time after `first`.
pub async fn run_check_after(
    spec: Arc<CheckSpec>,
    prober: Arc<dyn Prober>,
    sink: Arc<dyn ResultSink>,
    cancel: CancellationToken,
    first: Duration,
) {
    let schedule = spec.schedule;
    let mut next = after(Instant::now(), first);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sleep_until(next) => {}
        }
        let started = Instant::now();
        sink.started(started.saturating_duration_since(next));
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = prober.probe(&spec, schedule.timeout) => outcome,
        };
        let failures = sink.record(&spec, outcome);
        next = if failures == 1 {
            after(Instant::now(), schedule.retry_interval)
        } else {
            // A probe that overran its interval starts the next one at once, not twice.
            after(started, schedule.interval).max(Instant::now())
        };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use futures::future::BoxFuture;

    use super::*;
    use crate::checks::Reason;
    use crate::state::CheckState;

    /// Answers a scripted sequence of reasons, each after `takes`, and notes when each
    /// probe started (tokio time, relative to the test's start).
    struct Scripted {
        start: Instant,
        takes: Duration,
        script: Mutex<VecDeque<Reason>>,
        started_at: Mutex<Vec<Duration>>,
    }

    impl Scripted {
        /// Succeeds every time, after `takes`.
        fn healthy(takes: Duration) -> Arc<Self> {
            Arc::new(Self {
                start: Instant::now(),
                takes,
                script: Mutex::new(VecDeque::new()),
                started_at: Mutex::new(Vec::new()),
            })
        }
    }

    impl Prober for Scripted {
        fn probe<'a>(
            &'a self,
            _spec: &'a CheckSpec,
            _deadline: Duration,
        ) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                self.started_at.lock().unwrap().push(self.start.elapsed());
                tokio::time::sleep(self.takes).await;
                let reason = self
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(Reason::None);
                Outcome::for_test(reason, None, self.takes)
            })
        }
    }

    /// Keeps a check's state the way the exporter does; shared with other schedulers' tests.
    #[derive(Default)]
    pub(crate) struct Sink(pub(crate) Mutex<CheckState>);

    impl ResultSink for Sink {
        fn record(&self, _spec: &CheckSpec, outcome: Outcome) -> u32 {
            let mut state = self.0.lock().unwrap();
            state.record(outcome, std::time::UNIX_EPOCH);
            state.consecutive_failures
        }
    }

    fn spec() -> Arc<CheckSpec> {
        spec_with(&[])
    }

    /// The first check of target `t`, with `env` as `GLITCHTIP_EXPORTER__*` overrides.
    fn spec_with(env: &[(&str, &str)]) -> Arc<CheckSpec> {
        let source = crate::config::ConfigSource {
            cli_targets: vec!["t=http://127.0.0.1:9/".to_owned()],
            env: Some(
                env.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        };
        let config = source.load().unwrap();
        config.target("t").unwrap().checks[0].clone()
    }

    async fn run_script(
        script: &[Reason],
        takes: Duration,
        run_for: Duration,
    ) -> (Vec<Duration>, CheckState, Duration) {
        run_spec(spec(), script, takes, run_for).await
    }

    async fn run_spec(
        spec: Arc<CheckSpec>,
        script: &[Reason],
        takes: Duration,
        run_for: Duration,
    ) -> (Vec<Duration>, CheckState, Duration) {
        let offset = start_offset(&spec);
        let prober = Arc::new(Scripted {
            start: Instant::now(),
            takes,
            script: Mutex::new(script.iter().copied().collect()),
            started_at: Mutex::new(Vec::new()),
        });
        let sink = Arc::new(Sink::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_check(
            spec,
            prober.clone(),
            sink.clone(),
            cancel.clone(),
        ));
        tokio::time::sleep(run_for).await;
        cancel.cancel();
        task.await.unwrap();
        let starts = prober.started_at.lock().unwrap().clone();
        let state = sink.0.lock().unwrap().clone();
        (starts, state, offset)
    }

    #[tokio::test(start_paused = true)]
    async fn healthy_check_runs_on_its_interval_after_its_offset() {
        let (starts, state, offset) =
            run_script(&[], Duration::from_millis(20), Duration::from_secs(35)).await;
        let expected: Vec<Duration> = (0..4)
            .map(|i| offset + Duration::from_secs(10) * i)
            .filter(|t| *t < Duration::from_secs(35))
            .collect();
        assert_eq!(starts, expected);
        assert_eq!(state.failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn first_failure_is_retried_after_retry_interval_then_interval_resumes() {
        // Fails twice (a hanging endpoint: each probe takes the full 5 s timeout), then recovers.
        let script = [Reason::Timeout, Reason::Timeout, Reason::None];
        let (starts, state, offset) =
            run_script(&script, Duration::from_secs(5), Duration::from_secs(40)).await;
        let s = |secs: u64| offset + Duration::from_secs(secs);
        // 0: fails at 5 → retry at 5 + 3 = 8: fails at 13 (2nd failure) → next at 8 + 10 = 18.
        assert_eq!(&starts[..4], &[s(0), s(8), s(18), s(28)]);
        assert_eq!(state.down_total, 1);
        assert_eq!(state.consecutive_failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn second_consecutive_failure_is_known_within_the_60s_budget() {
        // Worst case: the outage starts right after a successful probe started.
        let script = [Reason::None, Reason::Timeout, Reason::Timeout];
        let (starts, state, offset) =
            run_script(&script, Duration::from_secs(5), Duration::from_secs(30)).await;
        assert_eq!(starts[0], offset);
        // interval 10 + 2 × timeout 5 + retry 3 = 23 s, leaving 30 s for scrape and evaluation.
        let second_failure_known = starts[2] + Duration::from_secs(5) - offset;
        assert_eq!(second_failure_known, Duration::from_secs(23));
        assert_eq!(state.down_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_restarted_after_one_failure_probes_after_retry_interval() {
        let spec = spec();
        assert_eq!(first_delay(&spec, 0), start_offset(&spec));
        assert_eq!(first_delay(&spec, 2), start_offset(&spec));
        assert_eq!(first_delay(&spec, 1), spec.schedule.retry_interval);
        let prober = Scripted::healthy(Duration::from_millis(20));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_check_after(
            spec.clone(),
            prober.clone(),
            Arc::new(Sink::default()),
            cancel.clone(),
            first_delay(&spec, 1),
        ));
        tokio::time::sleep(Duration::from_secs(14)).await;
        cancel.cancel();
        task.await.unwrap();
        let retry = spec.schedule.retry_interval;
        assert_eq!(
            *prober.started_at.lock().unwrap(),
            [retry, retry + spec.schedule.interval]
        );
    }

    /// Found by the `config` fuzz target (an accepted config must start): a retry
    /// interval of 500 billion years overflowed `Instant` after the first failure and
    /// panicked the check's task. Validation now refuses it (at most a day), and the
    /// task's arithmetic stays safe whatever it is given.
    #[tokio::test(start_paused = true)]
    async fn huge_retry_interval_does_not_panic() {
        let refused = crate::config::ConfigSource {
            cli_targets: vec!["t=http://127.0.0.1:9/".to_owned()],
            env: Some(
                [(
                    "GLITCHTIP_EXPORTER__DEFAULTS__RETRY_INTERVAL".to_owned(),
                    "500000000000y".to_owned(),
                )]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        }
        .load();
        assert!(refused.is_err(), "a retry interval past a day is refused");
        let mut spec = (*spec_with(&[])).clone();
        spec.schedule.retry_interval = Duration::from_secs(500_000_000_000 * 365 * 24 * 3600);
        let spec = Arc::new(spec);
        let (starts, state, offset) = run_spec(
            spec,
            &[Reason::Timeout],
            Duration::from_secs(5),
            Duration::from_secs(3600),
        )
        .await;
        // The retry is never due: the one failed probe is all there is.
        assert_eq!(starts, [offset]);
        assert_eq!(state.consecutive_failures, 1);
    }

    /// Notes the lag of every start.
    #[derive(Default)]
    struct LagSink(Mutex<Vec<Duration>>);

    impl ResultSink for LagSink {
        fn record(&self, _spec: &CheckSpec, _outcome: Outcome) -> u32 {
            0
        }

        fn started(&self, lag: Duration) {
            self.0.lock().unwrap().push(lag);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_start_reports_how_late_it_is() {
        let prober = Scripted::healthy(Duration::from_millis(20));
        let sink = Arc::new(LagSink::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_check(
            spec(),
            prober.clone(),
            sink.clone(),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(35)).await;
        cancel.cancel();
        task.await.unwrap();
        let lags = sink.0.lock().unwrap().clone();
        assert_eq!(lags.len(), prober.started_at.lock().unwrap().len());
        // Paused time wakes every task exactly when due.
        assert!(lags.iter().all(|lag| *lag == Duration::ZERO), "{lags:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_the_loop_even_mid_probe() {
        let spec = spec();
        let prober = Scripted::healthy(Duration::from_secs(3600));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_check(
            spec,
            prober.clone(),
            Arc::new(Sink::default()),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(20)).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(prober.started_at.lock().unwrap().len(), 1);
    }
}
