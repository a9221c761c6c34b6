//! Every default, written once. `exporter.toml` at the repository root shows each of them;
//! a test keeps the two in step.

use std::time::Duration;

use super::raw::{RawCheck, RawJson, RawStatus};

/// `server.listen`: outside the fully allocated 9100–9999 exporter range of the Prometheus
/// wiki, and clear of the well-known ports (9090, 9093, 9100, 9115, …).
pub const LISTEN: &str = "0.0.0.0:10099";
/// The default TCP port, for the README and `--help`.
pub const PORT: u16 = 10099;
/// `interval`: with the timeout and retry below, the worst case from outage to firing alert
/// is `10 + 2×5 + 3 + 1 (text written ahead) + 15 (scrape) + 15 (evaluation) = 54 s`, inside
/// the 60 s budget.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// `timeout`: well under the ~30 s a GlitchTip with PostgreSQL down takes to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// `retry_interval`: the one quick re-probe after a first failure.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// `max_body_bytes`: 1 MiB.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// `max_redirects`, when `follow_redirects = true`.
pub const MAX_REDIRECTS: u32 = 10;

/// Whether a followed redirect may go from `https://` to `http://`.
pub const ALLOW_HTTPS_TO_HTTP_REDIRECT: bool = false;
/// How long a reload may take to read and validate the config before it is given up
/// (the config in force stays). Reading is bounded and never blocks on a FIFO; this is the
/// last guard, against a stalled file system.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
/// An inclusive range of durations that a key accepts, and how a message writes it.
#[derive(Debug, Clone, Copy)]
pub struct DurationRange {
    /// The shortest accepted.
    pub min: Duration,
    /// The longest accepted.
    pub max: Duration,
    /// `from … to …`, as messages show it.
    pub text: &'static str,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// `interval`, `timeout` and `retry_interval` of a check, and the timing of the canary and
/// the queue reader: below 100 ms a probe loop only burns CPU; above a day a check watches
/// nothing worth alerting on, and far-future times overflow (issue #18).
pub const TIMING_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(100),
    max: DAY,
    text: "from 100ms to 1day",
};
/// `heartbeats.<name>.interval`: yearly jobs included.
pub const HEARTBEAT_INTERVAL_RANGE: DurationRange = DurationRange {
    min: Duration::from_secs(1),
    max: Duration::from_secs(366 * 24 * 3600),
    text: "from 1s to 366days",
};
/// `heartbeats.<name>.grace`.
pub const HEARTBEAT_GRACE_RANGE: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: Duration::from_secs(366 * 24 * 3600),
    text: "from 0s to 366days",
};
/// `server.shutdown_timeout`.
pub const SHUTDOWN_TIMEOUT_RANGE: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: Duration::from_secs(3600),
    text: "from 0s to 1h",
};
/// The largest `max_body_bytes`: 64 MiB, read into memory per probe.
pub const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;
/// The largest `max_redirects`.
pub const MAX_REDIRECTS_LIMIT: u32 = 20;
/// `server.shutdown_timeout`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// `server.header_read_timeout`: a client gets this long, from its connection's start or
/// the end of the previous answer, to send a complete request head. Prometheus sends its
/// request at once; a silent or trickling client is closed. Also the keep-alive idle
/// deadline: hyper starts the same timer when it waits for the next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// `server.max_header_bytes`: the request line and headers of every endpoint here fit in a
/// fraction of this (a heartbeat's message is its body, which is read apart).
pub const MAX_HEADER_BYTES: u64 = 8 * 1024;
/// `server.max_concurrent_probes`: each `/probe` runs a target's checks at once (4 or 5
/// outbound connections with the default checks). 64 of them, at most 320 sockets, fit with
/// the inbound cap (a quarter) even under an open-file limit of 1024 that cannot be raised.
pub const MAX_CONCURRENT_PROBES: u64 = 64;
/// `server.max_connections` when not set: this fraction of the open-file limit, so that
/// at least three quarters of the descriptors stay for probes, the queue reader and files.
pub const CONNECTIONS_SHARE_OF_FD_LIMIT: u64 = 4;
/// `server.max_connections` when not set: never more than this, whatever the fd limit
/// (each connection may hold up to `max_header_bytes` of buffer and a task).
pub const MAX_CONNECTIONS_CEILING: u64 = 1024;
/// Connections accepted beyond `server.max_connections`, which may only ask for
/// `/metrics`, `/-/healthy` and `/-/ready`: a flood that fills the general pool does not
/// blind Prometheus or the orchestrator's health checks.
pub const RESERVE_CONNECTIONS: usize = 16;
/// Header deadline of a reserve connection: a scraper sends its request at once, so a
/// silent client gives its reserve slot back quickly.
pub const RESERVE_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Seconds that Prometheus may take to scrape and then evaluate (15 s + 15 s with the
/// shipped example config), for the 60 s budget warning.
pub const SCRAPE_AND_EVALUATION: Duration = Duration::from_secs(30);
/// The budget from outage to firing alert.
pub const ALERT_BUDGET: Duration = Duration::from_secs(60);
/// Safety margin subtracted from `X-Prometheus-Scrape-Timeout-Seconds`.
pub const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);
/// Longest label value taken from a server's answer (e.g. the GlitchTip version).
pub const MAX_LABEL_VALUE_CHARS: usize = 64;
/// `heartbeats.<name>.grace`: the common "every 5 minutes, grace 2 minutes" set-up.
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(120);
/// `heartbeats.<name>.timezone` of a cron `schedule`.
pub const HEARTBEAT_TIMEZONE: &str = "UTC";
/// `server.state_file`, relative to the working directory (not to the config file, whose
/// folder is often read-only). Read and written only when heartbeats are configured.
pub const STATE_FILE: &str = "glitchtip-exporter-state.json";
/// `targets.<name>.canary.interval`: one synthetic event every 30 s. With the timeout
/// below, a stalled worker fires the ingest alert (2 consecutive canaries not visible)
/// within 2 minutes. Worst case, the worker stalls just after a canary's event became
/// visible (≈ 2 s after that canary started at t = 0): the next canary starts at 30 s and
/// is known not visible at 30 + 25 = 55 s; the one after starts at 55 + (30 − 25) = 60 s
/// (see [`canary_retry_interval`]) and fails at 85 s; scrape (15 s) and rule evaluation
/// (15 s) make the alert fire by 115 s, 113 s after the stall began.
pub const CANARY_INTERVAL: Duration = Duration::from_secs(30);
/// `targets.<name>.canary.timeout`: a healthy GlitchTip shows an event through the API
/// within ~2 s (1.6–2.6 s observed), ~19 s right after a PostgreSQL restart; 25 s keeps
/// both visible (the last poll starts at the latest 0.5 s before the end), so a healthy
/// instance never fails a canary, let alone two in a row.
pub const CANARY_TIMEOUT: Duration = Duration::from_secs(25);
/// `targets.<name>.queue.interval`: Redis/Valkey or PostgreSQL is read every 15 s (a few
/// read-only commands or one batch of queries). A scheduler whose heartbeat task is over
/// its limit ([`QUEUE_SCHEDULER_TASKS`]) is seen within that limit + 15 s, and alerts by
/// 30 + 15 + 30 (scrape + evaluation) = 75 s after it stopped.
pub const QUEUE_INTERVAL: Duration = Duration::from_secs(15);
/// `targets.<name>.queue.timeout`: connecting, authenticating and reading.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// The key prefixes of django-vtasks (GlitchTip 6.x) tried in order when `prefix` is not
/// set: `{vt}` (library 2.x on), then `vt` (early 6.0.x).
pub const QUEUE_PREFIXES: [&str; 2] = ["{vt}", "vt"];
/// `targets.<name>.queue.workers` with Redis/Valkey: only django-vtasks 3.x on writes
/// liveness keys, so a count of 0 elsewhere would be a lie.
pub const QUEUE_WORKERS: bool = false;
/// `targets.<name>.queue.workers` with PostgreSQL: the database backend always writes its
/// `worker_alive:*` rows.
pub const QUEUE_WORKERS_DATABASE: bool = true;
/// `targets.<name>.queue.scheduler_tasks`: GlitchTip 6's periodic tasks with a short
/// period, each with the longest age its last run may reach while the scheduler lives.
/// `uptime-dispatch-checks` runs every second: 30 s late is a dead scheduler, and the
/// alert fires by 30 + 15 (read) + 15 (scrape) + 15 (evaluation) = 75 s after the death.
/// `send-alert-notifications` runs every minute (it counts where uptime checks are off).
/// Daily tasks (`perform-maintenance`, …) are no heartbeat and are not listed.
pub const QUEUE_SCHEDULER_TASKS: [(&str, Duration); 2] = [
    ("send-alert-notifications", Duration::from_secs(150)),
    ("uptime-dispatch-checks", Duration::from_secs(30)),
];
/// The longest reply the queue reader takes from Redis/Valkey or PostgreSQL, per command
/// (Redis) or per read (PostgreSQL): a huge value or an endless reply fails the read with
/// `reply_too_large` once this much is buffered.
pub const QUEUE_MAX_REPLY_BYTES: usize = 1024 * 1024;

/// The delay of the canary's one quick re-run after a first failure: `interval − timeout`
/// (at least a tenth of the interval). A canary that failed slowly (not visible: it took the whole timeout) is
/// followed exactly one interval after it started, so the second failure comes no later
/// than with the plain interval; one that failed fast (rejected, throttled, unreachable) is
/// re-run after 5 s instead of 3 s, and a throttled one sends nothing before `Retry-After`.
/// Never more than one extra canary per outage: the retry applies after the first failure
/// only.
pub fn canary_retry_interval(interval: Duration, timeout: Duration) -> Duration {
    interval.saturating_sub(timeout).max(interval / 10)
}

/// The checks every target gets unless `default_checks = false`, in the README's order.
/// Each can be overridden field by field or disabled with `enabled = false`.
pub fn checks() -> Vec<(&'static str, RawCheck)> {
    let check = |path: &str, status: i64| RawCheck {
        path: Some(path.to_owned()),
        expect_status: Some(vec![RawStatus::Code(status)]),
        ..RawCheck::default()
    };
    vec![
        // The web process answers. Stays 200 with PostgreSQL or Redis down.
        (
            "health",
            RawCheck {
                keyword: Some("ok".to_owned()),
                ..check("/_health/", 200)
            },
        ),
        // The only public endpoint that fails when PostgreSQL is down; also the version.
        (
            "database",
            RawCheck {
                json: Some(RawJson {
                    path: "version".to_owned(),
                    equals: None,
                }),
                version_field: Some("version".to_owned()),
                ..check("/api/settings/", 200)
            },
        ),
        // Routing and the auth middleware: a 401 means alive.
        ("api", check("/api/0/organizations/", 401)),
        // Reverse proxy and the web app.
        (
            "dashboard",
            RawCheck {
                keyword: Some("GlitchTip".to_owned()),
                ..check("/", 200)
            },
        ),
    ]
}

/// Interval mode: while results keep changing, the `/metrics` text is written again in the
/// background at most once per this gap (or 50 times the last write's duration, when that
/// is longer), so that a scrape sends a ready text instead of writing one.
pub const METRICS_WRITE_GAP: Duration = Duration::from_secs(1);
/// Interval mode: a scrape writes the text itself when the ready one is this many write
/// gaps behind the newest result (the background writer fell behind).
pub const METRICS_MAX_STALE_GAPS: u32 = 3;
