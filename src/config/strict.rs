//! Strict deserializers for the raw config: the `config` crate would read `"yes"`, `1` or
//! `"no"` as a boolean and `10` as the string `"10"`, so booleans and durations are read
//! here from the value's own kind (`deserialize_any`). An environment override is parsed
//! before it gets here (`true`, `10`), so it is held to the same rules as the file.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// The expectation of a duration, as every message about one says it.
pub(crate) const DURATION: &str = "a duration such as \"10s\" or \"1m 30s\"";

/// `Option<bool>` that takes `true` or `false` only.
pub(crate) mod boolean {
    use super::*;

    /// For `#[serde(default, deserialize_with = "…")]`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        d.deserialize_any(Strict).map(Some)
    }

    struct Strict;

    impl Visitor<'_> for Strict {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false (without quotes)")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
    }
}

/// `Option<Duration>` from a human string such as `"10s"`; a bare number is refused with
/// the unit it lacks.
pub(crate) mod duration {
    use super::*;

    /// For `#[serde(default, deserialize_with = "…")]`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(Human).map(Some)
    }

    struct Human;

    /// `number` as found (`10`, or `"10"` from a string) lacks a unit, as `digits` shows.
    fn no_unit<E: de::Error>(found: &str, digits: &str) -> E {
        E::custom(format!(
            "{DURATION}, got {found}: add a unit, such as \"{digits}s\""
        ))
    }

    impl Visitor<'_> for Human {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(no_unit(&format!("{v:?}"), v));
            }
            humantime::parse_duration(v).map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!("{DURATION}, got {v}"))),
            }
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(no_unit(&v.to_string(), &v.to_string()))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            if v >= 0.0 {
                Err(no_unit(&v.to_string(), &v.to_string()))
            } else {
                Err(E::custom(format!("{DURATION}, got {v}")))
            }
        }
    }
}
