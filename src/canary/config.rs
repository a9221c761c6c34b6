//! `[targets.<name>.canary]`: the raw form as written, and its validation into the
//! target's `canary` check. Kept beside the canary code so that the whole feature reads in
//! one place; [`crate::config`] calls [`build`].
//!
//! The canary has its own timing (`interval`, `timeout`, defaults in
//! [`crate::config::defaults`]); the target's and `[defaults]` timing keys are for the
//! HTTP checks. It uses the target's `tls` (trust, verification, server name) and `proxy`.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;
use url::Url;

use super::dsn::Dsn;
use super::{CHECK_NAME, CanaryCheck, Endpoint, Lookup, Runtime, client};
use crate::checks::{CheckKind, CheckSpec, Schedule};
use crate::config::raw::{RawSecret, RawTarget, RawTls};
use crate::config::{
    ConfigError, Context, Fingerprint, client_tls, defaults, read_secret, target_proxy, within,
};
use crate::net::tls::ClientConfigCache;

/// `[targets.<name>.canary]`, as written.
#[derive(Debug, Default, Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    /// `false` turns the canary off (e.g. from the environment) without removing the table.
    pub enabled: Option<bool>,
    /// The DSN of the project the canary sends to: `{ file = "..." }` or `{ env = "VAR" }`.
    pub dsn: Option<RawSecret>,
    /// An API token with scope `event:read`: `{ file = "..." }` or `{ env = "VAR" }`.
    pub token: Option<RawSecret>,
    /// The organization slug (the issue search is per organization).
    pub organization: Option<String>,
    /// The project slug: when set, the event is looked up at the project's event endpoint
    /// instead of the organization's issue search.
    pub project: Option<String>,
    /// `envelope` (default) or `store`.
    pub endpoint: Option<String>,
    /// Time between two canaries.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// How long one canary may take, sending and polling included.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// GlitchTip slugs: letters, digits, `_` and `-`.
fn slug(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 100
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Validates the canary of target `target_name` (base URL `base`) into its check; `None`
/// when `enabled = false`.
pub fn build(
    target_name: &str,
    base: &Url,
    target: &RawTarget,
    raw: &RawCanary,
    tls_cache: &mut ClientConfigCache,
    ctx: &Context<'_>,
) -> Result<Option<CheckSpec>, ConfigError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let key = format!("targets.{target_name}.canary");
    let field = |f: &str| format!("{key}.{f}");
    let mut fingerprint = Fingerprint::default();

    let dsn_source = raw.dsn.as_ref().ok_or_else(|| {
        ctx.invalid(
            &field("dsn"),
            "a DSN source, { file = \"/run/secrets/canary-dsn\" } or { env = \"VAR\" }: the DSN of a project used by the canary only".to_owned(),
        )
    })?;
    let dsn_text = read_secret(dsn_source, &field("dsn"), ctx)?;
    fingerprint.secret(dsn_text.expose());
    let dsn = Dsn::parse(dsn_text.expose()).map_err(|e| {
        ctx.invalid(
            &field("dsn"),
            format!(
                "a DSN such as \"https://<public key>@glitchtip.example.com/<project id>\" ({e})"
            ),
        )
    })?;

    let token_source = raw.token.as_ref().ok_or_else(|| {
        ctx.invalid(
            &field("token"),
            "an API token source with scope event:read, { file = \"/run/secrets/canary-token\" } or { env = \"VAR\" }".to_owned(),
        )
    })?;
    let token = read_secret(token_source, &field("token"), ctx)?;
    fingerprint.secret(token.expose());
    let token = token.expose().trim();
    let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .ok()
        .filter(|_| token.bytes().all(|b| b.is_ascii_graphic()))
        .map(|mut v| {
            v.set_sensitive(true);
            v
        })
        .ok_or_else(|| {
            ctx.invalid(
                &field("token"),
                "a token of visible ASCII characters without spaces".to_owned(),
            )
        })?;

    let organization = raw.organization.clone().ok_or_else(|| {
        ctx.invalid(
            &field("organization"),
            "the organization slug, as in /api/0/organizations/<slug>/".to_owned(),
        )
    })?;
    if !slug(&organization) {
        return Err(ctx.invalid(
            &field("organization"),
            format!("a slug of letters, digits, '_' and '-', got {organization:?}"),
        ));
    }
    let lookup = match &raw.project {
        None => Lookup::IssueSearch,
        Some(project) if slug(project) => Lookup::ProjectEvents {
            project: project.clone(),
        },
        Some(project) => {
            return Err(ctx.invalid(
                &field("project"),
                format!("a project slug of letters, digits, '_' and '-', got {project:?}"),
            ));
        }
    };
    let endpoint = match raw.endpoint.as_deref().unwrap_or("envelope") {
        "envelope" => Endpoint::Envelope,
        "store" => Endpoint::Store,
        other => {
            return Err(ctx.invalid(
                &field("endpoint"),
                format!("\"envelope\" or \"store\", got {other:?}"),
            ));
        }
    };

    let interval = raw.interval.unwrap_or(defaults::CANARY_INTERVAL);
    let timeout = raw.timeout.unwrap_or(defaults::CANARY_TIMEOUT);
    for (k, value) in [("interval", interval), ("timeout", timeout)] {
        if value.is_zero() {
            return Err(ctx.invalid(
                &field(k),
                "a duration above zero, such as \"30s\"".to_owned(),
            ));
        }
        within(value, &defaults::TIMING_RANGE).map_err(|e| ctx.invalid(&field(k), e))?;
    }
    if timeout > interval {
        return Err(ctx.invalid(
            &field("timeout"),
            format!(
                "a timeout no longer than the interval ({}), got {}: one canary at a time",
                humantime::format_duration(interval),
                humantime::format_duration(timeout)
            ),
        ));
    }
    let schedule = Schedule {
        interval,
        timeout,
        retry_interval: defaults::canary_retry_interval(interval, timeout),
    };

    let tls_raw: RawTls = target.tls.clone().unwrap_or_default();
    let tls_key = format!("targets.{target_name}.tls");
    let tls = client_tls(&tls_raw, &tls_key, tls_cache, ctx)?;
    let proxy = target_proxy(target_name, target, ctx, &mut fingerprint)?;
    let base_host = base
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let api = client::Connection {
        tls: tls.config.clone(),
        server_name: tls.server_name.clone(),
        proxy: proxy.clone(),
    };
    // The target's server name is for the target's host; a DSN on another host is
    // verified against its own name.
    let ingest = client::Connection {
        tls: tls.config,
        server_name: tls
            .server_name
            .filter(|_| dsn.host().eq_ignore_ascii_case(base_host)),
        proxy,
    };

    fingerprint
        .add(&tls.ca_digest)
        .add(raw)
        .add(&(
            CHECK_NAME,
            target_name,
            base.as_str(),
            &target.tls,
            &target.proxy,
            &target.proxy_auth,
        ))
        .add(&schedule);

    let mut api_base = base.clone();
    api_base.set_query(None);
    api_base.set_fragment(None);
    Ok(Some(CheckSpec {
        target: target_name.to_owned(),
        name: CHECK_NAME.to_owned(),
        schedule,
        kind: CheckKind::Canary(Arc::new(CanaryCheck {
            ingest_url: dsn.endpoint_url(endpoint),
            dsn,
            endpoint,
            ingest,
            api_base,
            api,
            authorization,
            organization,
            lookup,
            insecure_skip_verify: tls.insecure_skip_verify,
            runtime: Arc::new(Runtime::default()),
        })),
        fingerprint: fingerprint.finish(),
    }))
}
