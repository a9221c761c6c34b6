//! Checks: what to probe ([`CheckSpec`]), what a probe found ([`Outcome`]), and the one
//! dispatcher that owns the work every prober shares — the deadline, the duration and the
//! conversion of a timeout into an outcome — so that probers only probe.
//!
//! One prober per file, one signature: `probe(spec, env, trace) -> Result<Found, Failure>`.

pub mod http;
mod spec;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

pub use spec::{
    BodyExpectations, CheckKind, CheckSpec, HttpCheck, JsonExpectation, JsonPath, Schedule,
    StatusSet, TlsCheck,
};
pub use tls::{CertificateFindings, TlsFindings, TlsReason};

use crate::clock::Clock;
use crate::net::resolver::Resolver;

/// Why a probe failed, from a fixed set: these are the values of the `reason` label.
/// `Dns`, `Connect`, `Tls` and `Timeout` mean the same for every check kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reason {
    /// The probe met every expectation.
    #[default]
    None,
    /// The host name did not resolve.
    Dns,
    /// The TCP connection (or the proxy tunnel) failed.
    Connect,
    /// The TLS handshake failed, certificate problems included.
    Tls,
    /// The deadline passed before the probe finished.
    Timeout,
    /// The status code was not an expected one.
    Status,
    /// The keyword or regular expression was not found in the body.
    Keyword,
    /// The body was not JSON, or the JSON expectation was not met.
    Json,
    /// The body was larger than `max_body_bytes`.
    BodyTooLarge,
    /// The server broke the HTTP protocol (malformed answer, connection closed early, too
    /// many redirects).
    Http,
    /// The configured HTTP proxy failed: unreachable, refused the tunnel, or asked for
    /// credentials (407).
    Proxy,
    /// The exporter itself could not open a socket (out of file descriptors): its own
    /// failure, not the target's.
    ExporterResources,
}

impl Reason {
    /// Every reason, in the order of the README's table.
    pub const ALL: [Reason; 12] = [
        Reason::None,
        Reason::Dns,
        Reason::Connect,
        Reason::Tls,
        Reason::Timeout,
        Reason::Status,
        Reason::Keyword,
        Reason::Json,
        Reason::BodyTooLarge,
        Reason::Http,
        Reason::Proxy,
        Reason::ExporterResources,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::Dns => "dns",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::Status => "status",
            Reason::Keyword => "keyword",
            Reason::Json => "json",
            Reason::BodyTooLarge => "body_too_large",
            Reason::Http => "http",
            Reason::Proxy => "proxy",
            Reason::ExporterResources => "exporter_resources",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phases of one HTTP exchange, as blackbox_exporter's `probe_http_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Name resolution.
    Resolve,
    /// TCP connect (and proxy tunnel).
    Connect,
    /// TLS handshake.
    Tls,
    /// From sending the request to the response headers.
    Processing,
    /// Reading the body.
    Transfer,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 5] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Processing,
        Phase::Transfer,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Time spent in each phase; a probe that follows redirects adds up its hops. The phase in
/// progress when the deadline passes is closed by the dispatcher, so that a hanging server
/// shows up as the phase it hung in.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    spent: [Duration; 5],
    open: Option<(Phase, Instant)>,
}

impl Trace {
    /// Starts `phase` now, closing the one in progress.
    pub fn enter(&mut self, phase: Phase) {
        self.close();
        self.open = Some((phase, Instant::now()));
    }

    /// Closes the phase in progress, if any.
    pub fn close(&mut self) {
        if let Some((phase, since)) = self.open.take() {
            self.spent[phase.index()] += since.elapsed();
        }
    }

    /// Time spent in `phase`.
    pub fn get(&self, phase: Phase) -> Duration {
        self.spent[phase.index()]
    }
}

/// What a successful exchange found, before the dispatcher stamps time on it.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// HTTP status of the (last) answer.
    pub status: Option<u16>,
    /// Whether the body expectations held; `None` when the check has none.
    pub body_match: Option<bool>,
    /// The GlitchTip version read from the body, already length-capped.
    pub version: Option<String>,
    /// The reason when an expectation failed (`Status`, `Keyword`, `Json`, …), else `None`.
    pub reason: Reason,
    /// A short human description of what failed, for logs only: never a body, never a
    /// secret.
    pub detail: Option<String>,
    /// What the TLS check found; `None` for HTTP checks.
    pub tls: Option<TlsFindings>,
}

/// A probe that could not complete an exchange.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Why.
    pub reason: Reason,
    /// For logs only (an I/O error's text, "status 500", …).
    pub detail: String,
    /// The status, when an answer arrived before the failure (e.g. a body too large).
    pub status: Option<u16>,
}

impl Failure {
    /// A failure with no HTTP status.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            status: None,
        }
    }
}

/// What one probe of one check found: the value a failed probe is, never a panic.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `Reason::None` when every expectation was met.
    pub reason: Reason,
    /// HTTP status of the last answer; `None` when none arrived.
    pub status: Option<u16>,
    /// Whole probe, from start to result.
    pub duration: Duration,
    /// Per-phase times.
    pub trace: Trace,
    /// Whether the body expectations held; `None` when the check has none.
    pub body_match: Option<bool>,
    /// Version read from the answer, for `glitchtip_version_info`.
    pub version: Option<String>,
    /// For logs only.
    pub detail: Option<String>,
    /// What the TLS check found, for the `glitchtip_tls_*` series; `None` for HTTP checks.
    pub tls: Option<TlsFindings>,
}

impl Outcome {
    /// An outcome with only a reason and a status, for tests of what consumes outcomes.
    #[cfg(test)]
    pub(crate) fn for_test(reason: Reason, status: Option<u16>, duration: Duration) -> Self {
        Self {
            reason,
            status,
            duration,
            trace: Trace::default(),
            body_match: None,
            version: None,
            detail: None,
            tls: None,
        }
    }

    /// Whether the probe met every expectation.
    pub fn success(&self) -> bool {
        self.reason == Reason::None
    }
}

/// What probers need from outside: injected so that tests control it.
#[derive(Clone)]
pub struct ProbeEnv {
    /// Name resolution.
    pub resolver: Arc<dyn Resolver>,
    /// Wall-clock time, for certificate validity and expiry.
    pub clock: Arc<dyn Clock>,
}

/// Runs probes. The exporter holds one; tests substitute a scripted one to drive the
/// scheduler with paused time.
pub trait Prober: Send + Sync + 'static {
    /// Probes `spec` once, finishing within `deadline`.
    fn probe<'a>(&'a self, spec: &'a CheckSpec, deadline: Duration) -> BoxFuture<'a, Outcome>;
}

/// The real prober: dispatches on the check kind.
#[derive(Clone)]
pub struct Dispatcher {
    env: ProbeEnv,
}

impl Dispatcher {
    /// A dispatcher resolving names with `resolver` and judging certificates at `clock`'s
    /// time.
    pub fn new(resolver: Arc<dyn Resolver>, clock: Arc<dyn Clock>) -> Self {
        Self {
            env: ProbeEnv { resolver, clock },
        }
    }
}

impl Prober for Dispatcher {
    fn probe<'a>(&'a self, spec: &'a CheckSpec, deadline: Duration) -> BoxFuture<'a, Outcome> {
        Box::pin(run(spec, &self.env, deadline))
    }
}

/// Probes `spec` once within `deadline`: the shared part of every probe.
pub async fn run(spec: &CheckSpec, env: &ProbeEnv, deadline: Duration) -> Outcome {
    let started = Instant::now();
    let mut trace = Trace::default();
    let result = {
        let probe = async {
            match &spec.kind {
                CheckKind::Http(check) => http::probe(check, env, &mut trace).await,
                CheckKind::Tls(check) => tls::probe(check, env, &mut trace).await,
                // The canary ends before `deadline` on its own, so that an event that
                // never shows up is `not_visible`, not a timeout.
                CheckKind::Canary(check) => {
                    crate::canary::probe(check, env, deadline, &mut trace).await
                }
            }
        };
        tokio::time::timeout(deadline, probe).await
    };
    trace.close();
    let duration = started.elapsed();
    // A TLS check that ended without a certificate still says why.
    let tls_without_certificate = |reason: Reason| {
        matches!(spec.kind, CheckKind::Tls(_))
            .then(|| TlsFindings::without_certificate(TlsReason::without_certificate(reason)))
    };
    match result {
        Ok(Ok(found)) => Outcome {
            reason: found.reason,
            status: found.status,
            duration,
            trace,
            body_match: found.body_match,
            version: found.version,
            detail: found.detail,
            tls: found.tls,
        },
        Ok(Err(failure)) => Outcome {
            reason: failure.reason,
            status: failure.status,
            duration,
            trace,
            body_match: spec.has_body_expectations().then_some(false),
            version: None,
            tls: tls_without_certificate(failure.reason),
            detail: Some(failure.detail),
        },
        Err(_elapsed) => Outcome {
            reason: Reason::Timeout,
            status: None,
            duration,
            trace,
            body_match: spec.has_body_expectations().then_some(false),
            version: None,
            detail: Some(format!(
                "no answer within {}",
                humantime::format_duration(deadline)
            )),
            tls: tls_without_certificate(Reason::Timeout),
        },
    }
}
