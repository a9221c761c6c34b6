//! GlitchTip's queues read from a real Redis: Debian's `redis-server` (which
//! `scripts/test-all.sh` installs), started by each test on 127.0.0.1 with a port chosen at
//! run time, no persistence, killed when the test ends.
//!
//! The exporter connects as an ACL user allowed only the read commands it needs
//! (`PING EXISTS SCAN LLEN GET`, read-only key access), and the tests check that every key
//! is unchanged afterwards (type, `DUMP`, TTL), that the ACL log holds no denied attempt,
//! and that the server ran no other command than those.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use glitchtip_exporter::clock::ManualClock;
use redis::aio::MultiplexedConnection;

use crate::helpers::{CLOCK_START, Samples, TEST_HOST, TestExporter, deps, start};

pub(crate) const ADMIN_PASSWORD: &str = "admin-pw-5d1c";
pub(crate) const EXPORTER_USER: &str = "exporter";
pub(crate) const EXPORTER_PASSWORD: &str = "exporter-pw-9f3e";
/// What the README's ACL line allows: the read commands only, on read-only keys.
pub(crate) const EXPORTER_ACL: &[&str] = &[
    "on",
    ">exporter-pw-9f3e",
    "resetkeys",
    "%R~*",
    "resetchannels",
    "-@all",
    "+ping",
    "+exists",
    "+scan",
    "+llen",
    "+get",
];
/// Commands the exporter may cause on the server (the admin's `info` included).
const ALLOWED_COMMANDS: &[&str] = &["auth", "ping", "exists", "scan", "llen", "get", "info"];

/// A redis-server child process, killed on drop.
pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    /// Starts a password-protected server and waits until the admin can connect.
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--requirepass", ADMIN_PASSWORD])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test-all.sh installs it)");
        let redis = Self {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(1), redis.try_admin()).await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {port} did not come up");
    }

    async fn try_admin(&self) -> redis::RedisResult<MultiplexedConnection> {
        let client = redis::Client::open(format!(
            "redis://:{ADMIN_PASSWORD}@127.0.0.1:{}/0",
            self.port
        ))?;
        client.get_multiplexed_async_connection().await
    }

    async fn admin(&self) -> MultiplexedConnection {
        self.try_admin().await.unwrap()
    }

    /// Creates the exporter's ACL user with `acl` (after a `reset`).
    pub(crate) async fn acl_user(&self, acl: &[&str]) {
        let mut c = self.admin().await;
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(EXPORTER_USER).arg("reset");
        for rule in acl {
            cmd.arg(*rule);
        }
        cmd.query_async::<()>(&mut c).await.unwrap();
    }

    pub(crate) async fn run(&self, args: &[&str]) {
        let mut c = self.admin().await;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async::<redis::Value>(&mut c).await.unwrap();
    }

    /// Every key: its type, `DUMP` and whether it has a TTL.
    async fn snapshot(&self) -> BTreeMap<String, (String, Vec<u8>, bool)> {
        let mut c = self.admin().await;
        let mut keys = BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut out = BTreeMap::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            out.insert(key, (kind, dump, ttl > 0));
        }
        out
    }

    /// `INFO commandstats` as command → calls.
    async fn command_calls(&self) -> BTreeMap<String, u64> {
        let mut c = self.admin().await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .unwrap();
        info.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    async fn acl_log_len(&self) -> usize {
        let mut c = self.admin().await;
        let log: Vec<redis::Value> = redis::cmd("ACL")
            .arg("LOG")
            .query_async(&mut c)
            .await
            .unwrap();
        log.len()
    }
}

/// GlitchTip 6.x keys under `prefix`: queues, scheduler, two live workers (TTL), and
/// 2 500 unrelated cache keys so that `SCAN` needs several round trips.
async fn load_vtasks(redis: &Redis, prefix: &str, uptime_age: f64) {
    let q = |name: &str| format!("{prefix}:q:{name}");
    redis.run(&["RPUSH", &q("default"), "t1", "t2", "t3"]).await;
    redis.run(&["RPUSH", &q("ingest"), "e1", "e2"]).await;
    redis.run(&["RPUSH", &q("failed"), "f1"]).await;
    let last_run = |task: &str| format!("{prefix}:scheduler:vtasks_last_run:{task}");
    let uptime = format!("{}", CLOCK_START as f64 - uptime_age);
    let alerts = format!("{}", CLOCK_START as f64 - 30.25);
    redis
        .run(&["SET", &last_run("uptime-dispatch-checks"), &uptime])
        .await;
    redis
        .run(&["SET", &last_run("send-alert-notifications"), &alerts])
        .await;
    for worker in ["web-1-101", "worker-2-202"] {
        redis
            .run(&["SET", &format!("{prefix}:alive:{worker}"), "1", "EX", "600"])
            .await;
    }
    let mut mset = vec!["MSET".to_owned()];
    for i in 0..2500 {
        mset.push(format!(":1:django.cache.{i}"));
        mset.push("x".to_owned());
    }
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    redis.run(&args).await;
}

/// Writes the password file and a config with only a queue table.
pub(crate) fn config(
    dir: &tempfile::TempDir,
    url: &str,
    password: Option<&str>,
    extra: &str,
) -> String {
    let password_line = match password {
        Some(p) => {
            let file = dir.path().join("redis-password");
            std::fs::write(&file, format!("{p}\n")).unwrap();
            format!("password = {{ file = \"{}\" }}\n", file.display())
        }
        None => String::new(),
    };
    let timing = if extra.contains("interval =") {
        ""
    } else {
        "interval = \"100ms\"\ntimeout = \"100ms\"\n"
    };
    format!(
        r#"
[targets.stub]
url = "http://127.0.0.1:9"
default_checks = false
[targets.stub.checks.x]
path = "/x"
interval = "1h"
timeout = "1s"

[targets.stub.queue]
url = "{url}"
{timing}{password_line}{extra}
"#
    )
}

fn exporter_url(redis: &Redis) -> String {
    format!("redis://{EXPORTER_USER}@127.0.0.1:{}/0", redis.port)
}

pub(crate) async fn start_reader(
    dir: &tempfile::TempDir,
    url: &str,
    password: Option<&str>,
    extra: &str,
) -> TestExporter {
    start_reader_with_clock(dir, url, password, extra).await.0
}

/// [`start_reader`], and the exporter's manual clock.
pub(crate) async fn start_reader_with_clock(
    dir: &tempfile::TempDir,
    url: &str,
    password: Option<&str>,
    extra: &str,
) -> (TestExporter, Arc<ManualClock>) {
    let (deps, clock) = deps();
    (start(&config(dir, url, password, extra), deps).await, clock)
}

/// Polls `/metrics` until `cond` holds (at most 15 s).
pub(crate) async fn wait_for(
    exporter: &TestExporter,
    what: &str,
    cond: impl Fn(&Samples) -> bool,
) -> Samples {
    exporter.wait_for(what, &["queue", "worker"], cond).await
}

pub(crate) fn up(s: &Samples) -> Option<f64> {
    s.find("glitchtip_queue_up", &[("target", "stub")])
        .first()
        .map(|(_, v)| *v)
}

pub(crate) fn length(s: &Samples, queue: &str) -> f64 {
    s.get(
        "glitchtip_queue_length",
        &[("target", "stub"), ("queue", queue)],
    )
}

/// `glitchtip_queue_scheduler_up` and its reason, if exported.
pub(crate) fn scheduler(s: &Samples) -> Option<(f64, String)> {
    let up = s
        .find("glitchtip_queue_scheduler_up", &[("target", "stub")])
        .first()
        .map(|(_, v)| *v)?;
    let reasons = s.find(
        "glitchtip_queue_scheduler_failure_reason",
        &[("target", "stub")],
    );
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    Some((up, reasons[0].0["reason"].clone()))
}

pub(crate) fn queue_reason(s: &Samples) -> String {
    let found = s.find("glitchtip_queue_failure_reason", &[("target", "stub")]);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].0["reason"].clone()
}

#[tokio::test]
async fn vtasks_layout_read_by_a_read_only_acl_user_leaves_every_key_unchanged() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 1.5).await;
    let before = redis.snapshot().await;
    let calls_before = redis.command_calls().await;

    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(
        &dir,
        &exporter_url(&redis),
        Some(EXPORTER_PASSWORD),
        "workers = true\n",
    )
    .await;
    let s = wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    assert_eq!(queue_reason(&s), "none");
    assert_eq!(length(&s, "default"), 3.0);
    assert_eq!(length(&s, "ingest"), 2.0);
    assert_eq!(length(&s, "failed"), 1.0);
    let age = |task| {
        s.get(
            "glitchtip_scheduler_last_run_age_seconds",
            &[("target", "stub"), ("task", task)],
        )
    };
    assert!((age("uptime-dispatch-checks") - 1.5).abs() < 1e-6);
    assert!((age("send-alert-notifications") - 30.25).abs() < 1e-6);
    assert_eq!(
        s.find("glitchtip_scheduler_last_run_age_seconds", &[])
            .len(),
        2
    );
    assert_eq!(s.get("glitchtip_workers", &[("target", "stub")]), 2.0);
    assert_eq!(
        s.get(
            "glitchtip_queue_layout_info",
            &[("target", "stub"), ("layout", "vtasks"), ("prefix", "{vt}")]
        ),
        1.0
    );
    // Three complete reads (3 LLEN each), then stop reading before looking at the server.
    for _ in 0..600 {
        if redis
            .command_calls()
            .await
            .get("llen")
            .copied()
            .unwrap_or(0)
            >= 9
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        redis
            .command_calls()
            .await
            .get("llen")
            .copied()
            .unwrap_or(0)
            >= 9
    );
    exporter.stop().await;

    let calls_after = redis.command_calls().await;
    let used: Vec<&String> = calls_after
        .iter()
        .filter(|(name, calls)| calls_before.get(*name) != Some(calls))
        .map(|(name, _)| name)
        .collect();
    assert!(
        used.iter()
            .all(|name| ALLOWED_COMMANDS.contains(&name.as_str())),
        "commands run: {used:?}"
    );
    assert!(!calls_after.contains_key("keys"));
    assert_eq!(redis.acl_log_len().await, 0, "a command was denied");
    assert_eq!(redis.snapshot().await, before, "a key changed");
}

#[tokio::test]
async fn growing_backlog_and_stalled_scheduler_are_seen() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 300.0).await;
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, &exporter_url(&redis), Some(EXPORTER_PASSWORD), "").await;
    let s = wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    assert_eq!(
        s.get(
            "glitchtip_scheduler_last_run_age_seconds",
            &[("target", "stub"), ("task", "uptime-dispatch-checks")]
        ),
        300.0
    );
    // Not configured: no worker count, rather than a 0 that would mean "none alive".
    assert!(!s.has("glitchtip_workers", &[]));
    for expected in [13.0, 23.0] {
        let items: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        let mut args = vec!["RPUSH", "{vt}:q:default"];
        args.extend(items.iter().map(String::as_str));
        redis.run(&args).await;
        wait_for(&exporter, "the backlog", |s| {
            up(s) == Some(1.0) && length(s, "default") == expected
        })
        .await;
    }
    exporter.stop().await;
}

#[tokio::test]
async fn celery_layout_is_detected_with_an_empty_queue() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    // Kombu's binding set exists while the queue list (empty) does not.
    redis
        .run(&[
            "SADD",
            "_kombu.binding.celery",
            "celery\x06\x16\x06\x16celery",
        ])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, &exporter_url(&redis), Some(EXPORTER_PASSWORD), "").await;
    let s = wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    assert_eq!(length(&s, "celery"), 0.0);
    assert_eq!(
        s.get(
            "glitchtip_queue_layout_info",
            &[("target", "stub"), ("layout", "celery"), ("prefix", "")]
        ),
        1.0
    );
    redis
        .run(&["RPUSH", "celery", "m1", "m2", "m3", "m4", "m5", "m6"])
        .await;
    let s = wait_for(&exporter, "6 queued", |s| {
        up(s) == Some(1.0) && length(s, "celery") == 6.0
    })
    .await;
    assert!(!s.has("glitchtip_scheduler_last_run_age_seconds", &[]));
    assert!(!s.has("glitchtip_workers", &[]));
    // 5.x has no scheduler key: no judgement rather than a guess.
    assert!(!s.has("glitchtip_queue_scheduler_up", &[]));
    exporter.stop().await;
}

#[tokio::test]
async fn early_prefix_vt_is_detected() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "vt", 2.0).await;
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, &exporter_url(&redis), Some(EXPORTER_PASSWORD), "").await;
    let s = wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    assert_eq!(
        s.get(
            "glitchtip_queue_layout_info",
            &[("target", "stub"), ("layout", "vtasks"), ("prefix", "vt")]
        ),
        1.0
    );
    assert_eq!(length(&s, "default"), 3.0);
    exporter.stop().await;
}

#[tokio::test]
async fn no_live_worker_is_zero_when_configured() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    redis
        .run(&[
            "SET",
            "{vt}:scheduler:vtasks_last_run:uptime-dispatch-checks",
            &CLOCK_START.to_string(),
        ])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(
        &dir,
        &exporter_url(&redis),
        Some(EXPORTER_PASSWORD),
        "layout = \"vtasks\"\nprefix = \"{vt}\"\nworkers = true\n",
    )
    .await;
    let s = wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    assert_eq!(s.get("glitchtip_workers", &[("target", "stub")]), 0.0);
    assert_eq!(length(&s, "default"), 0.0);
    exporter.stop().await;
}

/// Starts a reader against `url` and waits for a failed read; answers the samples.
async fn failing(url: &str, password: Option<&str>) -> Samples {
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, url, password, "").await;
    let s = wait_for(&exporter, "a failed read", |s| up(s) == Some(0.0)).await;
    // Nothing stale or guessed while the read fails.
    for name in [
        "glitchtip_queue_length",
        "glitchtip_scheduler_last_run_age_seconds",
        "glitchtip_workers",
        "glitchtip_queue_layout_info",
        "glitchtip_queue_scheduler_up",
    ] {
        assert!(!s.has(name, &[]), "{name} while the read fails");
    }
    let text = exporter.get("/metrics").await.body;
    for secret in [EXPORTER_PASSWORD, ADMIN_PASSWORD, "wrong-pw"] {
        assert!(!text.contains(secret));
    }
    exporter.stop().await;
    s
}

#[tokio::test]
async fn wrong_password_is_auth() {
    let (logs, _guard) = crate::canary::Capture::install();
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    let s = failing(&exporter_url(&redis), Some("wrong-pw")).await;
    assert_eq!(queue_reason(&s), "auth");
    let logs = logs.text();
    assert!(logs.contains("queue read failing"), "{logs}");
    assert!(
        !logs.contains("wrong-pw") && !logs.contains(EXPORTER_PASSWORD),
        "{logs}"
    );
}

#[tokio::test]
async fn missing_password_on_a_protected_server_is_auth() {
    let redis = Redis::start().await;
    let s = failing(&format!("redis://127.0.0.1:{}/0", redis.port), None).await;
    assert_eq!(queue_reason(&s), "auth");
}

#[tokio::test]
async fn a_user_not_allowed_to_scan_is_denied() {
    let redis = Redis::start().await;
    let without_scan: Vec<&str> = EXPORTER_ACL
        .iter()
        .copied()
        .filter(|r| *r != "+scan")
        .collect();
    redis.acl_user(&without_scan).await;
    load_vtasks(&redis, "{vt}", 1.0).await;
    let s = failing(&exporter_url(&redis), Some(EXPORTER_PASSWORD)).await;
    assert_eq!(queue_reason(&s), "denied");
}

#[tokio::test]
async fn unreachable_redis_is_connect() {
    let s = failing(&format!("redis://127.0.0.1:{}/0", free_port()), None).await;
    assert_eq!(queue_reason(&s), "connect");
}

#[tokio::test]
async fn a_redis_without_glitchtip_keys_is_an_unknown_layout() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    let s = failing(&exporter_url(&redis), Some(EXPORTER_PASSWORD)).await;
    assert_eq!(queue_reason(&s), "unknown_layout");
}

#[tokio::test]
async fn the_redis_host_is_resolved_by_the_injected_resolver() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://{EXPORTER_USER}@{TEST_HOST}:{}/0", redis.port);
    let exporter = start_reader(&dir, &url, Some(EXPORTER_PASSWORD), "").await;
    wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    exporter.stop().await;

    let url = format!("redis://{EXPORTER_USER}@unknown.test:{}/0", redis.port);
    let s = failing(&url, Some(EXPORTER_PASSWORD)).await;
    assert_eq!(queue_reason(&s), "dns");
}

#[tokio::test]
async fn reload_removes_the_queue_series() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, &exporter_url(&redis), Some(EXPORTER_PASSWORD), "").await;
    wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    let without = "[targets.stub]\nurl = \"http://127.0.0.1:9\"\ndefault_checks = false\n[targets.stub.checks.x]\npath = \"/x\"\ninterval = \"1h\"\ntimeout = \"1s\"\n";
    let r = exporter.reload(without).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = exporter.metrics().await;
    assert!(
        !s.names()
            .iter()
            .any(|n| n.starts_with("glitchtip_queue") || n == "glitchtip_workers"),
        "{:?}",
        s.names()
    );
    exporter.stop().await;
}

#[test]
fn a_password_in_the_url_is_refused_without_repeating_it() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "[targets.p]\nurl = \"http://127.0.0.1:9\"\n[targets.p.queue]\nurl = \"redis://user:hunter2@valkey:6379/0\"\n",
    )
    .unwrap();
    let source = glitchtip_exporter::config::ConfigSource {
        file: Some(file.path().to_owned()),
        env: Some(Default::default()),
        ..Default::default()
    };
    let err = source.load().unwrap_err().to_string();
    assert!(
        err.contains("targets.p.queue.url: a URL without a password"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn a_2_mib_last_run_value_is_reply_too_large_and_costs_no_more_than_the_cap() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 1.0).await;
    let huge = "7".repeat(2 * 1024 * 1024);
    redis
        .run(&[
            "SET",
            "{vt}:scheduler:vtasks_last_run:uptime-dispatch-checks",
            &huge,
        ])
        .await;
    let s = failing(&exporter_url(&redis), Some(EXPORTER_PASSWORD)).await;
    assert_eq!(queue_reason(&s), "reply_too_large");
}

#[tokio::test]
async fn more_live_worker_keys_than_counted_is_reply_too_large() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 1.0).await;
    // A keyspace where every key looks like a worker's: 20 000 of them.
    for chunk in 0..4 {
        let mut args = vec!["MSET".to_owned()];
        for i in 0..5000 {
            args.push(format!("{{vt}}:alive:host-{chunk}-{i}"));
            args.push("1".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        redis.run(&args).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(
        &dir,
        &exporter_url(&redis),
        Some(EXPORTER_PASSWORD),
        "workers = true\ninterval = \"2s\"\ntimeout = \"2s\"\n",
    )
    .await;
    let s = wait_for(&exporter, "a failed read", |s| up(s) == Some(0.0)).await;
    assert_eq!(queue_reason(&s), "reply_too_large");
    exporter.stop().await;
}

#[tokio::test]
async fn an_endless_reply_is_cut_at_the_cap() {
    // A server that answers PING, then sends an endless SCAN reply (one array announcing a
    // billion keys): the read fails after 1 MiB instead of buffering it all.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 || !String::from_utf8_lossy(&buf[..n]).contains("PING") {
                    return;
                }
                let _ = stream.write_all(b"+PONG\r\n").await;
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"*2\r\n$1\r\n0\r\n*1000000000\r\n").await;
                let chunk = b"$8\r\n{vt}:q:x\r\n".repeat(4096);
                while stream.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(
        &dir,
        &format!("redis://127.0.0.1:{port}/0"),
        None,
        "interval = \"5s\"\ntimeout = \"5s\"\n",
    )
    .await;
    let started = std::time::Instant::now();
    let s = wait_for(&exporter, "a failed read", |s| up(s) == Some(0.0)).await;
    let took = started.elapsed();
    assert_eq!(queue_reason(&s), "reply_too_large", "after {took:?}");
    exporter.stop().await;
    server.abort();
    // The server could push a little more than the cap into socket buffers, not more.
    let pushed = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pushed < 16 * 1024 * 1024, "{pushed} bytes sent");
}

/// Runs a vtasks reader with `workers = true` on `redis` and answers it with its clock.
async fn scheduler_reader(
    redis: &Redis,
    dir: &tempfile::TempDir,
) -> (TestExporter, Arc<ManualClock>) {
    start_reader_with_clock(
        dir,
        &exporter_url(redis),
        Some(EXPORTER_PASSWORD),
        "workers = true\n",
    )
    .await
}

#[tokio::test]
async fn scheduler_keys_gone_after_a_restart_without_persistence_while_workers_live_is_vanished() {
    // django-vtasks 3.1.0, Valkey restarted without persistence: the worker is back
    // ({vt}:alive:* fresh), the scheduler is dead, no last-run key is left.
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let (exporter, clock) = scheduler_reader(&redis, &dir).await;
    let s = wait_for(&exporter, "a read", |s| up(s) == Some(1.0)).await;
    assert_eq!(scheduler(&s), Some((1.0, "none".to_owned())));
    redis
        .run(&[
            "DEL",
            "{vt}:scheduler:vtasks_last_run:uptime-dispatch-checks",
            "{vt}:scheduler:vtasks_last_run:send-alert-notifications",
            "{vt}:q:default",
            "{vt}:q:ingest",
            "{vt}:q:failed",
        ])
        .await;
    let s = wait_for(&exporter, "the keys gone", |s| {
        up(s) == Some(1.0) && !s.has("glitchtip_scheduler_last_run_age_seconds", &[])
    })
    .await;
    // Only the workers' keys are left: still GlitchTip 6, two live workers.
    assert_eq!(s.get("glitchtip_workers", &[("target", "stub")]), 2.0);
    assert_eq!(scheduler(&s), Some((1.0, "none".to_owned())));
    clock.advance(Duration::from_secs(31));
    let s = wait_for(&exporter, "the scheduler down", |s| {
        scheduler(s).is_some_and(|(v, _)| v == 0.0)
    })
    .await;
    assert_eq!(scheduler(&s), Some((0.0, "vanished".to_owned())));
    assert_eq!(up(&s), Some(1.0));
    // A scheduler that writes again is up again.
    redis
        .run(&[
            "SET",
            "{vt}:scheduler:vtasks_last_run:uptime-dispatch-checks",
            &(CLOCK_START + 31).to_string(),
        ])
        .await;
    wait_for(&exporter, "the scheduler up", |s| {
        scheduler(s).is_some_and(|(v, _)| v == 1.0)
    })
    .await;
    exporter.stop().await;
}

#[tokio::test]
async fn only_worker_keys_from_the_start_is_missing_after_the_grace() {
    // The exporter started after the restart: it never saw a last-run key.
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    redis
        .run(&["SET", "{vt}:alive:worker-1-11", "1", "EX", "600"])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (exporter, clock) = scheduler_reader(&redis, &dir).await;
    let s = wait_for(&exporter, "a read", |s| up(s) == Some(1.0)).await;
    assert_eq!(
        s.get(
            "glitchtip_queue_layout_info",
            &[("target", "stub"), ("layout", "vtasks"), ("prefix", "{vt}")]
        ),
        1.0
    );
    assert_eq!(scheduler(&s), Some((1.0, "none".to_owned())));
    clock.advance(Duration::from_secs(31));
    let s = wait_for(&exporter, "the scheduler down", |s| {
        scheduler(s).is_some_and(|(v, _)| v == 0.0)
    })
    .await;
    assert_eq!(scheduler(&s), Some((0.0, "missing".to_owned())));
    exporter.stop().await;
}

#[tokio::test]
async fn a_stale_heartbeat_task_is_down_and_an_old_daily_task_is_not() {
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 1.0).await;
    redis
        .run(&[
            "SET",
            "{vt}:scheduler:vtasks_last_run:perform-maintenance",
            &(CLOCK_START - 80_000).to_string(),
        ])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (exporter, clock) = scheduler_reader(&redis, &dir).await;
    let s = wait_for(&exporter, "a read", |s| up(s) == Some(1.0)).await;
    assert_eq!(
        s.get(
            "glitchtip_scheduler_last_run_age_seconds",
            &[("target", "stub"), ("task", "perform-maintenance")]
        ),
        80_000.0
    );
    assert_eq!(scheduler(&s), Some((1.0, "none".to_owned())));
    // The keys stay (persistence), their age grows: stale once over 30 s.
    clock.advance(Duration::from_secs(30));
    let s = wait_for(&exporter, "the scheduler down", |s| {
        scheduler(s).is_some_and(|(v, _)| v == 0.0)
    })
    .await;
    assert_eq!(scheduler(&s), Some((0.0, "stale".to_owned())));
    exporter.stop().await;
}

#[test]
fn exporter_toml_shows_the_scheduler_tasks_default() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/exporter.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("# scheduler_tasks = "))
        .expect("scheduler_tasks is shown");
    for (task, age) in glitchtip_exporter::config::defaults::QUEUE_SCHEDULER_TASKS {
        let shown = format!("\"{task}\" = \"{}s\"", age.as_secs());
        assert!(line.contains(&shown), "{shown} in {line}");
    }
}

/// A stalled scheduler is logged once at warn, at the bundled alert's threshold, and its
/// return at info.
#[tokio::test]
async fn a_stale_scheduler_is_logged_once_and_its_return() {
    let (logs, _guard) = crate::helpers::Captured::install(tracing::Level::INFO);
    let redis = Redis::start().await;
    redis.acl_user(EXPORTER_ACL).await;
    load_vtasks(&redis, "{vt}", 300.0).await;
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, &exporter_url(&redis), Some(EXPORTER_PASSWORD), "").await;
    wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    // More reads of the same stale task: each new length is a new read.
    for expected in [4.0, 5.0] {
        redis.run(&["RPUSH", "{vt}:q:default", "more"]).await;
        wait_for(&exporter, "another read", |s| {
            length(s, "default") == expected
        })
        .await;
    }
    let fresh = format!("{}", CLOCK_START as f64 - 1.0);
    redis
        .run(&[
            "SET",
            "{vt}:scheduler:vtasks_last_run:uptime-dispatch-checks",
            &fresh,
        ])
        .await;
    wait_for(&exporter, "the scheduler back", |_| {
        logs.count("INFO", "scheduler running again") == 1
    })
    .await;
    assert_eq!(logs.count("WARN", "scheduler stale"), 1);
    assert_eq!(logs.count("WARN", "reason=\"stale\""), 1);
    exporter.stop().await;
}
