//! The queue reader against a Redis that answers anything: the real reader
//! ([`read::read`]: handshake, layout detection, `SCAN`/`LLEN`/`GET`, the last-run values
//! and task names taken from key names) over a real loopback connection to a stub that
//! sends the fuzzed replies, one per command, then the queue series rendered from the
//! reading. Nothing panics, nothing hangs, the reading stays within its bounds and the
//! rendered text is valid exposition format.
//!
//! Input: one byte of options (layout, prefix, database, workers), then the replies in
//! RESP, separated by NUL bytes. After a reply that is not one complete RESP value
//! ([`redis::parse_redis_value`]), the stub hangs up.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use glitchtip_exporter::clock::{Clock, ManualClock};
use glitchtip_exporter::net::resolver::{Resolver, StaticResolver};
use glitchtip_exporter::queue::QueueSpec;
use glitchtip_exporter::queue::config::LayoutChoice;
use glitchtip_exporter::queue::read::{MAX_TASKS, QueueReason, read};
use glitchtip_exporter_fuzz::START_UNIX;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MAX_REPLIES: usize = 64;

fn listener() -> &'static std::net::TcpListener {
    static LISTENER: OnceLock<std::net::TcpListener> = OnceLock::new();
    LISTENER.get_or_init(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        l.set_nonblocking(true).expect("non-blocking");
        l
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let replies: Vec<&[u8]> = rest.split(|b| *b == 0).take(MAX_REPLIES).collect();
    let port = listener().local_addr().expect("bound").port();
    let spec = QueueSpec {
        target: "prod".to_owned(),
        host: "127.0.0.1".to_owned(),
        port,
        db: if options & 0x10 != 0 { 3 } else { 0 },
        username: None,
        password: None,
        tls: None,
        layout: match options & 3 {
            1 => LayoutChoice::Vtasks,
            2 => LayoutChoice::Celery,
            _ => LayoutChoice::Auto,
        },
        prefix: match (options >> 2) & 3 {
            1 => Some("{vt}".to_owned()),
            2 => Some("custom".to_owned()),
            _ => None,
        },
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(2),
        workers: options & 0x20 != 0,
        fingerprint: 0,
        backend: glitchtip_exporter::queue::config::Backend::Valkey,
        dbname: String::new(),
        scheduler_tasks: vec![
            ("uptime-dispatch-checks".to_owned(), Duration::from_secs(30)),
            ("send-alert-notifications".to_owned(), Duration::from_secs(150)),
        ],
    };
    let resolver: Arc<dyn Resolver> = Arc::new(StaticResolver::new());
    let clock = ManualClock::at_unix(START_UNIX);
    let reading = runtime().block_on(async {
        let listener =
            tokio::net::TcpListener::from_std(listener().try_clone().expect("a listener"))
                .expect("registered");
        let stub = async move {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let _ = conn.set_nodelay(true);
            let mut buf = vec![0u8; 64 * 1024];
            for reply in replies {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if conn.write_all(reply).await.is_err() {
                    return;
                }
                if redis::parse_redis_value(reply).is_err() {
                    return;
                }
            }
        };
        let reader = tokio::time::timeout(
            Duration::from_secs(30),
            read(&spec, &resolver, &clock as &dyn Clock, None),
        );
        let (_, reading) = tokio::join!(stub, reader);
        reading.expect("the read ends on its own")
    });
    if reading.reason != QueueReason::None {
        assert!(reading.layout.is_none() && reading.lengths.is_empty());
    }
    assert!(reading.lengths.len() <= 3);
    assert!(reading.last_run_ages.len() <= MAX_TASKS);
    for (task, age) in &reading.last_run_ages {
        assert!(!task.is_empty() && task.chars().count() <= 64, "{task:?}");
        assert!(age.is_finite() && *age >= 0.0, "{age}");
    }
    let text = glitchtip_exporter::queue::metrics::render(&[("prod".to_owned(), reading)]);
    glitchtip_exporter_fuzz::assert_exposition(&text);
});
