//! The ingest canary: the one check that follows the path an event really takes.
//!
//! A stalled GlitchTip worker leaves `/_health/`, the API and ingest all answering 200
//! while no event is ever stored. So every `interval` the canary sends one synthetic event
//! through the Sentry ingest API with the configured DSN, then polls the API until that
//! event is visible, up to `timeout`: accepted-but-never-visible is the failure that no
//! HTTP check sees.
//!
//! The canary is a check kind ([`crate::checks::CheckKind::Canary`], check name
//! [`CHECK_NAME`]) run by the scheduler like any other, so it has one task per target (one
//! canary in flight) and the core series of `check="canary"`. Its own findings — accept
//! status and duration, lag, the ingest reason — live in the check's [`Runtime`] and are
//! rendered by [`metrics`] at scrape time from the running checks, so that a canary
//! removed by a reload loses its series at once.
//!
//! - [`config`]: `[targets.<name>.canary]`, raw and validated.
//! - [`dsn`]: the DSN (its key is a secret).
//! - [`client`]: one HTTP exchange on the shared network plumbing.
//! - [`ingest`]: the event, the ingest request and the "not before" instant after a 429.
//! - [`poll`]: finding the event through the API, with backoff.
//! - [`metrics`]: the `glitchtip_ingest_*` series.

pub mod client;
pub mod config;
pub mod dsn;
pub mod ingest;
pub mod metrics;
pub mod poll;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use tokio::time::Instant;
use url::Url;

pub use config::RawCanary;
use dsn::Dsn;

use crate::checks::{Failure, Found, ProbeEnv, Reason, Trace};

/// The check name of every canary: the `check` label of its core series.
pub const CHECK_NAME: &str = "canary";

/// Why the last canary failed, from a fixed set: the values of the `reason` label of
/// `glitchtip_ingest_failure_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IngestReason {
    /// The event became visible in time.
    #[default]
    None,
    /// Ingest answered another status than 2xx (or a 2xx naming another event, or a broken
    /// HTTP answer).
    Rejected,
    /// Ingest answered 429, or its `Retry-After` has not passed yet (nothing was sent).
    Throttled,
    /// Ingest accepted the event, and the API never showed it before the timeout.
    NotVisible,
    /// The event was accepted, but the last API poll failed (error status, malformed
    /// answer, no answer): whether it was stored is unknown.
    Api,
    /// The ingest host name did not resolve.
    Dns,
    /// The TCP connection to ingest (or the proxy tunnel) failed.
    Connect,
    /// The TLS handshake with ingest failed.
    Tls,
    /// Ingest did not answer before the deadline.
    Timeout,
    /// The exporter could not open a socket (out of file descriptors): its own failure,
    /// ingest was never tried.
    ExporterResources,
}

impl IngestReason {
    /// Every reason, in the README's order.
    pub const ALL: [IngestReason; 10] = [
        IngestReason::None,
        IngestReason::Rejected,
        IngestReason::Throttled,
        IngestReason::NotVisible,
        IngestReason::Api,
        IngestReason::Dns,
        IngestReason::Connect,
        IngestReason::Tls,
        IngestReason::Timeout,
        IngestReason::ExporterResources,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestReason::None => "none",
            IngestReason::Rejected => "rejected",
            IngestReason::Throttled => "throttled",
            IngestReason::NotVisible => "not_visible",
            IngestReason::Api => "api",
            IngestReason::Dns => "dns",
            IngestReason::Connect => "connect",
            IngestReason::Tls => "tls",
            IngestReason::Timeout => "timeout",
            IngestReason::ExporterResources => "exporter_resources",
        }
    }

    /// The `result` label value of `glitchtip_ingest_canaries_total`: `visible` for a
    /// success, the reason otherwise.
    pub fn result(self) -> &'static str {
        match self {
            IngestReason::None => "visible",
            other => other.as_str(),
        }
    }

    /// The core reason (`glitchtip_probe_failure_reason{check="canary"}`): a status that
    /// was not accepted is `status`, an event that never showed up is a `timeout`, an API
    /// that could not be read is `http`; network reasons are the same.
    pub fn core(self) -> Reason {
        match self {
            IngestReason::None => Reason::None,
            IngestReason::Rejected | IngestReason::Throttled => Reason::Status,
            IngestReason::NotVisible | IngestReason::Timeout => Reason::Timeout,
            IngestReason::Api => Reason::Http,
            IngestReason::Dns => Reason::Dns,
            IngestReason::Connect => Reason::Connect,
            IngestReason::Tls => Reason::Tls,
            IngestReason::ExporterResources => Reason::ExporterResources,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for IngestReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which ingest API the canary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/<project>/envelope/` (what current SDKs use).
    Envelope,
    /// `POST /api/<project>/store/` (older SDKs).
    Store,
}

impl Endpoint {
    /// The config value and the last path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Envelope => "envelope",
            Endpoint::Store => "store",
        }
    }
}

/// How the canary finds its event through the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// `GET /api/0/organizations/<org>/issues/?query=<event id>`.
    IssueSearch,
    /// `GET /api/0/projects/<org>/<project>/events/<event id>/`.
    ProjectEvents {
        /// The project slug.
        project: String,
    },
}

/// A validated canary, built once at config load. `Debug` never shows the DSN key or the
/// token.
pub struct CanaryCheck {
    /// The DSN: ingest origin, project id, key.
    pub dsn: Dsn,
    /// Envelope or store.
    pub endpoint: Endpoint,
    /// Where the event goes (the DSN's host; no key in it).
    pub ingest_url: Url,
    /// How to reach ingest.
    pub ingest: client::Connection,
    /// The target URL: the API is reached there.
    pub api_base: Url,
    /// How to reach the API.
    pub api: client::Connection,
    /// `Authorization: Bearer <token>`, marked sensitive.
    pub authorization: HeaderValue,
    /// Organization slug.
    pub organization: String,
    /// How the event is looked up.
    pub lookup: Lookup,
    /// Whether certificate verification is skipped (the target's `insecure_skip_verify`).
    pub insecure_skip_verify: bool,
    /// What the canary found, and the lock that keeps one canary in flight.
    pub runtime: Arc<Runtime>,
}

impl std::fmt::Debug for CanaryCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryCheck")
            .field("dsn", &self.dsn)
            .field("endpoint", &self.endpoint)
            .field("ingest_url", &self.ingest_url.as_str())
            .field("api_base", &self.api_base.as_str())
            .field("organization", &self.organization)
            .field("lookup", &self.lookup)
            .field("authorization", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The result of one canary, for the `glitchtip_ingest_*` series.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryResult {
    /// Why it failed, or `None`.
    pub reason: IngestReason,
    /// Ingest's status; `None` when no answer arrived (or nothing was sent).
    pub status: Option<u16>,
    /// From sending the event to ingest's complete answer; zero when nothing was sent.
    pub accept_duration: Duration,
    /// From accepted to the poll that saw the event; only when it became visible.
    pub lag: Option<Duration>,
}

/// What the canaries of one check found so far.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The latest canary; `None` before the first.
    pub last: Option<CanaryResult>,
    /// Canaries run, by reason (indexed as [`IngestReason::ALL`]).
    pub totals: [u64; IngestReason::ALL.len()],
}

/// A canary's mutable part, shared between the scheduler's probe and the scrape.
#[derive(Debug, Default)]
pub struct Runtime {
    /// Held for the whole canary: at most one in flight per target. tokio Mutex: held
    /// across the requests.
    in_flight: tokio::sync::Mutex<()>,
    /// std Mutex: nothing async happens while held.
    status: Mutex<Status>,
}

impl Runtime {
    /// A snapshot of what the canaries found.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, result: CanaryResult) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.totals[result.reason.index()] += 1;
        status.last = Some(result);
    }
}

/// The end of a canary's own deadline, a little before the dispatcher's, so that an event
/// still invisible ends as `not_visible` rather than as the dispatcher's `timeout`.
fn own_end(started: Instant, deadline: Duration) -> Instant {
    let margin = (deadline / 10).min(Duration::from_millis(200));
    started + deadline.saturating_sub(margin)
}

/// Runs one canary within `deadline`: send, then poll until visible. The dispatcher owns
/// the outer deadline; this one ends a little earlier on its own.
pub async fn probe(
    check: &CanaryCheck,
    env: &ProbeEnv,
    deadline: Duration,
    trace: &mut Trace,
) -> Result<Found, Failure> {
    let started = Instant::now();
    let end = own_end(started, deadline);
    let Ok(_in_flight) = tokio::time::timeout_at(end, check.runtime.in_flight.lock()).await else {
        // Not reached with the scheduler (one task per check); kept as a guard.
        return Err(Failure::new(
            Reason::Timeout,
            "the previous canary of this target is still in flight",
        ));
    };
    let (result, detail) = run(check, env, deadline, end, trace).await;
    let found = Found {
        status: result.status,
        body_match: None,
        version: None,
        reason: result.reason.core(),
        detail: (result.reason != IngestReason::None)
            .then(|| format!("{}: {detail}", result.reason)),
        tls: None,
    };
    check.runtime.record(result);
    Ok(found)
}

/// The canary proper; answers its result and a detail for logs (never a secret or a
/// body).
async fn run(
    check: &CanaryCheck,
    env: &ProbeEnv,
    deadline: Duration,
    end: Instant,
    trace: &mut Trace,
) -> (CanaryResult, String) {
    let failed = |reason, status, accept_duration| CanaryResult {
        reason,
        status,
        accept_duration,
        lag: None,
    };
    let project = check.dsn.project_url();
    if let Some(until) = ingest::not_before(&project) {
        let wait = until.saturating_duration_since(Instant::now());
        return (
            failed(IngestReason::Throttled, None, Duration::ZERO),
            format!(
                "ingest asked to wait (Retry-After): nothing sent, {:.1} s left",
                wait.as_secs_f64()
            ),
        );
    }

    let id = ingest::event_id();
    let (content_type, body) = ingest::body(check.endpoint, &id, env.clock.now());
    let Some(headers) = ingest::headers(check.dsn.key(), content_type) else {
        return (
            failed(IngestReason::Rejected, None, Duration::ZERO),
            "the DSN key is not a valid header value".to_owned(),
        );
    };
    let sent = Instant::now();
    let answer = tokio::time::timeout_at(
        end,
        client::send(
            env,
            &check.ingest,
            Method::POST,
            &check.ingest_url,
            &headers,
            body,
            trace,
        ),
    )
    .await;
    let accept_duration = sent.elapsed();
    let answer = match answer {
        Err(_) => {
            trace.close();
            return (
                failed(IngestReason::Timeout, None, accept_duration),
                format!(
                    "ingest did not answer within {}",
                    humantime::format_duration(deadline)
                ),
            );
        }
        Ok(Err(failure)) => {
            let reason = match failure.reason {
                Reason::Dns => IngestReason::Dns,
                // The canary's reasons keep their set: a proxy failure is the way to
                // ingest failing.
                Reason::Connect | Reason::Proxy => IngestReason::Connect,
                Reason::Tls => IngestReason::Tls,
                Reason::ExporterResources => IngestReason::ExporterResources,
                _ => IngestReason::Rejected,
            };
            return (
                failed(reason, failure.status, accept_duration),
                format!("ingest: {}", failure.detail),
            );
        }
        Ok(Ok(answer)) => answer,
    };
    let status = Some(answer.status);
    match ingest::judge(
        answer.status,
        &answer.headers,
        &answer.body,
        &id,
        env.clock.now(),
    ) {
        ingest::Accept::Accepted => {}
        ingest::Accept::Throttled { retry_after } => {
            ingest::hold(&project, Instant::now() + retry_after);
            return (
                failed(IngestReason::Throttled, status, accept_duration),
                format!(
                    "ingest answered 429: nothing is sent for {} s",
                    retry_after.as_secs()
                ),
            );
        }
        ingest::Accept::Rejected { detail } => {
            return (
                failed(IngestReason::Rejected, status, accept_duration),
                format!("ingest answered {detail}"),
            );
        }
    }
    let accepted = Instant::now();

    match wait_visible(check, env, &id, deadline, end).await {
        Ok(seen_at) => (
            CanaryResult {
                reason: IngestReason::None,
                status,
                accept_duration,
                lag: Some(seen_at.saturating_duration_since(accepted)),
            },
            String::new(),
        ),
        Err((reason, detail)) => (failed(reason, status, accept_duration), detail),
    }
}

/// Polls until the event is visible: answers when the poll that saw it was sent, or why
/// it was not seen.
async fn wait_visible(
    check: &CanaryCheck,
    env: &ProbeEnv,
    id: &str,
    deadline: Duration,
    end: Instant,
) -> Result<Instant, (IngestReason, String)> {
    let url = poll::url(&check.api_base, &check.organization, &check.lookup, id);
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, check.authorization.clone());
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    let mut backoff = poll::Backoff::new(deadline);
    // The last poll starts at the latest this long before the end, so that it can finish.
    let last_slot = (deadline / 20).min(Duration::from_millis(500));
    let mut delay = backoff.next_delay();
    let mut last_error: Option<String> = None;
    let mut polls = 0u32;
    loop {
        let now = Instant::now();
        let Some(room) = end.checked_duration_since(now + last_slot) else {
            break;
        };
        if room.is_zero() && polls > 0 {
            break;
        }
        tokio::time::sleep(delay.min(room)).await;
        let poll_sent = Instant::now();
        polls += 1;
        let mut poll_trace = Trace::default();
        let answer = tokio::time::timeout_at(
            end,
            client::send(
                env,
                &check.api,
                Method::GET,
                &url,
                &headers,
                Bytes::new(),
                &mut poll_trace,
            ),
        )
        .await;
        let judged = match answer {
            Err(_) => {
                last_error = Some("the API did not answer before the deadline".to_owned());
                break;
            }
            Ok(Err(failure)) => Err(poll::PollError {
                detail: format!("API: {}", failure.detail),
                retry_after: None,
            }),
            Ok(Ok(answer)) => poll::judge(
                &check.lookup,
                answer.status,
                &answer.headers,
                &answer.body,
                id,
                env.clock.now(),
            ),
        };
        delay = backoff.next_delay();
        match judged {
            Ok(poll::Seen::Visible) => return Ok(poll_sent),
            Ok(poll::Seen::NotYet) => last_error = None,
            Err(e) => {
                if let Some(wait) = e.retry_after {
                    delay = delay.max(wait);
                }
                last_error = Some(e.detail);
            }
        }
    }
    let waited = humantime::format_duration(deadline);
    Err(match last_error {
        Some(detail) => (
            IngestReason::Api,
            format!("accepted, then the last of {polls} API polls failed: {detail}"),
        ),
        None => (
            IngestReason::NotVisible,
            format!("accepted, not visible through the API after {polls} polls within {waited}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    /// A socket the exporter could not open is its own failure (the alert that pages for
    /// it is GlitchTipExporterOutOfResources), never ingest rejecting the event.
    #[test]
    fn out_of_descriptors_is_the_exporters_failure_not_a_rejection() {
        let r = super::IngestReason::ExporterResources;
        assert_eq!(r.as_str(), "exporter_resources");
        assert_eq!(r.core(), super::Reason::ExporterResources);
        assert!(super::IngestReason::ALL.contains(&r));
    }

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::checks::{CheckSpec, Outcome, Prober, Schedule};
    use crate::config::defaults;
    use crate::scheduler::run_check;

    /// Answers scripted `(reason, takes)` pairs and notes when each probe ended.
    struct Scripted {
        start: Instant,
        script: Mutex<VecDeque<(Reason, Duration)>>,
        ended_at: Mutex<Vec<(Reason, Duration)>>,
    }

    impl Prober for Scripted {
        fn probe<'a>(&'a self, _: &'a CheckSpec, _: Duration) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                let (reason, takes) = self
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or((Reason::None, Duration::from_secs(2)));
                tokio::time::sleep(takes).await;
                self.ended_at
                    .lock()
                    .unwrap()
                    .push((reason, self.start.elapsed()));
                Outcome::for_test(reason, Some(200), takes)
            })
        }
    }

    use crate::scheduler::tests::Sink;

    /// Runs a check with the default canary schedule against `script`; answers when each
    /// probe ended, relative to the end of the first (a visible canary at 2 s).
    async fn run_script(script: &[(Reason, Duration)]) -> Vec<(Reason, Duration)> {
        let source = crate::config::ConfigSource {
            cli_targets: vec!["t=http://127.0.0.1:9/".to_owned()],
            env: Some(Default::default()),
            ..Default::default()
        };
        let mut spec = (*source.load().unwrap().target("t").unwrap().checks[0]).clone();
        spec.schedule = Schedule {
            interval: defaults::CANARY_INTERVAL,
            timeout: defaults::CANARY_TIMEOUT,
            retry_interval: defaults::canary_retry_interval(
                defaults::CANARY_INTERVAL,
                defaults::CANARY_TIMEOUT,
            ),
        };
        let prober = Arc::new(Scripted {
            start: Instant::now(),
            script: Mutex::new(script.iter().copied().collect()),
            ended_at: Mutex::new(Vec::new()),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_check(
            Arc::new(spec),
            prober.clone(),
            Arc::new(Sink::default()),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(200)).await;
        cancel.cancel();
        task.await.unwrap();
        let ended = prober.ended_at.lock().unwrap().clone();
        let first = ended[0].1;
        ended
            .into_iter()
            .map(|(r, t)| (r, t - first + Duration::from_secs(2)))
            .collect()
    }

    #[test]
    fn reasons_are_indexed_in_their_listed_order() {
        for (i, reason) in IngestReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
        assert_eq!(IngestReason::None.result(), "visible");
        assert_eq!(IngestReason::NotVisible.core(), Reason::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_worker_fails_twice_within_85_s_of_the_last_visible_canary() {
        // The worker stalls right after a canary's event became visible (at 2 s): the next
        // two canaries take the whole timeout and are not visible.
        let script = [
            (Reason::None, Duration::from_secs(2)),
            (Reason::Timeout, defaults::CANARY_TIMEOUT),
            (Reason::Timeout, defaults::CANARY_TIMEOUT),
        ];
        let ended = run_script(&script).await;
        assert_eq!(ended[1], (Reason::Timeout, Duration::from_secs(55)));
        // 85 s + 15 s scrape + 15 s evaluation = 115 s: the alert fires within 2 minutes.
        assert_eq!(ended[2], (Reason::Timeout, Duration::from_secs(85)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_failure_is_rerun_once_after_interval_minus_timeout() {
        let fast = Duration::from_millis(10);
        let script = [
            (Reason::None, Duration::from_secs(2)),
            (Reason::Status, fast),
            (Reason::Status, fast),
            (Reason::Status, fast),
        ];
        let ended = run_script(&script).await;
        // Canaries start at 0, 30, 35.01 (quick re-run), then 65.01 (interval again).
        let at = |ms: u64| Duration::from_millis(ms);
        assert_eq!(ended[1].1, at(30_010));
        assert_eq!(ended[2].1, at(35_020));
        assert_eq!(ended[3].1, at(65_020));
    }
}
