//! The `glitchtip_ingest_*` series: a projection of each canary's [`super::Status`],
//! encoded at scrape time into a registry of its own and appended to `/metrics`.
//!
//! The registry is built afresh from the running checks on every render, so a canary
//! removed by a reload loses its series at once, and none exists before the first canary.
//! It holds a handful of series per canary target and nothing at all without one. Never
//! part of `/probe` answers: the canary runs on its own schedule only.

use std::sync::Arc;

use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use super::{IngestReason, Status};
use crate::checks::{CheckKind, CheckSpec};

/// The `glitchtip_ingest_*` text of every canary among `checks` (the running checks) that
/// has run.
pub fn render(checks: &[Arc<CheckSpec>]) -> Vec<u8> {
    let views: Vec<(&str, Status)> = checks
        .iter()
        .filter_map(|spec| match &spec.kind {
            CheckKind::Canary(canary) => Some((spec.target.as_str(), canary.runtime.status())),
            _ => None,
        })
        .filter(|(_, status)| status.last.is_some())
        .collect();
    if views.is_empty() {
        return Vec::new();
    }
    render_views(&views)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let vec = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(vec.clone()))
        .expect("each metric is registered once");
    vec
}

/// Encodes the series of `(target, status)` pairs.
pub fn render_views(views: &[(&str, Status)]) -> Vec<u8> {
    let r = Registry::new();
    let up = gauge(
        &r,
        "glitchtip_ingest_up",
        "1 when the last canary event became visible through the API within the canary timeout, 0 when it did not (see glitchtip_ingest_failure_reason).",
        &["target"],
    );
    let status_code = gauge(
        &r,
        "glitchtip_ingest_accept_status_code",
        "HTTP status of ingest's answer to the last canary event; 0 when no answer arrived or nothing was sent (throttled).",
        &["target"],
    );
    let accept_duration = gauge(
        &r,
        "glitchtip_ingest_accept_duration_seconds",
        "Seconds from sending the last canary event to ingest's complete answer; 0 when nothing was sent.",
        &["target"],
    );
    let lag = gauge(
        &r,
        "glitchtip_ingest_lag_seconds",
        "Seconds from ingest accepting the last canary event to the API poll that found it (resolution: the poll backoff); absent when the last canary did not become visible.",
        &["target"],
    );
    let reason = gauge(
        &r,
        "glitchtip_ingest_failure_reason",
        "Constant 1; the reason label says why the last canary failed (none when its event became visible): none, rejected (ingest answered non-2xx), throttled (429 or its Retry-After not passed), not_visible (accepted, never seen through the API), api (the API could not be read), dns, connect, tls, timeout (ingest did not answer).",
        &["target", "reason"],
    );
    let canaries = IntCounterVec::new(
        Opts::new(
            "glitchtip_ingest_canaries_total",
            "Canaries run, by result: visible, or the failure reason.",
        ),
        &["target", "result"],
    )
    .expect("valid metric definition");
    r.register(Box::new(canaries.clone()))
        .expect("each metric is registered once");

    for (target, status) in views {
        let Some(last) = &status.last else {
            continue;
        };
        let t = [*target];
        up.with_label_values(&t)
            .set(if last.reason == IngestReason::None {
                1.0
            } else {
                0.0
            });
        status_code
            .with_label_values(&t)
            .set(f64::from(last.status.unwrap_or(0)));
        accept_duration
            .with_label_values(&t)
            .set(last.accept_duration.as_secs_f64());
        if let Some(l) = last.lag {
            lag.with_label_values(&t).set(l.as_secs_f64());
        }
        reason
            .with_label_values(&[target, last.reason.as_str()])
            .set(1.0);
        for (i, r) in IngestReason::ALL.iter().enumerate() {
            canaries
                .with_label_values(&[target, r.result()])
                .inc_by(status.totals[i]);
        }
    }
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&r.gather(), &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::canary::CanaryResult;

    #[test]
    fn one_reason_series_and_every_result_counter() {
        let mut totals = [0; IngestReason::ALL.len()];
        totals[0] = 3;
        totals[3] = 2;
        let status = Status {
            last: Some(CanaryResult {
                reason: IngestReason::NotVisible,
                status: Some(200),
                accept_duration: Duration::from_millis(12),
                lag: None,
            }),
            totals,
        };
        let text = String::from_utf8(render_views(&[("prod", status)])).unwrap();
        assert!(
            text.contains("glitchtip_ingest_up{target=\"prod\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("glitchtip_ingest_accept_status_code{target=\"prod\"} 200\n"));
        assert!(text.contains("glitchtip_ingest_accept_duration_seconds{target=\"prod\"} 0.012\n"));
        assert!(!text.contains("glitchtip_ingest_lag_seconds{"), "{text}");
        assert_eq!(text.matches("glitchtip_ingest_failure_reason{").count(), 1);
        assert!(text.contains(
            "glitchtip_ingest_failure_reason{reason=\"not_visible\",target=\"prod\"} 1\n"
        ));
        assert!(
            text.contains(
                "glitchtip_ingest_canaries_total{result=\"visible\",target=\"prod\"} 3\n"
            )
        );
        assert!(text.contains(
            "glitchtip_ingest_canaries_total{result=\"not_visible\",target=\"prod\"} 2\n"
        ));
        assert!(
            text.contains(
                "glitchtip_ingest_canaries_total{result=\"timeout\",target=\"prod\"} 0\n"
            )
        );
    }

    #[test]
    fn nothing_before_the_first_canary() {
        let text = String::from_utf8(render_views(&[("prod", Status::default())])).unwrap();
        assert!(!text.contains("target=\"prod\""), "{text}");
    }
}
