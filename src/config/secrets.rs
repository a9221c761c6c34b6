//! Secrets (tokens, passwords, DSNs) are never inline in the config: each is read from a
//! file or an environment variable, here, once per load.

use std::path::Path;

use super::raw::RawSecret;
use super::{ConfigError, Context};

/// Reads a secret from its file (relative to the config file's folder) or environment
/// variable (from the environment the config was loaded with).
pub(crate) fn read_secret(
    secret: &RawSecret,
    key: &str,
    ctx: &Context<'_>,
) -> Result<String, ConfigError> {
    let invalid = |k: &str, e: String| ctx.invalid(k, e);
    match (&secret.file, &secret.env) {
        (Some(path), None) => {
            read_secret_file(&ctx.path(path)).map_err(|e| invalid(&format!("{key}.file"), e))
        }
        (None, Some(var)) => match ctx.env.get(var) {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => Err(invalid(
                &format!("{key}.env"),
                format!("environment variable {var} to be set and not empty"),
            )),
        },
        _ => Err(invalid(key, "exactly one of `file` or `env`".to_owned())),
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("a readable file, cannot read {}: {e}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(format!(
            "a file holding the secret, {} is empty",
            path.display()
        ));
    }
    Ok(text.to_owned())
}
