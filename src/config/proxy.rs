//! The HTTP proxy of a target or a check: its URL (`proxy`) and the credentials it asks
//! for (`proxy_auth`), which come from a file or an environment variable like every other
//! secret and never from the URL.

use http::HeaderValue;

use super::raw::{RawBasicAuth, RawCheck, RawTarget};
use super::secrets::read_secret;
use super::values::parse_proxy;
use super::{ConfigError, Context, Fingerprint};
use crate::net::connect::Proxy;

/// The proxy of a target's own connections (TLS check, canary): `targets.<name>.proxy`
/// and `.proxy_auth`. The password goes into `fingerprint`.
pub(crate) fn target_proxy(
    target_name: &str,
    target: &RawTarget,
    ctx: &Context<'_>,
    fingerprint: &mut Fingerprint,
) -> Result<Option<Proxy>, ConfigError> {
    build(
        &format!("targets.{target_name}"),
        target.proxy.as_deref(),
        target.proxy_auth.as_ref(),
        ctx,
        fingerprint,
    )
}

/// The proxy of an HTTP check at `key`: its own `proxy` with its own `proxy_auth`, else the
/// target's pair. Credentials never cross to another proxy than the one beside them.
pub(crate) fn check_proxy(
    key: &str,
    check: &RawCheck,
    target_name: &str,
    target: &RawTarget,
    ctx: &Context<'_>,
    fingerprint: &mut Fingerprint,
) -> Result<Option<Proxy>, ConfigError> {
    if check.proxy.is_some() || check.proxy_auth.is_some() {
        build(
            key,
            check.proxy.as_deref(),
            check.proxy_auth.as_ref(),
            ctx,
            fingerprint,
        )
    } else {
        target_proxy(target_name, target, ctx, fingerprint)
    }
}

fn build(
    scope: &str,
    url: Option<&str>,
    auth: Option<&RawBasicAuth>,
    ctx: &Context<'_>,
    fingerprint: &mut Fingerprint,
) -> Result<Option<Proxy>, ConfigError> {
    let Some(url) = url else {
        return match auth {
            Some(_) => Err(ctx.invalid(
                &format!("{scope}.proxy_auth"),
                "a `proxy` beside it: credentials go only to the proxy they are for".to_owned(),
            )),
            None => Ok(None),
        };
    };
    let (host, port) = parse_proxy(url).map_err(|e| ctx.invalid(&format!("{scope}.proxy"), e))?;
    let authorization = match auth {
        Some(auth) => {
            let key = format!("{scope}.proxy_auth");
            let username = auth.check(&key, ctx)?;
            let password = read_secret(&auth.password, &format!("{key}.password"), ctx)?;
            fingerprint.secret(password.expose());
            Some(
                basic_authorization(username, password.expose()).ok_or_else(|| {
                    ctx.invalid(
                        &format!("{key}.username"),
                        "a user name of visible ASCII characters without ':'".to_owned(),
                    )
                })?,
            )
        }
        None => None,
    };
    Ok(Some(Proxy {
        host,
        port,
        authorization,
    }))
}

/// `Basic base64(user:password)`, marked sensitive; `None` when it cannot be a header
/// value or the user name holds a `:` (which would move it into the password).
pub(crate) fn basic_authorization(username: &str, password: &str) -> Option<HeaderValue> {
    use base64::Engine as _;
    if username.contains(':') {
        return None;
    }
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::checks::CheckKind;
    use crate::config::ConfigSource;

    /// `monitor:s3cret`
    const CREDENTIALS: &str = "Basic bW9uaXRvcjpzM2NyZXQ=";

    const CONFIG: &str = r#"
[targets.p]
url = "https://glitchtip.example.com"
proxy = "http://proxy.example.com:3128"
proxy_auth = { username = "monitor", password = { env = "PROXY_PASSWORD" } }
[targets.p.checks.other_proxy]
path = "/x"
proxy = "http://other.example.com:8080"
[targets.p.canary]
dsn = { env = "DSN" }
token = { env = "PROXY_PASSWORD" }
organization = "org"
"#;

    /// Each check's proxy as `(name, host, Proxy-Authorization)`.
    fn proxies() -> Vec<(String, String, Option<String>)> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exporter.toml");
        std::fs::write(&file, CONFIG).unwrap();
        let env = HashMap::from([
            ("PROXY_PASSWORD".to_owned(), "s3cret".to_owned()),
            (
                "DSN".to_owned(),
                "https://key@glitchtip.example.com/1".to_owned(),
            ),
        ]);
        let config = ConfigSource {
            file: Some(file),
            env: Some(env),
            ..ConfigSource::default()
        }
        .load()
        .unwrap();
        let mut found = Vec::new();
        for check in &config.targets[0].checks {
            let proxies = match &check.kind {
                CheckKind::Http(http) => vec![http.proxy.clone()],
                CheckKind::Tls(tls) => vec![tls.proxy.clone()],
                CheckKind::Canary(canary) => {
                    vec![canary.ingest.proxy.clone(), canary.api.proxy.clone()]
                }
            };
            for proxy in proxies {
                let proxy = proxy.unwrap();
                let auth = proxy
                    .authorization
                    .as_ref()
                    .map(|v| v.to_str().unwrap().to_owned());
                found.push((check.name.clone(), proxy.host, auth));
            }
        }
        found
    }

    #[test]
    fn every_prober_of_the_target_gets_its_proxy_credentials_and_no_other_proxy_does() {
        let found = proxies();
        let auth = Some(CREDENTIALS.to_owned());
        let proxy = "proxy.example.com".to_owned();
        for (name, host, authorization) in &found {
            if name == "other_proxy" {
                assert_eq!((host.as_str(), authorization), ("other.example.com", &None));
            } else {
                assert_eq!((host, authorization), (&proxy, &auth), "{name}");
            }
        }
        let names: Vec<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "api",
                "canary",
                "canary",
                "dashboard",
                "database",
                "health",
                "other_proxy",
                "tls"
            ]
        );
    }

    #[test]
    fn the_credentials_are_not_in_debug_output() {
        let proxy = super::Proxy {
            host: "proxy".to_owned(),
            port: 3128,
            authorization: super::basic_authorization("monitor", "s3cret"),
        };
        let shown = format!("{proxy:?}");
        assert_eq!(
            shown,
            "Proxy { host: \"proxy\", port: 3128, authorization: true }"
        );
    }
}
