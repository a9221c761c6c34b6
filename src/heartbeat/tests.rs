//! Unit tests of heartbeat semantics, with a manual clock: schedules, grace, start/fail,
//! never-pinged heartbeats, and the state file through restarts and reloads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::{HeartbeatSpec, Token};
use super::schedule::{CronSchedule, Expect};
use super::store::HeartbeatState;
use super::*;
use crate::clock::ManualClock;
use crate::config::ConfigSource;

/// 2026-01-15 10:02:30 UTC.
const T0: u64 = 1_768_471_350;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap() * 1000
}

fn spec(expect: Expect, grace: u64) -> HeartbeatSpec {
    HeartbeatSpec {
        name: "worker".to_owned(),
        target: None,
        expect,
        grace: Duration::from_secs(grace),
        token: Token::new("t".to_owned()),
    }
}

fn every_5m_grace_2m() -> HeartbeatSpec {
    spec(Expect::Interval(Duration::from_secs(300)), 120)
}

fn fresh(first_configured: u64) -> HeartbeatState {
    HeartbeatState {
        first_configured_ms: ms(first_configured),
        ..HeartbeatState::default()
    }
}

// ---- semantics --------------------------------------------------------------------------

#[test]
fn never_pinged_counts_from_first_configured() {
    let spec = every_5m_grace_2m();
    let state = fresh(T0);
    let v = evaluate(&spec, &state, at(T0));
    assert!(v.up);
    assert_eq!(v.age_seconds, 0.0);
    assert_eq!(v.deadline, Some((T0 + 300 + 120) as f64));
    assert_eq!(v.last_seen, None, "absent, not 0, before the first ping");
    assert_eq!(v.last_duration, None);

    // Exactly at the deadline: still on time.
    let v = evaluate(&spec, &state, at(T0 + 420));
    assert!(v.up);
    assert_eq!(v.age_seconds, 420.0);
    // One millisecond later: missed.
    let v = evaluate(&spec, &state, at(T0 + 420) + Duration::from_millis(1));
    assert!(!v.up);
    assert_eq!(v.age_seconds, 420.001);
}

#[test]
fn success_ping_moves_the_interval_deadline() {
    let spec = every_5m_grace_2m();
    let mut state = fresh(T0);
    apply_ping(&mut state, PingKind::Success, ms(T0 + 100), None);
    let v = evaluate(&spec, &state, at(T0 + 400));
    assert!(v.up);
    assert_eq!(v.last_seen, Some((T0 + 100) as f64));
    assert_eq!(v.deadline, Some((T0 + 100 + 420) as f64));
    assert_eq!(v.age_seconds, 300.0);
    assert!(!evaluate(&spec, &state, at(T0 + 521)).up);
    // A late ping brings it back at once.
    apply_ping(&mut state, PingKind::Success, ms(T0 + 600), None);
    let v = evaluate(&spec, &state, at(T0 + 600));
    assert!(v.up);
    assert_eq!(v.age_seconds, 0.0);
    assert_eq!(v.deadline, Some((T0 + 600 + 420) as f64));
}

#[test]
fn cron_deadline_is_the_next_scheduled_time_plus_grace() {
    // Every five minutes: configured at 10:02:30, the 10:05 run is due by 10:07.
    let spec5 = spec(
        Expect::Cron(Box::new(CronSchedule::parse("*/5 * * * *", "UTC").unwrap())),
        120,
    );
    let mut state = fresh(T0);
    let v = evaluate(&spec5, &state, at(T0));
    assert_eq!(v.deadline, Some((T0 + 150 + 120) as f64));
    assert!(evaluate(&spec5, &state, at(T0 + 270)).up);
    assert!(!evaluate(&spec5, &state, at(T0 + 271)).up);
    // The 10:05 run pings at 10:05:40: the next one is 10:10, due by 10:12.
    apply_ping(&mut state, PingKind::Success, ms(T0 + 190), None);
    let v = evaluate(&spec5, &state, at(T0 + 300));
    assert!(v.up);
    assert_eq!(v.deadline, Some((T0 + 450 + 120) as f64));
}

#[test]
fn cron_deadline_follows_the_time_zone() {
    // Daily at 05:00 Berlin time (04:00 UTC in January), grace 10 minutes.
    let spec = spec(
        Expect::Cron(Box::new(
            CronSchedule::parse("0 5 * * *", "Europe/Berlin").unwrap(),
        )),
        600,
    );
    let state = fresh(T0);
    // 2026-01-16 04:00:00 UTC + 10 min.
    let jan_16_04_00 = 1_768_536_000;
    let v = evaluate(&spec, &state, at(T0));
    assert_eq!(v.deadline, Some((jan_16_04_00 + 600) as f64));
    assert!(evaluate(&spec, &state, at(jan_16_04_00 + 600)).up);
    assert!(!evaluate(&spec, &state, at(jan_16_04_00 + 601)).up);
    // Pinged at 05:01 Berlin: due again the next day at 05:00 Berlin + grace.
    let mut state = state;
    apply_ping(&mut state, PingKind::Success, ms(jan_16_04_00 + 60), None);
    let v = evaluate(&spec, &state, at(jan_16_04_00 + 60));
    assert_eq!(v.deadline, Some((jan_16_04_00 + 86_400 + 600) as f64));
}

#[test]
fn start_without_completion_within_grace_is_down() {
    let spec = every_5m_grace_2m();
    let mut state = fresh(T0);
    apply_ping(&mut state, PingKind::Success, ms(T0), None);
    apply_ping(&mut state, PingKind::Start, ms(T0 + 10), None);
    assert!(evaluate(&spec, &state, at(T0 + 130)).up, "within the grace");
    let v = evaluate(&spec, &state, at(T0 + 131));
    assert!(!v.up, "started 121 s ago, grace 120 s");
    assert_eq!(
        v.deadline,
        Some((T0 + 420) as f64),
        "a start moves no deadline"
    );
    assert_eq!(v.last_seen, Some(T0 as f64));

    // The success that completes it brings it back and measures the run.
    apply_ping(&mut state, PingKind::Success, ms(T0 + 200), None);
    let v = evaluate(&spec, &state, at(T0 + 200));
    assert!(v.up);
    assert_eq!(v.last_duration, Some(190.0));
    // A success without a start keeps the last duration.
    apply_ping(&mut state, PingKind::Success, ms(T0 + 300), None);
    assert_eq!(
        evaluate(&spec, &state, at(T0 + 300)).last_duration,
        Some(190.0)
    );
}

#[test]
fn start_then_success_within_grace_stays_up_throughout() {
    let spec = every_5m_grace_2m();
    let mut state = fresh(T0);
    apply_ping(&mut state, PingKind::Start, ms(T0 + 1), None);
    assert!(evaluate(&spec, &state, at(T0 + 60)).up);
    apply_ping(&mut state, PingKind::Success, ms(T0 + 61), None);
    let v = evaluate(&spec, &state, at(T0 + 61));
    assert!(v.up);
    assert_eq!(v.last_duration, Some(60.0));
    assert_eq!(v.last_seen, Some((T0 + 61) as f64));
}

#[test]
fn fail_is_down_until_the_next_success() {
    let spec = every_5m_grace_2m();
    let mut state = fresh(T0);
    apply_ping(&mut state, PingKind::Success, ms(T0), None);
    apply_ping(&mut state, PingKind::Start, ms(T0 + 5), None);
    apply_ping(
        &mut state,
        PingKind::Fail,
        ms(T0 + 6),
        Some("disk full".to_owned()),
    );
    let v = evaluate(&spec, &state, at(T0 + 7));
    assert!(!v.up, "a failure is down at once, well before the deadline");
    assert_eq!(
        v.last_seen,
        Some(T0 as f64),
        "a failure is not seen as success"
    );
    assert_eq!(state.last_message.as_deref(), Some("disk full"));
    // A new start does not clear the failure.
    apply_ping(&mut state, PingKind::Start, ms(T0 + 60), None);
    assert!(!evaluate(&spec, &state, at(T0 + 61)).up);
    // Success does.
    apply_ping(&mut state, PingKind::Success, ms(T0 + 70), None);
    let v = evaluate(&spec, &state, at(T0 + 70));
    assert!(v.up);
    assert_eq!(v.last_duration, Some(10.0));
    // The message stays until another ping brings one.
    assert_eq!(state.last_message.as_deref(), Some("disk full"));
}

#[test]
fn fail_clears_the_pending_start() {
    let spec = every_5m_grace_2m();
    let mut state = fresh(T0);
    apply_ping(&mut state, PingKind::Start, ms(T0), None);
    apply_ping(&mut state, PingKind::Fail, ms(T0 + 1), None);
    apply_ping(&mut state, PingKind::Success, ms(T0 + 2), None);
    let v = evaluate(&spec, &state, at(T0 + 100));
    assert!(v.up);
    assert_eq!(v.last_duration, None, "the failed run has no duration");
}

#[test]
fn clock_going_back_gives_age_zero() {
    let spec = every_5m_grace_2m();
    let mut state = fresh(T0);
    apply_ping(&mut state, PingKind::Success, ms(T0 + 100), None);
    let v = evaluate(&spec, &state, at(T0 + 50));
    assert_eq!(v.age_seconds, 0.0);
    assert!(v.up);
}

#[test]
fn messages_are_truncated_at_a_character_boundary() {
    assert_eq!(message(b""), None);
    assert_eq!(message(b"ok").as_deref(), Some("ok"));
    let long = "é".repeat(MAX_MESSAGE_BYTES); // two bytes each
    let kept = message(long.as_bytes()).unwrap();
    assert_eq!(kept.len(), MAX_MESSAGE_BYTES);
    assert!(kept.chars().all(|c| c == 'é'));
    // Cut inside a character: the lossy replacement is cut too, never past the cap.
    let mut odd = vec![b'a'];
    odd.extend("é".repeat(MAX_MESSAGE_BYTES).bytes());
    let kept = message(&odd).unwrap();
    assert!(kept.len() <= MAX_MESSAGE_BYTES);
}

#[test]
fn a_success_ping_that_could_not_be_saved_makes_a_late_heartbeat_unknown() {
    let spec = every_5m_grace_2m();
    let state = fresh(T0);
    // Late by what is saved (deadline T0 + 420), but a ping at T0 + 300 came and was lost.
    let v = assess(&spec, &state, Some(ms(T0 + 300)), at(T0 + 421));
    assert!(!v.up);
    assert!(v.unknown);
    assert_eq!(v.state(), "unknown");
    assert_eq!(v.deadline, Some((T0 + 420) as f64), "the saved deadline");
    // Once that ping is late too, the heartbeat is missed: the worker stopped as well.
    let v = assess(&spec, &state, Some(ms(T0 + 300)), at(T0 + 721));
    assert!(!v.unknown);
    assert_eq!(v.state(), "missed");
    // On time: up, whatever was lost.
    let v = assess(&spec, &state, Some(ms(T0 + 10)), at(T0 + 100));
    assert_eq!((v.up, v.unknown, v.state()), (true, false, "up"));
    // A lost ping older than the saved success says nothing.
    let mut pinged = fresh(T0);
    pinged.last_success_ms = Some(ms(T0 + 100));
    let v = assess(&spec, &pinged, Some(ms(T0 + 50)), at(T0 + 521));
    assert_eq!(v.state(), "missed");
}

/// Regression (issue #18): a deadline past year 9999 panicked the landing page, which
/// formats it as RFC 3339.
#[test]
fn times_past_year_9999_are_shown_as_its_last_second() {
    let late = 253_402_300_000_i64 * 1000; // 9999-12-31T23:46:40Z
    let mut state = fresh(T0);
    state.last_success_ms = Some(late);
    let hourly = spec(Expect::Interval(Duration::from_secs(3600)), 120);
    let v = evaluate(&hourly, &state, at(T0));
    assert_eq!(v.deadline, Some(LATEST_SHOWN));
    assert_eq!(v.last_seen, Some(253_402_300_000.0));
    assert!(v.up);
    let shown = UNIX_EPOCH + Duration::from_secs_f64(LATEST_SHOWN);
    assert_eq!(
        humantime::format_rfc3339_seconds(shown).to_string(),
        "9999-12-31T23:59:59Z"
    );
    // Far beyond any calendar: no deadline, no panic (chrono's conversion would panic).
    let cron = spec(
        Expect::Cron(Box::new(CronSchedule::parse("*/5 * * * *", "UTC").unwrap())),
        30,
    );
    for extreme in [i64::MAX, i64::MIN, late] {
        state.last_success_ms = Some(extreme);
        let v = evaluate(&cron, &state, at(T0));
        assert!(v.last_seen.is_some_and(|t| t <= LATEST_SHOWN));
        assert!(v.deadline.is_none_or(|t| t <= LATEST_SHOWN));
        let v = evaluate(&hourly, &state, at(T0));
        assert!(v.deadline.is_none_or(|t| t <= LATEST_SHOWN));
    }
}

// ---- the store, through restarts and reloads ---------------------------------------------

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        Self {
            dir,
            clock: Arc::new(ManualClock::at_unix(T0)),
        }
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// A config with `heartbeats` (TOML tables using `{token}` for the token source).
    fn config_with(&self, state_file: &Path, heartbeats: &str) -> crate::config::Config {
        let token = format!(
            "token = {{ file = \"{}\" }}",
            self.dir.path().join("token").display()
        );
        let toml = format!(
            "[server]\nstate_file = \"{}\"\n{}",
            state_file.display(),
            heartbeats.replace("{token}", &token)
        );
        let file = self.dir.path().join("exporter.toml");
        std::fs::write(&file, toml).unwrap();
        ConfigSource {
            file: Some(file),
            env: Some(HashMap::new()),
            ..ConfigSource::default()
        }
        .load()
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn config(&self, heartbeats: &str) -> crate::config::Config {
        self.config_with(&self.state_file(), heartbeats)
    }

    fn start(&self, config: &crate::config::Config) -> Arc<Heartbeats> {
        Heartbeats::new(config, self.clock.clone())
    }

    fn render(&self, heartbeats: &Heartbeats) -> String {
        String::from_utf8(heartbeats.render(self.clock.now())).unwrap()
    }
}

const WORKER: &str = "[heartbeats.worker]\ninterval = \"5m\"\n{token}\n";
const TWO: &str = "[heartbeats.worker]\ninterval = \"5m\"\n{token}\n[heartbeats.beat]\nschedule = \"*/5 * * * *\"\ntimezone = \"Europe/Berlin\"\ngrace = \"30s\"\n{token}\n";

/// The value of the one sample `series` (name with labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn config_defaults_and_validation() {
    let f = Fixture::new();
    let config = f.config(TWO);
    let names: Vec<&str> = config.heartbeats.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["beat", "worker"]);
    let worker = &config.heartbeats[1];
    assert_eq!(worker.grace, crate::config::defaults::HEARTBEAT_GRACE);
    assert_eq!(worker.grace, Duration::from_secs(120));
    assert!(matches!(worker.expect, Expect::Interval(d) if d == Duration::from_secs(300)));
    assert!(
        worker.token.matches(b"s3cret"),
        "one trailing newline is dropped"
    );
    assert!(
        config.targets.is_empty(),
        "heartbeats alone are a valid config"
    );
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "no secret in Debug"
    );

    let file = f.dir.path().join("default.toml");
    std::fs::write(&file, "[targets.a]\nurl = \"http://127.0.0.1:1\"\n").unwrap();
    let default = ConfigSource {
        file: Some(file),
        env: Some(HashMap::new()),
        ..ConfigSource::default()
    }
    .load()
    .unwrap();
    assert!(default.heartbeats.is_empty());
    assert_eq!(
        default.state_file,
        PathBuf::from(crate::config::defaults::STATE_FILE)
    );
}

#[test]
fn bad_heartbeat_configs_name_the_key() {
    let f = Fixture::new();
    let cases: &[(&str, &str)] = &[
        (
            "[heartbeats.w]\n{token}\n",
            "heartbeats.w: an `interval` such as \"5m\" or a cron `schedule` such as \"*/5 * * * *\"",
        ),
        (
            "[heartbeats.w]\ninterval = \"5m\"\nschedule = \"* * * * *\"\n{token}\n",
            "heartbeats.w: either `interval` or `schedule`, not both",
        ),
        (
            "[heartbeats.w]\ninterval = \"0s\"\n{token}\n",
            "heartbeats.w.interval: a duration above zero, such as \"5m\"",
        ),
        (
            "[heartbeats.w]\ninterval = \"5m\"\ntimezone = \"UTC\"\n{token}\n",
            "heartbeats.w.timezone: a time zone only with a cron `schedule`, not with `interval`",
        ),
        (
            "[heartbeats.w]\nschedule = \"* * * * *\"\ntimezone = \"Mars/Olympus\"\n{token}\n",
            "heartbeats.w.timezone: an IANA time zone name such as \"Europe/Berlin\" or \"UTC\", got \"Mars/Olympus\"",
        ),
        (
            "[heartbeats.w]\nschedule = \"0 0 31 2 *\"\n{token}\n",
            "heartbeats.w.schedule: a cron pattern that fires at some time, got \"0 0 31 2 *\"",
        ),
        (
            "[heartbeats.w]\ninterval = \"5m\"\n",
            "heartbeats.w.token: a token source, { file = \"/run/secrets/heartbeat-token\" } or { env = \"VAR\" }: every ping must carry the token",
        ),
        (
            "[heartbeats.w]\ninterval = \"5m\"\ntarget = \"prod\"\n{token}\n",
            "heartbeats.w.target: the name of a configured target (there are none), got \"prod\"",
        ),
        (
            "[heartbeats.Worker]\ninterval = \"5m\"\n{token}\n",
            "heartbeats.Worker: a name of at most 63 lowercase letters, digits, '_' and '-', starting with a letter or digit, without \"__\", got \"Worker\"",
        ),
    ];
    for (toml, expected) in cases {
        let token = format!(
            "token = {{ file = \"{}\" }}",
            f.dir.path().join("token").display()
        );
        let file = f.dir.path().join("bad.toml");
        std::fs::write(&file, toml.replace("{token}", &token)).unwrap();
        let err = ConfigSource {
            file: Some(file.clone()),
            env: Some(HashMap::new()),
            ..ConfigSource::default()
        }
        .load()
        .unwrap_err()
        .to_string();
        // The origin names the file, then (config::parse_errors::at_line) the key's line.
        let (origin, message) = err.split_once(": ").unwrap();
        assert!(
            origin.starts_with(&format!("config file {}", file.display())),
            "{err}"
        );
        assert_eq!(message, *expected);
    }
    // A bad pattern names the key and repeats the pattern.
    let file = f.dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[heartbeats.w]\nschedule = \"every 5 minutes\"\ntoken = { env = \"T\" }\n",
    )
    .unwrap();
    let err = ConfigSource {
        file: Some(file),
        env: Some(HashMap::new()),
        ..ConfigSource::default()
    }
    .load()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(": heartbeats.w.schedule: a cron pattern of five fields"),
        "{err}"
    );
    assert!(err.ends_with(", got \"every 5 minutes\""), "{err}");
}

#[tokio::test]
async fn no_heartbeats_touch_no_state_file() {
    let f = Fixture::new();
    let config = f.config("[targets.a]\nurl = \"http://127.0.0.1:1\"\n");
    let hb = f.start(&config);
    assert!(!f.state_file().exists());
    let text = f.render(&hb);
    assert!(!text.contains("glitchtip_heartbeat_up"), "{text}");
    assert_eq!(
        sample(&text, "glitchtip_exporter_state_write_errors_total"),
        Some(0.0)
    );
}

#[tokio::test]
async fn first_configured_time_survives_restarts_before_any_ping() {
    let f = Fixture::new();
    let config = f.config(WORKER);
    let hb = f.start(&config);
    assert!(f.state_file().exists(), "written at start-up");
    drop(hb);
    f.clock.advance(Duration::from_secs(1_000));
    let hb = f.start(&config);
    let text = f.render(&hb);
    assert_eq!(
        sample(
            &text,
            "glitchtip_heartbeat_age_seconds{heartbeat=\"worker\"}"
        ),
        Some(1_000.0)
    );
    assert_eq!(
        sample(&text, "glitchtip_heartbeat_up{heartbeat=\"worker\"}"),
        Some(0.0),
        "a restart does not reset the timer"
    );
    assert_eq!(
        sample(
            &text,
            "glitchtip_heartbeat_deadline_timestamp_seconds{heartbeat=\"worker\"}"
        ),
        Some((T0 + 420) as f64)
    );
    assert!(!text.contains("glitchtip_heartbeat_last_seen_timestamp_seconds{"));
}

#[tokio::test]
async fn saved_pings_survive_a_restart_exactly() {
    let f = Fixture::new();
    let config = f.config(TWO);
    let hb = f.start(&config);
    f.clock.advance(Duration::from_millis(30_250));
    hb.record("worker", PingKind::Start, None).await.unwrap();
    f.clock.advance(Duration::from_secs(12));
    hb.record("worker", PingKind::Success, Some("ok".to_owned()))
        .await
        .unwrap();
    hb.record("beat", PingKind::Fail, None).await.unwrap();
    let before = f.render(&hb);
    assert_eq!(
        sample(
            &before,
            "glitchtip_heartbeat_pings_total{heartbeat=\"worker\",kind=\"success\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &before,
            "glitchtip_heartbeat_pings_total{heartbeat=\"worker\",kind=\"start\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &before,
            "glitchtip_heartbeat_pings_total{heartbeat=\"worker\",kind=\"rejected\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &before,
            "glitchtip_heartbeat_last_duration_seconds{heartbeat=\"worker\"}"
        ),
        Some(12.0)
    );
    assert_eq!(
        sample(
            &before,
            "glitchtip_heartbeat_last_seen_timestamp_seconds{heartbeat=\"worker\"}"
        ),
        Some(T0 as f64 + 42.25)
    );
    assert_eq!(
        sample(&before, "glitchtip_heartbeat_up{heartbeat=\"beat\"}"),
        Some(0.0)
    );
    let journal = std::fs::read_to_string(store::journal_path(&f.state_file())).unwrap();
    assert!(journal.contains("\"last_message\":\"ok\""), "{journal}");
    assert_eq!(
        journal.lines().count(),
        3,
        "one line per saved ping: {journal}"
    );
    drop(hb);

    let again = f.start(&config);
    let after = f.render(&again);
    let gauges = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("glitchtip_heartbeat_") && !l.contains("_total"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(gauges(&before), gauges(&after));
    // The restart folded the journal into the snapshot.
    let file = std::fs::read_to_string(f.state_file()).unwrap();
    assert!(file.contains("\"last_message\": \"ok\""), "{file}");
    let journal = std::fs::read_to_string(store::journal_path(&f.state_file())).unwrap();
    assert_eq!(journal, "");
}

#[tokio::test]
async fn reload_drops_removed_heartbeats_and_keeps_the_others() {
    let f = Fixture::new();
    let hb = f.start(&f.config(TWO));
    f.clock.advance(Duration::from_secs(10));
    hb.record("beat", PingKind::Success, None).await.unwrap();

    // Remove beat.
    f.clock.advance(Duration::from_secs(10));
    hb.apply(&f.config(WORKER));
    let text = f.render(&hb);
    assert!(!text.contains("heartbeat=\"beat\""), "{text}");
    assert_eq!(
        sample(
            &text,
            "glitchtip_heartbeat_age_seconds{heartbeat=\"worker\"}"
        ),
        Some(20.0),
        "worker keeps its first-configured time"
    );
    // The file follows (written in the background: wait for one more snapshot).
    hb.compact().await;
    assert!(
        !std::fs::read_to_string(f.state_file())
            .unwrap()
            .contains("\"beat\"")
    );

    // Added again: it starts now, without its old pings.
    f.clock.advance(Duration::from_secs(5));
    hb.apply(&f.config(TWO));
    let text = f.render(&hb);
    assert_eq!(
        sample(&text, "glitchtip_heartbeat_age_seconds{heartbeat=\"beat\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "glitchtip_heartbeat_pings_total{heartbeat=\"beat\",kind=\"success\"}"
        ),
        Some(0.0)
    );
    assert!(!text.contains("glitchtip_heartbeat_last_seen_timestamp_seconds{heartbeat=\"beat\"}"));
}

#[tokio::test]
async fn unwritable_state_file_fails_the_ping_and_changes_nothing() {
    let f = Fixture::new();
    // Root ignores permissions: a path below a regular file cannot be written by anyone.
    let blocker = f.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let config = f.config_with(&blocker.join("state.json"), WORKER);
    let hb = f.start(&config);
    let before = f.render(&hb);
    assert_eq!(
        sample(&before, "glitchtip_exporter_state_write_errors_total"),
        Some(1.0),
        "the start-up write failed"
    );
    f.clock.advance(Duration::from_secs(1));
    let err = hb
        .record("worker", PingKind::Success, None)
        .await
        .unwrap_err();
    assert!(matches!(err, PingError::NotSaved), "{err}");
    f.clock.advance(Duration::from_secs(0));
    let after = f.render(&hb);
    assert_eq!(
        sample(&after, "glitchtip_exporter_state_write_errors_total"),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &after,
            "glitchtip_heartbeat_pings_total{heartbeat=\"worker\",kind=\"success\"}"
        ),
        Some(0.0)
    );
    assert!(!after.contains("glitchtip_heartbeat_last_seen_timestamp_seconds{"));
}

#[tokio::test]
async fn corrupt_state_file_is_moved_aside_and_starts_fresh() {
    let f = Fixture::new();
    std::fs::write(f.state_file(), "not json").unwrap();
    let hb = f.start(&f.config(WORKER));
    let aside = f.dir.path().join(format!("state.json.corrupt-{T0}"));
    assert_eq!(std::fs::read_to_string(&aside).unwrap(), "not json");
    let text = f.render(&hb);
    assert_eq!(
        sample(
            &text,
            "glitchtip_heartbeat_age_seconds{heartbeat=\"worker\"}"
        ),
        Some(0.0)
    );
    // A fresh, valid file replaced it.
    assert!(
        std::fs::read_to_string(f.state_file())
            .unwrap()
            .contains("\"worker\"")
    );
}

#[tokio::test]
async fn tokens_unknown_names_and_rejections() {
    let f = Fixture::new();
    let hb = f.start(&f.config(WORKER));
    assert_eq!(hb.authenticate("worker", &[b"s3cret"]), Auth::Accepted);
    assert_eq!(
        hb.authenticate("worker", &[b"nope", b"s3cret"]),
        Auth::Accepted
    );
    assert_eq!(hb.authenticate("worker", &[b"s3cre"]), Auth::Rejected);
    assert_eq!(hb.authenticate("worker", &[]), Auth::Rejected);
    assert_eq!(hb.authenticate("nope", &[b"s3cret"]), Auth::Unknown);
    let text = f.render(&hb);
    assert_eq!(
        sample(
            &text,
            "glitchtip_heartbeat_pings_total{heartbeat=\"worker\",kind=\"rejected\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "glitchtip_heartbeat_unknown_requests_total"),
        Some(1.0)
    );
    assert!(!text.contains("nope"));
}
