//! `glitchtip-exporter`: a Prometheus exporter that watches self-hosted GlitchTip from the
//! outside, so that the team relying on GlitchTip learns within a minute when GlitchTip
//! itself stops seeing errors.
//!
//! # Layout
//!
//! - [`config`]: `exporter.toml`, environment overrides and `--target`, parsed raw and then
//!   validated once into typed values; every default lives in [`config::defaults`].
//! - [`checks`]: what a check is, what a probe found, and the dispatcher that owns deadlines;
//!   one prober per file ([`checks::http`], [`checks::tls`]).
//! - [`net`]: resolver (injectable), TCP connect and proxy tunnel, rustls configurations,
//!   certificate chains judged apart from the handshake ([`net::x509`]) or read off the
//!   wire when rustls refuses them ([`net::wire`]), and the timed
//!   dial and HTTP/1.1 exchange the probers and the canary share ([`net::exchange`]).
//! - [`state`]: per-check results and consecutive failures, the single source of truth that
//!   metrics and the landing page are projections of.
//! - [`metrics`]: the metric contract, one struct that registers every series once.
//! - [`scheduler`]: interval mode, one task per check with spread start times and the quick
//!   re-probe after a first failure.
//! - [`exporter`]: the running exporter — config, state, scheduler tasks, scrape-mode
//!   single-flight, `/probe`, reload.
//! - [`coalesce`]: single flight with a generation counter, so that reload requests share
//!   runs and each still sees a load started after it asked.
//! - [`server`]: the HTTP endpoints and [`server::run`], which takes a bound listener and
//!   a shutdown future.
//! - [`heartbeat`]: worker heartbeats: the `/heartbeat/{name}` endpoints, their state file
//!   (kept across restarts) and the age of the last ping.
//! - [`canary`]: the ingest canary (`[targets.<name>.canary]`): an event sent through the
//!   ingest API and looked for through the API, the check that catches a stalled worker.
//! - [`queue`]: GlitchTip's queues, scheduler and workers read (read-only) from its
//!   Redis/Valkey (`[targets.<name>.queue]`).
//! - [`healthcheck`]: the `healthcheck` subcommand's client, for container health checks.
//! - [`clock`]: injected wall-clock time.
//! - [`files`]: the one bounded, non-blocking reader of the files a config points at.

pub mod canary;
pub mod checks;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod exporter;
pub mod files;
pub mod healthcheck;
pub mod heartbeat;
pub mod metrics;
pub mod net;
pub mod queue;
pub mod scheduler;
pub mod server;
pub mod state;

/// The exporter's version, from `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision it was built from (`unknown` outside a git checkout).
pub const REVISION: &str = env!("GLITCHTIP_EXPORTER_REVISION");
