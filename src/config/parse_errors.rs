//! The errors of the parsing step, in the voice of the hand-written ones: the key, what was
//! expected, what was found — and never a value that could be a secret.
//!
//! TOML syntax is checked first with the `toml` crate, whose message is kept but not its
//! snippet of the offending line (the line may be `bearer_token = abc123`). Errors from
//! serde and the `config` crate are then rewritten: a wrong type says which kind of value
//! was found ("a string") and never the value; Rust type names become what a user writes
//! ("a table"). Secret positions never fail here at all ([`super::secrets::RawSecret`]
//! accepts any value), so the few messages that do show a value — an unreadable duration,
//! a negative size — show values that are not secrets.

use super::ConfigError;

/// The message for a TOML syntax error in `text`, if there is one: line, column and what
/// the parser expected, without the line itself.
pub(super) fn toml_syntax(text: &str) -> Option<String> {
    let err = text.parse::<toml::Table>().err()?;
    let (line, column) = line_column(text, err.span().map_or(0, |s| s.start));
    let message = err.message().trim().replace('\n', ", ");
    Some(format!(
        "TOML syntax error at line {line}, column {column}: {message}"
    ))
}

/// Line and column (from 1, the column in characters) of byte offset `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Line and column in the TOML `text` of the dot-separated `key`: of its deepest part
/// that the file holds (the key itself, or the table it is missing from).
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut found = None;
    // `expect_status[0]`: the array's key.
    for part in key.split('.').map(|p| p.split('[').next().unwrap_or(p)) {
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part) else {
            break;
        };
        found = Some(k.span().start);
        match v.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    found.map(|at| line_column(text, at))
}

/// `err` with the line and column in the config file `text` of the key it names, unless
/// the environment overrides that key (`overridden`) or the file does not hold it.
pub(super) fn at_line(
    err: ConfigError,
    text: &str,
    overridden: impl Fn(&str) -> bool,
) -> ConfigError {
    let unknown = |message: &str| {
        message
            .strip_prefix("unknown key `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned())
    };
    let key = match &err {
        ConfigError::Invalid { key, expected, .. } => match unknown(expected) {
            Some(name) => format!("{key}.{name}"),
            None => key.clone(),
        },
        ConfigError::Parse { message, .. } => match unknown(message) {
            Some(name) => name,
            None => return err,
        },
        ConfigError::Unfinished { .. } => return err,
    };
    if overridden(&key) {
        return err;
    }
    let Some((line, column)) = locate(text, &key) else {
        return err;
    };
    let at = |origin: String| format!("{origin}, line {line}, column {column}");
    match err {
        ConfigError::Invalid {
            origin,
            key,
            expected,
        } => ConfigError::Invalid {
            origin: at(origin),
            key,
            expected,
        },
        ConfigError::Parse { origin, message } => ConfigError::Parse {
            origin: at(origin),
            message,
        },
        other => other,
    }
}

/// Rewrites an error of the `config` crate (deserialization included) for `origin`.
pub(super) fn wrap(err: config::ConfigError, origin: &str) -> ConfigError {
    let (key, message) = explain(err, None);
    match key {
        Some(key) if !key.is_empty() => ConfigError::Invalid {
            origin: origin.to_owned(),
            key,
            expected: message,
        },
        _ => ConfigError::Parse {
            origin: origin.to_owned(),
            message,
        },
    }
}

fn explain(err: config::ConfigError, key: Option<String>) -> (Option<String>, String) {
    match err {
        config::ConfigError::At { error, key: k, .. } => explain(*error, k.or(key)),
        config::ConfigError::Type {
            unexpected,
            expected,
            key: k,
            ..
        } => (
            k.or(key),
            format!(
                "{}, got {}",
                expected_text(expected),
                kind(&unexpected.to_string())
            ),
        ),
        config::ConfigError::Message(m) => (key, message_text(&m)),
        config::ConfigError::NotFound(k) => (Some(k), "a value".to_owned()),
        // Never reached with the sources used here (a string and the environment); said
        // without the cause, which may quote the input.
        _ => (key, "a config the parser can read".to_owned()),
    }
}

/// A serde message: `invalid type: …` and `invalid value: …` rewritten, others kept
/// (`unknown field `x`, expected one of …`, `missing field `y``).
fn message_text(m: &str) -> String {
    let m = m.trim();
    if let Some(unknown) = unknown_key(m) {
        return unknown;
    }
    if m.contains("untagged enum RawStatus") {
        return "status codes such as 200 and ranges such as \"200-299\"".to_owned();
    }
    for (prefix, show_value) in [("invalid type: ", false), ("invalid value: ", true)] {
        let Some(rest) = m.strip_prefix(prefix) else {
            continue;
        };
        let Some(at) = rest.rfind(", expected ") else {
            continue;
        };
        let (found, expected) = (&rest[..at], &rest[at + ", expected ".len()..]);
        let found = if show_value {
            value(found)
        } else {
            kind(found)
        };
        return format!("{}, got {found}", expected_text(expected));
    }
    m.to_owned()
}

/// Serde's `unknown field `x`, expected one of `a`, `b`` as `unknown key `x``, with the
/// closest known key when one is close enough to be a typo, else the known keys.
fn unknown_key(m: &str) -> Option<String> {
    let rest = m.strip_prefix("unknown field `")?;
    let (name, known) = rest.split_once('`')?;
    let candidates: Vec<&str> = known.split('`').skip(1).step_by(2).collect();
    let closest = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), *c))
        .min()
        .filter(|(distance, c)| *distance <= (name.len().max(c.len()) / 3).max(1));
    Some(match closest {
        Some((_, c)) => format!("unknown key `{name}`, did you mean `{c}`?"),
        None if candidates.is_empty() => format!("unknown key `{name}`"),
        None => format!("unknown key `{name}`{known}"),
    })
}

/// What kind of value `found` (serde's or the config crate's `Unexpected`) is, without the
/// value: everything from the first quote on is dropped.
fn kind(found: &str) -> String {
    let word = found
        .split(['"', '`'])
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("64-bit ")
        .trim_start_matches("128-bit ");
    // The sign of a number is no secret, and says what is wrong with `-1` for a size.
    let negative = found.contains("`-");
    match word {
        "integer" | "unsigned integer" | "floating point" if negative => "a negative number",
        "string" | "character" => "a string",
        "boolean" => "a boolean",
        "integer" | "unsigned integer" | "floating point" => "a number",
        "sequence" => "an array",
        "map" => "a table",
        "unit value" | "Option value" => "an empty value",
        _ => "another kind of value",
    }
    .to_owned()
}

/// A rejected value that is not a secret, as written: `"10"`, `-1`.
fn value(found: &str) -> String {
    match found.split_once([' ', '`']) {
        Some((_, v)) if found.starts_with("string ") => v.to_owned(),
        Some((_, v)) => v.trim_matches('`').to_owned(),
        None => kind(found),
    }
}

/// Serde's and the config crate's expectations in a user's words.
fn expected_text(expected: &str) -> String {
    let e = expected.trim();
    if e.starts_with("struct ") || e == "a map" || e == "map" {
        return "a table".to_owned();
    }
    match e {
        "a duration" => "a duration such as \"10s\" or \"1m 30s\"".to_owned(),
        "u8" | "u16" | "u32" | "u64" | "usize" | "an unsigned 64 bit or less integer" => {
            "a whole number, 0 or more".to_owned()
        }
        "i8" | "i16" | "i32" | "i64" | "isize" | "a signed 64 bit or less integer" => {
            "a whole number".to_owned()
        }
        "a sequence" => "an array".to_owned(),
        "a boolean" | "a string" => e.to_owned(),
        "str" | "string" => "a string".to_owned(),
        "bool" => "a boolean".to_owned(),
        _ => e.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! case {
        ($name:ident, $f:ident($input:expr), $expected:expr) => {
            #[test]
            fn $name() {
                assert_eq!($f($input), $expected);
            }
        };
    }

    case!(
        wrong_type_hides_the_value,
        message_text("invalid type: string \"abc123\", expected struct RawBasicAuth"),
        "a table, got a string"
    );
    case!(
        wrong_type_with_a_comma_inside,
        message_text("invalid type: string \"a, expected b\", expected a boolean"),
        "a boolean, got a string"
    );
    case!(
        integer_kind,
        message_text("invalid type: integer `5`, expected a map"),
        "a table, got a number"
    );
    case!(
        invalid_value_shows_it,
        message_text("invalid value: string \"10\", expected a duration"),
        "a duration such as \"10s\" or \"1m 30s\", got \"10\""
    );
    case!(
        negative_size,
        message_text("invalid value: integer `-1`, expected u64"),
        "a whole number, 0 or more, got -1"
    );
    case!(
        unknown_key_far_from_every_known_one,
        message_text("unknown field `x`, expected `file` or `env`"),
        "unknown key `x`, expected `file` or `env`"
    );
    case!(
        unknown_key_close_to_a_known_one,
        message_text(
            "unknown field `expected_status`, expected one of `path`, `expect_status`, `keyword`"
        ),
        "unknown key `expected_status`, did you mean `expect_status`?"
    );
    case!(
        unknown_key_of_a_table_without_keys,
        message_text("unknown field `x`, there are no fields"),
        "unknown key `x`"
    );

    #[test]
    fn syntax_error_without_the_line() {
        let m = toml_syntax("[a]\nbearer_token = abc123\n").unwrap();
        assert!(!m.contains("abc123"), "{m}");
        assert!(
            m.starts_with("TOML syntax error at line 2, column 16: "),
            "{m}"
        );
    }
}
