//! `glitchtip-exporter doctor`: probes a GlitchTip instance's candidate endpoints once,
//! says what each answered, which GlitchTip line it is, and which checks fit it, and ends
//! with a ready-to-paste `exporter.toml` section.
//!
//! It is separate from the exporter proper because it runs once and talks to a person,
//! but it probes through the same machinery: its probes are a config that the real loader
//! ([`crate::config::validate`]) builds into checks that the real dispatcher
//! ([`crate::checks::run`]) runs, so TLS, timing and secret handling behave as they will
//! in the exporter. Secrets come from files only and are never printed: the table is made
//! of statuses and fixed descriptions, never of bodies.

mod cli;
mod probes;
mod suggest;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use url::Url;

pub use cli::{DoctorCli, main_if_doctor};
pub use probes::Row;
pub use suggest::TARGET_NAME;

use crate::canary::dsn::Dsn;
use crate::checks::{CheckSpec, Outcome, ProbeEnv};
use crate::config::raw::RawConfig;
use crate::config::{Config, ConfigError, ConfigSource, Context};
use crate::queue::read::Layout;
use probes::{AUTH_TARGET, PROBE_TARGET, PROBES, Probe, ok};

/// What to look at.
#[derive(Debug, Clone)]
pub struct Options {
    /// The instance's base URL.
    pub target: Url,
    /// A file holding an API token (for the canary: scope `event:read`).
    pub token_file: Option<PathBuf>,
    /// A file holding the DSN of the canary's project.
    pub dsn_file: Option<PathBuf>,
    /// GlitchTip's Redis/Valkey, read-only (without a password in it).
    pub redis_url: Option<String>,
    /// A file holding the Redis/Valkey password.
    pub redis_password_file: Option<PathBuf>,
    /// Send one canary event (stores an event in the DSN's project).
    pub send_test_event: bool,
    /// A PEM file of CA certificates trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Deadline of each request.
    pub timeout: Duration,
}

/// How the doctor ends: the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything it checked works.
    Healthy = 0,
    /// Something it checked fails (or the inputs are unusable).
    Failing = 1,
    /// Nothing answered, or what answered is not GlitchTip.
    Unreachable = 2,
}

/// The GlitchTip line, by its task runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// 5.x and older: Celery on Redis (list `celery`).
    Celery,
    /// 6.x: its own task runner (django-vtasks) on Valkey (`{vt}:` keys).
    Vtasks,
    /// Neither the version nor the keys said.
    Unknown,
}

impl Line {
    /// How the report names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Line::Celery => "5.x (Celery)",
            Line::Vtasks => "6.x (own task runner on Valkey)",
            Line::Unknown => "unknown",
        }
    }
}

/// What the doctor found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The whole text to print.
    pub text: String,
    /// The exit status.
    pub exit: Exit,
    /// The table.
    pub rows: Vec<Row>,
    /// The GlitchTip line.
    pub line: Line,
    /// The version `/api/settings/` named.
    pub version: Option<String>,
    /// The suggested `exporter.toml` section (none when unreachable).
    pub suggested: Option<String>,
}

impl Report {
    fn early(exit: Exit, line: String) -> Self {
        Self {
            text: format!("{line}\n"),
            exit,
            rows: Vec::new(),
            line: Line::Unknown,
            version: None,
            suggested: None,
        }
    }
}

/// Probes the instance once and reports.
pub async fn run(opts: &Options, env: &ProbeEnv) -> Report {
    let url = opts.target.as_str().to_owned();
    let defaults = probes::defaults_toml(opts.timeout);
    let token_file = opts.token_file.as_deref().map(absolute);
    if let Some(redis) = &opts.redis_url
        && Url::parse(redis).is_ok_and(|u| u.password().is_some())
    {
        return Report::early(
            Exit::Failing,
            "--redis-url: a URL without a password expected (the exporter reads it from a file)"
                .to_owned(),
        );
    }

    // The DSN: its shape, and where ingest is (its host must answer; no event is sent).
    let dsn = opts.dsn_file.as_deref().map(read_dsn);
    let ingest_base = match &dsn {
        Some(Ok(dsn)) => {
            let base = ingest_base(dsn);
            (!same_origin(&base, &opts.target)).then_some(base)
        }
        _ => None,
    };

    let ca_file = opts.ca_file.as_deref().map(absolute);
    let site = probes::Site {
        url: &url,
        ca_file: ca_file.as_deref(),
    };
    let mut text = defaults.clone() + &probes::probe_toml(&site, opts.target.scheme() == "https");
    if let Some(token) = &token_file {
        text += &probes::token_toml(&site, token, None, None);
    }
    if let Some(base) = &ingest_base {
        text += &site.target("ingest", base.as_str());
        text += "[targets.ingest.checks.health]\npath = \"/_health/\"\nkeyword = \"ok\"\n";
    }
    let config = match load(&text) {
        Ok(config) => config,
        Err(e) => return Report::early(Exit::Failing, format!("cannot set up the probes: {e}")),
    };
    let found = run_all(&config, env).await;
    let get = |target: &str, name: &str| {
        found
            .iter()
            .find(|(t, n, _)| t == target && n == name)
            .map(|(_, _, o)| o)
    };

    let anonymous: Vec<(&Probe, &Outcome)> = PROBES
        .iter()
        .filter_map(|p| get(PROBE_TARGET, p.name).map(|o| (p, o)))
        .collect();
    if anonymous.iter().all(|(_, o)| o.status.is_none()) {
        let why = anonymous
            .first()
            .map(|(_, o)| probes::no_answer(o))
            .unwrap_or_default();
        return Report::early(Exit::Unreachable, format!("{url}: cannot reach it: {why}"));
    }
    let is_glitchtip = ["settings", "api_root", "organizations"]
        .iter()
        .any(|name| ok(get(PROBE_TARGET, name)));
    if !is_glitchtip {
        return Report::early(
            Exit::Unreachable,
            format!(
                "{url}: answers, but not like GlitchTip (no version at /api/settings/, no API root at /api/0/, no 401 at /api/0/organizations/)"
            ),
        );
    }

    let mut rows: Vec<Row> = anonymous
        .iter()
        .map(|(p, o)| probes::describe(p, o))
        .collect();
    let mut failing: Vec<&'static str> = Vec::new();
    for (name, label) in [
        ("health", "health"),
        ("settings", "database"),
        ("organizations", "api"),
    ] {
        if !ok(get(PROBE_TARGET, name)) {
            failing.push(label);
        }
    }
    if let Some(tls) = get(PROBE_TARGET, crate::checks::tls::CHECK_NAME) {
        rows.push(tls_row(tls));
        if !tls.success() {
            failing.push("certificate");
        }
    }
    let version = get(PROBE_TARGET, "settings").and_then(|o| o.version.clone());
    let backend_only = get(PROBE_TARGET, "root").is_some_and(|o| o.status == Some(500));
    let metrics_on = ok(get(PROBE_TARGET, "metrics"));
    let slash_health = ok(get(PROBE_TARGET, "internal_health_slash"));

    // The token: accepted (200 on the organizations), and able to read events.
    let mut org: Option<String> = None;
    if let Some(outcome) = get(AUTH_TARGET, "token") {
        if outcome.status == Some(200) {
            org = outcome.version.clone().filter(|s| valid_slug(s));
        } else {
            failing.push("token");
        }
        rows.push(token_row(
            "token: /api/0/organizations/",
            outcome,
            "token accepted",
            &[
                (401, "token rejected (401)"),
                (403, "token lacks org:read (403)"),
            ],
        ));
    }
    if let Some(outcome) = ingest_base.as_ref().and_then(|_| get("ingest", "health")) {
        let says = if outcome.success() {
            "the DSN's ingest host answers".to_owned()
        } else {
            failing.push("ingest host");
            match outcome.status {
                Some(code) => probes::unexpected(code, outcome.reason),
                None => probes::no_answer(outcome),
            }
        };
        rows.push(probes::Row::new("DSN host: /_health/", outcome, "-", says));
    }

    // Second round: event:read and the canary, which need the organization's slug.
    let dsn_ok = matches!(dsn, Some(Ok(_)));
    let dsn_file = opts.dsn_file.as_deref().map(absolute);
    let mut notes: Vec<String> = Vec::new();
    let mut event_sent = false;
    if let (Some(token), Some(slug)) = (&token_file, &org) {
        let canary_dsn = dsn_file
            .as_deref()
            .filter(|_| opts.send_test_event && dsn_ok);
        let text = defaults.clone() + &probes::token_toml(&site, token, Some(slug), canary_dsn);
        match load(&text) {
            Err(e) => {
                failing.push("token");
                notes.push(format!("cannot set up the token probes: {e}"));
            }
            Ok(config) => {
                // The canary's row after the token's, whatever the checks' order.
                let mut canary = None;
                for (_, name, outcome) in &run_all(&config, env).await {
                    if name == "events" {
                        if outcome.status != Some(200) {
                            failing.push("event:read");
                        }
                        rows.push(token_row(
                            "token: issues of the organization",
                            outcome,
                            "token has event:read",
                            &[(403, "token lacks event:read (the canary needs it)")],
                        ));
                    } else if name == crate::canary::CHECK_NAME {
                        event_sent = true;
                        if !outcome.success() {
                            failing.push("canary");
                        }
                        canary = Some(canary_row(outcome));
                    }
                }
                rows.extend(canary);
            }
        }
    }

    // The queue, through the exporter's own read-only reader.
    let redis_password = opts.redis_password_file.as_deref().map(absolute);
    let mut layout: Option<&'static str> = None;
    if let Some(redis) = &opts.redis_url {
        let mut text = format!(
            "{defaults}[targets.queue]\nurl = {0}\ndefault_checks = false\n[targets.queue.queue]\nurl = {1}\ntimeout = {2}\n",
            probes::quoted(&url),
            probes::quoted(redis),
            probes::quoted(&humantime::format_duration(opts.timeout).to_string()),
        );
        if let Some(file) = &redis_password {
            let _ = writeln!(text, "password = {{ file = {} }}", probes::quoted(file));
        }
        let (line, read) = read_queue(&text, opts.timeout, env).await;
        match read {
            Some(found) => layout = found,
            None => failing.push("queue"),
        }
        notes.push(line);
    }

    let line = detect_line(version.as_deref(), slash_health, layout);
    let mut out = format!("glitchtip-exporter doctor: {url}\n\n");
    out += &table(&rows);
    out.push('\n');
    let _ = writeln!(
        out,
        "GlitchTip version: {} — line {}",
        version.as_deref().unwrap_or("unknown"),
        line.as_str()
    );
    let _ = writeln!(
        out,
        "front end: {}",
        if backend_only {
            "not served (backend-only install): the dashboard check is disabled below"
        } else {
            "served"
        }
    );
    let _ = writeln!(
        out,
        "GlitchTip's own /metrics (ENABLE_OBSERVABILITY_API): {}",
        if metrics_on { "on" } else { "off" }
    );
    match &dsn {
        None => {}
        Some(Err(why)) => {
            failing.push("dsn");
            let _ = writeln!(out, "DSN: not usable: {why}");
        }
        Some(Ok(d)) => {
            let _ = writeln!(
                out,
                "DSN: project {} at {}:{}{}",
                d.project_id(),
                d.host(),
                d.port(),
                match (event_sent, opts.send_test_event) {
                    (true, _) => "",
                    (false, false) => " (no event sent: --send-test-event sends one)",
                    (false, true) =>
                        " (no event sent: that needs a token that sees the organization)",
                }
            );
        }
    }
    for extra in notes {
        let _ = writeln!(out, "{extra}");
    }
    let exit = if failing.is_empty() {
        let _ = writeln!(out, "result: healthy");
        Exit::Healthy
    } else {
        let _ = writeln!(out, "result: failing: {}", failing.join(", "));
        Exit::Failing
    };

    let suggested = suggest::section(&suggest::Inputs {
        url: &url,
        ca_file: ca_file.as_deref(),
        backend_only,
        token: token_file.as_deref().map(|t| (t, org.as_deref())),
        dsn_file: dsn_file.as_deref().filter(|_| dsn_ok),
        queue: opts
            .redis_url
            .as_deref()
            .map(|u| (u, layout, redis_password.as_deref())),
    });
    let _ = write!(out, "\n# Suggested exporter.toml section:\n{suggested}");
    Report {
        text: out,
        exit,
        rows,
        line,
        version,
        suggested: Some(suggested),
    }
}

/// Builds a config from TOML text with the real validation (no environment overrides).
pub fn load(text: &str) -> Result<Config, ConfigError> {
    let origin = "doctor";
    let raw: RawConfig = ::config::Config::builder()
        .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
    let env = HashMap::new();
    let ctx = Context {
        origin,
        env: &env,
        base_dir: None,
    };
    crate::config::validate(raw, &ConfigSource::default(), &ctx)
}

/// Runs every check of `config` at once, each within its own deadline.
async fn run_all(config: &Config, env: &ProbeEnv) -> Vec<(String, String, Outcome)> {
    let specs: Vec<Arc<CheckSpec>> = config.checks().cloned().collect();
    let outcomes = join_all(
        specs
            .iter()
            .map(|spec| crate::checks::run(spec, env, spec.schedule.timeout)),
    )
    .await;
    specs
        .iter()
        .zip(outcomes)
        .map(|(spec, outcome)| (spec.target.clone(), spec.name.clone(), outcome))
        .collect()
}

/// The line, from the version first, then the keys, then the 6.x-only path.
fn detect_line(version: Option<&str>, slash_health: bool, layout: Option<&str>) -> Line {
    let major = version
        .and_then(|v| v.trim_start_matches('v').split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|m| *m > 0);
    match (major, layout) {
        (Some(m), _) if m >= 6 => Line::Vtasks,
        (Some(_), _) => Line::Celery,
        (None, Some("celery")) => Line::Celery,
        (None, Some("vtasks")) => Line::Vtasks,
        _ if slash_health => Line::Vtasks,
        _ => Line::Unknown,
    }
}

fn read_dsn(file: &std::path::Path) -> Result<Dsn, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {}", file.display(), e.kind()))?;
    Dsn::parse(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// Where the DSN's ingest lives: its origin, without the key.
fn ingest_base(dsn: &Dsn) -> Url {
    let mut base = dsn.endpoint_url(crate::canary::Endpoint::Store);
    base.set_path("/");
    base.set_query(None);
    base
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn absolute(path: &std::path::Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// An organization slug read from an answer, before it goes into a path or a config.
fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 64
        && slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A token probe's row: 200 is `accepted`, the `refusals` say what other statuses mean.
fn token_row(probe: &str, outcome: &Outcome, accepted: &str, refusals: &[(u16, &str)]) -> Row {
    let (usable, says) = match outcome.status {
        Some(200) => ("yes: canary", accepted.to_owned()),
        Some(code) => (
            "no",
            refusals.iter().find(|(c, _)| *c == code).map_or_else(
                || probes::unexpected(code, outcome.reason),
                |(_, s)| (*s).to_owned(),
            ),
        ),
        None => ("no", probes::no_answer(outcome)),
    };
    Row::new(probe, outcome, usable, says)
}

fn canary_row(outcome: &Outcome) -> Row {
    let says = if outcome.success() {
        "test event accepted and visible through the API".to_owned()
    } else {
        // The detail starts with the ingest reason, a word from a fixed set.
        let detail = outcome.detail.as_deref().unwrap_or("failed");
        format!(
            "test event: {}",
            detail.split(':').next().unwrap_or("failed")
        )
    };
    Row::new("canary event", outcome, "yes: canary", says)
}

/// Reads the queue of the config `text` once within `timeout`: the line to print, and the
/// layout found (`None` when the read failed).
async fn read_queue(
    text: &str,
    timeout: Duration,
    env: &ProbeEnv,
) -> (String, Option<Option<&'static str>>) {
    let config = match load(text) {
        Ok(config) => config,
        Err(e) => return (format!("cannot read the queue: {e}"), None),
    };
    let Some(spec) = config.targets.iter().find_map(|t| t.queue.clone()) else {
        return ("queue: not configured".to_owned(), None);
    };
    let read = crate::queue::read::read(&spec, &env.resolver, env.clock.as_ref(), None);
    match tokio::time::timeout(timeout, read).await {
        Err(_) => (
            "queue: no answer from Redis/Valkey before the timeout".to_owned(),
            None,
        ),
        Ok(r) if r.reason != crate::queue::read::QueueReason::None => (
            format!("queue: cannot read it ({})", r.reason.as_str()),
            None,
        ),
        Ok(r) => {
            let layout = r.layout.as_ref().map(Layout::name);
            let lengths: Vec<String> = r.lengths.iter().map(|(q, n)| format!("{q}={n}")).collect();
            let line = format!(
                "queue: layout {} ({})",
                layout.unwrap_or("?"),
                lengths.join(", ")
            );
            (line, Some(layout))
        }
    }
}

fn tls_row(outcome: &Outcome) -> Row {
    let says = match outcome.tls.as_ref() {
        Some(findings) => match &findings.certificate {
            Some(cert) if cert.valid => format!(
                "certificate valid, expires in {} days",
                (cert.expiry_seconds / 86_400.0).floor()
            ),
            _ => format!("certificate problem: {}", findings.reason.as_str()),
        },
        None => probes::no_answer(outcome),
    };
    Row::new("certificate", outcome, "yes: tls", says)
}

fn table(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.probe.len()).max().unwrap_or(5).max(5);
    let mut out = format!(
        "{:width$}  {:6}  {:>7}  {:17}  what it says\n",
        "probe", "status", "time", "usable as a check"
    );
    for row in rows {
        let status = row.status.map_or("-".to_owned(), |s| s.to_string());
        let _ = writeln!(
            out,
            "{:width$}  {:6}  {:>4} ms  {:17}  {}",
            row.probe, status, row.millis, row.usable, row.says
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! case {
        ($name:ident, $version:expr, $slash:expr, $layout:expr, $line:expr) => {
            #[test]
            fn $name() {
                assert_eq!(detect_line($version, $slash, $layout), $line);
            }
        };
    }

    case!(release_5, Some("5.1.1"), false, None, Line::Celery);
    case!(release_6, Some("6.2.6"), false, None, Line::Vtasks);
    case!(v_prefix, Some("v6.0.9"), false, None, Line::Vtasks);
    case!(
        version_wins_over_keys,
        Some("5.0.0"),
        false,
        Some("vtasks"),
        Line::Celery
    );
    case!(
        source_install_keys,
        Some("0.0.0-unknown"),
        false,
        Some("celery"),
        Line::Celery
    );
    case!(
        source_install_vtasks,
        Some("0.0.0-unknown"),
        false,
        Some("vtasks"),
        Line::Vtasks
    );
    case!(
        slash_path_only,
        Some("0.0.0-unknown"),
        true,
        None,
        Line::Vtasks
    );
    case!(nothing_said, None, false, None, Line::Unknown);
    case!(garbage_version, Some("latest"), false, None, Line::Unknown);

    #[test]
    fn slugs_from_an_answer_are_checked_before_use() {
        assert!(valid_slug("lab-org_2"));
        for bad in ["", "a/b", "a b", "x?y", &"a".repeat(65)] {
            assert!(!valid_slug(bad), "{bad:?}");
        }
    }
}
