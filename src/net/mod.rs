//! Network plumbing shared by every prober that opens a connection: name resolution
//! (injectable, so that tests never ask the system resolver), TCP connect with an optional
//! HTTP proxy tunnel, and the rustls client configurations built once at config load.

pub mod connect;
pub mod resolver;
pub mod tls;
