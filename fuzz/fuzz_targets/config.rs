//! Config text → the validated config (the `--check-config` path); a config accepted there
//! must start: the exporter is built and run on paused time with a fake prober (scheduler
//! offsets and deadlines, retries, queue readers, heartbeat deadlines, `/metrics`, the
//! landing page, scrape mode, `/probe`, shutdown), and nothing may panic.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use glitchtip_exporter::config::Config;
use glitchtip_exporter_fuzz::{Budget, START_UNIX, exporter_offline, load_config, paused_runtime};
use http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

/// Probes and name look-ups one run may make.
const BUDGET: usize = 64;
/// The longest stretch of (paused) tokio time one run covers.
const MAX_HORIZON: Duration = Duration::from_secs(3 * 365 * 24 * 3600);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, loaded) = load_config(text, "exporter.toml");
    let Ok(config) = loaded else {
        return;
    };
    start(source, config);
});

/// Long enough for every check and queue reader to run at least twice (retry included).
fn horizon(config: &Config) -> Duration {
    let checks = config.checks().map(|c| {
        let s = c.schedule;
        s.interval
            .saturating_add(s.timeout)
            .saturating_add(s.retry_interval)
    });
    let queues = config
        .targets
        .iter()
        .filter_map(|t| t.queue.as_ref())
        .map(|q| q.interval.saturating_add(q.timeout));
    checks
        .chain(queues)
        .max()
        .unwrap_or(Duration::from_secs(60))
        .saturating_mul(2)
        .min(MAX_HORIZON)
}

fn start(source: glitchtip_exporter::config::ConfigSource, config: Config) {
    let runtime = paused_runtime();
    runtime.block_on(async move {
        let horizon = horizon(&config);
        let targets: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
        let shutdown = config.shutdown_timeout;
        let budget = Budget::new(BUDGET);
        let state_file = glitchtip_exporter_fuzz::scratch().join("config-state.json");
        let exporter = exporter_offline(source, config, state_file, budget.clone());
        exporter.start();
        tokio::select! {
            _ = tokio::time::sleep(horizon) => {}
            _ = budget.spent() => {}
        }
        // Both modes' scrape paths, whatever the configured mode.
        exporter.scrape(Some(Duration::from_secs(10))).await;
        let _ = exporter.scrape_chunks();
        for target in &targets {
            let _ = exporter
                .probe_target(target, None, Some(Duration::from_millis(100)))
                .await;
        }
        // Heartbeat ages and deadlines at the edges of time.
        let heartbeats = exporter.heartbeats();
        for secs in [
            0,
            START_UNIX,
            START_UNIX + 100 * 365 * 24 * 3600,
            i64::MAX as u64,
        ] {
            if let Some(t) = UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
                let _ = heartbeats.render(t);
                let _ = heartbeats.views(t);
            }
        }
        let app = glitchtip_exporter::server::router(exporter.clone());
        for path in ["/metrics", "/"] {
            let request = Request::get(path)
                .header("x-prometheus-scrape-timeout-seconds", "10")
                .body(axum::body::Body::empty())
                .expect("a request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            let _ = axum::body::to_bytes(response.into_body(), 64 << 20).await;
        }
        exporter.stop(shutdown.min(Duration::from_secs(3600))).await;
    });
}
