//! An HTTP check: one `[targets.<name>.checks.<name>]` table (a default check merged with
//! its overrides) into a [`CheckKind::Http`] spec — method, URL, expectations, headers and
//! secrets, TLS options and proxy.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::proxy::{basic_authorization, check_proxy};
use super::raw::{RawStatus, RawTls};
use super::secrets::read_secret;
use super::target::{CheckInput, check_schedule};
use super::values::parse_http_url;
use super::{ConfigError, Context, Fingerprint, client_tls, defaults};
use crate::checks::{
    BodyExpectations, CheckKind, CheckSpec, HttpCheck, JsonExpectation, JsonPath, StatusSet,
};
use crate::net::tls::ClientConfigCache;

/// Validates one HTTP check into its spec.
pub(super) fn build(
    input: &CheckInput<'_>,
    tls_cache: &mut ClientConfigCache,
    ctx: &Context<'_>,
) -> Result<CheckSpec, ConfigError> {
    let CheckInput {
        target_name,
        base,
        target,
        raw,
        name,
        check,
        key,
    } = *input;
    if check.address.is_some() {
        return Err(ctx.invalid(
            &format!("{key}.address"),
            "no `address` on an HTTP check: only the tls check takes one (use `url` here)"
                .to_owned(),
        ));
    }
    let invalid = |k: &str, e: String| ctx.invalid(k, e);
    let field = |f: &str| format!("{key}.{f}");
    let d = &raw.defaults;
    let schedule = check_schedule(input, ctx)?;
    let max_body_bytes = check
        .max_body_bytes
        .or(target.max_body_bytes)
        .or(d.max_body_bytes)
        .unwrap_or(defaults::MAX_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > defaults::MAX_BODY_BYTES_LIMIT {
        let size_key = if check.max_body_bytes.is_some() {
            field("max_body_bytes")
        } else if target.max_body_bytes.is_some() {
            format!("targets.{target_name}.max_body_bytes")
        } else {
            "defaults.max_body_bytes".to_owned()
        };
        return Err(invalid(
            &size_key,
            format!(
                "a number of bytes from 1 to {} (64 MiB), got {max_body_bytes}",
                defaults::MAX_BODY_BYTES_LIMIT
            ),
        ));
    }
    let max_redirects = check.max_redirects.unwrap_or(defaults::MAX_REDIRECTS);
    if max_redirects > defaults::MAX_REDIRECTS_LIMIT {
        return Err(invalid(
            &field("max_redirects"),
            format!(
                "a number from 0 to {}, got {max_redirects}",
                defaults::MAX_REDIRECTS_LIMIT
            ),
        ));
    }

    let method_text = check.method.as_deref().unwrap_or("GET");
    let method = match method_text.to_ascii_uppercase().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "OPTIONS" | "PATCH" | "DELETE") => {
            Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET)
        }
        _ => {
            return Err(invalid(
                &field("method"),
                format!("one of GET, HEAD, POST, PUT, OPTIONS, PATCH, DELETE, got {method_text:?}"),
            ));
        }
    };

    let url = match (&check.path, &check.url) {
        (Some(_), Some(_)) => {
            return Err(invalid(key, "either `path` or `url`, not both".to_owned()));
        }
        (Some(path), None) => {
            if !path.starts_with('/') {
                return Err(invalid(
                    &field("path"),
                    format!("a path starting with \"/\", got {path:?}"),
                ));
            }
            // Keep the base URL's own path prefix (GlitchTip behind /glitchtip/).
            let mut joined = base.clone();
            let prefix = base.path().trim_end_matches('/');
            let (p, q) = path
                .split_once('?')
                .map_or((path.as_str(), None), |(p, q)| (p, Some(q)));
            joined.set_path(&format!("{prefix}{p}"));
            joined.set_query(q);
            joined
        }
        (None, Some(url)) => parse_http_url(url).map_err(|e| invalid(&field("url"), e))?,
        (None, None) => base.clone(),
    };

    let expect_status = status_set(check.expect_status.as_deref())
        .map_err(|e| invalid(&field("expect_status"), e))?;

    let regex =
        match check.regex.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| {
                invalid(&field("regex"), format!("a valid regular expression: {e}"))
            })?),
            None => None,
        };
    let json = match &check.json {
        Some(j) => Some(JsonExpectation {
            path: JsonPath::parse(&j.path).ok_or_else(|| {
                invalid(
                    &field("json.path"),
                    format!(
                        "a dot-separated field path such as \"version\", got {:?}",
                        j.path
                    ),
                )
            })?,
            equals: j.equals.clone(),
        }),
        None => None,
    };
    let version_field = match check.version_field.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(JsonPath::parse(p).ok_or_else(|| {
            invalid(
                &field("version_field"),
                format!("a dot-separated field path, got {p:?}"),
            )
        })?),
        None => None,
    };

    let mut headers = HeaderMap::new();
    let mut fingerprint = Fingerprint::default();
    for (scope_key, map) in [
        (format!("targets.{target_name}.headers"), &target.headers),
        (field("headers"), &check.headers),
    ] {
        for (k, v) in map.iter().flatten() {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                invalid(
                    &format!("{scope_key}.{k}"),
                    "a valid HTTP header name".to_owned(),
                )
            })?;
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                invalid(
                    &format!("{scope_key}.{k}"),
                    "a header value of visible ASCII characters".to_owned(),
                )
            })?;
            // A configured header may carry a credential (an API key): `Debug` hides it.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
    }
    if check.bearer_token.is_some() && check.basic_auth.is_some() {
        return Err(invalid(
            key,
            "either `bearer_token` or `basic_auth`, not both".to_owned(),
        ));
    }
    if (check.bearer_token.is_some() || check.basic_auth.is_some())
        && headers.contains_key(http::header::AUTHORIZATION)
    {
        return Err(invalid(
            key,
            "an Authorization header from `headers` or from `bearer_token`/`basic_auth`, not both"
                .to_owned(),
        ));
    }
    if let Some(secret) = &check.bearer_token {
        let token = read_secret(secret, &field("bearer_token"), ctx)?;
        fingerprint.secret(token.expose());
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                invalid(
                    &field("bearer_token"),
                    "a token of visible ASCII characters".to_owned(),
                )
            })?;
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
    }
    if let Some(auth) = &check.basic_auth {
        let username = auth.check(&field("basic_auth"), ctx)?;
        let password = read_secret(&auth.password, &field("basic_auth.password"), ctx)?;
        fingerprint.secret(password.expose());
        let value = basic_authorization(username, password.expose()).ok_or_else(|| {
            invalid(
                &field("basic_auth"),
                "a user name of visible ASCII characters".to_owned(),
            )
        })?;
        headers.insert(http::header::AUTHORIZATION, value);
    }
    let sensitive_headers = sensitive_headers(input, ctx)?;

    let tls_raw: RawTls = check.tls.clone().or(target.tls.clone()).unwrap_or_default();
    let tls_key = if check.tls.is_some() {
        field("tls")
    } else {
        format!("targets.{target_name}.tls")
    };
    let tls = client_tls(&tls_raw, &tls_key, tls_cache, ctx)?;

    let proxy = check_proxy(key, check, target_name, target, ctx, &mut fingerprint)?;

    fingerprint
        .add(&tls.ca_digest)
        .add(check)
        .add(&(
            target_name,
            base.as_str(),
            &target.headers,
            &target.tls,
            &target.proxy,
            &target.proxy_auth,
            &target.sensitive_headers,
        ))
        .add(&schedule)
        .add(&max_body_bytes);

    Ok(CheckSpec {
        target: target_name.to_owned(),
        name: name.to_owned(),
        schedule,
        kind: CheckKind::Http(HttpCheck {
            method,
            url,
            headers,
            request_body: check.body.clone().map(bytes::Bytes::from),
            expect_status,
            body: BodyExpectations {
                keyword: check.keyword.clone().filter(|k| !k.is_empty()),
                regex,
                json,
            },
            version_field,
            follow_redirects: check.follow_redirects.unwrap_or(false),
            max_redirects,
            sensitive_headers,
            allow_https_to_http_redirect: check
                .allow_https_to_http_redirect
                .unwrap_or(defaults::ALLOW_HTTPS_TO_HTTP_REDIRECT),
            max_body_bytes,
            tls: tls.config,
            insecure_skip_verify: tls.insecure_skip_verify,
            server_name: tls.server_name,
            proxy,
        }),
        fingerprint: fingerprint.finish(),
    })
}

/// The headers a redirect to another origin drops: the target's `sensitive_headers` and
/// the check's, besides the ones always dropped ([`crate::checks::http`]).
fn sensitive_headers(
    input: &CheckInput<'_>,
    ctx: &Context<'_>,
) -> Result<Vec<HeaderName>, ConfigError> {
    let target_key = format!("targets.{}.sensitive_headers", input.target_name);
    let check_key = format!("{}.sensitive_headers", input.key);
    let mut names = Vec::new();
    for (key, list) in [
        (target_key, &input.target.sensitive_headers),
        (check_key, &input.check.sensitive_headers),
    ] {
        for name in list.iter().flatten() {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ctx.invalid(
                    &key,
                    format!("a list of HTTP header names such as [\"X-Api-Key\"], got {name:?}"),
                )
            })?;
            if !names.contains(&header) {
                names.push(header);
            }
        }
    }
    Ok(names)
}

fn status_set(raw: Option<&[RawStatus]>) -> Result<StatusSet, String> {
    let Some(raw) = raw else {
        return Ok(StatusSet(vec![(200, 200)]));
    };
    if raw.is_empty() {
        return Err("at least one status code or range".to_owned());
    }
    let code = |n: i64| -> Result<u16, String> {
        u16::try_from(n)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| format!("status codes from 100 to 599, got {n}"))
    };
    let mut ranges = Vec::with_capacity(raw.len());
    for entry in raw {
        let range = match entry {
            RawStatus::Code(n) => {
                let c = code(*n)?;
                (c, c)
            }
            RawStatus::Text(t) => {
                let bad =
                    || format!("a code such as 200 or a range such as \"200-299\", got {t:?}");
                let (lo, hi) = t.split_once('-').unwrap_or((t, t));
                let lo = code(lo.trim().parse().map_err(|_| bad())?)?;
                let hi = code(hi.trim().parse().map_err(|_| bad())?)?;
                if lo > hi {
                    return Err(format!(
                        "a range whose start is not above its end, got {t:?}"
                    ));
                }
                (lo, hi)
            }
        };
        ranges.push(range);
    }
    Ok(StatusSet(ranges))
}
