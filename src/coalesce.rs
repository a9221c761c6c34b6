//! Single flight with a generation counter: at most one run of a job at a time, and every
//! caller gets the result of a run that started after it asked, so that whatever changed
//! before it asked (a config file written, then `/-/reload`) is seen. Callers that ask
//! while a run is under way share the next run: a thousand reload requests during one
//! reload cost one more reload, not a thousand. Runs start at least a set gap apart, so
//! that callers asking in a closed loop (each asking again as soon as answered) cannot keep
//! a run going back to back: the gap bounds the runs per second, whatever the callers do.
//!
//! Apart from the exporter because it knows nothing of configs: it is the scheduling rule
//! alone, tested on its own.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

/// The job a [`Coalesced`] runs; each call starts one run.
pub type Job<T> = Arc<dyn Fn() -> BoxFuture<'static, T> + Send + Sync>;

/// Runs of one job, coalesced.
pub struct Coalesced<T> {
    // std Mutex: nothing async happens while held.
    plan: Mutex<Plan>,
    /// The least time from one run's start to the next one's.
    gap: Duration,
    /// The last finished run: its generation and its result (`None`: it stopped without
    /// one).
    done: watch::Sender<(u64, Option<T>)>,
}

/// Which runs are asked for and which one is next.
struct Plan {
    /// The generation the next run takes (runs are numbered from 1).
    next: u64,
    /// The highest generation a caller waits for.
    wanted: u64,
    /// Whether a task runs the job (then it also starts the runs asked for meanwhile).
    running: bool,
    /// When the last run started.
    last_start: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Clone + Send + Sync + 'static> Coalesced<T> {
    /// Nothing run yet; runs will start at least `gap` apart.
    pub fn new(gap: Duration) -> Arc<Self> {
        Arc::new(Self {
            plan: Mutex::new(Plan {
                next: 1,
                wanted: 0,
                running: false,
                last_start: None,
            }),
            gap,
            done: watch::Sender::new((0, None)),
        })
    }

    /// Asks for a run of `job` that starts after this call and answers its result; `None`
    /// when that run stopped without one (its task panicked or was aborted). The run goes
    /// on in its own task if the caller stops waiting.
    pub async fn run(self: &Arc<Self>, job: Job<T>) -> Option<T> {
        let mut done = self.done.subscribe();
        let wanted = {
            let mut plan = lock(&self.plan);
            plan.wanted = plan.next;
            if !plan.running {
                plan.running = true;
                tokio::spawn(self.clone().drive(job));
            }
            plan.wanted
        };
        let finished = done
            .wait_for(|(generation, _)| *generation >= wanted)
            .await
            .ok()?;
        finished.1.clone()
    }

    /// Starts runs one after the other while callers wait for one that has not started.
    /// A run takes its generation only when it starts (after the gap), so that callers
    /// asking during the gap share it.
    async fn drive(self: Arc<Self>, job: Job<T>) {
        let mut abandon = Abandon {
            owner: self.clone(),
            armed: true,
        };
        loop {
            let earliest = {
                let mut plan = lock(&self.plan);
                if plan.wanted < plan.next {
                    plan.running = false;
                    abandon.armed = false;
                    return;
                }
                plan.last_start.map(|t| t + self.gap)
            };
            if let Some(earliest) = earliest {
                tokio::time::sleep_until(earliest).await;
            }
            let generation = {
                let mut plan = lock(&self.plan);
                plan.last_start = Some(Instant::now());
                plan.next += 1;
                plan.next - 1
            };
            let result = job().await;
            self.done.send_replace((generation, Some(result)));
        }
    }
}

/// Answers `None` to every waiting caller if the task stops other than by finding nothing
/// more to run (the job panicked, the runtime shuts down), so that no caller waits forever
/// and the next call starts a new task.
struct Abandon<T: Clone + Send + Sync + 'static> {
    owner: Arc<Coalesced<T>>,
    armed: bool,
}

impl<T: Clone + Send + Sync + 'static> Drop for Abandon<T> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut plan = lock(&self.owner.plan);
        // Every generation taken so far is at most `wanted`.
        let last = plan.wanted;
        plan.next = plan.next.max(last + 1);
        plan.running = false;
        drop(plan);
        self.owner.done.send_replace((last, None));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use futures::FutureExt;
    use tokio::sync::Notify;

    use super::*;

    /// A job that answers its run's number after `takes`, counting its runs.
    fn counting(takes: Duration) -> (Job<u64>, Arc<AtomicU64>) {
        let runs = Arc::new(AtomicU64::new(0));
        let counter = runs.clone();
        let job: Job<u64> = Arc::new(move || {
            let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(takes).await;
                run
            }
            .boxed()
        });
        (job, runs)
    }

    const GAP: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn callers_during_a_run_share_the_next_one() {
        let flight = Coalesced::new(GAP);
        let (job, runs) = counting(Duration::from_secs(1));
        let first = tokio::spawn({
            let (flight, job) = (flight.clone(), job.clone());
            async move { flight.run(job).await }
        });
        // Let the first run start, then ask 100 times while it runs.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let later: Vec<_> = (0..100)
            .map(|_| {
                let (flight, job) = (flight.clone(), job.clone());
                tokio::spawn(async move { flight.run(job).await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Some(1));
        for answer in futures::future::join_all(later).await {
            assert_eq!(
                answer.unwrap(),
                Some(2),
                "the run that started after they asked"
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // Idle again: the next caller starts a run of its own.
        assert_eq!(flight.run(job).await, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_never_gets_a_run_that_started_before_it_asked() {
        let flight = Coalesced::new(GAP);
        let (job, _) = counting(Duration::from_secs(1));
        let mut answers = Vec::new();
        for step in 0..5u64 {
            let (flight, job) = (flight.clone(), job.clone());
            answers.push((step, tokio::spawn(async move { flight.run(job).await })));
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        for (step, answer) in answers {
            // Asked at step × 0.4 s; run n starts at (n − 1) s.
            let run = answer.await.unwrap().unwrap();
            assert!((run - 1) * 1000 >= step * 400, "step {step} got run {run}");
        }
    }

    #[tokio::test]
    async fn a_run_that_panics_answers_none_and_the_next_call_runs_again() {
        let flight: Arc<Coalesced<u64>> = Coalesced::new(GAP);
        let release = Arc::new(Notify::new());
        let gate = release.clone();
        let panicking: Job<u64> = Arc::new(move || {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                panic!("job failed")
            }
            .boxed()
        });
        let first = tokio::spawn({
            let (flight, job) = (flight.clone(), panicking.clone());
            async move { flight.run(job).await }
        });
        let second = tokio::spawn({
            let (flight, job) = (flight.clone(), panicking);
            async move { flight.run(job).await }
        });
        tokio::task::yield_now().await;
        release.notify_one();
        assert_eq!(first.await.unwrap(), None);
        assert_eq!(second.await.unwrap(), None);
        let (job, _) = counting(Duration::ZERO);
        assert_eq!(flight.run(job).await, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn callers_in_a_closed_loop_get_at_most_one_run_per_gap() {
        let flight = Coalesced::new(GAP);
        let (job, runs) = counting(Duration::from_millis(1));
        let start = Instant::now();
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (flight, job) = (flight.clone(), job.clone());
                tokio::spawn(async move {
                    let mut answers = 0;
                    while start.elapsed() < Duration::from_secs(10) {
                        flight.run(job.clone()).await.unwrap();
                        answers += 1;
                    }
                    answers
                })
            })
            .collect();
        let answers: u64 = futures::future::join_all(callers)
            .await
            .into_iter()
            .map(Result::unwrap)
            .sum();
        let runs = runs.load(Ordering::SeqCst);
        // 10 s / 100 ms, and the last one.
        assert!(runs <= 101, "{runs} runs");
        assert!(
            answers >= 8 * (runs - 1),
            "{answers} answers for {runs} runs"
        );
    }
}
