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
            let password = read_secret(&auth.password, &format!("{key}.password"), ctx)?;
            fingerprint.secret(&password);
            Some(
                basic_authorization(&auth.username, &password).ok_or_else(|| {
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
