//! The ready-to-paste `exporter.toml` section for the instance the doctor looked at: the
//! default checks adjusted to what it found, and the canary and queue sections when their
//! inputs were given, secrets as `{ file = "…" }` pointing at the files given.

use std::fmt::Write as _;

use super::probes::quoted;

/// The target name of the suggested section.
pub const TARGET_NAME: &str = "glitchtip";

/// What the suggestion depends on.
pub(super) struct Inputs<'a> {
    /// The target URL.
    pub url: &'a str,
    /// The CA file trusted besides the built-in roots (absolute).
    pub ca_file: Option<&'a str>,
    /// `/` answered 500: no front end, so no `dashboard` check.
    pub backend_only: bool,
    /// The token file (absolute) and the organization slug it sees.
    pub token: Option<(&'a str, Option<&'a str>)>,
    /// The DSN file (absolute), when its DSN parsed.
    pub dsn_file: Option<&'a str>,
    /// The Redis/Valkey URL, the layout read there (`celery`, `vtasks`) and the password
    /// file (absolute).
    pub queue: Option<(&'a str, Option<&'static str>, Option<&'a str>)>,
}

/// The section, as TOML.
pub(super) fn section(inputs: &Inputs<'_>) -> String {
    let mut text = format!("[targets.{TARGET_NAME}]\nurl = {}\n", quoted(inputs.url));
    if let Some(ca) = inputs.ca_file {
        let _ = writeln!(
            text,
            "[targets.{TARGET_NAME}.tls]\nca_file = {}",
            quoted(ca)
        );
    }
    if inputs.backend_only {
        let _ = writeln!(
            text,
            "\n# / answers 500: a backend-only install serves no front end.\n\
             [targets.{TARGET_NAME}.checks.dashboard]\nenabled = false"
        );
    }
    match (inputs.dsn_file, inputs.token) {
        (Some(dsn), Some((token, org))) => {
            let _ = write!(
                text,
                "\n# The ingest canary: use a project of its own.\n\
                 [targets.{TARGET_NAME}.canary]\ndsn = {{ file = {} }}\ntoken = {{ file = {} }}\n\
                 organization = {}\n",
                quoted(dsn),
                quoted(token),
                quoted(org.unwrap_or("CHANGE-ME")),
            );
            if org.is_none() {
                text.push_str("# the token saw no organization: put its slug above\n");
            }
        }
        (Some(_), None) => {
            text.push_str("\n# A canary needs a token with event:read too (--token-file).\n")
        }
        (None, Some(_)) => {
            text.push_str("\n# A canary needs the DSN of a project of its own too (--dsn-file).\n")
        }
        (None, None) => {}
    }
    if let Some((url, layout, password)) = inputs.queue {
        let _ = write!(
            text,
            "\n[targets.{TARGET_NAME}.queue]\nurl = {}\nlayout = {}\n",
            quoted(url),
            quoted(layout.unwrap_or("auto"))
        );
        if let Some(file) = password {
            let _ = writeln!(text, "password = {{ file = {} }}", quoted(file));
        }
    }
    text
}
