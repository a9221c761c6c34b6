//! The `tls` check of a target: its own handshake against the target's host (or
//! `address`), the certificate chain judged apart from it ([`crate::checks::tls`]).

use rustls::pki_types::ServerName;

use super::raw::RawTls;
use super::target::{CheckInput, check_schedule};
use super::{ConfigError, Context, Fingerprint, target_proxy};
use crate::checks::tls::CHECK_NAME as TLS_CHECK;
use crate::checks::{CheckKind, CheckSpec, TlsCheck};
use crate::net::tls::ClientConfigCache;

/// The `tls` check: only `enabled`, `address`, the timing keys and `tls` (`ca_file`,
/// `server_name`) apply; an HTTP-only key is an error naming it.
pub(super) fn build(
    input: &CheckInput<'_>,
    tls_cache: &mut ClientConfigCache,
    ctx: &Context<'_>,
) -> Result<CheckSpec, ConfigError> {
    let CheckInput {
        target_name,
        base,
        target,
        name,
        check,
        key,
        ..
    } = *input;
    let field = |f: &str| format!("{key}.{f}");
    let http_only = [
        ("method", check.method.is_some()),
        ("path", check.path.is_some()),
        ("url", check.url.is_some()),
        ("body", check.body.is_some()),
        ("expect_status", check.expect_status.is_some()),
        ("keyword", check.keyword.is_some()),
        ("regex", check.regex.is_some()),
        ("json", check.json.is_some()),
        ("version_field", check.version_field.is_some()),
        ("headers", check.headers.is_some()),
        ("bearer_token", check.bearer_token.is_some()),
        ("basic_auth", check.basic_auth.is_some()),
        ("max_body_bytes", check.max_body_bytes.is_some()),
        ("follow_redirects", check.follow_redirects.is_some()),
        ("max_redirects", check.max_redirects.is_some()),
        ("proxy", check.proxy.is_some()),
        ("proxy_auth", check.proxy_auth.is_some()),
        ("sensitive_headers", check.sensitive_headers.is_some()),
        (
            "allow_https_to_http_redirect",
            check.allow_https_to_http_redirect.is_some(),
        ),
    ];
    if let Some((k, _)) = http_only.iter().find(|(_, set)| *set) {
        return Err(ctx.invalid(
            &field(k),
            "no such key on the tls check, which takes enabled, address, interval, timeout, retry_interval and tls = { ca_file, server_name }".to_owned(),
        ));
    }
    if check
        .tls
        .as_ref()
        .is_some_and(|t| t.insecure_skip_verify.is_some())
    {
        return Err(ctx.invalid(
            &field("tls.insecure_skip_verify"),
            "no such key on the tls check, which always verifies the certificate and reports the result".to_owned(),
        ));
    }
    let schedule = check_schedule(input, ctx)?;

    let (host, port) = match &check.address {
        Some(address) => parse_address(address).map_err(|e| ctx.invalid(&field("address"), e))?,
        None if base.scheme() == "https" => (
            base.host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            base.port_or_known_default().unwrap_or(443),
        ),
        None => {
            return Err(ctx.invalid(
                &field("address"),
                format!(
                    "a \"host:port\" to connect to, since the target URL {:?} is not https://",
                    super::display_url(base)
                ),
            ));
        }
    };

    // The check's own tls table replaces the target's, as for the HTTP checks.
    let tls_raw: RawTls = check.tls.clone().or(target.tls.clone()).unwrap_or_default();
    let tls_key = if check.tls.is_some() {
        field("tls")
    } else {
        format!("targets.{target_name}.tls")
    };
    let server_name = match &tls_raw.server_name {
        Some(n) => ServerName::try_from(n.clone()).map_err(|_| {
            ctx.invalid(
                &format!("{tls_key}.server_name"),
                format!("a DNS name or IP address, got {n:?}"),
            )
        })?,
        None => ServerName::try_from(host.clone()).map_err(|_| {
            ctx.invalid(
                &format!("{tls_key}.server_name"),
                format!("a DNS name or IP address to verify the certificate against, since {host:?} is not one"),
            )
        })?,
    };
    let ca_file = tls_raw.ca_file.as_deref().map(|p| ctx.path(p));
    // Shared by every TLS check with the same CA file: a copy of the root store per check
    // would cost 15 kB each.
    let roots = tls_cache.trust_roots(ca_file.as_deref()).map_err(|e| {
        ctx.invalid(
            &format!("{tls_key}.ca_file"),
            format!("a readable PEM file of CA certificates ({e})"),
        )
    })?;
    let mut fingerprint = Fingerprint::default();
    let proxy = target_proxy(target_name, target, ctx, &mut fingerprint)?;
    let fingerprint = fingerprint
        .add(check)
        .add(&(
            TLS_CHECK,
            target_name,
            base.as_str(),
            &target.tls,
            &target.proxy,
            &target.proxy_auth,
        ))
        .add(&schedule)
        // A CA file rewritten in place changes the check too.
        .add(&roots.digest())
        .finish();

    Ok(CheckSpec {
        target: target_name.to_owned(),
        name: name.to_owned(),
        schedule,
        kind: CheckKind::Tls(TlsCheck {
            host,
            port,
            server_name,
            roots,
            proxy,
        }),
        fingerprint,
    })
}

/// `host:port`, `[v6]:port`; the host without brackets.
fn parse_address(text: &str) -> Result<(String, u16), String> {
    let expected =
        || format!("a \"host:port\" such as \"glitchtip.example.com:443\", got {text:?}");
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(expected)?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| expected())?
            .to_string(),
        None if host.is_empty() || host.contains([':', '[', ']', '/', ' ']) => {
            return Err(expected());
        }
        None => host.to_owned(),
    };
    Ok((host, port))
}
