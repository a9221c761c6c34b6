//! Configs with extreme values (issue #18: 4 of 131 such configs passed `--check-config`,
//! then exited with code 101 at start; a heartbeat deadline past the year 9999 made every
//! landing-page request panic).
//!
//! Every duration, size and count key gets zero, tiny, huge, negative, `u64::MAX`-ish and
//! ill-typed values, one at a time, in an otherwise complete config (checks, canary,
//! queue, heartbeat). Each config is either refused by loading — which is what
//! `--check-config` runs — with a message naming the key, or the exporter built from it
//! runs: started on 127.0.0.1:0 with paused time, pinged, its pages read, five virtual
//! seconds and 400 clock days later read again, and shut down, without a panic on any of
//! its threads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use glitchtip_exporter::clock::ManualClock;
use glitchtip_exporter::config::{Config, ConfigSource};
use glitchtip_exporter::exporter::{Deps, Exporter};
use glitchtip_exporter::net::resolver::StaticResolver;

use crate::helpers::{CLOCK_START, request};

/// The threads the exporters under test run on; a panic on one of them is recorded.
const THREAD: &str = "extreme-config";

const DURATION_KEYS: &[(&str, &str)] = &[
    ("server", "shutdown_timeout"),
    ("defaults", "interval"),
    ("defaults", "timeout"),
    ("defaults", "retry_interval"),
    ("targets.prod", "interval"),
    ("targets.prod", "timeout"),
    ("targets.prod", "retry_interval"),
    ("targets.prod.checks.health", "interval"),
    ("targets.prod.checks.health", "timeout"),
    ("targets.prod.checks.health", "retry_interval"),
    ("targets.prod.canary", "interval"),
    ("targets.prod.canary", "timeout"),
    ("targets.prod.queue", "interval"),
    ("targets.prod.queue", "timeout"),
    ("heartbeats.worker", "interval"),
    ("heartbeats.worker", "grace"),
];

const DURATIONS: &[&str] = &[
    "\"0s\"",
    "\"1ns\"",
    "\"99ms\"",
    "\"100ms\"",
    "\"1s\"",
    "\"1day\"",
    "\"25h\"",
    "\"366days\"",
    "\"367days\"",
    "\"10000000000y\"",
    "\"584942417355y\"",
    "\"18446744073709551615s\"",
    "\"-1s\"",
    "\"\"",
    "0",
    "-1",
    "9223372036854775807",
    "true",
];

const SIZE_KEYS: &[(&str, &str)] = &[
    ("defaults", "max_body_bytes"),
    ("targets.prod", "max_body_bytes"),
    ("targets.prod.checks.health", "max_body_bytes"),
    ("targets.prod.checks.health", "max_redirects"),
];

const SIZES: &[&str] = &[
    "0",
    "1",
    "-1",
    "20",
    "21",
    "67108864",
    "67108865",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "\"big\"",
];

/// The complete config, table by table, secrets in `dir`; every target a closed port.
fn base(dir: &Path) -> Vec<(&'static str, Vec<(String, String)>)> {
    let d = dir.display();
    let kv = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<Vec<_>>()
    };
    vec![
        (
            "server",
            kv(&[("state_file", format!("\"{d}/state.json\""))]),
        ),
        ("defaults", vec![]),
        (
            "targets.prod",
            kv(&[("url", "\"http://127.0.0.1:9\"".to_owned())]),
        ),
        (
            "targets.prod.checks.health",
            kv(&[("follow_redirects", "true".to_owned())]),
        ),
        (
            "targets.prod.canary",
            kv(&[
                ("dsn", format!("{{ file = \"{d}/dsn\" }}")),
                ("token", format!("{{ file = \"{d}/token\" }}")),
                ("organization", "\"acme\"".to_owned()),
            ]),
        ),
        (
            "targets.prod.queue",
            kv(&[("url", "\"redis://127.0.0.1:9/0\"".to_owned())]),
        ),
        (
            "heartbeats.worker",
            kv(&[
                ("interval", "\"5m\"".to_owned()),
                ("token", format!("{{ file = \"{d}/token\" }}")),
            ]),
        ),
    ]
}

/// The base config with `table.key = value`.
fn render(dir: &Path, table: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    for (name, mut pairs) in base(dir) {
        if name == table {
            pairs.retain(|(k, _)| k != key);
            pairs.push((key.to_owned(), value.to_owned()));
        }
        out.push_str(&format!("[{name}]\n"));
        for (k, v) in pairs {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out
}

/// Panics on the threads named [`THREAD`]…, with their message.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(THREAD))
            {
                PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(info.to_string());
            }
            previous(info);
        }));
    });
}

/// Runs the exporter built from `config` on its own named thread, with paused time;
/// `Err` with the panics seen.
fn run_briefly(source: ConfigSource, config: Config) -> Result<(), Vec<String>> {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let joined = std::thread::Builder::new()
        .name(THREAD.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .thread_name(format!("{THREAD}-blocking"))
                .build()
                .unwrap();
            runtime.block_on(async move {
                let clock = Arc::new(ManualClock::at_unix(CLOCK_START));
                let deps = Deps {
                    resolver: Arc::new(StaticResolver::new()),
                    clock: clock.clone(),
                    prober: None,
                };
                let exporter = Exporter::with_config(source, config, deps);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(glitchtip_exporter::server::run(
                    listener,
                    exporter,
                    async move {
                        let _ = stopped.await;
                    },
                ));
                let read_all = || async {
                    for path in ["/heartbeat/worker?token=tok-1", "/", "/metrics"] {
                        let r = request(addr, "GET", path, &[]).await;
                        assert!(r.status < 500, "GET {path}: {r:?}");
                    }
                };
                read_all().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                clock.advance(Duration::from_secs(400 * 24 * 3600));
                read_all().await;
                let _ = stop.send(());
                server.await.unwrap().unwrap();
            });
        })
        .unwrap()
        .join();
    let panics = std::mem::take(&mut *PANICS.lock().unwrap_or_else(|e| e.into_inner()));
    if joined.is_err() || !panics.is_empty() {
        return Err(panics);
    }
    Ok(())
}

#[test]
fn extreme_values_are_refused_or_run_without_panic() {
    record_panics();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dsn"),
        "http://0123456789abcdef@127.0.0.1:9/1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), "tok-1\n").unwrap();
    let config_file = dir.path().join("exporter.toml");

    let cases = DURATION_KEYS
        .iter()
        .flat_map(|k| DURATIONS.iter().map(move |v| (k, v)))
        .chain(
            SIZE_KEYS
                .iter()
                .flat_map(|k| SIZES.iter().map(move |v| (k, v))),
        );
    let (mut refused, mut ran) = (0, 0);
    let mut failures = Vec::new();
    for ((table, key), value) in cases {
        let case = format!("[{table}] {key} = {value}");
        std::fs::write(&config_file, render(dir.path(), table, key, value)).unwrap();
        let source = ConfigSource {
            file: Some(config_file.clone()),
            env: Some(HashMap::new()),
            ..Default::default()
        };
        match source.load() {
            Err(e) => {
                // The message names the key set, or the one it conflicts with (a
                // timeout longer than the interval).
                let message = e.to_string();
                if !message.contains(key) && !message.contains("timeout") {
                    failures.push(format!("{case}: the message does not name it: {message}"));
                }
                refused += 1;
            }
            Ok(config) => {
                if let Err(panics) = run_briefly(source, config) {
                    failures.push(format!("{case}: panicked: {panics:?}"));
                }
                ran += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Both ways are exercised: what is out of range is refused, what is in range runs.
    assert!(refused > 100 && ran > 50, "refused {refused}, ran {ran}");
}
