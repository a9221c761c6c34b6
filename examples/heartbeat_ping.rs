//! Per-ping cost of heartbeat pings with many heartbeats: how long `record` takes (a ping
//! answered 2xx is durable when it returns), one ping at a time, with concurrent senders,
//! and for one heartbeat while another is flooded. The state goes to a temporary folder on
//! the disk of `--dir`.
//!
//! ```text
//! cargo run --example heartbeat_ping -- --heartbeats 1000 --pings 2000 --concurrency 32
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use glitchtip_exporter::clock::SystemClock;
use glitchtip_exporter::config::ConfigSource;
use glitchtip_exporter::heartbeat::{Heartbeats, PingKind};

#[derive(Parser)]
#[command(about = "Per-ping latency of heartbeat pings")]
struct Cli {
    /// Configured heartbeats.
    #[arg(long, default_value_t = 1000)]
    heartbeats: usize,
    /// Pings per run.
    #[arg(long, default_value_t = 2000)]
    pings: usize,
    /// Concurrent senders in the second run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The folder in which the temporary state folder is made.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

fn summary(label: &str, mut took: Vec<Duration>, wall: Duration) {
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = took.iter().sum::<Duration>() / u32::try_from(took.len()).unwrap_or(u32::MAX);
    println!(
        "run={label} pings={} mean_ms={:.3} p50_ms={:.3} p99_ms={:.3} pings_per_s={:.0}",
        took.len(),
        ms(mean),
        ms(took[took.len() / 2]),
        ms(took[took.len() * 99 / 100]),
        took.len() as f64 / wall.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::tempdir_in(&cli.dir)?;
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n")?;
    let mut toml = format!(
        "[server]\nstate_file = \"{}\"\n",
        dir.path().join("state.json").display()
    );
    for i in 0..cli.heartbeats {
        toml.push_str(&format!(
            "[heartbeats.job-{i:05}]\ninterval = \"1h\"\ntoken = {{ file = \"{}\" }}\n",
            token.display()
        ));
    }
    let file = dir.path().join("exporter.toml");
    std::fs::write(&file, toml)?;
    let config = ConfigSource {
        file: Some(file),
        env: Some(HashMap::new()),
        ..ConfigSource::default()
    }
    .load()?;
    let heartbeats = Heartbeats::new(&config, Arc::new(SystemClock));
    let count = cli.heartbeats;
    let name = move |i: usize| format!("job-{:05}", i % count);
    println!("heartbeats={}", cli.heartbeats);

    let start = Instant::now();
    let mut took = Vec::with_capacity(cli.pings);
    for i in 0..cli.pings {
        let t = Instant::now();
        heartbeats
            .record(&name(i), PingKind::Success, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        took.push(t.elapsed());
    }
    summary("sequential", took, start.elapsed());

    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..cli.concurrency {
        let (heartbeats, name) = (heartbeats.clone(), name);
        let per_task = cli.pings / cli.concurrency;
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let t = Instant::now();
                let saved = heartbeats
                    .record(&name(k * per_task + i), PingKind::Success, None)
                    .await;
                if saved.is_ok() {
                    took.push(t.elapsed());
                }
            }
            took
        }));
    }
    let mut took = Vec::new();
    for task in tasks {
        took.extend(task.await?);
    }
    summary(
        &format!("concurrency-{}", cli.concurrency),
        took,
        start.elapsed(),
    );

    // A flood on one heartbeat (the concurrent senders, without pause) while another one
    // pings one at a time: how long the other one's pings take, and how many of the flood's
    // are refused (503) rather than queued.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (saved, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flooders: Vec<_> = (0..cli.concurrency)
        .map(|_| {
            let (heartbeats, stop) = (heartbeats.clone(), stop.clone());
            let (saved, refused) = (saved.clone(), refused.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let counter = match heartbeats.record(&name(0), PingKind::Success, None).await {
                        Ok(()) => &saved,
                        Err(_) => &refused,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut took = Vec::new();
    for _ in 0..cli.pings / 10 {
        let t = Instant::now();
        heartbeats
            .record(&name(1), PingKind::Success, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        took.push(t.elapsed());
    }
    let wall = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.await?;
    }
    summary("other-heartbeat-during-flood", took, wall);
    println!(
        "run=flood saved={} refused={}",
        saved.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    Ok(())
}
