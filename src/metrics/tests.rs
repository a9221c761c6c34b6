//! The hand-written text is held to the prometheus crate's, byte for byte, over random
//! results, label values that need escaping, and every kind of change; plus the cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::oracle::Oracle;
use super::*;
use crate::checks::{CertificateFindings, Outcome, Trace};
use crate::config::ConfigSource;

/// A small deterministic generator (xorshift64*), so that a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A float of the kinds the series hold: durations, timestamps, round numbers, odd
    /// ones.
    fn float(&mut self) -> f64 {
        match self.below(8) {
            0 => 0.0,
            1 => -0.0,
            2 => self.below(10_000) as f64,
            3 => self.below(1 << 40) as f64 / 1e9,
            4 => 1_800_000_000.0 + self.below(1 << 30) as f64 / 1e9,
            5 => -(self.below(1 << 50) as f64) / 7.0,
            6 => f64::from_bits(self.next()),
            _ => *self.pick(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e21, 1e-7, 2e15]),
        }
    }
}

/// Label values that need escaping, and ordinary ones.
const ODD: [&str; 7] = [
    "plain",
    "CN=a \"quoted\" name",
    "back\\slash",
    "new\nline",
    "ünïcödé",
    "",
    "O=Let's Encrypt, CN=E5",
];

fn specs() -> Vec<Arc<CheckSpec>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exporter.toml");
    let toml = r#"
[targets.b-https]
url = "https://glitchtip.example.com"
[targets.a-http]
url = "http://glitchtip.example.com"
[targets.a-http.checks.custom]
path = "/x"
regex = "o+k"
[targets.a-http.checks.tls]
address = "glitchtip.example.com:443"
[targets.insecure]
url = "https://other.example.com"
tls = { insecure_skip_verify = true }
[targets.zz]
url = "https://z.example.com"
default_checks = false
[targets.zz.checks.health]
path = "/_health/"
"#;
    std::fs::write(&file, toml).unwrap();
    let source = ConfigSource {
        file: Some(file),
        env: Some(Default::default()),
        ..Default::default()
    };
    source.load().unwrap().checks().cloned().collect()
}

fn outcome(rng: &mut Rng, spec: &CheckSpec) -> Outcome {
    let mut trace = Trace::default();
    for phase in Phase::ALL {
        if rng.below(3) > 0 {
            trace.enter(phase);
        }
    }
    trace.close();
    let reason = *rng.pick(&Reason::ALL);
    let tls = matches!(spec.kind, CheckKind::Tls(_)).then(|| findings(rng));
    Outcome {
        reason,
        status: (rng.below(4) > 0).then(|| rng.below(600) as u16),
        duration: Duration::from_nanos(rng.below(10_000_000_000)),
        trace,
        body_match: (rng.below(3) > 0).then(|| rng.below(2) == 0),
        version: None,
        detail: None,
        tls,
    }
}

fn findings(rng: &mut Rng) -> TlsFindings {
    let certificate = (rng.below(4) > 0).then(|| CertificateFindings {
        valid: rng.below(2) == 0,
        expiry_seconds: rng.float(),
        leaf_not_after: rng.float(),
        earliest_presented_not_after: rng.float(),
        earliest_verified_not_after: (rng.below(2) == 0).then(|| rng.float()),
        subject: rng.pick(&ODD).to_string(),
        issuer: rng.pick(&ODD).to_string(),
        serial: format!("{:x}", rng.below(4)),
        fingerprint_sha256: rng.pick(&["aa", "ab", "b"]).to_string(),
    });
    TlsFindings {
        reason: *rng.pick(&TlsReason::ALL),
        version: (rng.below(3) > 0).then(|| *rng.pick(&TLS_VERSIONS)),
        certificate,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The text without the families the oracle never had.
fn without_new_families(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("glitchtip_exporter_schedule_lag_seconds"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn text_is_the_prometheus_crates_byte_for_byte_through_every_kind_of_change() {
    let specs = specs();
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let exporter = seed % 2 == 0;
        let (metrics, oracle) = if exporter {
            (Metrics::for_exporter(), Oracle::for_exporter())
        } else {
            (Metrics::new(), Oracle::new())
        };
        let mut states: Vec<CheckState> = vec![CheckState::default(); specs.len()];
        let mut shown: HashMap<String, &str> = HashMap::new();
        for step in 0..60 {
            let i = rng.below(specs.len() as u64) as usize;
            let spec = &specs[i];
            match rng.below(10) {
                0 => {
                    metrics.remove_check(&spec.target, &spec.name);
                    oracle.remove_check(&spec.target, &spec.name);
                    states[i] = CheckState::default();
                }
                1 => {
                    // As the exporter does: it passes the version it showed before.
                    let version = *rng.pick(&ODD);
                    let previous = shown.insert(spec.target.clone(), version);
                    metrics.set_version(&spec.target, previous, version);
                    oracle.set_version(&spec.target, previous, version);
                }
                2 if rng.below(2) == 0 => {
                    if let Some(version) = shown.remove(&spec.target) {
                        metrics.remove_version(&spec.target, version);
                        oracle.remove_version(&spec.target, version);
                    }
                }
                2 => {
                    let target = *rng.pick(&ODD);
                    let f = (rng.below(3) > 0).then(|| findings(&mut rng));
                    metrics.record_tls(target, f.as_ref());
                    oracle.record_tls(target, f.as_ref());
                }
                3 => {
                    let ok = rng.below(2) == 0;
                    let at = rng.float();
                    metrics.config_loaded(ok, at);
                    oracle.config_loaded(ok, at);
                }
                _ => {
                    let at = UNIX_EPOCH + Duration::from_nanos(rng.below(1 << 62));
                    let o = outcome(&mut rng, spec);
                    states[i].record(o, at);
                    metrics.record_check(spec, &states[i]);
                    oracle.record_check(spec, &states[i]);
                }
            }
            let ours = text(&metrics.render_series());
            let theirs = text(&oracle.render());
            assert_eq!(
                without_new_families(&ours),
                theirs,
                "seed {seed}, step {step}"
            );
        }
    }
}

#[test]
fn float_values_are_written_as_display_writes_them() {
    let mut rng = Rng(7);
    for _ in 0..200_000 {
        let v = rng.float();
        let mut ours = String::new();
        write_float(&mut ours, v);
        assert_eq!(ours, v.to_string(), "{v:?}");
    }
    for n in [0, 1, 1 << 53, (1 << 53) + 1, u64::MAX] {
        let mut buf = Vec::new();
        Value::Count(n).write(&mut buf);
        assert_eq!(text(&buf), format!("{}\n", n as f64), "{n}");
    }
}

#[test]
fn families_are_listed_by_name_and_merged_with_the_registry_ones() {
    let names: Vec<&str> = Family::ALL.iter().map(|f| f.describe().0).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);

    let metrics = Metrics::for_exporter();
    let spec = &specs()[0];
    let mut state = CheckState::default();
    state.record(outcome(&mut Rng(3), spec), UNIX_EPOCH);
    metrics.record_check(spec, &state);
    let text = text(&metrics.render_series());
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut sorted = families.clone();
    sorted.sort_unstable();
    assert_eq!(families, sorted);
    assert!(families.contains(&"glitchtip_exporter_build_info"));
    assert!(families.contains(&"glitchtip_exporter_schedule_lag_seconds"));
    assert!(families.contains(&"glitchtip_up"));
}

#[test]
fn unchanged_series_share_the_cached_text_and_any_change_renders_again() {
    let metrics = Metrics::for_exporter();
    let specs = specs();
    let mut state = CheckState::default();
    let ok = Outcome {
        reason: Reason::None,
        ..outcome(&mut Rng(5), &specs[0])
    };
    state.record(ok, UNIX_EPOCH);
    metrics.record_check(&specs[0], &state);
    let first = metrics.render_series();
    let again = metrics.render_series();
    assert_eq!(first.as_ptr(), again.as_ptr(), "shared, not written again");
    // A busy lag histogram alone does not make scrapes render.
    metrics.schedule_lag(Duration::from_millis(3));
    assert_eq!(metrics.render_series().as_ptr(), first.as_ptr());

    let failed = Outcome {
        reason: Reason::Status,
        ..outcome(&mut Rng(6), &specs[0])
    };
    state.record(failed, UNIX_EPOCH);
    metrics.record_check(&specs[0], &state);
    let after = text(&metrics.render_series());
    let failures = format!(
        "glitchtip_probes_total{{check=\"{}\",result=\"failure\",target=\"{}\"}} 1\n",
        specs[0].name, specs[0].target
    );
    assert!(after.contains(&failures), "{after}");
    assert!(after.contains("glitchtip_exporter_schedule_lag_seconds_count 1\n"));
    // The process metrics come on every render, after the cached part.
    let chunks = metrics.render_chunks();
    assert_eq!(chunks.len(), 2);
    assert!(text(&chunks[1]).contains("process_"));
}

#[test]
fn a_state_before_the_first_probe_shows_nothing() {
    let metrics = Metrics::new();
    metrics.record_check(&specs()[0], &CheckState::default());
    assert!(metrics.render().is_empty());
}

/// Records a result with `reason` for `spec`, counting up its state.
fn record(metrics: &Metrics, spec: &CheckSpec, state: &mut CheckState, reason: Reason) {
    let o = Outcome {
        reason,
        ..outcome(&mut Rng(7), spec)
    };
    state.record(o, UNIX_EPOCH);
    metrics.record_check(spec, state);
}

fn series_of(chunks: &[Bytes]) -> String {
    text(&chunks[0])
}

fn up_line(spec: &CheckSpec, up: u8) -> String {
    format!(
        "glitchtip_up{{check=\"{}\",target=\"{}\"}} {up}\n",
        spec.name, spec.target
    )
}

#[tokio::test(start_paused = true)]
async fn a_scrape_sends_the_text_written_ahead_until_it_is_three_gaps_old() {
    let metrics = Metrics::for_exporter();
    let spec = &specs()[0];
    let mut state = CheckState::default();
    record(&metrics, spec, &mut state, Reason::None);
    let first = metrics.render_chunks_ahead();
    assert!(series_of(&first).contains(&up_line(spec, 1)));
    assert_eq!(metrics.writes(), 1, "no text yet: the scrape writes one");

    // A result after it: the ready text goes out, one result behind, without a write.
    tokio::time::advance(METRICS_WRITE_GAP * 3 - Duration::from_millis(1)).await;
    record(&metrics, spec, &mut state, Reason::Status);
    let ahead = metrics.render_chunks_ahead();
    assert_eq!(
        ahead[0].as_ptr(),
        first[0].as_ptr(),
        "the same text, shared"
    );
    assert_eq!(metrics.writes(), 1);
    // The exact text shows it.
    assert!(series_of(&metrics.render_chunks()).contains(&up_line(spec, 0)));
    assert_eq!(metrics.writes(), 2);

    // Three gaps after the last write, with a result newer than it: the background writer
    // fell behind, so the scrape writes.
    record(&metrics, spec, &mut state, Reason::None);
    tokio::time::advance(METRICS_WRITE_GAP * 3).await;
    assert!(series_of(&metrics.render_chunks_ahead()).contains(&up_line(spec, 1)));
    assert_eq!(metrics.writes(), 3);
    // Nothing changed since: shared, whatever its age.
    tokio::time::advance(METRICS_WRITE_GAP * 100).await;
    metrics.render_chunks_ahead();
    assert_eq!(metrics.writes(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_change_that_is_no_probe_result_is_shown_at_the_next_scrape() {
    let metrics = Metrics::for_exporter();
    let specs = specs();
    let mut state = CheckState::default();
    record(&metrics, &specs[0], &mut state, Reason::None);
    record(&metrics, &specs[1], &mut state, Reason::None);
    metrics.set_version(&specs[0].target, None, "4.2.10");
    metrics.render_chunks_ahead();
    let gone = format!("target=\"{}\"", specs[1].target);

    // A reload removes a check and a version, and records its own result.
    metrics.remove_check(&specs[1].target, &specs[1].name);
    let text = series_of(&metrics.render_chunks_ahead());
    assert!(
        !text.contains(&format!("check=\"{}\",{gone}", specs[1].name)),
        "{text}"
    );
    metrics.remove_version(&specs[0].target, "4.2.10");
    assert!(!series_of(&metrics.render_chunks_ahead()).contains("4.2.10"));
    metrics.config_loaded(false, 0.0);
    assert!(
        series_of(&metrics.render_chunks_ahead())
            .contains("glitchtip_exporter_config_last_reload_successful 0\n")
    );
    assert_eq!(metrics.writes(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_background_writer_makes_one_text_of_the_changes_of_a_gap() {
    let metrics = Arc::new(Metrics::for_exporter());
    let spec = &specs()[0];
    let mut state = CheckState::default();
    let writer = tokio::spawn(Metrics::write_ahead(metrics.clone()));
    // Let it reach its wait.
    tokio::task::yield_now().await;
    for i in 0..50 {
        let reason = if i % 2 == 0 {
            Reason::Status
        } else {
            Reason::None
        };
        record(&metrics, spec, &mut state, reason);
        tokio::time::advance(METRICS_WRITE_GAP / 100).await;
    }
    assert_eq!(metrics.writes(), 0, "nothing written within the first gap");
    // The gap ends; the write runs on a blocking thread, which paused time does not wait
    // for: poll until it is done.
    tokio::time::advance(METRICS_WRITE_GAP).await;
    for _ in 0..1000 {
        if metrics.writes() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(metrics.writes(), 1, "fifty changes, one write");
    // The scrape sends that text: the last result (up) without a write of its own.
    assert!(series_of(&metrics.render_chunks_ahead()).contains(&up_line(spec, 1)));
    assert_eq!(metrics.writes(), 1);
    // With nothing new, the writer stays idle however long.
    tokio::time::advance(METRICS_WRITE_GAP * 10).await;
    tokio::task::yield_now().await;
    assert_eq!(metrics.writes(), 1);
    writer.abort();
}

#[tokio::test]
async fn the_runtime_task_count_follows_spawned_tasks() {
    let metrics = Metrics::for_exporter();
    let tasks = |metrics: &Metrics| -> i64 {
        let text = String::from_utf8(metrics.render()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("glitchtip_exporter_tasks "))
            .expect("the task gauge is rendered")
            .parse()
            .unwrap()
    };
    let before = tasks(&metrics);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let parked = tokio::spawn(async move {
        let _ = rx.await;
    });
    assert_eq!(tasks(&metrics), before + 1);
    tx.send(()).unwrap();
    parked.await.unwrap();
    assert_eq!(tasks(&metrics), before);
}
