//! Redirects and proxies seen from the servers' side: stub servers on 127.0.0.1 that keep
//! every request head they receive, so that a test asserts which credentials reached
//! which origin (two ports are two origins) and what a proxy was asked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::helpers::{self, Samples};

/// A server that answers each request head with `answer(request line)` and keeps the heads.
pub struct Recorder {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    pub async fn start(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = heads.clone();
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, answer) = (log.clone(), answer.clone());
                connections.spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let reply = answer(head.lines().next().unwrap_or_default());
                    log.lock().unwrap().push(head);
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self { addr, heads, task }
    }

    /// The request heads received so far, header names lowercased.
    pub fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|head| {
                let mut lines = head.lines();
                let request_line = lines.next().unwrap_or_default().to_owned();
                std::iter::once(request_line)
                    .chain(lines.map(|line| match line.split_once(':') {
                        Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
                        None => line.to_owned(),
                    }))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect()
    }
}

pub fn ok() -> String {
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned()
}

pub fn redirect(location: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

/// A secret file holding `secret`.
pub fn secret_file(secret: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{secret}\n")).unwrap();
    file
}

/// Starts the exporter in scrape mode with `toml` (after a `[server]` table) and probes
/// target `gt` once.
pub async fn probe(toml: &str) -> Samples {
    let toml = format!("[server]\nmode = \"scrape\"\n{toml}");
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    let m = exporter.probe("gt").await;
    exporter.stop().await;
    m
}

fn has_header(head: &str, name: &str) -> bool {
    head.lines().any(|l| l.starts_with(&format!("{name}:")))
}

#[tokio::test]
async fn a_redirect_to_another_origin_drops_credentials_and_sensitive_headers() {
    let other = Recorder::start(|_| ok()).await;
    let elsewhere = format!("http://127.0.0.1:{}/landing", other.addr.port());
    let origin = Recorder::start(move |_| redirect(&elsewhere)).await;
    let token = secret_file("t0ken");
    let password = secret_file("pa55");
    let m = probe(&format!(
        r#"
[targets.gt]
url = "http://127.0.0.1:{port}"
default_checks = false
sensitive_headers = ["X-Api-Key"]
[targets.gt.headers]
X-Api-Key = "k3y"
X-Trace = "kept"
Cookie = "session=abc"
[targets.gt.checks.bearer]
path = "/start"
follow_redirects = true
bearer_token = {{ file = "{token}" }}
[targets.gt.checks.basic]
path = "/start"
follow_redirects = true
basic_auth = {{ username = "u", password = {{ file = "{password}" }} }}
sensitive_headers = ["X-Other"]
headers = {{ X-Other = "o" }}
"#,
        port = origin.addr.port(),
        token = token.path().display(),
        password = password.path().display(),
    ))
    .await;
    for check in ["bearer", "basic"] {
        assert_eq!(m.reason("gt", check), "none");
        assert_eq!(m.check("glitchtip_http_status_code", "gt", check), 200.0);
    }

    let sent = origin.heads();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for head in &sent {
        for name in ["authorization", "x-api-key", "cookie", "x-trace"] {
            assert!(has_header(head, name), "{name} at the origin: {head}");
        }
    }
    let followed = other.heads();
    assert_eq!(followed.len(), 2, "{followed:?}");
    for head in &followed {
        assert!(head.starts_with("GET /landing HTTP/1.1"), "{head}");
        for name in ["authorization", "x-api-key", "x-other", "cookie"] {
            assert!(
                !has_header(head, name),
                "{name} went to another origin: {head}"
            );
        }
        assert!(has_header(head, "x-trace"), "{head}");
    }
}

#[tokio::test]
async fn a_redirect_within_the_origin_keeps_the_credentials() {
    let origin = Recorder::start(|line| {
        if line.starts_with("GET /start ") {
            redirect("/next")
        } else {
            ok()
        }
    })
    .await;
    let token = secret_file("t0ken");
    let m = probe(&format!(
        r#"
[targets.gt]
url = "http://127.0.0.1:{port}"
default_checks = false
[targets.gt.checks.bearer]
path = "/start"
follow_redirects = true
bearer_token = {{ file = "{token}" }}
"#,
        port = origin.addr.port(),
        token = token.path().display(),
    ))
    .await;
    assert_eq!(m.reason("gt", "bearer"), "none");
    let sent = origin.heads();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].starts_with("GET /next HTTP/1.1"), "{}", sent[1]);
    for head in &sent {
        assert!(head.contains("\nauthorization: Bearer t0ken"), "{head}");
    }
}

#[tokio::test]
async fn a_forwarding_proxy_gets_its_credentials_and_its_407_is_reason_proxy() {
    // Answers 200 to the right credentials, 407 to anything else.
    let expected = "proxy-authorization: Basic bW9uaXRvcjpodW50ZXIy"; // monitor:hunter2
    let proxy = Recorder::start(|_| ok()).await;
    let picky = Recorder::start(|_| {
        "HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"p\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
    })
    .await;
    let password = secret_file("hunter2");
    let config = |proxy: SocketAddr| {
        format!(
            r#"
[targets.gt]
url = "http://glitchtip.invalid:8000"
default_checks = false
proxy = "http://{proxy}"
proxy_auth = {{ username = "monitor", password = {{ file = "{password}" }} }}
[targets.gt.checks.health]
path = "/_health/"
"#,
            password = password.path().display(),
        )
    };

    let m = probe(&config(proxy.addr)).await;
    assert_eq!(m.reason("gt", "health"), "none");
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("GET http://glitchtip.invalid:8000/_health/ HTTP/1.1"),
        "{}",
        heads[0]
    );
    assert!(heads[0].contains(expected), "{}", heads[0]);

    let m = probe(&config(picky.addr)).await;
    assert_eq!(m.reason("gt", "health"), "proxy");
    assert_eq!(m.check("glitchtip_up", "gt", "health"), 0.0);
}
