//! The hot in-process paths, measured with criterion: `/metrics` rendering for 1,000 and
//! 10,000 checks, the bookkeeping of one probe result (`Metrics::record_check`), and the
//! fresh registry that answers one `/probe` request.
//!
//! The checks are the default checks of `https://` targets (health, database, api,
//! dashboard, tls: five per target), so that every family is present as in production:
//! about 16 series per check plus the TLS and version series of each target.
//!
//! Run: `cargo bench --bench render` (add `-- --quick` for a short run).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use glitchtip_exporter::checks::{
    CertificateFindings, CheckKind, CheckSpec, Outcome, Phase, Reason, TlsFindings, TlsReason,
    Trace,
};
use glitchtip_exporter::config::ConfigSource;
use glitchtip_exporter::metrics::Metrics;
use glitchtip_exporter::state::CheckState;

/// One check with the state its last probe left.
struct Probed {
    spec: Arc<CheckSpec>,
    state: CheckState,
}

/// `targets` https targets with the default checks, each probed three times.
fn checks(targets: usize) -> Vec<Probed> {
    let dir = std::env::temp_dir().join(format!("glitchtip-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("exporter-{targets}.toml"));
    let mut toml = String::from("[defaults]\ninterval = \"60s\"\n");
    for i in 0..targets {
        toml.push_str(&format!(
            "[targets.glitchtip-{i:05}]\nurl = \"https://glitchtip-{i:05}.example.com\"\n"
        ));
    }
    std::fs::write(&file, toml).unwrap();
    let source = ConfigSource {
        file: Some(file),
        env: Some(Default::default()),
        ..Default::default()
    };
    let config = source.load().unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    config
        .checks()
        .enumerate()
        .map(|(i, spec)| {
            let mut state = CheckState::default();
            for probe in 0..3 {
                let at = now + Duration::from_millis(i as u64 * 7 + probe * 60_013);
                state.record(outcome(spec, i), at);
            }
            Probed {
                spec: spec.clone(),
                state,
            }
        })
        .collect()
}

/// A successful outcome with realistic, non-round timings.
fn outcome(spec: &CheckSpec, i: usize) -> Outcome {
    let mut trace = Trace::default();
    for phase in Phase::ALL {
        trace.enter(phase);
        black_box(i);
    }
    trace.close();
    let tls = matches!(spec.kind, CheckKind::Tls(_)).then(|| TlsFindings {
        reason: TlsReason::None,
        version: Some("TLS 1.3"),
        certificate: Some(CertificateFindings {
            valid: true,
            expiry_seconds: 5_183_999.123_456 - i as f64,
            leaf_not_after: 1_805_184_000.0,
            earliest_presented_not_after: 1_805_184_000.0,
            earliest_verified_not_after: Some(1_805_184_000.0),
            subject: format!("CN={}", spec.target),
            issuer: "C=US, O=Let's Encrypt, CN=E5".to_owned(),
            serial: format!("{:036x}", i * 7919),
            fingerprint_sha256: format!("{:064x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }),
    });
    Outcome {
        reason: Reason::None,
        status: Some(if spec.name == "api" { 401 } else { 200 }),
        duration: Duration::from_nanos(1_234_567 + i as u64 * 997),
        trace,
        body_match: spec.has_body_expectations().then_some(true),
        version: spec.reads_version().then(|| "4.2.10".to_owned()),
        detail: None,
        tls,
    }
}

/// The exporter's long-lived registry with every check recorded.
fn filled(checks: &[Probed]) -> Metrics {
    let metrics = Metrics::for_exporter();
    // In the order probes finish (spread over the interval, not sorted), with the other
    // allocations of a running exporter between them: the rows end up scattered over the
    // heap as in production, not packed in label order.
    let mut order: Vec<usize> = (0..checks.len()).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut ballast = Vec::new();
    for i in order {
        record(&metrics, &checks[i]);
        ballast.push(vec![0u8; 512 + (i % 7) * 256]);
    }
    drop(ballast);
    metrics
}

fn record(metrics: &Metrics, c: &Probed) {
    metrics.record_check(&c.spec, &c.state);
    if let Some(version) = c.state.last.as_ref().and_then(|o| o.version.as_deref()) {
        metrics.set_version(&c.spec.target, None, version);
    }
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for targets in [200, 2_000] {
        let checks = checks(targets);
        let metrics = filled(&checks);
        let text = metrics.render();
        let series = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#');
        eprintln!(
            "{} checks: {} series, {} bytes",
            checks.len(),
            series.count(),
            text.len()
        );
        let mut next = 0;
        // A result changed since the last scrape: the whole text is encoded again.
        group.bench_function(format!("{}_checks_after_a_change", checks.len()), |b| {
            b.iter(|| {
                next = (next + 1) % checks.len();
                record(&metrics, &checks[next]);
                black_box(metrics.render_chunks())
            })
        });
        // The same after the CPU caches went cold, as between two scrapes of a busy
        // exporter: 64 MB of other work runs before each render.
        let mut other = vec![0u8; 64 << 20];
        group.bench_function(
            format!("{}_checks_after_a_change_cold", checks.len()),
            |b| {
                b.iter_batched(
                    || {
                        for (i, byte) in other.iter_mut().enumerate().step_by(64) {
                            *byte = i as u8;
                        }
                        next = (next + 1) % checks.len();
                        next
                    },
                    |i| {
                        record(&metrics, &checks[i]);
                        black_box(metrics.render_chunks())
                    },
                    criterion::BatchSize::PerIteration,
                )
            },
        );
        // Nothing changed since the last scrape.
        group.bench_function(format!("{}_checks_unchanged", checks.len()), |b| {
            b.iter(|| black_box(metrics.render_chunks()))
        });
    }
    group.finish();
}

fn bookkeeping(c: &mut Criterion) {
    let checks = checks(2_000);
    let metrics = filled(&checks);
    let mut group = c.benchmark_group("bookkeeping");
    let mut next = 0;
    // One probe result into a registry of 10,000 checks (what every finished probe costs).
    group.bench_function("record_check_of_10000", |b| {
        b.iter(|| {
            next = (next + 1) % checks.len();
            record(&metrics, &checks[next]);
        })
    });
    // One `/probe` answer: a fresh registry with a target's five checks, encoded.
    let target: Vec<&Probed> = checks
        .iter()
        .filter(|c| c.spec.target == checks[0].spec.target)
        .collect();
    group.bench_function("probe_answer_5_checks", |b| {
        b.iter(|| {
            let metrics = Metrics::new();
            for c in &target {
                record(&metrics, c);
            }
            black_box(metrics.render())
        })
    });
    group.finish();
}

criterion_group!(benches, render, bookkeeping);
criterion_main!(benches);
