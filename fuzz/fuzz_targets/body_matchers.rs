//! An HTTP check's judgement of an answer: status set, keyword, regular expression and JSON
//! path expectations (parsed as the config loader parses them) against arbitrary bodies.
//! Nothing panics, and the verdict is consistent with its parts.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use bytes::Bytes;
use glitchtip_exporter::checks::http::judge;
use glitchtip_exporter::checks::{
    BodyExpectations, Failure, HttpCheck, JsonExpectation, JsonPath, Reason, StatusSet,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    status: u16,
    expect_status: Vec<(u16, u16)>,
    keyword: Option<&'a str>,
    regex: Option<&'a str>,
    json_path: Option<&'a str>,
    /// JSON text of `equals`.
    equals: Option<&'a str>,
    version_field: Option<&'a str>,
    /// The body could not be read (too large, broken connection).
    body_failed: bool,
    body: &'a [u8],
}

fn tls() -> Arc<rustls::ClientConfig> {
    static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    TLS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("default versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
    })
    .clone()
}

fuzz_target!(|input: Input<'_>| {
    // As the config loader builds them: empty keyword or regex means none; a bad regex, an
    // empty path segment or a bad `equals` is refused there, so never judged.
    let regex = match input.regex.filter(|r| !r.is_empty()) {
        Some(r) => match regex::Regex::new(r) {
            Ok(re) => Some(re),
            Err(_) => return,
        },
        None => None,
    };
    let json = match input.json_path {
        Some(path) => {
            let Some(path) = JsonPath::parse(path) else {
                return;
            };
            let equals = match input.equals {
                Some(text) => match serde_json::from_str(text) {
                    Ok(v) => Some(v),
                    Err(_) => return,
                },
                None => None,
            };
            Some(JsonExpectation { path, equals })
        }
        None => None,
    };
    let version_field = match input.version_field {
        Some(path) => match JsonPath::parse(path) {
            Some(p) => Some(p),
            None => return,
        },
        None => None,
    };
    let ranges: Vec<(u16, u16)> = input
        .expect_status
        .iter()
        .take(8)
        .map(|&(a, b)| (a.min(b) % 1000, a.max(b) % 1000))
        .filter(|(a, b)| a <= b)
        .collect();
    let body = BodyExpectations {
        keyword: input.keyword.filter(|k| !k.is_empty()).map(str::to_owned),
        regex,
        json,
    };
    let has_expectations = !body.is_empty();
    let check = HttpCheck {
        method: http::Method::GET,
        url: url::Url::parse("http://glitchtip.fuzz.invalid/").expect("a URL"),
        headers: http::HeaderMap::new(),
        request_body: None,
        expect_status: StatusSet(ranges),
        body,
        version_field,
        follow_redirects: false,
        max_redirects: 0,
        sensitive_headers: Default::default(),
        allow_https_to_http_redirect: false,
        max_body_bytes: 1 << 20,
        tls: tls(),
        insecure_skip_verify: false,
        server_name: None,
        proxy: None,
    };
    let status = input.status % 1000;
    let answer = if input.body_failed {
        Err(Failure::new(Reason::BodyTooLarge, "body too large"))
    } else {
        Ok(Bytes::copy_from_slice(input.body))
    };
    let status_ok = check.expect_status.contains(status);
    match judge(&check, status, answer) {
        Ok(found) => {
            assert_eq!(found.status, Some(status));
            assert_eq!(found.body_match.is_some(), has_expectations);
            if let Some(version) = &found.version {
                assert!(status_ok);
                assert!(version.chars().count() <= 64, "version label too long");
            }
            assert_eq!(found.reason == Reason::Status, !status_ok);
            if found.reason == Reason::None {
                assert!(found.body_match != Some(false));
            }
        }
        Err(failure) => {
            // Only an unreadable body of an accepted status is a failure.
            assert!(input.body_failed && status_ok, "{failure:?}");
        }
    }
});
