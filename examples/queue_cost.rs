//! One queue read's cost, for `bench/queue-cost.sh`: loads a config whose first target has
//! a `[queue]` table, reads it `N` times in a row (`queue::read::read`, as the reader task
//! does, with its timeout) and prints one JSON line: reads, failures, the last reason, and
//! the milliseconds per read (median, 90th percentile, max).
//!
//!     cargo run --release --example queue_cost -- exporter.toml 20

use std::sync::Arc;
use std::time::Instant;

use glitchtip_exporter::clock::SystemClock;
use glitchtip_exporter::config::ConfigSource;
use glitchtip_exporter::net::resolver::{Resolver, SystemResolver};
use glitchtip_exporter::queue::read::{QueueReason, Reading, read};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: queue_cost CONFIG [N]"))?;
    let n: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let config = ConfigSource {
        file: Some(file.into()),
        ..Default::default()
    }
    .load()?;
    let spec = config
        .targets
        .iter()
        .find_map(|t| t.queue.clone())
        .ok_or_else(|| anyhow::anyhow!("no target with a [queue] table"))?;
    let resolver: Arc<dyn Resolver> = Arc::new(SystemResolver);
    let mut ms = Vec::with_capacity(n);
    let mut failures = 0;
    let mut reason = QueueReason::None;
    let mut lengths = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let reading =
            tokio::time::timeout(spec.timeout, read(&spec, &resolver, &SystemClock, None))
                .await
                .unwrap_or_else(|_| Reading {
                    reason: QueueReason::Timeout,
                    ..Reading::default()
                });
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if reading.reason != QueueReason::None {
            failures += 1;
        }
        reason = reading.reason;
        lengths = reading.lengths;
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"reads\": {n}, \"failures\": {failures}, \"reason\": \"{}\", \"lengths\": {:?}, \"ms_median\": {:.2}, \"ms_p90\": {:.2}, \"ms_max\": {:.2}}}",
        reason.as_str(),
        lengths
            .iter()
            .map(|(q, l)| format!("{q}={l}"))
            .collect::<Vec<_>>(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    Ok(())
}
