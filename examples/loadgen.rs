//! The load generator and small helpers of `bench/run.sh`, which compares this exporter with
//! blackbox_exporter on one machine.
//!
//! Every request goes to the loopback address only (any other host is refused), and every
//! loop is bounded in count and in time. The output is one line of `key=value` pairs, for
//! the script to read.
//!
//! ```text
//! cargo run --release --example loadgen -- probe --url 'http://127.0.0.1:9115/probe?…' \
//!     --count 10000 --concurrency 32 --expect 'probe_success 1'
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use url::Url;

#[derive(Parser)]
#[command(about = "Load generator for bench/run.sh (127.0.0.1 only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a free TCP port on 127.0.0.1.
    Port,
    /// Waits until URL answers 200.
    Wait {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
    /// Sends COUNT GET requests over CONCURRENCY keep-alive connections; every answer must
    /// be 200 and contain EXPECT (the probe's success line).
    Probe {
        #[arg(long)]
        url: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long)]
        expect: String,
        #[arg(long, default_value_t = 900)]
        max_seconds: u64,
    },
    /// GETs URL COUNT times, PAUSE_MS apart, each over a fresh connection; prints the time
    /// to the last byte (p50, max) and the size.
    Scrape {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, default_value_t = 1000)]
        pause_ms: u64,
    },
    /// Reads histogram NAME from the text at URL: count, p50, p99 (interpolated within
    /// buckets, as Prometheus' histogram_quantile), and how many observations exceed 1 s.
    Histogram {
        #[arg(long)]
        url: String,
        #[arg(long)]
        name: String,
    },
    /// Interval jitter from an access log of `MSEC KEY URI STATUS` lines: per key and URI,
    /// how far each gap between two requests is from INTERVAL seconds.
    Jitter {
        #[arg(long)]
        log: std::path::PathBuf,
        #[arg(long)]
        interval: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Port => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
        }
        Command::Wait {
            url,
            timeout_seconds,
        } => runtime.block_on(wait(&url, Duration::from_secs(timeout_seconds)))?,
        Command::Probe {
            url,
            count,
            concurrency,
            expect,
            max_seconds,
        } => runtime.block_on(probe(
            &url,
            count,
            concurrency,
            expect,
            Duration::from_secs(max_seconds),
        ))?,
        Command::Scrape {
            url,
            count,
            pause_ms,
        } => runtime.block_on(scrape(&url, count, Duration::from_millis(pause_ms)))?,
        Command::Histogram { url, name } => runtime.block_on(histogram(&url, &name))?,
        Command::Jitter { log, interval } => jitter(&log, interval)?,
    }
    Ok(())
}

/// The address and request target of a loopback URL; anything else is refused.
fn loopback(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let url = Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    let host = url.host_str().unwrap_or_default();
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") || url.scheme() != "http" {
        bail!("only http://127.0.0.1 URLs are allowed, got {url}");
    }
    let ip = if host == "[::1]" { "::1" } else { "127.0.0.1" };
    let port = url.port().unwrap_or(80);
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    Ok((SocketAddr::new(ip.parse()?, port), target))
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    target: &str,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let request = http::Request::get(target)
        .header("host", addr.to_string())
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn wait(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let (addr, target) = loopback(url)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut sender) = connect(addr).await
            && let Ok((200, _)) = get(&mut sender, addr, &target).await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn probe(
    url: &str,
    count: usize,
    concurrency: usize,
    expect: String,
    max: Duration,
) -> anyhow::Result<()> {
    let (addr, target) = loopback(url)?;
    let next = Arc::new(AtomicUsize::new(0));
    let expect = Arc::new(expect.into_bytes());
    let target = Arc::new(target);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, expect, target) = (next.clone(), expect.clone(), target.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0usize;
            let mut sender = None;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t = Instant::now();
                if sender.is_none() {
                    sender = connect(addr).await.ok();
                }
                let ok = match sender.as_mut() {
                    Some(s) => match get(s, addr, &target).await {
                        Ok((200, body)) => memchr::memmem::find(&body, &expect).is_some(),
                        Ok(_) => false,
                        Err(_) => {
                            sender = None;
                            false
                        }
                    },
                    None => false,
                };
                if !ok {
                    failed += 1;
                }
                latencies.push(t.elapsed().as_secs_f64());
            }
            (latencies, failed)
        }));
    }
    let all = tokio::time::timeout(max, futures::future::join_all(workers))
        .await
        .context("the run exceeded its time limit")?;
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for worker in all {
        let (l, f) = worker?;
        latencies.extend(l);
        failed += f;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "count={} failed={} seconds={:.3} rate={:.1} p50_ms={:.2} p99_ms={:.2}",
        latencies.len(),
        failed,
        seconds,
        latencies.len() as f64 / seconds,
        quantile(&latencies, 0.5) * 1e3,
        quantile(&latencies, 0.99) * 1e3
    );
    if failed > 0 {
        bail!("{failed} of {} probes did not succeed", latencies.len());
    }
    Ok(())
}

async fn scrape(url: &str, count: usize, pause: Duration) -> anyhow::Result<()> {
    let (addr, target) = loopback(url)?;
    let mut times = Vec::new();
    // Until the answer's headers: the exporter's work before the first byte.
    let mut heads = Vec::new();
    let mut size = 0;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        let mut sender = connect(addr).await?;
        let t = Instant::now();
        let request = http::Request::get(&target)
            .header("host", addr.to_string())
            .body(Empty::new())?;
        let response = sender.send_request(request).await?;
        heads.push(t.elapsed().as_secs_f64());
        let status = response.status();
        // Counted as it streams in, not gathered: the time is the exporter's, not a copy's.
        let mut body = response.into_body();
        size = 0;
        while let Some(frame) = body.frame().await {
            size += frame?.data_ref().map_or(0, Bytes::len);
        }
        times.push(t.elapsed().as_secs_f64());
        if status != 200 {
            bail!("{url} answered {status}");
        }
    }
    times.sort_by(f64::total_cmp);
    heads.sort_by(f64::total_cmp);
    println!(
        "count={} p50_ms={:.2} p90_ms={:.2} max_ms={:.2} head_p50_ms={:.2} head_max_ms={:.2} bytes={}",
        times.len(),
        quantile(&times, 0.5) * 1e3,
        quantile(&times, 0.9) * 1e3,
        times.last().copied().unwrap_or(f64::NAN) * 1e3,
        quantile(&heads, 0.5) * 1e3,
        heads.last().copied().unwrap_or(f64::NAN) * 1e3,
        size
    );
    Ok(())
}

async fn histogram(url: &str, name: &str) -> anyhow::Result<()> {
    let (addr, target) = loopback(url)?;
    let mut sender = connect(addr).await?;
    let (_, body) = get(&mut sender, addr, &target).await?;
    let text = String::from_utf8_lossy(&body);
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&prefix) {
            let (le, value) = rest.split_once("\"} ").context("bad bucket line")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()?
            };
            buckets.push((le, value.trim().parse()?));
        }
    }
    if buckets.is_empty() {
        bail!("no histogram {name} at {url}");
    }
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let q = |q: f64| {
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, cumulative) in &buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return lower.0;
                }
                let within = (rank - lower.1) / (cumulative - lower.1).max(f64::MIN_POSITIVE);
                return lower.0 + (le - lower.0) * within;
            }
            lower = (le, cumulative);
        }
        f64::NAN
    };
    let within_1s = buckets
        .iter()
        .find(|(le, _)| *le == 1.0)
        .map(|b| b.1)
        .unwrap_or(f64::NAN);
    println!(
        "count={} p50_ms={:.3} p99_ms={:.3} over_1s={}",
        total,
        q(0.5) * 1e3,
        q(0.99) * 1e3,
        total - within_1s
    );
    Ok(())
}

fn jitter(log: &std::path::Path, interval: f64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(log).with_context(|| format!("{}", log.display()))?;
    let mut seen: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
    let mut requests = 0;
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(msec), Some(key), Some(uri)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(t) = msec.parse::<f64>() else {
            continue;
        };
        requests += 1;
        seen.entry((key, uri)).or_default().push(t);
    }
    let mut deviations = Vec::new();
    for times in seen.values_mut() {
        times.sort_by(f64::total_cmp);
        for pair in times.windows(2) {
            deviations.push((pair[1] - pair[0] - interval).abs());
        }
    }
    deviations.sort_by(f64::total_cmp);
    println!(
        "requests={} series={} gaps={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        requests,
        seen.len(),
        deviations.len(),
        quantile(&deviations, 0.5) * 1e3,
        quantile(&deviations, 0.99) * 1e3,
        deviations.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    Ok(())
}
