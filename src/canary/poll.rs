//! Finding the canary event through the API: the request, judging the answer by its body,
//! and the backoff between polls.
//!
//! Two lookups: the organization's issue search by event id (the default, needs only the
//! organization slug) and the project's event endpoint (with `project`). The issue search
//! answers `X-Sentry-Direct-Hit: 1` also when it found nothing, so only the body counts.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use url::Url;

use super::Lookup;

/// Where to look for event `id`: under the target URL's path prefix.
pub fn url(api_base: &Url, organization: &str, lookup: &Lookup, id: &str) -> Url {
    let mut url = api_base.clone();
    let prefix = api_base.path().trim_end_matches('/');
    match lookup {
        Lookup::IssueSearch => {
            url.set_path(&format!(
                "{prefix}/api/0/organizations/{organization}/issues/"
            ));
            url.set_query(Some(&format!("query={id}")));
        }
        Lookup::ProjectEvents { project } => {
            url.set_path(&format!(
                "{prefix}/api/0/projects/{organization}/{project}/events/{id}/"
            ));
            url.set_query(None);
        }
    }
    url.set_fragment(None);
    url
}

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The event is stored and visible.
    Visible,
    /// Not (yet) there.
    NotYet,
}

/// A poll whose answer says nothing about the event: an error status, a body that is not
/// what the endpoint answers, a 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollError {
    /// For logs: never a body (an API answer may echo the token).
    pub detail: String,
    /// From a 429's `Retry-After`: wait at least this long before the next poll.
    pub retry_after: Option<Duration>,
}

impl PollError {
    fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            retry_after: None,
        }
    }
}

/// Judges the API's answer about event `id`.
pub fn judge(
    lookup: &Lookup,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    id: &str,
    now: SystemTime,
) -> Result<Seen, PollError> {
    let is_id = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|s| s.replace('-', "").eq_ignore_ascii_case(id))
    };
    match (lookup, status) {
        (_, 429) => Err(PollError {
            detail: "API answered 429".to_owned(),
            retry_after: super::ingest::retry_after(headers, now),
        }),
        (Lookup::IssueSearch, 200) => {
            let doc: serde_json::Value = serde_json::from_slice(body)
                .map_err(|_| PollError::new("issue search answer is not JSON"))?;
            let issues = doc
                .as_array()
                .ok_or_else(|| PollError::new("issue search answer is not a JSON list"))?;
            if issues.is_empty() {
                return Ok(Seen::NotYet);
            }
            if !issues.iter().all(serde_json::Value::is_object) {
                return Err(PollError::new(
                    "issue search answer is not a list of issues",
                ));
            }
            // GlitchTip names the matching event in each hit. A hit naming another
            // event is not ours; a release that omits the field is believed.
            let named: Vec<&serde_json::Value> = issues
                .iter()
                .filter_map(|issue| issue.get("matchingEventId"))
                .filter(|v| !v.is_null())
                .collect();
            if named.is_empty() || named.iter().any(|v| is_id(v)) {
                Ok(Seen::Visible)
            } else {
                Ok(Seen::NotYet)
            }
        }
        (Lookup::ProjectEvents { .. }, 200) => {
            let doc: serde_json::Value = serde_json::from_slice(body)
                .map_err(|_| PollError::new("event answer is not JSON"))?;
            let event = doc
                .as_object()
                .ok_or_else(|| PollError::new("event answer is not a JSON object"))?;
            let ids: Vec<&serde_json::Value> = ["eventID", "id"]
                .iter()
                .filter_map(|k| event.get(*k))
                .collect();
            if ids.is_empty() || ids.iter().any(|v| is_id(v)) {
                Ok(Seen::Visible)
            } else {
                Err(PollError::new("event answer names another event"))
            }
        }
        (Lookup::ProjectEvents { .. }, 404) => Ok(Seen::NotYet),
        (_, 401 | 403) => Err(PollError::new(format!(
            "API answered {status}: the token needs scope event:read in this organization"
        ))),
        (_, status) => Err(PollError::new(format!("API answered {status}"))),
    }
}

/// Delays between polls: the first after `timeout / 50` (at most 500 ms), then 1.5 times
/// longer each, at most `timeout / 8` (at most 3 s). With the default 25 s timeout: 0.5,
/// 0.75, 1.1, 1.7, 2.5, 3, 3, … s — about 12 requests for an event that never shows, and
/// an event visible after 2 s is seen at about 2.4 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// The delays for a canary with `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            next: (timeout / 50).min(Duration::from_millis(500)),
            max: (timeout / 8).min(Duration::from_secs(3)),
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.mul_f64(1.5).min(self.max).max(delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "443ea29f420a46e69901f80e4fc9310b";

    fn fixture(name: &str) -> (u16, HeaderMap, Vec<u8>) {
        let path = format!(
            "{}/tests/fixtures/recorded/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in doc["response"]["headers"].as_object().unwrap() {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.as_str().unwrap().parse().unwrap(),
            );
        }
        (
            doc["response"]["status"].as_u64().unwrap() as u16,
            headers,
            doc["response"]["body"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
        )
    }

    fn judge_fixture(lookup: &Lookup, name: &str) -> Result<Seen, PollError> {
        let (status, headers, body) = fixture(name);
        judge(lookup, status, &headers, &body, ID, SystemTime::UNIX_EPOCH)
    }

    fn events() -> Lookup {
        Lookup::ProjectEvents {
            project: "lab-project".to_owned(),
        }
    }

    #[test]
    fn recorded_issue_search_before_and_after() {
        // Both answers carry X-Sentry-Direct-Hit: 1; only the body tells.
        let before = fixture("healthy__issue_search_envelope_before");
        assert_eq!(before.1["x-sentry-direct-hit"], "1");
        assert_eq!(
            judge_fixture(
                &Lookup::IssueSearch,
                "healthy__issue_search_envelope_before"
            ),
            Ok(Seen::NotYet)
        );
        assert_eq!(
            judge_fixture(&Lookup::IssueSearch, "healthy__issue_search_envelope_after"),
            Ok(Seen::Visible)
        );
        assert_eq!(
            judge_fixture(
                &Lookup::IssueSearch,
                "worker_stopped__issue_search_envelope_after"
            ),
            Ok(Seen::NotYet)
        );
        assert!(
            judge_fixture(
                &Lookup::IssueSearch,
                "postgres_down__issue_search_envelope_after"
            )
            .is_err()
        );
    }

    #[test]
    fn recorded_event_detail_before_and_after() {
        assert_eq!(
            judge_fixture(&events(), "healthy__event_envelope_before"),
            Ok(Seen::NotYet)
        );
        assert_eq!(
            judge_fixture(&events(), "healthy__event_envelope_after"),
            Ok(Seen::Visible)
        );
    }

    #[test]
    fn a_hit_for_another_event_is_not_ours() {
        let body = br#"[{"id": "1", "matchingEventId": "ffffffffffffffffffffffffffffffff"}]"#;
        let seen = judge(
            &Lookup::IssueSearch,
            200,
            &HeaderMap::new(),
            body,
            ID,
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(seen, Ok(Seen::NotYet));
    }

    #[test]
    fn malformed_answers_are_errors_without_the_body() {
        for body in [&b"{\"detail\": "[..], b"{}", b"[1, 2]", b"<html>"] {
            let err = judge(
                &Lookup::IssueSearch,
                200,
                &HeaderMap::new(),
                body,
                ID,
                SystemTime::UNIX_EPOCH,
            )
            .unwrap_err();
            assert!(
                !err.detail.contains('<') && !err.detail.contains('{'),
                "{err:?}"
            );
        }
        let err = judge(
            &Lookup::IssueSearch,
            403,
            &HeaderMap::new(),
            b"",
            ID,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(err.detail.contains("event:read"), "{err:?}");
    }

    #[test]
    fn api_429_carries_its_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "4".parse().unwrap());
        let err = judge(
            &Lookup::IssueSearch,
            429,
            &h,
            b"",
            ID,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(err.retry_after, Some(Duration::from_secs(4)));
    }

    #[test]
    fn urls_keep_the_prefix() {
        let base = Url::parse("https://g.example/glitchtip/").unwrap();
        assert_eq!(
            url(&base, "lab-org", &Lookup::IssueSearch, ID).as_str(),
            format!("https://g.example/glitchtip/api/0/organizations/lab-org/issues/?query={ID}")
        );
        assert_eq!(
            url(&base, "lab-org", &events(), ID).as_str(),
            format!("https://g.example/glitchtip/api/0/projects/lab-org/lab-project/events/{ID}/")
        );
    }

    #[test]
    fn backoff_for_the_default_timeout() {
        let mut b = Backoff::new(Duration::from_secs(25));
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [500, 750, 1125, 1687, 2531, 3000, 3000, 3000]);
    }
}
