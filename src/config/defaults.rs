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
/// is `10 + 2×5 + 3 + 15 (scrape) + 15 (evaluation) = 53 s`, inside the 60 s budget.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// `timeout`: well under the ~30 s a GlitchTip with PostgreSQL down takes to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// `retry_interval`: the one quick re-probe after a first failure.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// `max_body_bytes`: 1 MiB.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// `max_redirects`, when `follow_redirects = true`.
pub const MAX_REDIRECTS: u32 = 10;
/// `server.shutdown_timeout`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
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
