//! Network plumbing shared by every prober that opens a connection: name resolution
//! (injectable, so that tests never ask the system resolver), TCP connect with an optional
//! HTTP proxy tunnel, the rustls client configurations built once at config load, and the
//! certificate-chain checks ([`x509`]) that judge a presented chain apart from the
//! handshake, and the chain read off a TLS 1.2 handshake's wire when rustls refuses it
//! ([`wire`]). [`exchange`] puts these together into the steps the probers share, timed
//! and with their failure reasons: dial (directly or through the proxy), and one HTTP/1.1
//! exchange.

pub mod connect;
pub mod exchange;
pub mod resolver;
pub mod tls;
pub mod wire;
pub mod x509;
