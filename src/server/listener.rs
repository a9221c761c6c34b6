//! The accept loop: HTTP/1 connections served by hyper over the axum router, with the
//! bounds a port open to anyone needs (README, "Limits").
//!
//! Separate from the routes because it is about sockets, not endpoints: every connection
//! must send a complete request head within `header_read_timeout` (hyper's timer, which
//! also runs while a keep-alive connection waits for its next request), a head larger than
//! `max_header_bytes` is answered 431 and closed, and at most `max_connections` are served.
//!
//! Beyond that cap a small reserve ([`RESERVE_CONNECTIONS`]) is still accepted, but may only
//! ask for `/metrics`, `/-/healthy` and `/-/ready`, one request per connection, with a
//! short header deadline. When the reserve is full too, a newcomer takes the place of the
//! oldest reserve connection that has not sent its request yet: a scraper sends its
//! request right after connecting, so a flood of silent or slow clients cannot keep
//! Prometheus or the orchestrator's health checks out, while a request being answered is
//! never cut. Closing the oldest idle connection of the general pool instead was rejected:
//! a client that opens connections fast enough would then close Prometheus's own
//! keep-alive connection between two scrapes.
//!
//! An accept error (out of file descriptors) is not retried in a loop: the loop waits,
//! longer each time up to a second, and logs at most once per [`LOG_EVERY`].

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::config::ServerLimits;
use crate::config::defaults::{
    CONNECTIONS_SHARE_OF_FD_LIMIT, MAX_CONNECTIONS_CEILING, RESERVE_CONNECTIONS,
    RESERVE_HEADER_READ_TIMEOUT,
};

/// The least time between two log lines about the same trouble (accept errors, refused
/// connections), so that a flood does not become a flood of logs.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// The first and the longest wait after an accept error.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// hyper's smallest read buffer; a smaller `max_header_bytes` is enforced by the head
/// size check alone.
const MIN_READ_BUFFER: usize = 8 * 1024;

/// `server.max_connections` when it is not set: a share of the open-file limit, so that
/// inbound clients can never take the descriptors that probes need.
pub fn default_max_connections(fd_limit: u64) -> usize {
    (fd_limit / CONNECTIONS_SHARE_OF_FD_LIMIT).clamp(1, MAX_CONNECTIONS_CEILING) as usize
}

/// The soft open-file limit of this process, if it can be read.
pub fn fd_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Accepts on `listener` until `stop` completes, then waits for open connections to
/// finish their current request (the caller bounds that wait). `app` serves the general
/// pool, `reserve_app` the reserve.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    reserve_app: Router,
    web: Arc<super::Web>,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
) {
    let fd_limit = fd_limit();
    let max_connections = limits
        .max_connections
        .unwrap_or_else(|| default_max_connections(fd_limit.unwrap_or(1024)));
    if let Some(fd_limit) =
        fd_limit.filter(|l| (max_connections + RESERVE_CONNECTIONS) as u64 > l / 2)
    {
        tracing::warn!(
            max_connections,
            fd_limit,
            "server.max_connections lets clients take over half of the open-file limit: probes may find no socket"
        );
    }
    tracing::info!(
        max_connections,
        reserve = RESERVE_CONNECTIONS,
        header_read_timeout = ?limits.header_read_timeout,
        max_header_bytes = limits.max_header_bytes,
        max_concurrent_probes = limits.max_concurrent_probes,
        "client limits"
    );
    let reserve_header_timeout = limits.header_read_timeout.min(RESERVE_HEADER_READ_TIMEOUT);
    let general = Pool {
        builder: builder(&limits, limits.header_read_timeout, true),
        app,
        body_timeout: limits.header_read_timeout,
        handshake_timeout: limits.header_read_timeout,
    };
    let reserve = Pool {
        builder: builder(&limits, reserve_header_timeout, false),
        app: reserve_app,
        body_timeout: limits.header_read_timeout,
        handshake_timeout: reserve_header_timeout,
    };
    let slots = Arc::new(Semaphore::new(max_connections));
    let reserve_slots = Arc::new(Semaphore::new(RESERVE_CONNECTIONS));
    // The reserve's connections, oldest first; each holds one of reserve_slots.
    let mut reserved: VecDeque<Arc<Tracked>> = VecDeque::with_capacity(RESERVE_CONNECTIONS);
    let graceful = GracefulShutdown::new();
    let mut accept_errors = Throttled::default();
    let mut refused = Throttled::default();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, peer)) => {
                accept_errors.clear();
                tracing::trace!(%peer, "connection accepted");
                stream
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                let wait = accept_errors.backoff();
                if let Some(suppressed) = accept_errors.due() {
                    tracing::error!(error = %e, suppressed, retry_in = ?wait, "accept error");
                }
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let tracked = Arc::new(Tracked::default());
        // Read per connection: a reload's new certificate serves the next one.
        let tls = web.tls();
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            general.spawn(stream, tls, tracked, permit, &graceful);
            continue;
        }
        // The reserve: a newcomer takes the place of the oldest connection that has not
        // sent its request yet; one that is being answered keeps its place.
        if let Some(suppressed) = refused.due() {
            tracing::warn!(
                max_connections,
                reserve = RESERVE_CONNECTIONS,
                suppressed,
                "connection limit reached: new connections may only ask for /metrics, /-/healthy and /-/ready"
            );
        }
        reserved.retain(|t| !t.closed.load(Ordering::Relaxed));
        let slot = match reserve_slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => match reserved
                .iter()
                .position(|t| !t.served.load(Ordering::Relaxed))
            {
                Some(i) => {
                    if let Some(oldest) = reserved.remove(i) {
                        oldest.evict.cancel();
                    }
                    // Its task closes the socket and gives the slot back; waiting for that
                    // keeps the descriptors bounded however fast connections arrive.
                    tokio::select! {
                        biased;
                        () = &mut stop => break,
                        slot = reserve_slots.clone().acquire_owned() => slot.ok(),
                    }
                }
                None => None,
            },
        };
        if let Some(slot) = slot {
            reserved.push_back(tracked.clone());
            reserve.spawn(stream, tls, tracked, slot, &graceful);
        }
        // Otherwise every reserve connection is being answered: this one is closed.
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One class of connections: how hyper serves it, and its routes.
struct Pool {
    builder: http1::Builder,
    app: Router,
    /// See [`DeadlineBody`].
    body_timeout: Duration,
    /// The TLS handshake gets the header deadline too, so that a client that speaks plain
    /// HTTP to the TLS port, or never finishes its handshake, is closed, not kept.
    handshake_timeout: Duration,
}

impl Pool {
    /// Serves `stream` (over TLS with `tls`) on its own task, holding `slot` until the
    /// connection ends.
    fn spawn(
        &self,
        stream: TcpStream,
        tls: Option<Arc<rustls::ServerConfig>>,
        tracked: Arc<Tracked>,
        slot: impl Send + 'static,
        graceful: &GracefulShutdown,
    ) {
        let service = TrackedService {
            inner: TowerToHyperService::new(self.app.clone()),
            tracked: tracked.clone(),
            body_timeout: self.body_timeout,
        };
        let builder = self.builder.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = self.handshake_timeout;
        let connection = async move {
            // An error here is the client's (reset, bad request, header deadline, failed
            // handshake); hyper has answered what could be answered.
            match tls {
                None => {
                    let _ = watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await;
                }
                Some(config) => {
                    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                    if let Ok(Ok(stream)) = tokio::time::timeout(handshake_timeout, handshake).await
                    {
                        let _ = watcher
                            .watch(builder.serve_connection(TokioIo::new(stream), service))
                            .await;
                    }
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                () = connection => {}
                () = tracked.evict.cancelled() => {}
            }
            tracked.closed.store(true, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// What the accept loop knows of a connection it served.
#[derive(Default)]
struct Tracked {
    /// A request arrived (its head was complete).
    served: AtomicBool,
    /// The connection has ended.
    closed: AtomicBool,
    /// Ends the connection: a newer one needs its reserve slot.
    evict: CancellationToken,
}

/// The router, noting in [`Tracked::served`] that a request arrived.
#[derive(Clone)]
struct TrackedService {
    inner: Inner,
    tracked: Arc<Tracked>,
    /// See [`DeadlineBody`].
    body_timeout: Duration,
}

type Inner = TowerToHyperService<Router>;

impl hyper::service::Service<Request<Incoming>> for TrackedService {
    type Response = <Inner as hyper::service::Service<Request<DeadlineBody>>>::Response;
    type Error = <Inner as hyper::service::Service<Request<DeadlineBody>>>::Error;
    type Future = <Inner as hyper::service::Service<Request<DeadlineBody>>>::Future;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.tracked.served.store(true, Ordering::Relaxed);
        let within = self.body_timeout;
        self.inner.call(request.map(|body| DeadlineBody {
            inner: body,
            within,
            deadline: None,
        }))
    }
}

/// A request body that must arrive within `within` of the handler starting to read it:
/// the header deadline's counterpart for a client that sends its head, announces a body
/// and then stalls (a heartbeat ping), which would otherwise hold its connection forever.
struct DeadlineBody {
    inner: Incoming,
    within: Duration,
    /// Started at the first read that has to wait; a body already there costs no timer.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let within = this.within;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(within)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request body not received within server.header_read_timeout",
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn builder(
    limits: &ServerLimits,
    header_read_timeout: Duration,
    keep_alive: bool,
) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_READ_BUFFER))
        .keep_alive(keep_alive);
    builder
}

/// Errors about one connection that died between the kernel's accept and ours: nothing to
/// wait for.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// A trouble that repeats: when to log it next, how often it was not logged, and how long
/// to wait before trying again.
#[derive(Default)]
struct Throttled {
    last_log: Option<Instant>,
    suppressed: u64,
    wait: Option<Duration>,
}

impl Throttled {
    /// Counts one occurrence; `Some(suppressed)` when it is time to log it.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last_log.is_some_and(|t| now - t < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// The next wait: doubled each time, up to the longest.
    fn backoff(&mut self) -> Duration {
        let (first, longest) = ACCEPT_BACKOFF;
        let wait = self.wait.map_or(first, |w| (w * 2).min(longest));
        self.wait = Some(wait);
        wait
    }

    /// The trouble is over: the next one starts from the shortest wait.
    fn clear(&mut self) {
        self.wait = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cap_is_a_quarter_of_the_fd_limit_within_bounds() {
        assert_eq!(default_max_connections(1024), 256);
        assert_eq!(default_max_connections(2), 1);
        assert_eq!(default_max_connections(1 << 20), 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_trouble_backs_off_and_logs_once_per_interval() {
        let mut t = Throttled::default();
        assert_eq!(t.due(), Some(0));
        let waits: Vec<Duration> = (0..9).map(|_| t.backoff()).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(waits[8], Duration::from_secs(1));
        assert_eq!(t.due(), None);
        assert_eq!(t.due(), None);
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(t.due(), Some(2));
        t.clear();
        assert_eq!(t.backoff(), Duration::from_millis(10));
    }
}
