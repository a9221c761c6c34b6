//! The exporter's metrics as they were written with the prometheus crate's registry,
//! before the hand-written encoder: the oracle that the tests hold [`super::Metrics`]'s
//! text to, byte for byte. Test code only.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{Encoder, Gauge, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::checks::tls::{CHECK_NAME as TLS_CHECK, VERSIONS as TLS_VERSIONS};
use crate::checks::{CheckKind, CheckSpec, Phase, Reason, TlsFindings, TlsReason};
use crate::clock::unix_seconds;
use crate::state::CheckState;

/// The old `Metrics`.
pub struct Oracle {
    registry: Registry,
    up: GaugeVec,
    status_code: GaugeVec,
    duration: GaugeVec,
    phase: GaugeVec,
    keyword_match: GaugeVec,
    consecutive_failures: GaugeVec,
    failure_reason: GaugeVec,
    last_success: GaugeVec,
    last_run: GaugeVec,
    probes_total: IntCounterVec,
    down_total: IntCounterVec,
    tls_insecure: GaugeVec,
    version_info: GaugeVec,
    tls: TlsSeries,
    /// Config load results; only in the exporter's registry, not in `/probe` answers.
    reload: Option<(Gauge, Gauge)>,
}

const TC: &[&str] = &["target", "check"];

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let vec = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(registry, vec.clone());
    vec
}

fn plain_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::with_opts(Opts::new(name, help)).expect("valid metric definition");
    register(registry, g.clone());
    g
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(registry, vec.clone());
    vec
}

fn register(registry: &Registry, collector: impl Collector + 'static) {
    registry
        .register(Box::new(collector))
        .expect("each metric is registered once");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The TLS check's series, labelled by target only: a target has one TLS check.
struct TlsSeries {
    expiry: GaugeVec,
    not_after: GaugeVec,
    valid: GaugeVec,
    failure_reason: GaugeVec,
    version_info: GaugeVec,
    cert_info: GaugeVec,
    /// The labels of each target's `glitchtip_tls_cert_info` series, so that the old one
    /// goes when the certificate changes. std Mutex: nothing async happens while held.
    info_labels: Mutex<HashMap<String, [String; 5]>>,
}

impl TlsSeries {
    fn new(r: &Registry) -> Self {
        Self {
            expiry: gauge(
                r,
                "glitchtip_tls_cert_expiry_seconds",
                "Seconds until the earliest notAfter of the chain clients rely on: the verified chain when it verifies, else the presented certificates; negative once expired. Present whenever a certificate arrived, valid or not.",
                &["target"],
            ),
            not_after: gauge(
                r,
                "glitchtip_tls_cert_not_after_timestamp_seconds",
                "Unix time of notAfter: cert=leaf, cert=earliest_presented (earliest of the presented certificates), cert=earliest_verified (earliest of the verified chain, only when it verifies).",
                &["target", "cert"],
            ),
            valid: gauge(
                r,
                "glitchtip_tls_cert_valid",
                "1 when the chain verifies to a trusted root, is within its validity period and matches the host name, 0 when not; absent when no certificate arrived.",
                &["target"],
            ),
            failure_reason: gauge(
                r,
                "glitchtip_tls_failure_reason",
                "Constant 1; the reason label says why the TLS check failed (none when it succeeded): none, expired, not_yet_valid, hostname_mismatch, self_signed, unknown_issuer, bad_signature, unsupported_critical_extension, invalid_certificate, handshake, dns, connect, timeout, proxy, exporter_resources.",
                &["target", "reason"],
            ),
            version_info: gauge(
                r,
                "glitchtip_tls_version_info",
                "Constant 1, labelled with the TLS version the last handshake negotiated.",
                &["target", "version"],
            ),
            cert_info: gauge(
                r,
                "glitchtip_tls_cert_info",
                "Constant 1, labelled with the leaf certificate's subject, issuer, serial (hex) and SHA-256 fingerprint (hex); values capped at 64 characters.",
                &[
                    "target",
                    "subject",
                    "issuer",
                    "serial",
                    "fingerprint_sha256",
                ],
            ),
            info_labels: Mutex::new(HashMap::new()),
        }
    }
}

impl Oracle {
    /// The long-lived registry of `/metrics`: check series and exporter info (the process
    /// metrics, apart in both, are left out).
    pub fn for_exporter() -> Self {
        let metrics = Self::new();
        let build = gauge(
            &metrics.registry,
            "glitchtip_exporter_build_info",
            "Constant 1, labelled with the exporter's version and git revision.",
            &["version", "revision"],
        );
        build
            .with_label_values(&[crate::VERSION, crate::REVISION])
            .set(1.0);
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
        Self {
            reload: Some(reload),
            ..metrics
        }
    }

    /// A registry with the check series only: what one `/probe` request answers.
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            up: gauge(
                &r,
                "glitchtip_up",
                "1 when the check's last probe met every expectation, 0 when it failed.",
                TC,
            ),
            status_code: gauge(
                &r,
                "glitchtip_http_status_code",
                "HTTP status of the last probe's answer; 0 when no answer arrived.",
                TC,
            ),
            duration: gauge(
                &r,
                "glitchtip_probe_duration_seconds",
                "Duration of the last probe, from start to result.",
                TC,
            ),
            phase: gauge(
                &r,
                "glitchtip_probe_phase_seconds",
                "Duration of each phase of the last probe: resolve, connect, tls, processing (request sent to response headers), transfer (body).",
                &["target", "check", "phase"],
            ),
            keyword_match: gauge(
                &r,
                "glitchtip_keyword_match",
                "1 when the last answer's body met the check's keyword, regex and JSON expectations, 0 when not; only for checks that have one.",
                TC,
            ),
            consecutive_failures: gauge(
                &r,
                "glitchtip_consecutive_failures",
                "Failed probes since the last successful one; 0 after a success.",
                TC,
            ),
            failure_reason: gauge(
                &r,
                "glitchtip_probe_failure_reason",
                "Constant 1; the reason label says why the last probe failed (none when it succeeded): none, dns, connect, tls, timeout, status, keyword, json, body_too_large, http, proxy, exporter_resources.",
                &["target", "check", "reason"],
            ),
            last_success: gauge(
                &r,
                "glitchtip_last_success_timestamp_seconds",
                "Unix time of the last successful probe; absent before the first success.",
                TC,
            ),
            last_run: gauge(
                &r,
                "glitchtip_probe_last_run_timestamp_seconds",
                "Unix time the last probe finished; when it stops advancing, the exporter's scheduler has stalled.",
                TC,
            ),
            probes_total: counter(
                &r,
                "glitchtip_probes_total",
                "Probes run, by result (success or failure).",
                &["target", "check", "result"],
            ),
            down_total: counter(
                &r,
                "glitchtip_check_down_total",
                "Times the check reached 2 consecutive failures, so that a run of failures is counted even when it ends between two scrapes.",
                TC,
            ),
            tls_insecure: gauge(
                &r,
                "glitchtip_check_tls_insecure",
                "1 when the check skips TLS certificate verification (tls.insecure_skip_verify = true); absent otherwise.",
                TC,
            ),
            version_info: gauge(
                &r,
                "glitchtip_version_info",
                "Constant 1, labelled with the GlitchTip version the target reports in /api/settings/.",
                &["target", "version"],
            ),
            tls: TlsSeries::new(&r),
            reload: None,
            registry: r,
        }
    }

    fn changed(&self) {}

    /// Sets every series of `spec` from `state`. Before the first probe nothing is set, so
    /// the series are absent rather than 0.
    pub fn record_check(&self, spec: &CheckSpec, state: &CheckState) {
        let Some(outcome) = &state.last else {
            return;
        };
        let l = [spec.target.as_str(), spec.name.as_str()];
        self.up
            .with_label_values(&l)
            .set(if outcome.success() { 1.0 } else { 0.0 });
        self.status_code
            .with_label_values(&l)
            .set(f64::from(outcome.status.unwrap_or(0)));
        self.duration
            .with_label_values(&l)
            .set(outcome.duration.as_secs_f64());
        for phase in Phase::ALL {
            self.phase
                .with_label_values(&[l[0], l[1], phase.as_str()])
                .set(outcome.trace.get(phase).as_secs_f64());
        }
        if spec.has_body_expectations() {
            let matched = outcome.body_match.unwrap_or(false);
            self.keyword_match
                .with_label_values(&l)
                .set(if matched { 1.0 } else { 0.0 });
        }
        self.consecutive_failures
            .with_label_values(&l)
            .set(f64::from(state.consecutive_failures));
        for reason in Reason::ALL {
            if reason != outcome.reason {
                let _ = self
                    .failure_reason
                    .remove_label_values(&[l[0], l[1], reason.as_str()]);
            }
        }
        self.failure_reason
            .with_label_values(&[l[0], l[1], outcome.reason.as_str()])
            .set(1.0);
        if let Some(t) = state.last_success {
            self.last_success.with_label_values(&l).set(unix_seconds(t));
        }
        if let Some(t) = state.last_run {
            self.last_run.with_label_values(&l).set(unix_seconds(t));
        }
        for (result, total) in [("success", state.successes), ("failure", state.failures)] {
            let c = self.probes_total.with_label_values(&[l[0], l[1], result]);
            c.inc_by(total.saturating_sub(c.get()));
        }
        let c = self.down_total.with_label_values(&l);
        c.inc_by(state.down_total.saturating_sub(c.get()));
        if spec.tls_insecure() {
            self.tls_insecure.with_label_values(&l).set(1.0);
        }
        if let CheckKind::Tls(_) = spec.kind {
            self.record_tls(&spec.target, outcome.tls.as_ref());
        }
        self.changed();
    }

    /// Sets the `glitchtip_tls_*` series of `target` from the TLS check's findings. Without
    /// a certificate the certificate series go (so that a network blip is not a bad
    /// certificate) and the reason says why; `None` removes every TLS series.
    pub fn record_tls(&self, target: &str, findings: Option<&TlsFindings>) {
        let Some(findings) = findings else {
            self.remove_tls(target);
            return;
        };
        let t = &self.tls;
        for reason in TlsReason::ALL {
            if reason != findings.reason {
                let _ = t
                    .failure_reason
                    .remove_label_values(&[target, reason.as_str()]);
            }
        }
        t.failure_reason
            .with_label_values(&[target, findings.reason.as_str()])
            .set(1.0);
        for version in TLS_VERSIONS {
            if findings.version != Some(version) {
                let _ = t.version_info.remove_label_values(&[target, version]);
            }
        }
        if let Some(version) = findings.version {
            t.version_info
                .with_label_values(&[target, version])
                .set(1.0);
        }
        let Some(cert) = &findings.certificate else {
            self.remove_tls_certificate(target);
            self.changed();
            return;
        };
        t.valid
            .with_label_values(&[target])
            .set(if cert.valid { 1.0 } else { 0.0 });
        t.expiry
            .with_label_values(&[target])
            .set(cert.expiry_seconds);
        for (which, value) in [
            ("leaf", Some(cert.leaf_not_after)),
            (
                "earliest_presented",
                Some(cert.earliest_presented_not_after),
            ),
            ("earliest_verified", cert.earliest_verified_not_after),
        ] {
            match value {
                Some(v) => t.not_after.with_label_values(&[target, which]).set(v),
                None => {
                    let _ = t.not_after.remove_label_values(&[target, which]);
                }
            }
        }
        let info = [
            target.to_owned(),
            cert.subject.clone(),
            cert.issuer.clone(),
            cert.serial.clone(),
            cert.fingerprint_sha256.clone(),
        ];
        let previous = lock(&t.info_labels).insert(target.to_owned(), info.clone());
        if let Some(old) = previous.filter(|old| *old != info) {
            let _ = t.cert_info.remove_label_values(&old);
        }
        t.cert_info.with_label_values(&info).set(1.0);
        self.changed();
    }

    /// Removes every `glitchtip_tls_*` series of `target`.
    fn remove_tls(&self, target: &str) {
        let t = &self.tls;
        for reason in TlsReason::ALL {
            let _ = t
                .failure_reason
                .remove_label_values(&[target, reason.as_str()]);
        }
        for version in TLS_VERSIONS {
            let _ = t.version_info.remove_label_values(&[target, version]);
        }
        self.remove_tls_certificate(target);
        self.changed();
    }

    /// Removes the certificate series of `target`.
    fn remove_tls_certificate(&self, target: &str) {
        let t = &self.tls;
        let _ = t.valid.remove_label_values(&[target]);
        let _ = t.expiry.remove_label_values(&[target]);
        for which in ["leaf", "earliest_presented", "earliest_verified"] {
            let _ = t.not_after.remove_label_values(&[target, which]);
        }
        if let Some(old) = lock(&t.info_labels).remove(target) {
            let _ = t.cert_info.remove_label_values(&old);
        }
    }

    /// Removes every series of a check that is gone (removed by a reload).
    pub fn remove_check(&self, target: &str, check: &str) {
        let l = [target, check];
        for vec in [
            &self.up,
            &self.status_code,
            &self.duration,
            &self.keyword_match,
            &self.consecutive_failures,
            &self.last_success,
            &self.last_run,
            &self.tls_insecure,
        ] {
            let _ = vec.remove_label_values(&l);
        }
        for phase in Phase::ALL {
            let _ = self
                .phase
                .remove_label_values(&[target, check, phase.as_str()]);
        }
        for reason in Reason::ALL {
            let _ = self
                .failure_reason
                .remove_label_values(&[target, check, reason.as_str()]);
        }
        for result in ["success", "failure"] {
            let _ = self
                .probes_total
                .remove_label_values(&[target, check, result]);
        }
        let _ = self.down_total.remove_label_values(&l);
        if check == TLS_CHECK {
            self.remove_tls(target);
        }
        self.changed();
    }

    /// Shows `version` for `target`, removing the series of `previous`.
    pub fn set_version(&self, target: &str, previous: Option<&str>, version: &str) {
        if let Some(old) = previous.filter(|old| *old != version) {
            let _ = self.version_info.remove_label_values(&[target, old]);
        }
        self.version_info
            .with_label_values(&[target, version])
            .set(1.0);
        self.changed();
    }

    /// Removes the version series of a target that is gone.
    pub fn remove_version(&self, target: &str, version: &str) {
        let _ = self.version_info.remove_label_values(&[target, version]);
        self.changed();
    }

    /// Records the result of a config load or reload at `unix_time`.
    pub fn config_loaded(&self, ok: bool, unix_time: f64) {
        if let Some((success, timestamp)) = &self.reload {
            success.set(if ok { 1.0 } else { 0.0 });
            if ok {
                timestamp.set(unix_time);
            }
        }
        self.changed();
    }

    /// The text of every series but the process metrics.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .unwrap();
        buf
    }
}
