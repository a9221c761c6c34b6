//! Values that several parts of the config validate the same way: names (label values and
//! environment-variable segments), http(s) URLs and proxy URLs — and how a URL is shown
//! (in a message, on the landing page) without what may be a credential in it.

use std::time::Duration;

use url::{Position, Url};

use super::defaults::DurationRange;

/// `value` inside `range`, or what was expected and what was found.
pub(crate) fn within(value: Duration, range: &DurationRange) -> Result<(), String> {
    if value < range.min || value > range.max {
        return Err(format!(
            "a duration {}, got {}",
            range.text,
            humantime::format_duration(value)
        ));
    }
    Ok(())
}

/// `url` as shown to people: the user name, password and query — where credentials hide —
/// replaced by `…`, the fragment dropped.
pub fn display_url(url: &Url) -> String {
    let mut shown = url[..Position::BeforeUsername].to_owned();
    if !url.username().is_empty() || url.password().is_some() {
        shown.push_str("…@");
    }
    shown.push_str(&url[Position::BeforeHost..Position::AfterPath]);
    if url.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

/// `text`, a URL as written, quoted for a message: as written when it holds no user info,
/// query or fragment; through [`display_url`] when it does; a text that is no URL only
/// when it holds no `@` or `?` (and so no credential).
pub(crate) fn quote_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(url)
            if url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none()
                && !text.contains('@') =>
        {
            format!("{text:?}")
        }
        Ok(url) if url.has_host() => format!("{:?}", display_url(&url)),
        _ if text.contains(['@', '?']) => {
            "a URL that is not shown (it may hold credentials)".to_owned()
        }
        _ => format!("{text:?}"),
    }
}

/// An absolute `http://` or `https://` URL without credentials.
pub(super) fn parse_http_url(text: &str) -> Result<Url, String> {
    let expected = || {
        format!(
            "an absolute http:// or https:// URL, got {}",
            quote_url(text)
        )
    };
    let url = Url::parse(text).map_err(|_| expected())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(expected());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL without credentials (use basic_auth with a password file)".to_owned());
    }
    Ok(url)
}

/// An `http://` proxy URL without credentials as `(host, port)`. A URL with a user or
/// password is refused without being echoed, since the password is in it.
pub(crate) fn parse_proxy(text: &str) -> Result<(String, u16), String> {
    let parsed = Url::parse(text).ok();
    if text.contains('@')
        || parsed
            .as_ref()
            .is_some_and(|u| !u.username().is_empty() || u.password().is_some())
    {
        return Err(
            "a proxy URL without credentials such as \"http://proxy:3128\", with them in proxy_auth = { username = \"…\", password = { file = \"…\" } }"
                .to_owned(),
        );
    }
    let u = parsed
        .filter(|u| u.scheme() == "http" && u.host_str().is_some())
        .ok_or_else(|| {
            format!(
                "an http:// proxy URL such as \"http://proxy:3128\", got {}",
                quote_url(text)
            )
        })?;
    Ok((
        u.host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        u.port_or_known_default().unwrap_or(80),
    ))
}

/// Target names are label values and environment variable segments: lowercase letters,
/// digits, `_` and `-`, starting with a letter or digit, without `__` (the nesting
/// separator).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a name of at most 63 lowercase letters, digits, '_' and '-', starting with a letter or digit, without \"__\", got {name:?}"
        ))
    }
}
