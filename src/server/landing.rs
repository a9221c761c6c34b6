//! The landing page: every target and check with its state, reason, last success and
//! latency, rendered from the same state the metrics come from.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exporter::Exporter;

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

/// The page.
pub fn render(exporter: &Exporter) -> String {
    let config = exporter.config();
    let mut html = String::with_capacity(4096);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>GlitchTip exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}\
         .up{{color:#070}}.down{{color:#b00}}.pending{{color:#777}}</style></head><body>\
         <h1>GlitchTip exporter</h1><p>Version {} ({}), mode <b>{}</b>. \
         <a href=\"/metrics\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Ready</a></p>",
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
             <th>last success</th><th>latency</th></tr>",
            name = esc(&target.name),
            // Without user name, password or query, in case one holds a credential.
            url = esc(&crate::config::display_url(&target.url)),
        );
        for view in exporter
            .views()
            .iter()
            .filter(|v| v.spec.target == target.name)
        {
            let s = &view.state;
            let (class, state) = match s.up() {
                None => ("pending", "pending"),
                Some(true) => ("up", "up"),
                Some(false) => ("down", "down"),
            };
            let last = s.last.as_ref();
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"{class}\">{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&view.spec.name),
                last.map_or("", |o| o.reason.as_str()),
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
        html.push_str("</table>");
    }
    let heartbeats = exporter.heartbeats().views(exporter.now());
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
    html.push_str("</body></html>\n");
    html
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
