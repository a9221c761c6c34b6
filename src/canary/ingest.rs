//! Sending the canary event: a fresh event id, the event (envelope or store), the
//! `X-Sentry-Auth` header with the configured key only, judging ingest's answer, and the
//! "not before" instant after a 429.
//!
//! The key is never guessed and never changes between requests: one request with a wrong
//! key makes GlitchTip reject every event of the project for 30 s.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::Endpoint;

/// The message of every canary event, followed by its event id.
pub const MESSAGE_PREFIX: &str = "glitchtip-exporter canary";
/// The fingerprint every canary event carries, so that they all group into one issue.
pub const FINGERPRINT: &str = "glitchtip-exporter-canary";
/// The tag every canary event carries: `glitchtip_exporter = canary`.
pub const TAG: (&str, &str) = ("glitchtip_exporter", "canary");
/// The wait after a 429 without a usable `Retry-After`, as Sentry's SDKs do.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest `Retry-After` honoured, so that a bogus header cannot silence the canary
/// for days; the canary reports `throttled` meanwhile.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A fresh event id: a random (version 4) UUID as 32 lowercase hex digits.
pub fn event_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Not expected on any supported system; a time-based id is still unique enough
        // for one canary per interval.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 UTC with microseconds, as the Sentry protocol's `timestamp` and `sent_at`.
fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The canary event itself.
pub fn event(id: &str, now: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "event_id": id,
        "timestamp": rfc3339(now),
        "platform": "other",
        "level": "info",
        "logger": "glitchtip-exporter",
        "message": format!("{MESSAGE_PREFIX} {id}"),
        "tags": { TAG.0: TAG.1 },
        "fingerprint": [FINGERPRINT],
        "sdk": { "name": "glitchtip-exporter", "version": crate::VERSION },
    })
}

/// The request body and its `Content-Type` for `endpoint`.
pub fn body(endpoint: Endpoint, id: &str, now: SystemTime) -> (&'static str, Bytes) {
    let event = event(id, now).to_string();
    match endpoint {
        Endpoint::Store => ("application/json", Bytes::from(event)),
        Endpoint::Envelope => {
            let header = serde_json::json!({ "event_id": id, "sent_at": rfc3339(now) });
            let item = serde_json::json!({ "type": "event", "length": event.len() });
            (
                "application/x-sentry-envelope",
                Bytes::from(format!("{header}\n{item}\n{event}\n")),
            )
        }
    }
}

/// The headers of the ingest request: `Content-Type` and `X-Sentry-Auth` (marked
/// sensitive). `None` when the key cannot be a header value (rejected at config load).
pub fn headers(key: &str, content_type: &'static str) -> Option<HeaderMap> {
    let mut auth = HeaderValue::from_str(&format!(
        "Sentry sentry_version=7, sentry_client=glitchtip-exporter/{}, sentry_key={key}",
        crate::VERSION
    ))
    .ok()?;
    auth.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    headers.insert("x-sentry-auth", auth);
    Some(headers)
}

/// What ingest's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accept {
    /// 2xx: the event is queued (not yet stored).
    Accepted,
    /// 429: nothing may be sent before `retry_after` has passed.
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
    /// Anything else.
    Rejected {
        /// For logs: the status, or why a 2xx was not believed.
        detail: String,
    },
}

/// Judges ingest's answer to the event `id`; `now` reads an HTTP-date `Retry-After`.
pub fn judge(status: u16, headers: &HeaderMap, body: &[u8], id: &str, now: SystemTime) -> Accept {
    match status {
        429 => Accept::Throttled {
            retry_after: retry_after(headers, now).unwrap_or(DEFAULT_RETRY_AFTER),
        },
        200..=299 => {
            // Store answers {"event_id": …}, envelope {"id": …}. A 2xx naming another
            // event is not an acceptance of this one (a proxy's canned answer, say); a
            // body without an id is believed, polling will tell.
            let answered = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|doc| {
                    ["id", "event_id"]
                        .iter()
                        .find_map(|k| doc.get(k)?.as_str().map(str::to_owned))
                });
            match answered {
                Some(other) if !other.replace('-', "").eq_ignore_ascii_case(id) => {
                    Accept::Rejected {
                        detail: format!("status {status} naming another event id"),
                    }
                }
                _ => Accept::Accepted,
            }
        }
        _ => Accept::Rejected {
            detail: format!("status {status}"),
        },
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date, capped at [`MAX_RETRY_AFTER`]; `None`
/// when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = if let Ok(seconds) = text.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Ok(seconds) = text.parse::<f64>() {
        Duration::try_from_secs_f64(seconds).ok()?
    } else {
        let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
        let at = SystemTime::from(date.with_timezone(&chrono::Utc));
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Per ingest project (origin, prefix and project id; never the key), the instant before
/// which nothing may be sent. Process-wide, so that it holds across a reload that rebuilt
/// the canary, and for two targets that share a project. std Mutex: never held across an
/// await.
static NOT_BEFORE: LazyLock<Mutex<HashMap<String, Instant>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn not_before_map() -> std::sync::MutexGuard<'static, HashMap<String, Instant>> {
    NOT_BEFORE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The instant before which nothing may be sent to `project`, if it is still ahead.
pub fn not_before(project: &str) -> Option<Instant> {
    let now = Instant::now();
    let mut map = not_before_map();
    map.retain(|_, until| *until > now);
    map.get(project).copied()
}

/// Holds `project` until `until` (a later instant already held wins).
pub fn hold(project: &str, until: Instant) {
    let mut map = not_before_map();
    let entry = map.entry(project.to_owned()).or_insert(until);
    if until > *entry {
        *entry = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_fresh_uuid4_hex() {
        let a = event_id();
        let b = event_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&a[12..13], "4");
        assert!(matches!(&a[16..17], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn envelope_carries_one_event_with_the_fixed_fingerprint() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (content_type, body) = body(Endpoint::Envelope, "abc", now);
        assert_eq!(content_type, "application/x-sentry-envelope");
        let text = std::str::from_utf8(&body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(header["event_id"], "abc");
        assert_eq!(header["sent_at"], "2027-01-15T08:00:00.000000Z");
        let item: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(item["type"], "event");
        assert_eq!(item["length"], lines[2].len());
        let event: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(event["level"], "info");
        assert_eq!(event["message"], "glitchtip-exporter canary abc");
        assert_eq!(
            event["fingerprint"],
            serde_json::json!(["glitchtip-exporter-canary"])
        );
        assert_eq!(event["tags"]["glitchtip_exporter"], "canary");
    }

    #[test]
    fn auth_header_is_sensitive() {
        let h = headers("k3y", "application/json").unwrap();
        let auth = &h["x-sentry-auth"];
        assert!(auth.is_sensitive());
        assert!(auth.to_str().unwrap().ends_with("sentry_key=k3y"));
        assert!(!format!("{h:?}").contains("k3y"));
    }

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_str(value).unwrap());
        h
    }

    macro_rules! judge_case {
        ($name:ident, $status:expr, $headers:expr, $body:expr, $expected:expr) => {
            #[test]
            fn $name() {
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
                assert_eq!(judge($status, &$headers, $body, "ab12", now), $expected);
            }
        };
    }

    judge_case!(
        store_ok,
        200,
        HeaderMap::new(),
        br#"{"event_id": "ab12", "task_id": null}"#,
        Accept::Accepted
    );
    judge_case!(
        envelope_ok,
        200,
        HeaderMap::new(),
        br#"{"id": "ab12"}"#,
        Accept::Accepted
    );
    judge_case!(
        ok_without_body,
        200,
        HeaderMap::new(),
        b"",
        Accept::Accepted
    );
    judge_case!(
        ok_naming_another_event,
        200,
        HeaderMap::new(),
        br#"{"id": "ffff"}"#,
        Accept::Rejected {
            detail: "status 200 naming another event id".to_owned()
        }
    );
    judge_case!(
        envelope_blocked,
        403,
        HeaderMap::new(),
        br#"{"detail": "Denied"}"#,
        Accept::Rejected {
            detail: "status 403".to_owned()
        }
    );
    judge_case!(
        throttled_seconds,
        429,
        with_retry_after("7"),
        b"",
        Accept::Throttled {
            retry_after: Duration::from_secs(7)
        }
    );
    judge_case!(
        throttled_http_date,
        429,
        with_retry_after("Fri, 15 Jan 2027 08:00:30 GMT"),
        b"",
        Accept::Throttled {
            retry_after: Duration::from_secs(30)
        }
    );
    judge_case!(
        throttled_without_header,
        429,
        HeaderMap::new(),
        b"",
        Accept::Throttled {
            retry_after: DEFAULT_RETRY_AFTER
        }
    );
    judge_case!(
        throttled_bogus_header,
        429,
        with_retry_after("soon"),
        b"",
        Accept::Throttled {
            retry_after: DEFAULT_RETRY_AFTER
        }
    );
    judge_case!(
        throttled_for_days_is_capped,
        429,
        with_retry_after("864000"),
        b"",
        Accept::Throttled {
            retry_after: MAX_RETRY_AFTER
        }
    );

    #[tokio::test(start_paused = true)]
    async fn hold_keeps_the_later_instant_and_expires() {
        let project = "http://hold.test/api/1/";
        assert_eq!(not_before(project), None);
        let start = Instant::now();
        hold(project, start + Duration::from_secs(10));
        hold(project, start + Duration::from_secs(5));
        assert_eq!(not_before(project), Some(start + Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(not_before(project), None);
    }
}
