//! DSN text → a parsed DSN (the canary's `dsn` secret). Whatever the text, parsing answers;
//! an accepted DSN's key never shows in its `Debug` output nor in a URL built from it.
#![no_main]

use glitchtip_exporter::canary::Endpoint;
use glitchtip_exporter::canary::dsn::Dsn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dsn) = Dsn::parse(text) else {
        return;
    };
    let key = dsn.key().to_owned();
    assert!(
        !key.is_empty() && key.len() <= 128,
        "key length {}",
        key.len()
    );
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    assert!(!dsn.project_id().is_empty());
    assert!(dsn.project_id().bytes().all(|b| b.is_ascii_digit()));
    let _ = (dsn.host(), dsn.port());
    let shown = [
        format!("{dsn:?}"),
        dsn.project_url(),
        dsn.endpoint_url(Endpoint::Envelope).to_string(),
        dsn.endpoint_url(Endpoint::Store).to_string(),
    ];
    for endpoint in [Endpoint::Envelope, Endpoint::Store] {
        let url = dsn.endpoint_url(endpoint);
        assert!(matches!(url.scheme(), "http" | "https"));
        assert_eq!(url.username(), "", "the key in a built URL");
        assert_eq!(url.password(), None);
    }
    // The key text may occur in the rest of the URL (host, path, also once percent-encoded),
    // and a short one in any text: only a key of real length that the URL without its user
    // part does not hold must be absent from what is shown.
    let mut without_key = url::Url::parse(text.trim()).expect("parsed once already");
    let _ = without_key.set_username("");
    let _ = without_key.set_password(None);
    let key_lower = key.to_ascii_lowercase();
    if key.len() >= 12
        && !without_key
            .as_str()
            .to_ascii_lowercase()
            .contains(&key_lower)
    {
        for s in &shown {
            assert!(
                !s.to_ascii_lowercase().contains(&key_lower),
                "the DSN key shows in {s:?}"
            );
        }
    }
});
