//! The landing page: every target and check with its state, reason, last success and
//! latency, rendered from the same state the metrics come from.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::checks::{CheckKind, Reason, TlsReason};
use crate::exporter::{CheckView, Exporter};

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The first second RFC 3339 cannot write (year 10000): humantime's formatter fails there,
/// and `to_string` would panic.
const YEAR_10000: Duration = Duration::from_secs(253_402_300_800);

fn when(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "never".to_owned();
    };
    match t.duration_since(UNIX_EPOCH) {
        Err(_) => "before 1970".to_owned(),
        Ok(d) if d >= YEAR_10000 => "after 9999".to_owned(),
        Ok(_) => humantime::format_rfc3339_seconds(t).to_string(),
    }
}

/// The bounds of `?refresh=N` (seconds): often enough to watch an outage, never a reload
/// storm.
pub const REFRESH_SECONDS: std::ops::RangeInclusive<u64> = 5..=3600;

/// The refresh interval asked for with `?refresh=N`, clamped to [`REFRESH_SECONDS`];
/// `None` when absent or not a whole number.
pub fn refresh_seconds(raw: Option<&str>) -> Option<u64> {
    let n: u64 = raw?.trim().parse().ok()?;
    Some(n.clamp(*REFRESH_SECONDS.start(), *REFRESH_SECONDS.end()))
}

/// A TLS reason in words, for people.
fn tls_words(reason: TlsReason) -> &'static str {
    match reason {
        TlsReason::None => "valid",
        TlsReason::Expired => "a certificate has expired",
        TlsReason::NotYetValid => "a certificate is not valid yet",
        TlsReason::HostnameMismatch => "the certificate does not name this host",
        TlsReason::SelfSigned => "self-signed and not trusted",
        TlsReason::UnknownIssuer => "the chain does not lead to a trusted root",
        TlsReason::BadSignature => "a signature does not verify",
        TlsReason::UnsupportedCriticalExtension => "a critical extension clients do not know",
        TlsReason::InvalidCertificate => "a certificate clients refuse (usage, CA as leaf, …)",
        TlsReason::Handshake => "the TLS handshake failed",
        TlsReason::Dns => "the host name did not resolve",
        TlsReason::Connect => "the connection failed",
        TlsReason::Timeout => "no handshake before the deadline",
        TlsReason::Proxy => "the HTTP proxy failed",
        TlsReason::ExporterResources => "the exporter could not open a socket (its own failure)",
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
.up{color:#070}.down{color:#b00}.pending{color:#777}\
.summary{font-size:1.2em;padding:.5em .8em;border-radius:4px;background:#e8f5e8}\
.summary.bad{background:#fbe3e3}\
.strip span{display:inline-block;width:7px;height:14px;margin-right:1px;background:#3a3}\
.strip span.f{background:#c33}.detail{color:#555;font-size:.9em;max-width:40em}";

/// The page; `refresh` (seconds) adds a meta refresh.
pub fn render(exporter: &Exporter, refresh: Option<u64>) -> String {
    let config = exporter.config();
    let views = exporter.views();
    let heartbeats = exporter.heartbeats().views(exporter.now());
    let mut html = String::with_capacity(8192);
    let meta = refresh
        .map(|n| format!("<meta http-equiv=\"refresh\" content=\"{n}\">"))
        .unwrap_or_default();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{meta}\
         <title>GlitchTip exporter</title><style>{STYLE}</style></head><body>\
         <h1>GlitchTip exporter</h1>",
    );
    let failing = views.iter().filter(|v| v.state.up() == Some(false)).count();
    let missed = heartbeats.iter().filter(|h| h.state() == "missed").count();
    let _ = write!(
        html,
        "<p class=\"summary{bad}\" id=\"summary\">{failing} of {total} checks failing · \
         {missed} of {hb} heartbeats late</p>",
        bad = if failing + missed > 0 { " bad" } else { "" },
        total = views.len(),
        hb = heartbeats.len(),
    );
    let _ = write!(
        html,
        "<p>Version {} ({}), mode <b>{}</b>. \
         <a href=\"/metrics\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Ready</a> · \
         <a href=\"/?refresh=30\">refresh every 30 s</a></p>",
        esc(crate::VERSION),
        esc(crate::REVISION),
        config.mode.as_str()
    );
    for target in &config.targets {
        let version = exporter
            .version(&target.name)
            .map(|v| format!(", GlitchTip {}", esc(&v)))
            .unwrap_or_default();
        let _ = write!(
            html,
            "<h2>{name}</h2><p>{url}{version} · <a href=\"/probe?target={name}\">probe now</a></p>\
             <table><tr><th>check</th><th>state</th><th>reason</th><th>status</th><th>consecutive failures</th>\
             <th>last success</th><th>latency</th><th>last {n} results (oldest first)</th></tr>",
            name = esc(&target.name),
            // Without user name, password or query, in case one holds a credential.
            url = esc(&crate::config::display_url(&target.url)),
            n = crate::state::RECENT_RESULTS,
        );
        for view in views.iter().filter(|v| v.spec.target == target.name) {
            check_row(&mut html, view);
        }
        html.push_str("</table>");
    }
    if !heartbeats.is_empty() {
        html.push_str(
            "<h2>Heartbeats</h2><table><tr><th>heartbeat</th><th>state</th><th>age</th>\
             <th>last success</th><th>deadline</th></tr>",
        );
        for hb in &heartbeats {
            let state = hb.state();
            let class = match state {
                "up" => "up",
                "unknown" => "pending",
                _ => "down",
            };
            let at = |t: Option<f64>| {
                t.and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .and_then(|d| UNIX_EPOCH.checked_add(d))
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"{class}\">{state}</td><td>{:.0} s</td><td>{}</td><td>{}</td></tr>",
                esc(&hb.name),
                hb.age_seconds,
                when(at(hb.last_seen)),
                when(at(hb.deadline)),
            );
        }
        html.push_str("</table>");
    }
    queue_readings(&mut html, &exporter.queue_text());
    html.push_str("</body></html>\n");
    html
}

/// One check's row: its state, the failure detail, what the TLS check or the canary found,
/// and the strip of its latest results.
fn check_row(html: &mut String, view: &CheckView) {
    let s = &view.state;
    let (class, state) = match s.up() {
        None => ("pending", "pending"),
        Some(true) => ("up", "up"),
        Some(false) => ("down", "down"),
    };
    let last = s.last.as_ref();
    let mut reason = last.map_or_else(String::new, |o| esc(o.reason.as_str()));
    if let Some(detail) = last
        .filter(|o| !o.success())
        .and_then(|o| o.detail.as_deref())
    {
        // Details are written for logs: I/O errors and statuses, never a body or a secret.
        let _ = write!(reason, "<div class=\"detail\">{}</div>", esc(detail));
    }
    if let Some(tls) = last.and_then(|o| o.tls.as_ref()) {
        let _ = write!(
            reason,
            "<div class=\"detail\">TLS: {} ({})",
            esc(tls_words(tls.reason)),
            tls.reason.as_str()
        );
        if let Some(cert) = &tls.certificate {
            let _ = write!(
                reason,
                "; expires in {:.0} days",
                (cert.expiry_seconds / 86_400.0).floor()
            );
        }
        reason.push_str("</div>");
    }
    if let CheckKind::Canary(canary) = &view.spec.kind
        && let Some(result) = canary.runtime.status().last
    {
        let _ = write!(
            reason,
            "<div class=\"detail\">canary: last result {}, ingest status {}, accepted in {:.0} ms, lag {}</div>",
            result.reason.result(),
            result
                .status
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
            result.accept_duration.as_secs_f64() * 1000.0,
            result.lag.map_or_else(
                || "none".to_owned(),
                |l| format!("{:.1} s", l.as_secs_f64())
            ),
        );
    }
    let mut strip = String::from("<div class=\"strip\">");
    for r in &s.recent {
        let _ = write!(
            strip,
            "<span{} title=\"{} {}\"></span>",
            if r.reason == Reason::None {
                ""
            } else {
                " class=\"f\""
            },
            when(Some(r.at)),
            r.reason.as_str(),
        );
    }
    strip.push_str("</div>");
    let _ = write!(
        html,
        "<tr><td>{}</td><td class=\"{class}\">{state}</td><td>{reason}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{strip}</td></tr>",
        esc(&view.spec.name),
        last.and_then(|o| o.status)
            .map_or_else(String::new, |c| c.to_string()),
        s.consecutive_failures,
        when(s.last_success),
        last.map_or_else(String::new, |o| format!(
            "{:.0} ms",
            o.duration.as_secs_f64() * 1000.0
        )),
    );
}

/// The queue and scheduler readings, as the exporter exports them: one row per series of
/// the queue reader's text.
fn queue_readings(html: &mut String, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    if rows.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Queues, scheduler and workers</h2><table><tr><th>reading</th><th>value</th></tr>",
    );
    for row in rows {
        let (series, value) = row.rsplit_once(' ').unwrap_or((row, ""));
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(series),
            esc(value)
        );
    }
    html.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue #18): a heartbeat deadline past the year 9999 made every request
    /// of the landing page panic.
    #[test]
    fn times_out_of_rfc3339_range_do_not_panic() {
        let at = |secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs));
        assert_eq!(when(at(253_402_300_799)), "9999-12-31T23:59:59Z");
        assert_eq!(when(at(253_402_300_800)), "after 9999");
        assert_eq!(when(at(1 << 60)), "after 9999");
        assert_eq!(
            when(UNIX_EPOCH.checked_sub(Duration::from_secs(1))),
            "before 1970"
        );
        assert_eq!(when(None), "never");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
