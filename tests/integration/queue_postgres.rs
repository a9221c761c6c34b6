//! GlitchTip 6's database backend (django-vtasks' tables in PostgreSQL) read by the queue
//! reader, against a real PostgreSQL ([`crate::postgres`]) with the tables as django-vtasks
//! 3.2.0 creates them, read by a role that has only the README's grants.

use std::time::{Duration, Instant};

use crate::helpers::{CLOCK_START, Samples};
use crate::postgres::Cluster;
use crate::queue::{
    length, queue_reason, scheduler, start_reader, start_reader_with_clock, up, wait_for,
};

const PASSWORD: &str = "exporter-pg-pw-77a1";

fn url(cluster: &Cluster, role: &str, db: &str) -> String {
    format!("postgres://{role}@127.0.0.1:{}/{db}", cluster.port)
}

/// Timing for PostgreSQL: a connection with SCRAM takes longer than a Redis one.
const TIMING: &str = "interval = \"1s\"\ntimeout = \"1s\"\n";

/// Epoch seconds `age` before the test clock, as django-vtasks writes them.
fn epoch(age: f64) -> String {
    format!("{}", CLOCK_START as f64 - age)
}

/// A timestamp `age` seconds before the test clock, for SQL.
fn at(age: f64) -> String {
    format!("to_timestamp({})", CLOCK_START as f64 - age)
}

/// GlitchTip 6 at work: tasks in every status, a delayed one, last runs, two live workers
/// and an expired one.
async fn load(client: &tokio_postgres::Client, uptime_age: f64) {
    let task = |queue: &str, status: &str, age: f64, run_after: &str| {
        format!(
            "INSERT INTO db_queuedtask (id, queue, data, status, created_at, priority, run_after) \
             VALUES (gen_random_uuid(), '{queue}', '\\x00', '{status}', {}, 0, {run_after});",
            at(age)
        )
    };
    let mut sql = String::new();
    for age in [40.0, 20.0, 10.0] {
        sql.push_str(&task("default", "QUEUED", age, "NULL"));
    }
    sql.push_str(&task("ingest", "QUEUED", 5.0, "NULL"));
    // Created long ago, but delayed until well after now: not runnable, not the oldest.
    sql.push_str(&task(
        "ingest",
        "QUEUED",
        900.0,
        "now() + interval '1 hour'",
    ));
    sql.push_str(&task("default", "PROCESSING", 2.0, "NULL"));
    sql.push_str(&task("default", "FAILED", 600.0, "NULL"));
    let meta = |key: &str, value: &str, expires: &str| {
        format!(
            "INSERT INTO db_vtaskmetadata (key, value, expires_at) VALUES ('{key}', '{value}', {expires});"
        )
    };
    sql.push_str(&meta(
        "vtasks_last_run:uptime-dispatch-checks",
        &epoch(uptime_age),
        "NULL",
    ));
    sql.push_str(&meta(
        "vtasks_last_run:send-alert-notifications",
        &epoch(30.25),
        "NULL",
    ));
    sql.push_str(&meta(
        "vtasks_last_run:perform-maintenance",
        &epoch(80_000.0),
        "NULL",
    ));
    sql.push_str(&meta(
        "vtasks_scheduler_lock",
        "w1",
        "now() + interval '15 seconds'",
    ));
    sql.push_str(&meta(
        "worker_alive:web-1-101",
        "1",
        "now() + interval '15 seconds'",
    ));
    sql.push_str(&meta(
        "worker_alive:worker-2-202",
        "1",
        "now() + interval '15 seconds'",
    ));
    sql.push_str(&meta(
        "worker_alive:old-3-303",
        "1",
        "now() - interval '1 minute'",
    ));
    client.batch_execute(&sql).await.unwrap();
}

/// Every row of both tables, as text: equal before and after means nothing was written.
async fn snapshot(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT t::text FROM db_queuedtask t UNION ALL SELECT m::text FROM db_vtaskmetadata m ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn database_backend_read_by_a_select_only_role_leaves_every_row_unchanged() {
    let cluster = Cluster::shared().await;
    let (db, role) = cluster.database(true, PASSWORD).await;
    let admin = cluster.admin(&db).await;
    load(&admin, 1.5).await;
    let before = snapshot(&admin).await;

    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, &url(&cluster, &role, &db), Some(PASSWORD), TIMING).await;
    let s = wait_for(&exporter, "a successful read", |s| up(s) == Some(1.0)).await;
    assert_eq!(queue_reason(&s), "none");
    assert_eq!(
        s.get(
            "glitchtip_queue_layout_info",
            &[("target", "stub"), ("layout", "database"), ("prefix", "")]
        ),
        1.0
    );
    // The Valkey layout's names: QUEUED rows per queue, failed ones as queue "failed".
    assert_eq!(length(&s, "default"), 3.0);
    assert_eq!(length(&s, "ingest"), 2.0);
    assert_eq!(length(&s, "failed"), 1.0);
    let tasks = |queue, status| {
        s.get(
            "glitchtip_queue_tasks",
            &[("target", "stub"), ("queue", queue), ("status", status)],
        )
    };
    assert_eq!(tasks("default", "queued"), 3.0);
    assert_eq!(tasks("default", "processing"), 1.0);
    assert_eq!(tasks("default", "failed"), 1.0);
    let oldest = |queue| {
        s.get(
            "glitchtip_queue_oldest_task_age_seconds",
            &[("target", "stub"), ("queue", queue)],
        )
    };
    assert!((oldest("default") - 40.0).abs() < 1e-3);
    assert!(
        (oldest("ingest") - 5.0).abs() < 1e-3,
        "the delayed task is not runnable"
    );
    let age = |task| {
        s.get(
            "glitchtip_scheduler_last_run_age_seconds",
            &[("target", "stub"), ("task", task)],
        )
    };
    assert!((age("uptime-dispatch-checks") - 1.5).abs() < 1e-3);
    assert!((age("send-alert-notifications") - 30.25).abs() < 1e-3);
    assert!((age("perform-maintenance") - 80_000.0).abs() < 1e-3);
    // Workers: on by default for the database backend; the expired row does not count.
    assert_eq!(s.get("glitchtip_workers", &[("target", "stub")]), 2.0);
    // A daily task's age is no heartbeat: the scheduler is up.
    assert_eq!(scheduler(&s), Some((1.0, "none".to_owned())));
    exporter.stop().await;
    assert_eq!(snapshot(&admin).await, before, "a row changed");
}

#[tokio::test]
async fn a_dead_scheduler_with_a_live_worker_is_seen_on_the_database_backend() {
    // django-vtasks 3.1.0 after a 15 s PostgreSQL outage: worker_alive fresh, the last run
    // of uptime-dispatch-checks growing.
    let cluster = Cluster::shared().await;
    let (db, role) = cluster.database(true, PASSWORD).await;
    let admin = cluster.admin(&db).await;
    load(&admin, 31.0).await;
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, &url(&cluster, &role, &db), Some(PASSWORD), TIMING).await;
    let s = wait_for(&exporter, "a read", |s| up(s) == Some(1.0)).await;
    assert_eq!(s.get("glitchtip_workers", &[("target", "stub")]), 2.0);
    assert_eq!(scheduler(&s), Some((0.0, "stale".to_owned())));
    exporter.stop().await;
}

#[tokio::test]
async fn last_runs_that_are_no_number_or_far_ahead_count_as_missing() {
    let cluster = Cluster::shared().await;
    let (db, role) = cluster.database(true, PASSWORD).await;
    let admin = cluster.admin(&db).await;
    admin
        .batch_execute(&format!(
            "INSERT INTO db_vtaskmetadata (key, value) VALUES \
             ('vtasks_last_run:uptime-dispatch-checks', 'not-a-number'), \
             ('vtasks_last_run:send-alert-notifications', '{}'), \
             ('worker_alive:w-1', '1')",
            epoch(-3600.0)
        ))
        .await
        .unwrap();
    admin
        .batch_execute("UPDATE db_vtaskmetadata SET expires_at = now() + interval '1 hour'")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (exporter, clock) =
        start_reader_with_clock(&dir, &url(&cluster, &role, &db), Some(PASSWORD), TIMING).await;
    let s = wait_for(&exporter, "a read", |s| up(s) == Some(1.0)).await;
    assert!(!s.has("glitchtip_scheduler_last_run_age_seconds", &[]));
    // Within the start-up grace, then missing.
    assert_eq!(scheduler(&s), Some((1.0, "none".to_owned())));
    clock.advance(Duration::from_secs(31));
    let s = wait_for(&exporter, "the scheduler judged missing", |s| {
        scheduler(s).is_some_and(|(v, _)| v == 0.0)
    })
    .await;
    assert_eq!(scheduler(&s), Some((0.0, "missing".to_owned())));
    exporter.stop().await;
}

/// Starts a reader and waits for a read failed with `reason` (a loaded machine may time
/// out a read first); answers the samples.
async fn failing(url: &str, password: Option<&str>, extra: &str, reason: &str) -> Samples {
    let dir = tempfile::tempdir().unwrap();
    let exporter = start_reader(&dir, url, password, extra).await;
    let s = wait_for(&exporter, reason, |s| {
        up(s) == Some(0.0) && queue_reason(s) == reason
    })
    .await;
    for name in [
        "glitchtip_queue_length",
        "glitchtip_queue_scheduler_up",
        "glitchtip_workers",
    ] {
        assert!(!s.has(name, &[]), "{name} while the read fails");
    }
    let text = exporter.get("/metrics").await.body;
    assert!(!text.contains(PASSWORD) && !text.contains("wrong-pw"));
    exporter.stop().await;
    s
}

#[tokio::test]
async fn wrong_password_is_auth() {
    let (logs, _guard) = crate::canary::Capture::install();
    let cluster = Cluster::shared().await;
    let (db, role) = cluster.database(true, PASSWORD).await;
    let s = failing(&url(&cluster, &role, &db), Some("wrong-pw"), TIMING, "auth").await;
    assert_eq!(queue_reason(&s), "auth");
    let logs = logs.text();
    assert!(
        !logs.contains("wrong-pw") && !logs.contains(PASSWORD),
        "{logs}"
    );
}

#[tokio::test]
async fn a_role_without_select_is_denied() {
    let cluster = Cluster::shared().await;
    let (db, role) = cluster.database(true, PASSWORD).await;
    cluster
        .admin(&db)
        .await
        .batch_execute(&format!("REVOKE SELECT ON db_queuedtask FROM {role}"))
        .await
        .unwrap();
    let s = failing(&url(&cluster, &role, &db), Some(PASSWORD), TIMING, "denied").await;
    assert_eq!(queue_reason(&s), "denied");
}

#[tokio::test]
async fn a_database_without_the_tables_is_an_unknown_layout() {
    let cluster = Cluster::shared().await;
    let (db, role) = cluster.database(false, PASSWORD).await;
    let s = failing(
        &url(&cluster, &role, &db),
        Some(PASSWORD),
        TIMING,
        "unknown_layout",
    )
    .await;
    assert_eq!(queue_reason(&s), "unknown_layout");
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and keeps it open, silent.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let s = failing(
        &format!("postgres://exporter@127.0.0.1:{port}/glitchtip"),
        Some(PASSWORD),
        "interval = \"300ms\"\ntimeout = \"200ms\"\n",
        "timeout",
    )
    .await;
    assert_eq!(queue_reason(&s), "timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
    silent.abort();
}

#[tokio::test]
async fn a_read_held_up_by_a_table_lock_is_timeout() {
    // A table lock held by another session (a migration): the read's SELECT waits until
    // the read's deadline or PostgreSQL's statement_timeout (the same) ends it.
    let cluster = Cluster::shared().await;
    let (db, role) = cluster.database(true, PASSWORD).await;
    let locker = cluster.admin(&db).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE db_queuedtask IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let s = failing(
        &url(&cluster, &role, &db),
        Some(PASSWORD),
        TIMING,
        "timeout",
    )
    .await;
    assert_eq!(queue_reason(&s), "timeout");
    locker.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn tls_verified_against_the_ca_file_or_only_encrypted_or_refused() {
    let cluster = Cluster::shared().await;
    let (db, role) = cluster.database(true, PASSWORD).await;
    let admin = cluster.admin(&db).await;
    load(&admin, 1.0).await;
    // This role may connect over TLS only (pg_hba.conf): a plain connection is refused.
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE tls_only NOLOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             GRANT tls_only TO {role}"
        ))
        .await
        .unwrap();
    let base = url(&cluster, &role, &db);
    let s = failing(&base, Some(PASSWORD), TIMING, "auth").await;
    assert_eq!(queue_reason(&s), "auth");
    let ca = format!(
        "tls = {{ ca_file = \"{}\" }}\n{TIMING}",
        cluster.ca_file.display()
    );
    for (query, extra) in [
        ("?sslmode=verify-full", ca.as_str()),
        ("?sslmode=require", TIMING),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let exporter = start_reader(&dir, &format!("{base}{query}"), Some(PASSWORD), extra).await;
        let s = wait_for(&exporter, query, |s| up(s) == Some(1.0)).await;
        assert_eq!(length(&s, "default"), 3.0, "{query}");
        exporter.stop().await;
    }
    // Verified against the bundled web roots: the test CA is not one of them.
    let s = failing(
        &format!("{base}?sslmode=verify-full"),
        Some(PASSWORD),
        TIMING,
        "tls",
    )
    .await;
    assert_eq!(queue_reason(&s), "tls");
}
