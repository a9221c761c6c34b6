//! The candidate endpoints the doctor probes, written as a config the real loader builds
//! into checks (so that TLS, proxies, timing and secret handling are the exporter's own),
//! and what each answer says about the instance.
//!
//! Every row is judged from the status and whether the body matched the probe's
//! expectation: the doctor never holds a body in hand, so it cannot print one (a
//! token-authenticated `GET /api/0/` echoes the token, which is why that one is never sent).

use std::fmt::Write as _;

use crate::checks::{Outcome, Reason};

/// The target name the probes run under in the internal config.
pub(super) const PROBE_TARGET: &str = "doctor";
/// The target of the token probes (another target: each target reads at most one version
/// field, and the token probe reads the organization slug through it).
pub(super) const AUTH_TARGET: &str = "auth";

/// One anonymous probe: a check of the internal config.
pub(super) struct Probe {
    /// Check name.
    pub name: &'static str,
    /// Path on the target.
    pub path: &'static str,
    /// The check's expectations (TOML lines).
    pub expect: &'static str,
}

/// The anonymous probes, in the order of the table.
pub(super) const PROBES: [Probe; 9] = [
    Probe {
        name: "health",
        path: "/_health/",
        expect: "expect_status = [200]\nregex = '\\Aok\\s*\\z'",
    },
    Probe {
        name: "settings",
        path: "/api/settings/",
        expect: "expect_status = [200]\njson = { path = \"version\" }\nversion_field = \"version\"",
    },
    Probe {
        name: "api_root",
        path: "/api/0/",
        expect: "expect_status = [200]\njson = { path = \"version\", equals = \"0\" }",
    },
    Probe {
        name: "organizations",
        path: "/api/0/organizations/",
        expect: "expect_status = [401]\njson = { path = \"detail\" }",
    },
    Probe {
        name: "root",
        path: "/",
        expect: "expect_status = [200]\nkeyword = \"GlitchTip\"",
    },
    Probe {
        name: "well_known",
        path: "/.well-known/healthz",
        expect: "expect_status = [404]\nkeyword = \"GlitchTip\"",
    },
    Probe {
        name: "internal_health",
        path: "/api/0/internal/health",
        expect: "expect_status = [200]\njson = { path = \"healthy\" }",
    },
    Probe {
        name: "internal_health_slash",
        path: "/api/0/internal/health/",
        expect: "expect_status = [200]\njson = { path = \"healthy\" }",
    },
    Probe {
        name: "metrics",
        path: "/metrics",
        expect: "expect_status = [200]\nregex = '(?m)^# (HELP|TYPE) [a-zA-Z_:]'",
    },
];

/// A string as a TOML basic string (JSON's escapes are TOML's).
pub(super) fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The `[defaults]` table: every probe's deadline is `timeout`.
pub(super) fn defaults_toml(timeout: std::time::Duration) -> String {
    let t = humantime::format_duration(timeout).to_string();
    format!(
        "[defaults]\ninterval = {0}\ntimeout = {0}\nretry_interval = {0}\n",
        quoted(&t)
    )
}

/// Where the probes go: the instance's URL and the CA file trusted besides the built-in
/// roots.
pub(super) struct Site<'a> {
    /// Base URL.
    pub url: &'a str,
    /// `--ca-file`, absolute.
    pub ca_file: Option<&'a str>,
}

impl Site<'_> {
    /// The head of target `name` of the internal config: URL, no default checks, trust.
    pub(super) fn target(&self, name: &str, url: &str) -> String {
        let mut text = format!(
            "[targets.{name}]\nurl = {}\ndefault_checks = false\n",
            quoted(url)
        );
        if let Some(ca) = self.ca_file {
            let _ = writeln!(text, "[targets.{name}.tls]\nca_file = {}", quoted(ca));
        }
        text
    }
}

/// The internal config of the anonymous probes (and the certificate check for https).
pub(super) fn probe_toml(site: &Site<'_>, https: bool) -> String {
    let mut text = site.target(PROBE_TARGET, site.url);
    for probe in &PROBES {
        let _ = writeln!(
            text,
            "[targets.{PROBE_TARGET}.checks.{}]\npath = {}\n{}",
            probe.name,
            quoted(probe.path),
            probe.expect
        );
    }
    if https {
        let _ = writeln!(text, "[targets.{PROBE_TARGET}.checks.tls]\nenabled = true");
    }
    text
}

/// The token probes: the organizations the token sees (reading the first slug), and, once
/// a slug is known, an issue search that needs `event:read` and, with a DSN file, the
/// canary.
pub(super) fn token_toml(
    site: &Site<'_>,
    token_file: &str,
    org: Option<&str>,
    canary_dsn: Option<&str>,
) -> String {
    let mut text = site.target(AUTH_TARGET, site.url);
    let _ = writeln!(
        text,
        "[targets.{AUTH_TARGET}.checks.token]\npath = \"/api/0/organizations/\"\n\
         expect_status = [200]\nversion_field = \"0.slug\"\nbearer_token = {{ file = {} }}",
        quoted(token_file)
    );
    if let Some(org) = org {
        let _ = writeln!(
            text,
            "[targets.{AUTH_TARGET}.checks.events]\npath = {}\nexpect_status = [200]\n\
             bearer_token = {{ file = {} }}",
            quoted(&format!("/api/0/organizations/{org}/issues/?limit=1")),
            quoted(token_file)
        );
        if let Some(dsn) = canary_dsn {
            let _ = writeln!(
                text,
                "[targets.{AUTH_TARGET}.canary]\ndsn = {{ file = {} }}\ntoken = {{ file = {} }}\n\
                 organization = {}",
                quoted(dsn),
                quoted(token_file),
                quoted(org)
            );
        }
    }
    text
}

/// Whether a probe met its expectation.
pub(super) fn ok(outcome: Option<&Outcome>) -> bool {
    outcome.is_some_and(Outcome::success)
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What was asked (a path, or `certificate`, `token`, …).
    pub probe: String,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Milliseconds the probe took.
    pub millis: u128,
    /// Whether it is usable as a check, and as which.
    pub usable: &'static str,
    /// What the answer says; never a body.
    pub says: String,
}

impl Row {
    /// A row for `outcome` under the name `probe`, with what it says.
    pub(super) fn new(probe: &str, outcome: &Outcome, usable: &'static str, says: String) -> Self {
        Self {
            probe: probe.to_owned(),
            status: outcome.status,
            millis: outcome.duration.as_millis(),
            usable,
            says,
        }
    }
}

/// What a probe without an answer says: the reason, from the fixed set.
pub(super) fn no_answer(outcome: &Outcome) -> String {
    match outcome.reason {
        Reason::Timeout => "no answer before the timeout".to_owned(),
        reason => format!("no usable answer ({reason})"),
    }
}

/// The row of anonymous probe `name`.
pub(super) fn describe(probe: &Probe, outcome: &Outcome) -> Row {
    let fine = outcome.success();
    let status = outcome.status;
    let (usable, says): (&'static str, String) = match (probe.name, status) {
        (_, None) => ("no", no_answer(outcome)),
        ("health", Some(200)) if fine => ("yes: health", "web process answers \"ok\"".into()),
        ("settings", Some(200)) if fine => (
            "yes: database",
            format!(
                "version {}; answers only with PostgreSQL up",
                outcome.version.as_deref().unwrap_or("?")
            ),
        ),
        ("settings", Some(500)) => ("yes: database", "500: PostgreSQL down?".into()),
        ("api_root", Some(200)) if fine => ("weak", "public API root (no auth needed)".into()),
        ("organizations", Some(401)) if fine => (
            "yes: api",
            "401 without a token: routing and auth alive".into(),
        ),
        ("root", Some(200)) if fine => ("yes: dashboard", "front end served".into()),
        ("root", Some(500)) => ("no", "500: backend-only install (no front end)".into()),
        ("well_known", Some(404)) if fine => {
            ("no", "GlitchTip's 404 page: no such endpoint".into())
        }
        ("well_known", Some(_)) => ("no", "not GlitchTip's (a proxy or platform)".into()),
        ("internal_health", Some(200)) if fine => {
            ("yes: like health", "fixed answer (5.1 and later)".into())
        }
        ("internal_health_slash", Some(200)) if fine => (
            "yes: like health",
            "trailing slash served (6.0.9 and later)".into(),
        ),
        ("internal_health" | "internal_health_slash", Some(404)) => {
            ("no", "absent in this version".into())
        }
        ("metrics", Some(200)) if fine => (
            "no: inside view",
            "Prometheus text: ENABLE_OBSERVABILITY_API on".into(),
        ),
        ("metrics", Some(_)) => ("no", "GlitchTip's own /metrics is off".into()),
        (_, Some(code)) => ("no", unexpected(code, outcome.reason)),
    };
    Row::new(probe.path, outcome, usable, says)
}

/// An answer that is not the one GlitchTip gives.
pub(super) fn unexpected(code: u16, reason: Reason) -> String {
    match reason {
        Reason::None | Reason::Status => format!("unexpected status {code}"),
        Reason::Keyword | Reason::Json => format!("{code}, but not GlitchTip's answer"),
        other => format!("{code}, then {other}"),
    }
}
