//! The `doctor` subcommand's command line, kept here so that the binary's hook is one
//! call: [`main_if_doctor`] runs the doctor when the first argument is `doctor`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use url::Url;

use super::{Exit, Options, run};
use crate::checks::ProbeEnv;
use crate::clock::SystemClock;
use crate::net::resolver::SystemResolver;

/// Probe a GlitchTip instance once: what each endpoint answers, which line it is, which
/// checks fit it; ends with an exporter.toml section. Exit 0 healthy, 1 something failing,
/// 2 not reachable (or not GlitchTip).
#[derive(Debug, Parser)]
#[command(
    name = "glitchtip-exporter doctor",
    bin_name = "glitchtip-exporter doctor",
    version
)]
pub struct DoctorCli {
    /// The instance's base URL, e.g. https://glitchtip.example.com
    #[arg(long, value_name = "URL")]
    target: Url,
    /// File holding an API token (the canary needs scope event:read); never on argv.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// File holding the DSN of the canary's project; never on argv.
    #[arg(long, value_name = "FILE")]
    dsn_file: Option<PathBuf>,
    /// GlitchTip's Redis/Valkey, read-only, without a password.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// File holding the Redis/Valkey password; never on argv.
    #[arg(long, value_name = "FILE")]
    redis_password_file: Option<PathBuf>,
    /// PEM file of CA certificates trusted besides the built-in roots.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Send one canary event through the DSN (stores an event in its project).
    #[arg(long)]
    send_test_event: bool,
    /// Deadline of each request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
}

/// When the first argument is `doctor`, runs the doctor with the rest and answers its exit
/// code; otherwise `None`, and the exporter starts as usual.
pub fn main_if_doctor() -> Option<ExitCode> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != "doctor") {
        return None;
    }
    args.remove(1);
    let cli = DoctorCli::parse_from(args);
    Some(ExitCode::from(main(cli) as u8))
}

fn main(cli: DoctorCli) -> Exit {
    let opts = Options {
        target: cli.target,
        token_file: cli.token_file,
        dsn_file: cli.dsn_file,
        redis_url: cli.redis_url,
        redis_password_file: cli.redis_password_file,
        send_test_event: cli.send_test_event,
        ca_file: cli.ca_file,
        timeout: cli.timeout,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Failing;
        }
    };
    let env = ProbeEnv {
        resolver: Arc::new(SystemResolver),
        clock: Arc::new(SystemClock),
    };
    let report = runtime.block_on(run(&opts, &env));
    print!("{}", report.text);
    report.exit
}
