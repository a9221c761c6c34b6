//! One `[targets.<name>]` table into a [`Target`]: its URL, the default checks merged
//! field by field with the configured ones, and what every check builder of the target
//! shares — where the check sits ([`CheckInput`]) and its timing ([`check_schedule`]).
//! Each kind of check is then built in its own file ([`super::http_check`],
//! [`super::tls_check`]; the canary and the queue beside their code).

use std::collections::BTreeMap;
use std::sync::Arc;

use url::Url;

use super::raw::{RawCheck, RawConfig, RawTarget};
use super::values::{check_name as valid_name, parse_http_url, within};
use super::{ConfigError, Context, Target, defaults, http_check, tls_check};
use crate::checks::Schedule;
use crate::checks::tls::CHECK_NAME as TLS_CHECK;
use crate::net::tls::ClientConfigCache;

/// Validates target `name` and builds its enabled checks, sorted by name, and its queue.
pub(super) fn build(
    name: &str,
    target: &RawTarget,
    raw: &RawConfig,
    tls_cache: &mut ClientConfigCache,
    ctx: &Context<'_>,
) -> Result<Target, ConfigError> {
    let key = format!("targets.{name}");
    let url_text = target.url.as_deref().ok_or_else(|| {
        ctx.invalid(
            &format!("{key}.url"),
            "a base URL such as \"https://glitchtip.example.com\"".to_owned(),
        )
    })?;
    let url = parse_http_url(url_text).map_err(|e| ctx.invalid(&format!("{key}.url"), e))?;
    // A base URL has no use for a query, and one would be a place for a token that the
    // landing page and `Debug` output show.
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ctx.invalid(
            &format!("{key}.url"),
            "a base URL without a query or fragment (credentials go in a check's bearer_token or basic_auth)".to_owned(),
        ));
    }

    let mut merged: BTreeMap<String, RawCheck> = BTreeMap::new();
    if target.default_checks.unwrap_or(true) {
        for (check_name, check) in defaults::checks() {
            merged.insert(check_name.to_owned(), check);
        }
        // An https:// target's certificate is watched by default.
        if url.scheme() == "https" {
            merged.insert(TLS_CHECK.to_owned(), RawCheck::default());
        }
    }
    for (check_name, over) in &target.checks {
        valid_name(check_name)
            .map_err(|e| ctx.invalid(&format!("{key}.checks.{check_name}"), e))?;
        if check_name == crate::canary::CHECK_NAME {
            return Err(ctx.invalid(
                &format!("{key}.checks.{check_name}"),
                format!(
                    "another name: \"canary\" is the ingest canary, configured in [{key}.canary]"
                ),
            ));
        }
        let merged_check = match merged.remove(check_name) {
            Some(base) => overlay(base, over.clone()),
            None => {
                if over.path.is_none()
                    && over.url.is_none()
                    && over.enabled != Some(false)
                    && check_name != TLS_CHECK
                {
                    return Err(ctx.invalid(
                        &format!("{key}.checks.{check_name}"),
                        "a `path` or a `url` (this is not one of the default checks health, database, api, dashboard)".to_owned(),
                    ));
                }
                over.clone()
            }
        };
        merged.insert(check_name.clone(), merged_check);
    }

    let mut checks = Vec::new();
    let mut version_check: Option<String> = None;
    for (check_name, check) in merged {
        if check.enabled == Some(false) {
            continue;
        }
        let check_key = format!("{key}.checks.{check_name}");
        let input = CheckInput {
            target_name: name,
            base: &url,
            target,
            raw,
            name: &check_name,
            check: &check,
            key: &check_key,
        };
        if check_name == TLS_CHECK {
            checks.push(Arc::new(tls_check::build(&input, tls_cache, ctx)?));
            continue;
        }
        if check
            .version_field
            .as_deref()
            .is_some_and(|f| !f.is_empty())
        {
            if let Some(other) = &version_check {
                return Err(ctx.invalid(
                    &format!("{check_key}.version_field"),
                    format!(
                        "at most one check per target reading the version, but {other} and {check_name} both do (set version_field = \"\" on one)"
                    ),
                ));
            }
            version_check = Some(check_name.clone());
        }
        checks.push(Arc::new(http_check::build(&input, tls_cache, ctx)?));
    }
    if let Some(raw_canary) = &target.canary
        && let Some(spec) =
            crate::canary::config::build(name, &url, target, raw_canary, tls_cache, ctx)?
    {
        checks.push(Arc::new(spec));
        checks.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let queue = match &target.queue {
        Some(raw_queue) => crate::queue::config::build(name, raw_queue, ctx)?.map(Arc::new),
        None => None,
    };
    // A target that watches nothing is a mistake, not a choice: a queue alone is a reading.
    if checks.is_empty() && queue.is_none() {
        return Err(ctx.invalid(
            &key,
            format!("at least one enabled check, got none: keep the default checks (default_checks = true) or add a [{key}.checks.<name>] table with a path"),
        ));
    }
    Ok(Target {
        name: name.to_owned(),
        url,
        checks,
        queue,
    })
}

/// Fields set in `over` replace those of `base`.
fn overlay(base: RawCheck, over: RawCheck) -> RawCheck {
    let (over_has_url, over_has_path) = (over.url.is_some(), over.path.is_some());
    RawCheck {
        enabled: over.enabled.or(base.enabled),
        method: over.method.or(base.method),
        // An absolute URL replaces the default path, and the other way round.
        path: if over_has_url {
            over.path
        } else {
            over.path.or(base.path)
        },
        url: if over_has_path {
            over.url
        } else {
            over.url.or(base.url)
        },
        body: over.body.or(base.body),
        expect_status: over.expect_status.or(base.expect_status),
        keyword: over.keyword.or(base.keyword),
        regex: over.regex.or(base.regex),
        json: over.json.or(base.json),
        version_field: over.version_field.or(base.version_field),
        headers: over.headers.or(base.headers),
        bearer_token: over.bearer_token.or(base.bearer_token),
        basic_auth: over.basic_auth.or(base.basic_auth),
        interval: over.interval.or(base.interval),
        timeout: over.timeout.or(base.timeout),
        retry_interval: over.retry_interval.or(base.retry_interval),
        max_body_bytes: over.max_body_bytes.or(base.max_body_bytes),
        follow_redirects: over.follow_redirects.or(base.follow_redirects),
        max_redirects: over.max_redirects.or(base.max_redirects),
        tls: over.tls.or(base.tls),
        proxy: over.proxy.or(base.proxy),
        proxy_auth: over.proxy_auth.or(base.proxy_auth),
        sensitive_headers: over.sensitive_headers.or(base.sensitive_headers),
        allow_https_to_http_redirect: over
            .allow_https_to_http_redirect
            .or(base.allow_https_to_http_redirect),
        address: over.address.or(base.address),
    }
}

/// One merged check and where it sits.
pub(super) struct CheckInput<'a> {
    pub(super) target_name: &'a str,
    pub(super) base: &'a Url,
    pub(super) target: &'a RawTarget,
    pub(super) raw: &'a RawConfig,
    pub(super) name: &'a str,
    pub(super) check: &'a RawCheck,
    pub(super) key: &'a str,
}

/// The config key a timing value came from: the check, its target, or `[defaults]`.
fn schedule_key(input: &CheckInput<'_>, field: &str, on_check: bool, on_target: bool) -> String {
    if on_check {
        format!("{}.{field}", input.key)
    } else if on_target {
        format!("targets.{}.{field}", input.target_name)
    } else {
        format!("defaults.{field}")
    }
}

/// A check's timing, the most specific setting winning; errors name the key the value
/// came from.
pub(super) fn check_schedule(
    input: &CheckInput<'_>,
    ctx: &Context<'_>,
) -> Result<Schedule, ConfigError> {
    let CheckInput {
        target, raw, check, ..
    } = *input;
    let invalid = |k: &str, e: String| ctx.invalid(k, e);
    let d = &raw.defaults;
    let schedule = Schedule {
        interval: check
            .interval
            .or(target.interval)
            .or(d.interval)
            .unwrap_or(defaults::INTERVAL),
        timeout: check
            .timeout
            .or(target.timeout)
            .or(d.timeout)
            .unwrap_or(defaults::TIMEOUT),
        retry_interval: check
            .retry_interval
            .or(target.retry_interval)
            .or(d.retry_interval)
            .unwrap_or(defaults::RETRY_INTERVAL),
    };
    let interval_key = schedule_key(
        input,
        "interval",
        check.interval.is_some(),
        target.interval.is_some(),
    );
    let timeout_key = schedule_key(
        input,
        "timeout",
        check.timeout.is_some(),
        target.timeout.is_some(),
    );
    let retry_key = schedule_key(
        input,
        "retry_interval",
        check.retry_interval.is_some(),
        target.retry_interval.is_some(),
    );
    for (k, value) in [
        (&interval_key, schedule.interval),
        (&timeout_key, schedule.timeout),
        (&retry_key, schedule.retry_interval),
    ] {
        if value.is_zero() {
            return Err(invalid(
                k,
                "a duration above zero, such as \"5s\"".to_owned(),
            ));
        }
        within(value, &defaults::TIMING_RANGE).map_err(|e| invalid(k, e))?;
    }
    if schedule.timeout > schedule.interval {
        return Err(invalid(
            &timeout_key,
            format!(
                "a timeout no longer than the interval ({}), got {}",
                humantime::format_duration(schedule.interval),
                humantime::format_duration(schedule.timeout)
            ),
        ));
    }
    Ok(schedule)
}
