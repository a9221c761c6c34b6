//! The DSN: where the canary's event goes and with which key.
//!
//! `https://<public key>@glitchtip.example.com[/prefix]/<project id>` gives the ingest
//! origin, an optional path prefix, the project id and the public key. The key is a secret
//! here: it never appears in `Debug`, in an error message, in a URL the exporter builds (it
//! travels in the `X-Sentry-Auth` header) or in a log line.

use url::Url;

use super::Endpoint;
use crate::config::Secret;

/// A parsed DSN. `Debug` shows the host and project id, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    key: Secret,
    project_id: String,
    /// Scheme, host, port and path prefix, without the key; the path ends with `/`.
    base: Url,
}

/// Why a DSN is not usable. The messages never repeat the DSN (it holds the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// Occurs when the text is not an absolute URL.
    #[error("not an absolute URL")]
    NotUrl,
    /// Occurs when the scheme is not `http` or `https`.
    #[error("the scheme is not http or https")]
    Scheme,
    /// Occurs when the URL has no host.
    #[error("the URL has no host")]
    NoHost,
    /// Occurs when there is no public key before `@`, or it holds other characters than
    /// letters, digits and `-`.
    #[error("no public key (letters, digits and '-') before '@'")]
    NoKey,
    /// Occurs when the path does not end with a numeric project id.
    #[error("the path does not end with a numeric project id")]
    NoProject,
    /// Occurs when the DSN has a query or a fragment.
    #[error("a DSN has no query or fragment")]
    Extra,
}

impl Dsn {
    /// Parses a DSN (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, DsnError> {
        let url = Url::parse(text.trim()).map_err(|_| DsnError::NotUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DsnError::Scheme);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(DsnError::NoHost);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(DsnError::Extra);
        }
        let key = url.username();
        if key.is_empty()
            || key.len() > 128
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(DsnError::NoKey);
        }
        // A legacy `key:secret@` DSN: the secret part is never sent.
        let path = url.path().trim_end_matches('/');
        let (prefix, project_id) = path.rsplit_once('/').ok_or(DsnError::NoProject)?;
        if project_id.is_empty() || !project_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DsnError::NoProject);
        }
        let mut base = url.clone();
        // Cannot fail on an http(s) URL with a host.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_path(&format!("{prefix}/"));
        Ok(Self {
            key: Secret::new(key),
            project_id: project_id.to_owned(),
            base,
        })
    }

    /// The public key: send it only in the `X-Sentry-Auth` header.
    pub fn key(&self) -> &str {
        self.key.expose()
    }

    /// The project id.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The host (an IPv6 literal without brackets).
    pub fn host(&self) -> &str {
        self.base
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.base.port_or_known_default().unwrap_or(443)
    }

    /// The URL the canary posts to: `<base>/api/<project id>/envelope/` or `…/store/`.
    /// It holds no key.
    pub fn endpoint_url(&self, endpoint: Endpoint) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!(
            "{prefix}/api/{}/{}/",
            self.project_id,
            endpoint.as_str()
        ));
        url
    }

    /// What identifies the ingest project for throttling: origin, prefix and project id,
    /// without the key.
    pub fn project_url(&self) -> String {
        // The base's path ends with '/'.
        format!("{}api/{}/", self.base.as_str(), self.project_id)
    }
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsn")
            .field("base", &self.base.as_str())
            .field("project_id", &self.project_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    macro_rules! case {
        ($name:ident, $input:expr, $expected:expr) => {
            #[test]
            fn $name() {
                assert_eq!(Dsn::parse(&$input).map(|d| d.project_url()), $expected);
            }
        };
    }

    case!(
        plain,
        format!("https://{KEY}@glitchtip.example.com/1"),
        Ok("https://glitchtip.example.com/api/1/".to_owned())
    );
    case!(
        port_and_prefix,
        format!("http://{KEY}@127.0.0.1:8000/glitchtip/42/"),
        Ok("http://127.0.0.1:8000/glitchtip/api/42/".to_owned())
    );
    case!(
        legacy_secret_is_dropped,
        format!("https://{KEY}:secret@g.example/7"),
        Ok("https://g.example/api/7/".to_owned())
    );
    case!(no_key, "https://g.example/1", Err(DsnError::NoKey));
    case!(
        key_with_odd_characters,
        "https://a%20b@g.example/1",
        Err(DsnError::NoKey)
    );
    case!(
        no_project,
        format!("https://{KEY}@g.example/"),
        Err(DsnError::NoProject)
    );
    case!(
        project_not_numeric,
        format!("https://{KEY}@g.example/abc"),
        Err(DsnError::NoProject)
    );
    case!(
        scheme,
        format!("ftp://{KEY}@g.example/1"),
        Err(DsnError::Scheme)
    );
    case!(not_url, "glitchtip.example.com/1", Err(DsnError::NotUrl));
    case!(
        query,
        format!("https://{KEY}@g.example/1?x=1"),
        Err(DsnError::Extra)
    );

    #[test]
    fn endpoints_keep_the_prefix_and_hold_no_key() {
        let dsn = Dsn::parse(&format!("https://{KEY}@g.example:8443/gt/3")).unwrap();
        assert_eq!(
            dsn.endpoint_url(Endpoint::Envelope).as_str(),
            "https://g.example:8443/gt/api/3/envelope/"
        );
        assert_eq!(
            dsn.endpoint_url(Endpoint::Store).as_str(),
            "https://g.example:8443/gt/api/3/store/"
        );
        assert_eq!(
            (dsn.host(), dsn.port(), dsn.key()),
            ("g.example", 8443, KEY)
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let dsn = Dsn::parse(&format!("https://{KEY}@g.example/1")).unwrap();
        let shown = format!("{dsn:?}");
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
