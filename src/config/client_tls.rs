//! A `tls` table (`ca_file`, `insecure_skip_verify`, `server_name`) as an HTTP client uses
//! it: the HTTP checks and the ingest canary. (The TLS check reads the same table into
//! trust roots of its own; the queue reader speaks Redis, not HTTP.)

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use super::raw::RawTls;
use super::{ConfigError, Context};
use crate::net::tls::ClientConfigCache;

/// What a `tls` table gives an HTTP client.
pub(crate) struct ClientTls {
    /// Built once per distinct (CA file, insecure) pair while the config loads.
    pub config: Arc<ClientConfig>,
    /// `insecure_skip_verify`: the configuration accepts any certificate.
    pub insecure_skip_verify: bool,
    /// A hash of the CA file's certificates, for the fingerprint: a CA file rewritten in
    /// place restarts what trusts it on reload, as for the TLS check.
    pub ca_digest: u64,
    /// SNI and verification name instead of the URL's host.
    pub server_name: Option<ServerName<'static>>,
}

/// Validates `raw`, the table at `key`, into a client's TLS set-up.
pub(crate) fn client_tls(
    raw: &RawTls,
    key: &str,
    tls_cache: &mut ClientConfigCache,
    ctx: &Context<'_>,
) -> Result<ClientTls, ConfigError> {
    let ca_file = raw.ca_file.as_deref().map(|p| ctx.path(p));
    let ca_error = |e| {
        ctx.invalid(
            &format!("{key}.ca_file"),
            format!("a readable PEM file of CA certificates ({e})"),
        )
    };
    let insecure_skip_verify = raw.insecure_skip_verify.unwrap_or(false);
    let config = tls_cache
        .get(ca_file.as_deref(), insecure_skip_verify)
        .map_err(ca_error)?;
    let ca_digest = tls_cache.ca_digest(ca_file.as_deref()).map_err(ca_error)?;
    let server_name = match &raw.server_name {
        Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
            ctx.invalid(
                &format!("{key}.server_name"),
                format!("a DNS name or IP address, got {n:?}"),
            )
        })?),
        None => None,
    };
    Ok(ClientTls {
        config,
        insecure_skip_verify,
        ca_digest,
        server_name,
    })
}
