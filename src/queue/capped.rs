//! A connection that refuses replies over a byte budget, so that a server answering with
//! an endless or huge reply (a 512 MiB value, a `SCAN` that never ends) costs at most the
//! budget in memory before the read fails with `reply_too_large`.
//!
//! The budget is counted on the bytes read from the socket: the reader sends one command
//! at a time and [`Budget::reset`]s before each, so the bytes read until the reply is
//! complete are that reply's. The client library above never holds more than the budget
//! (plus one socket read) of a reply.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The bytes one reply may still take, shared by the reader and the connection.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    remaining: AtomicUsize,
    exceeded: AtomicBool,
}

impl Budget {
    /// A budget of `limit` bytes per reply.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            remaining: AtomicUsize::new(limit),
            exceeded: AtomicBool::new(false),
        })
    }

    /// A full budget for the next reply.
    pub fn reset(&self) {
        self.remaining.store(self.limit, Ordering::SeqCst);
    }

    /// Whether a reply went over the budget (the connection is unusable since).
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes; false (and exceeded from now on) when they do not fit.
    fn take(&self, n: usize) -> bool {
        let fits = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(n))
            .is_ok();
        if !fits {
            self.exceeded.store(true, Ordering::SeqCst);
        }
        fits
    }
}

/// `inner`, whose reads fail once a reply goes over `budget`.
pub struct Capped<T> {
    inner: T,
    budget: Arc<Budget>,
}

impl<T> Capped<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, budget: Arc<Budget>) -> Self {
        Self { inner, budget }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Capped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.budget.exceeded() {
            return Poll::Ready(Err(too_large(&self.budget)));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let n = buf.filled().len() - before;
            if !self.budget.take(n) {
                // Nothing of the excess reaches the client.
                buf.set_filled(before);
                return Poll::Ready(Err(too_large(&self.budget)));
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Capped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn too_large(budget: &Budget) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a reply is longer than {} bytes", budget.limit()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reply_over_the_budget_fails_and_a_reset_gives_a_full_one() {
        let (mut server, client) = tokio::io::duplex(64);
        let budget = Budget::new(10);
        let mut capped = Capped::new(client, budget.clone());
        server.write_all(b"0123456789").await.unwrap();
        let mut buf = [0u8; 32];
        let mut got = 0;
        while got < 10 {
            got += capped.read(&mut buf[got..]).await.unwrap();
        }
        budget.reset();
        server.write_all(b"0123456789").await.unwrap();
        let mut got = 0;
        while got < 10 {
            got += capped.read(&mut buf[got..]).await.unwrap();
        }
        server.write_all(b"x").await.unwrap();
        let err = capped.read(&mut buf).await.unwrap_err();
        assert_eq!(err.to_string(), "a reply is longer than 10 bytes");
        assert!(budget.exceeded());
        budget.reset();
        assert!(
            capped.read(&mut buf).await.is_err(),
            "unusable once exceeded"
        );
    }
}
