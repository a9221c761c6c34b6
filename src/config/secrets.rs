//! Secrets (tokens, passwords, DSNs) are never inline in the config: each is read from a
//! file or an environment variable, here, once per load, into a [`Secret`].
//!
//! A secret's value must never come back in a message, whatever was written in its place:
//! [`RawSecret`] accepts any value at all when the config is parsed — an inline string, a
//! number, a table with other keys — and keeps only the *kind* of what was found, so that
//! serde and the `config` crate never get a chance to quote it. [`read_secret`] then refuses
//! the wrong shapes with a message that names the key and shows the two accepted forms.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ConfigError, Context};
use crate::files::{MAX_SECRET_BYTES, read_bounded};

/// A secret value: a token, a password, a DSN. `Debug` shows `Secret(<redacted>)`, there is
/// no `Display`, and the value is reached only through [`Secret::expose`], at the one
/// place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the request or command that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from, as written: `{ file = "..." }` or `{ env = "VAR" }`. Any other
/// shape is kept as [`RawSecret::Refused`], which holds what kind of value was found and
/// never the value.
#[derive(Debug, Clone, Hash)]
pub enum RawSecret {
    /// A file holding the secret (one trailing newline is ignored).
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
    /// Anything else.
    Refused(Refused),
}

/// A secret written in a shape that is refused; never holds a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// The secret itself, inline: a string, a number...
    Inline(&'static str),
    /// A table with both `file` and `env`, or with neither.
    NotExactlyOne,
    /// A table with other keys than `file` and `env`.
    OtherKeys,
    /// `file` or `env` holding something else than a string.
    WrongType {
        /// `file` or `env`.
        key: &'static str,
        /// What was found.
        found: &'static str,
    },
}

/// The two accepted forms, as every message shows them.
const FORMS: &str = "{ file = \"…\" } or { env = \"…\" }";

/// Reads a secret from its file (relative to the config file's folder) or environment
/// variable (from the environment the config was loaded with).
pub(crate) fn read_secret(
    secret: &RawSecret,
    key: &str,
    ctx: &Context<'_>,
) -> Result<Secret, ConfigError> {
    match secret {
        RawSecret::File(written) => {
            let path = ctx.path(written);
            let bytes = read_bounded(&path, MAX_SECRET_BYTES).map_err(|e| {
                let shown = if looks_like_a_path(written) || written.exists() {
                    path.display().to_string()
                } else {
                    "the file (its name is not shown: it looks like no path, is it the secret itself?)".to_owned()
                };
                ctx.invalid(
                    &format!("{key}.file"),
                    format!("a readable file, cannot read {shown}: {e}"),
                )
            })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                ctx.invalid(
                    &format!("{key}.file"),
                    format!(
                        "a file holding the secret as UTF-8 text, {} is not",
                        path.display()
                    ),
                )
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                return Err(ctx.invalid(
                    &format!("{key}.file"),
                    format!("a file holding the secret, {} is empty", path.display()),
                ));
            }
            Ok(Secret::new(text))
        }
        RawSecret::Env(var) => match ctx.env.get(var) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v.as_str())),
            _ if looks_like_a_variable(var) => Err(ctx.invalid(
                &format!("{key}.env"),
                format!("environment variable {var} to be set and not empty"),
            )),
            _ => Err(ctx.invalid(
                &format!("{key}.env"),
                "the name of a set environment variable, such as \"GLITCHTIP_TOKEN\" (the name given is not shown: it is not set and looks like no variable name, is it the secret itself?)".to_owned(),
            )),
        },
        RawSecret::Refused(Refused::Inline(found)) => Err(ctx.invalid(
            key,
            format!("{FORMS}, never the secret itself (found {found}, not shown)"),
        )),
        RawSecret::Refused(Refused::NotExactlyOne) => {
            Err(ctx.invalid(key, "exactly one of `file` or `env`".to_owned()))
        }
        RawSecret::Refused(Refused::OtherKeys) => Err(ctx.invalid(
            key,
            format!("{FORMS}, found a table with other keys (not shown)"),
        )),
        RawSecret::Refused(Refused::WrongType { key: k, found }) => Err(ctx.invalid(
            &format!("{key}.{k}"),
            format!("a string, found {found} (not shown)"),
        )),
    }
}

/// A name that looks like a path — a folder or an extension, or short or without digits
/// (`canary-token`): shown in messages. A long name with digits and no folder may be the
/// secret itself, written where the path goes.
fn looks_like_a_path(path: &std::path::Path) -> bool {
    path.to_str().is_some_and(|p| {
        // A URL (a DSN: `https://key@host/1`) or anything with credentials in it is never
        // a path to show; a `.` counts only as a short extension (a JWT has long parts).
        if p.contains('@') || p.contains("://") {
            return false;
        }
        let extension = p.rsplit_once('.').is_some_and(|(_, ext)| {
            (1..=5).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        p.contains('/') || extension || p.len() < 16 || !p.bytes().any(|b| b.is_ascii_digit())
    })
}

/// An environment variable name as people write them (`UPPER_CASE_1`, not starting with a
/// digit): shown in messages.
/// Anything else may be the secret itself, written where the name goes.
fn looks_like_a_variable(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

/// Every `visit_*` of a value that is not a table: the secret inline.
macro_rules! inline {
    ($($method:ident($ty:ty) => $found:literal;)*) => {
        $(
            fn $method<E: de::Error>(self, _: $ty) -> Result<RawSecret, E> {
                Ok(RawSecret::Refused(Refused::Inline($found)))
            }
        )*
    };
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = RawSecret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FORMS)
    }

    inline! {
        visit_str(&str) => "a string";
        visit_bool(bool) => "a boolean";
        visit_i64(i64) => "a number";
        visit_u64(u64) => "a number";
        visit_i128(i128) => "a number";
        visit_u128(u128) => "a number";
        visit_f64(f64) => "a number";
        visit_bytes(&[u8]) => "bytes";
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawSecret, E> {
        Ok(RawSecret::Refused(Refused::Inline("an empty value")))
    }

    fn visit_none<E: de::Error>(self) -> Result<RawSecret, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<RawSecret, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSecret, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawSecret::Refused(Refused::Inline("an array")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
        let mut file = None;
        let mut env = None;
        let mut refused = None;
        while let Some(k) = map.next_key::<Loose>()? {
            let slot = match &k {
                Loose::Text(k) if k == "file" => Some(("file", &mut file)),
                Loose::Text(k) if k == "env" => Some(("env", &mut env)),
                _ => None,
            };
            match slot {
                Some((name, slot)) => match map.next_value::<Loose>()? {
                    Loose::Text(v) => *slot = Some(v),
                    Loose::Other(found) => {
                        refused.get_or_insert(Refused::WrongType { key: name, found });
                    }
                },
                None => {
                    map.next_value::<IgnoredAny>()?;
                    refused = Some(Refused::OtherKeys);
                }
            }
        }
        Ok(match (refused, file, env) {
            (Some(r), _, _) => RawSecret::Refused(r),
            (None, Some(f), None) => RawSecret::File(PathBuf::from(f)),
            (None, None, Some(e)) => RawSecret::Env(e),
            (None, _, _) => RawSecret::Refused(Refused::NotExactlyOne),
        })
    }
}

/// A key or a `file`/`env` value: text (numbers too, as environment overrides parse them),
/// or the kind of anything else.
enum Loose {
    Text(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Text(v.to_owned()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose, E> {
        Ok(Loose::Text(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Text(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Loose, E> {
        Ok(Loose::Other("a boolean"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Loose, E> {
        Ok(Loose::Other("a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Other("an empty value"))
    }

    fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other("a table"))
    }
}

/// `basic_auth = { username = "...", password = { file = "..." } }`. Like [`RawSecret`],
/// any shape parses, so that a password written in the wrong place is never quoted back;
/// [`RawBasicAuth::check`] says what is wrong.
#[derive(Debug, Clone, Hash)]
pub struct RawBasicAuth {
    /// User name (not a secret); `None` when missing or not a string.
    pub username: Option<String>,
    /// Password source.
    pub password: RawSecret,
    /// What made the table unusable, if anything (never a value).
    refused: Option<&'static str>,
}

impl RawBasicAuth {
    /// The user name, or the message for `key` (the `basic_auth` table) saying what is
    /// wrong with the table.
    pub(crate) fn check(&self, key: &str, ctx: &Context<'_>) -> Result<&str, ConfigError> {
        const EXPECTED: &str =
            "a table { username = \"…\", password = { file = \"…\" } or { env = \"…\" } }";
        if let Some(found) = self.refused {
            return Err(ctx.invalid(key, format!("{EXPECTED}, found {found} (not shown)")));
        }
        self.username
            .as_deref()
            .ok_or_else(|| ctx.invalid(&format!("{key}.username"), "a user name".to_owned()))
    }
}

impl<'de> Deserialize<'de> for RawBasicAuth {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A secret-free stand-in for any shape that is not a table.
        fn refused(found: &'static str) -> RawBasicAuth {
            RawBasicAuth {
                username: None,
                password: RawSecret::Refused(Refused::NotExactlyOne),
                refused: Some(found),
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBasicAuth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a basic_auth table")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawBasicAuth, E> {
                Ok(refused("a string"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawBasicAuth, E> {
                Ok(refused("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawBasicAuth, E> {
                Ok(refused("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawBasicAuth, E> {
                Ok(refused("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawBasicAuth, E> {
                Ok(refused("a number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawBasicAuth, E> {
                Ok(refused("an empty value"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawBasicAuth, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(refused("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawBasicAuth, A::Error> {
                let mut username = None;
                let mut password = None;
                let mut other = false;
                while let Some(k) = map.next_key::<Loose>()? {
                    match k {
                        Loose::Text(k) if k == "username" => match map.next_value::<Loose>()? {
                            Loose::Text(v) => username = Some(v),
                            Loose::Other(_) => other = true,
                        },
                        Loose::Text(k) if k == "password" => {
                            password = Some(map.next_value::<RawSecret>()?);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            other = true;
                        }
                    }
                }
                if other {
                    return Ok(refused("other keys or a user name that is not a string"));
                }
                Ok(RawBasicAuth {
                    username,
                    password: password.unwrap_or(RawSecret::Refused(Refused::NotExactlyOne)),
                    refused: None,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}
