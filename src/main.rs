//! The `glitchtip-exporter` binary: parses the command line, sets up logging and signals,
//! and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use glitchtip_exporter::config::ConfigSource;
use glitchtip_exporter::exporter::{Deps, Exporter};
use glitchtip_exporter::server::Web;

/// Prometheus exporter that watches self-hosted GlitchTip from the outside.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see exporter.toml); GLITCHTIP_EXPORTER__* variables override it.
    #[arg(
        short,
        long = "config.file",
        visible_alias = "config",
        env = "GLITCHTIP_EXPORTER_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// A GlitchTip instance to watch with the default checks: URL or NAME=URL; repeatable.
    #[arg(
        short,
        long = "target",
        env = "GLITCHTIP_EXPORTER_TARGET",
        value_delimiter = ',',
        value_name = "[NAME=]URL"
    )]
    targets: Vec<String>,

    /// Address to listen on (default 0.0.0.0:10099), overriding server.listen.
    #[arg(
        long = "web.listen-address",
        visible_alias = "listen",
        env = "GLITCHTIP_EXPORTER_LISTEN",
        value_name = "ADDR"
    )]
    listen: Option<SocketAddr>,

    /// Web config (exporter-toolkit format): TLS and basic authentication for the endpoints.
    #[arg(
        long = "web.config.file",
        env = "GLITCHTIP_EXPORTER_WEB_CONFIG",
        value_name = "FILE"
    )]
    web_config_file: Option<PathBuf>,

    /// Allow POST /-/reload (off: it answers 403; SIGHUP always reloads).
    #[arg(long = "web.enable-lifecycle")]
    web_enable_lifecycle: bool,

    /// Probe mode, overriding server.mode: interval or scrape.
    #[arg(long, value_name = "MODE", value_parser = ["interval", "scrape"])]
    mode: Option<String>,

    /// Validate the config without touching the network, print its warnings, then exit 0
    /// (valid, warnings or not) or 1.
    #[arg(long)]
    check_config: bool,

    /// Log filter (tracing EnvFilter syntax), e.g. info or glitchtip_exporter=debug.
    #[arg(
        long,
        env = "GLITCHTIP_EXPORTER_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    log_level: String,

    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> ExitCode {
    static_name_service();
    malloc::configure();
    if let Some(code) = glitchtip_exporter::doctor::main_if_doctor() {
        return code;
    }
    if let Some(code) = glitchtip_exporter::healthcheck::main_if_healthcheck() {
        return code;
    }
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_level, &cli.log_format) {
        eprintln!("error: --log-level: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// In the statically linked binary (`scripts/build.sh`), host names are looked up with
/// glibc's built-in `files` and `dns` services only, whatever `/etc/nsswitch.conf` lists:
/// a static binary cannot safely load the host's NSS modules (mdns, resolve, ...) built
/// for another glibc. Go's resolver, which blackbox_exporter uses, reads the same two
/// sources. Must run before any other thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
#[allow(unsafe_code)]
fn static_name_service() {
    unsafe extern "C" {
        fn __nss_configure_lookup(
            db: *const std::ffi::c_char,
            service_line: *const std::ffi::c_char,
        ) -> std::ffi::c_int;
    }
    // SAFETY: both arguments are NUL-terminated static strings; glibc copies what it
    // keeps. Called first thing in main, while the process has one thread, as the
    // function requires (it is not thread-safe).
    let status = unsafe { __nss_configure_lookup(c"hosts".as_ptr(), c"files dns".as_ptr()) };
    if status != 0 {
        eprintln!("warning: could not restrict host lookups to files and dns");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static")))]
fn static_name_service() {}

/// glibc's allocator, tuned so that memory a burst of clients took goes back to the system
/// once they are gone (README, "Limits"). By default glibc gives each thread that contends
/// for the heap its own arena (up to 8 per core) and returns freed memory only from the
/// top of each heap, so a flood of connections left its RSS behind for good.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod malloc {
    use std::time::Duration;

    /// Arenas for the whole process: the runtime's worker threads share them.
    const ARENAS: libc::c_int = 2;
    /// How often freed memory is handed back. Trimming a heap of a few MiB takes well
    /// under a millisecond; it only gives back pages that hold no allocation.
    const TRIM_EVERY: Duration = Duration::from_secs(10);

    /// Must run before any other thread starts (arenas are created per thread).
    pub fn configure() {
        // SAFETY: mallopt only sets a parameter of the allocator; M_ARENA_MAX takes any
        // positive int. Called first in main, while the process has one thread.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
        if ok != 1 {
            eprintln!("warning: could not limit the allocator's arenas");
        }
    }

    /// Hands freed memory back every [`TRIM_EVERY`], on the runtime.
    pub fn spawn_trim() {
        tokio::spawn(async {
            let mut tick = tokio::time::interval(TRIM_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks each
                // arena in turn); 0 keeps no extra padding at the top of the heap.
                unsafe { libc::malloc_trim(0) };
            }
        });
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod malloc {
    pub fn configure() {}
    pub fn spawn_trim() {}
}

/// Installs the log subscriber; an invalid filter is an error, not a silent `info`.
fn init_logging(filter: &str, format: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map_err(|e| format!("a tracing filter such as \"info\" or \"glitchtip_exporter=debug\", got {filter:?} ({e})"))?;
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let source = ConfigSource {
        file: cli.config,
        cli_targets: cli.targets,
        listen: cli.listen,
        mode: cli.mode,
        env: None,
    };
    let config = source.load()?;
    let web = Web::load(cli.web_config_file, cli.web_enable_lifecycle)?;
    if cli.check_config {
        for warning in config.warnings() {
            eprintln!("warning: {warning}");
        }
        println!(
            "config OK: {} targets, {} checks, mode {}, listen {}",
            config.targets.len(),
            config.checks().count(),
            config.mode.as_str(),
            config.listen
        );
        return Ok(());
    }
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        malloc::spawn_trim();
        let listen = config.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let scheme = if web.tls().is_some() { "https" } else { "http" };
        tracing::info!(listen = %listener.local_addr()?, scheme, "listening");
        let exporter = Exporter::with_config(source, config, Deps::default());
        spawn_reload_on_sighup(exporter.clone(), web.clone())?;
        glitchtip_exporter::server::run_with(listener, exporter, web, shutdown_signal()?).await?;
        Ok(())
    })
}

/// Raises the soft open-file limit to the hard one, as Prometheus and its exporters do: the
/// soft limit is often 1024, which a few hundred client connections plus the probes' own
/// sockets would reach. Inbound connections are then capped at a share of it
/// (`server.max_connections`), so that probes always find a descriptor.
fn raise_fd_limit() {
    use rlimit::Resource;
    let before = rlimit::getrlimit(Resource::NOFILE).ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => tracing::info!(
            soft,
            hard = before.map(|(_, hard)| hard),
            was = before.map(|(soft, _)| soft),
            "open file limit"
        ),
        Err(e) => {
            tracing::warn!(error = %e, soft = before.map(|(soft, _)| soft), "cannot raise the open file limit")
        }
    }
}

fn spawn_reload_on_sighup(exporter: Arc<Exporter>, web: Arc<Web>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // Through the same coalesced path as `/-/reload`, which logs the outcome.
            tracing::debug!("SIGHUP: reloading the config");
            let _ = glitchtip_exporter::server::reload(&exporter, &web).await;
        }
    });
    Ok(())
}

fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
