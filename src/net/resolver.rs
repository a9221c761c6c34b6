//! Name resolution behind a trait.
//!
//! Probers resolve through a [`Resolver`] so that a test can make a name fail (or point it
//! at 127.0.0.1) without asking the system resolver, which is not on loopback. Hosts that
//! are IP literals never reach the resolver.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use futures::future::BoxFuture;

/// Turns a host name into socket addresses.
pub trait Resolver: Send + Sync + 'static {
    /// Resolves `host` (never an IP literal) for `port`; an error or an empty list is a DNS
    /// failure.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (`getaddrinfo` on a blocking thread, via tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A fixed table of names; every other name fails as "not found". For tests.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    names: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table: every name fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name` resolving to `ip`.
    pub fn with(mut self, name: &str, ip: IpAddr) -> Self {
        self.names
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(ip);
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        let found = self
            .names
            .get(&host.to_ascii_lowercase())
            .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        Box::pin(async move {
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name not found"))
        })
    }
}
