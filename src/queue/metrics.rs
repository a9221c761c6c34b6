//! The queue series: a projection of each target's last [`Reading`], encoded at scrape
//! time into a registry of its own and appended to `/metrics`.
//!
//! Built afresh on every render from the readers in force, so that a queue removed by a
//! reload, a queue or task that disappeared, or a failed read leaves no stale series; none
//! exists before the first read. When a read fails only `glitchtip_queue_up` (0) and the
//! reason remain: an old length or age would look current.

use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};

use super::read::{QueueReason, Reading};
use super::watch::SchedulerReason;

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let vec = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(vec.clone()))
        .expect("each metric is registered once");
    vec
}

/// Encodes the series of `(target, last reading)` pairs.
pub fn render(views: &[(String, Reading)]) -> Vec<u8> {
    if views.is_empty() {
        return Vec::new();
    }
    let r = Registry::new();
    let up = gauge(
        &r,
        "glitchtip_queue_up",
        "1 when the last read of GlitchTip's queues (Redis/Valkey keys or PostgreSQL tables) succeeded, 0 when it failed (see glitchtip_queue_failure_reason); the other queue series are absent meanwhile.",
        &["target"],
    );
    let reason = gauge(
        &r,
        "glitchtip_queue_failure_reason",
        "Constant 1; the reason label says why the last queue read failed (none when it succeeded): none, dns, connect, tls, timeout, auth (wrong or missing password), denied (ACL or GRANT forbids a read), unknown_layout (no GlitchTip keys or tables found), reply_too_large (a reply over 1 MiB, or over 10000 keys matching a pattern), error, exporter_resources (the exporter could not open a socket).",
        &["target", "reason"],
    );
    let layout = gauge(
        &r,
        "glitchtip_queue_layout_info",
        "Constant 1, labelled with the layout read: celery (GlitchTip 5.x), vtasks (6.x, Valkey) with its key prefix, or database (6.x, django-vtasks' PostgreSQL tables).",
        &["target", "layout", "prefix"],
    );
    let length = gauge(
        &r,
        "glitchtip_queue_length",
        "Tasks waiting in a queue (LLEN, or QUEUED rows): celery on 5.x; default, ingest and failed (tasks that failed, capped at 1000 by GlitchTip) on 6.x.",
        &["target", "queue"],
    );
    let age = gauge(
        &r,
        "glitchtip_scheduler_last_run_age_seconds",
        "Seconds since GlitchTip's scheduler last ran a periodic task, at the time of the read (6.x, from <prefix>:scheduler:vtasks_last_run:<task>); uptime-dispatch-checks runs every second, so over 60 means the scheduler has stalled.",
        &["target", "task"],
    );
    let workers = gauge(
        &r,
        "glitchtip_workers",
        "Live GlitchTip workers (<prefix>:alive:* keys or unexpired worker_alive:* rows, which workers renew every few seconds); 0 means no worker is alive. Only where configured (workers = true).",
        &["target"],
    );
    let scheduler_up = gauge(
        &r,
        "glitchtip_queue_scheduler_up",
        "1 when GlitchTip 6's scheduler ran its heartbeat tasks (scheduler_tasks) within their limits, 0 when not (see glitchtip_queue_scheduler_failure_reason): no alert notifications, no uptime checks. Absent on 5.x and while the read fails.",
        &["target"],
    );
    let scheduler_reason = gauge(
        &r,
        "glitchtip_queue_scheduler_failure_reason",
        "Constant 1; the reason label says why the scheduler is judged down (none when up): stale (a heartbeat task's last run is over its limit), vanished (its last-run key went away, e.g. with a broker restart without persistence, and was not written again), missing (no heartbeat task's key since the exporter started).",
        &["target", "reason"],
    );
    let statuses = gauge(
        &r,
        "glitchtip_queue_tasks",
        "Tasks in django-vtasks' database backend by queue and status (queued, processing, failed); PostgreSQL only.",
        &["target", "queue", "status"],
    );
    let oldest = gauge(
        &r,
        "glitchtip_queue_oldest_task_age_seconds",
        "Age of the oldest task of a queue that may run now (queued, run_after passed), at the time of the read; PostgreSQL only. Absent for an empty queue.",
        &["target", "queue"],
    );
    for (target, reading) in views {
        let t = [target.as_str()];
        let ok = reading.reason == QueueReason::None;
        up.with_label_values(&t).set(if ok { 1.0 } else { 0.0 });
        reason
            .with_label_values(&[target.as_str(), reading.reason.as_str()])
            .set(1.0);
        if !ok {
            continue;
        }
        if let Some(l) = &reading.layout {
            layout
                .with_label_values(&[target.as_str(), l.name(), l.prefix()])
                .set(1.0);
        }
        for (queue, n) in &reading.lengths {
            length
                .with_label_values(&[target.as_str(), queue.as_str()])
                .set(*n as f64);
        }
        for (task, seconds) in &reading.last_run_ages {
            age.with_label_values(&[target.as_str(), task.as_str()])
                .set(*seconds);
        }
        if let Some(n) = reading.workers {
            workers.with_label_values(&t).set(n as f64);
        }
        if let Some(s) = reading.scheduler {
            let ok = s == SchedulerReason::None;
            scheduler_up
                .with_label_values(&t)
                .set(if ok { 1.0 } else { 0.0 });
            scheduler_reason
                .with_label_values(&[target.as_str(), s.as_str()])
                .set(1.0);
        }
        for (queue, status, n) in &reading.statuses {
            statuses
                .with_label_values(&[target.as_str(), queue.as_str(), status.as_str()])
                .set(*n as f64);
        }
        for (queue, seconds) in &reading.oldest_ages {
            oldest
                .with_label_values(&[target.as_str(), queue.as_str()])
                .set(*seconds);
        }
    }
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&r.gather(), &mut buf);
    buf
}
