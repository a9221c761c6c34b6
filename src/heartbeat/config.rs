//! `[heartbeats.<name>]`: the raw form as written, and its validation into a
//! [`HeartbeatSpec`]. Kept beside the heartbeat code rather than in [`crate::config`] so
//! that the whole feature reads in one place; [`crate::config::validate`] calls [`build`].

use std::time::Duration;

use serde::Deserialize;

use super::schedule::{CronSchedule, Expect};
use crate::config::raw::RawSecret;
use crate::config::{
    ConfigError, Context, Secret, Target, check_name, defaults, read_secret, within,
};

/// `[heartbeats.<name>]`: one heartbeat, as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// The target (GlitchTip instance) the heartbeat belongs to; informational.
    pub target: Option<String>,
    /// Longest expected time between two success pings (not with `schedule`).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Cron pattern of the expected success pings (not with `interval`).
    pub schedule: Option<String>,
    /// IANA time zone of `schedule`.
    pub timezone: Option<String>,
    /// How late a ping may come before the heartbeat counts as missed; also how long a
    /// `start` may wait for its completion.
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    /// The secret every ping must carry: `{ file = "..." }` or `{ env = "VAR" }`.
    pub token: Option<RawSecret>,
}

/// A validated heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatSpec {
    /// Name: the `heartbeat` label and the `/heartbeat/{name}` path segment.
    pub name: String,
    /// The target it belongs to, if any.
    pub target: Option<String>,
    /// When success pings are expected.
    pub expect: Expect,
    /// Allowed lateness.
    pub grace: Duration,
    /// The secret pings carry.
    pub token: Token,
}

/// A heartbeat token. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct Token(Secret);

impl Token {
    /// Wraps a secret.
    pub fn new(secret: impl Into<Box<str>>) -> Self {
        Self(Secret::new(secret))
    }

    /// Whether `candidate` is the token, compared in constant time (only the length can
    /// leak, and tokens are meant to be long random strings).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.0.expose().as_bytes().ct_eq(candidate))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Validates `[heartbeats.<name>]`. `targets` are the configured targets, which `target`
/// must name.
pub fn build(
    name: &str,
    raw: &RawHeartbeat,
    targets: &[Target],
    ctx: &Context<'_>,
) -> Result<HeartbeatSpec, ConfigError> {
    let key = format!("heartbeats.{name}");
    let invalid = |k: &str, expected: String| ConfigError::Invalid {
        origin: ctx.origin.to_owned(),
        key: k.to_owned(),
        expected,
    };
    let field = |f: &str| format!("{key}.{f}");
    check_name(name).map_err(|e| invalid(&key, e))?;

    if let Some(target) = &raw.target
        && !targets.iter().any(|t| &t.name == target)
    {
        let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        let expected = if known.is_empty() {
            format!("the name of a configured target (there are none), got {target:?}")
        } else {
            format!(
                "the name of a configured target ({}), got {target:?}",
                known.join(", ")
            )
        };
        return Err(invalid(&field("target"), expected));
    }

    let expect = match (&raw.interval, &raw.schedule) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                &key,
                "either `interval` or `schedule`, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(invalid(
                &key,
                "an `interval` such as \"5m\" or a cron `schedule` such as \"*/5 * * * *\""
                    .to_owned(),
            ));
        }
        (Some(interval), None) => {
            if interval.is_zero() {
                return Err(invalid(
                    &field("interval"),
                    "a duration above zero, such as \"5m\"".to_owned(),
                ));
            }
            within(*interval, &defaults::HEARTBEAT_INTERVAL_RANGE)
                .map_err(|e| invalid(&field("interval"), e))?;
            if raw.timezone.is_some() {
                return Err(invalid(
                    &field("timezone"),
                    "a time zone only with a cron `schedule`, not with `interval`".to_owned(),
                ));
            }
            Expect::Interval(*interval)
        }
        (None, Some(pattern)) => {
            let tz = raw
                .timezone
                .as_deref()
                .unwrap_or(defaults::HEARTBEAT_TIMEZONE);
            let schedule = CronSchedule::parse(pattern, tz).map_err(|e| {
                use super::schedule::ScheduleError;
                match e {
                    ScheduleError::TimeZone => {
                        invalid(&field("timezone"), format!("{e}, got {tz:?}"))
                    }
                    ScheduleError::Pattern(_) | ScheduleError::Never => {
                        invalid(&field("schedule"), format!("{e}, got {pattern:?}"))
                    }
                }
            })?;
            Expect::Cron(Box::new(schedule))
        }
    };

    let grace = raw.grace.unwrap_or(defaults::HEARTBEAT_GRACE);
    within(grace, &defaults::HEARTBEAT_GRACE_RANGE).map_err(|e| invalid(&field("grace"), e))?;

    let secret = raw.token.as_ref().ok_or_else(|| {
        invalid(
            &field("token"),
            "a token source, { file = \"/run/secrets/heartbeat-token\" } or { env = \"VAR\" }: every ping must carry the token".to_owned(),
        )
    })?;
    let token = read_secret(secret, &field("token"), ctx)?;
    if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            &field("token"),
            "a token of visible ASCII characters without spaces, such as the output of `openssl rand -hex 32`".to_owned(),
        ));
    }

    Ok(HeartbeatSpec {
        name: name.to_owned(),
        target: raw.target.clone(),
        expect,
        grace,
        token: Token(token),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_hides_the_secret() {
        let token = Token::new("s3cr3t".to_owned());
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert!(token.matches(b"s3cr3t"));
        assert!(!token.matches(b"s3cr3u"));
        assert!(!token.matches(b"s3cr3"));
        assert!(!token.matches(b""));
    }
}
