//! Certificates read off the wire of a TLS 1.2 handshake, for the one case where rustls
//! refuses to read them itself: a Certificate message over the 64 KiB it accepts. TLS 1.2
//! sends that message in the clear, so a [`Tap`] that keeps the bytes the server sent can
//! find the chain after the handshake failed ([`Tap::certificates`]), and its expiry is
//! still known. (TLS 1.3 encrypts it: that is why the TLS prober asks again with 1.2 only.)

use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The most bytes a [`Tap`] keeps: a Certificate message may be up to 16 MiB, but a
/// chain of more than this is not worth the memory.
pub const MAX_TAPPED_BYTES: usize = 1024 * 1024;

/// A stream that keeps a copy of the first [`MAX_TAPPED_BYTES`] read from it.
pub struct Tap<S> {
    inner: S,
    seen: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Tap<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            seen: Vec::new(),
        }
    }

    /// The chain of the first Certificate message the server sent, reading on until it
    /// is complete, the stream ends or [`MAX_TAPPED_BYTES`] were read (the caller's
    /// deadline bounds the wait).
    pub async fn certificates(mut self) -> Option<Vec<CertificateDer<'static>>> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Some(chain) = certificates(&self.seen) {
                return Some(chain);
            }
            if self.seen.len() >= MAX_TAPPED_BYTES {
                return None;
            }
            match self.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            let room = MAX_TAPPED_BYTES.saturating_sub(self.seen.len());
            let kept = &new[..new.len().min(room)];
            self.seen.extend_from_slice(kept);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const HANDSHAKE_RECORD: u8 = 22;
const CERTIFICATE_MESSAGE: u8 = 11;

/// The chain of the first Certificate message in `wire`, the bytes a server sent in a TLS
/// 1.2 handshake; `None` when they hold none (TLS 1.3, cut short, not TLS).
fn certificates(wire: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    // The handshake messages, joined across records, up to the first other record.
    let mut handshake = Vec::new();
    let mut rest = wire;
    while let [kind, _, _, hi, lo, after @ ..] = rest {
        let len = usize::from(*hi) << 8 | usize::from(*lo);
        if *kind != HANDSHAKE_RECORD || after.len() < len {
            // A record cut short still adds what arrived: the message may be complete.
            if *kind == HANDSHAKE_RECORD {
                handshake.extend_from_slice(after);
            }
            break;
        }
        handshake.extend_from_slice(&after[..len]);
        rest = &after[len..];
    }

    let mut messages = handshake.as_slice();
    while let [kind, a, b, c, after @ ..] = messages {
        let len = u24(*a, *b, *c);
        let body = after.get(..len)?;
        if *kind == CERTIFICATE_MESSAGE {
            return certificate_list(body);
        }
        messages = &after[len..];
    }
    None
}

/// `opaque certificate_list<0..2^24-1>` of `ASN.1Cert<1..2^24-1>`.
fn certificate_list(body: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let [a, b, c, list @ ..] = body else {
        return None;
    };
    let mut list = list.get(..u24(*a, *b, *c))?;
    let mut chain = Vec::new();
    while let [a, b, c, after @ ..] = list {
        let len = u24(*a, *b, *c);
        chain.push(CertificateDer::from(after.get(..len)?.to_vec()));
        list = &after[len..];
    }
    (!chain.is_empty()).then_some(chain)
}

fn u24(a: u8, b: u8, c: u8) -> usize {
    usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` as handshake message `kind`, split into records of at most `record` bytes.
    fn records(kind: u8, body: &[u8], record: usize) -> Vec<u8> {
        let len = body.len();
        let mut message = vec![kind, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        message.extend_from_slice(body);
        let mut wire = Vec::new();
        for chunk in message.chunks(record) {
            wire.extend_from_slice(&[22, 3, 3, (chunk.len() >> 8) as u8, chunk.len() as u8]);
            wire.extend_from_slice(chunk);
        }
        wire
    }

    fn certificate_body(certs: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for cert in certs {
            let len = cert.len();
            list.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
            list.extend_from_slice(cert);
        }
        let len = list.len();
        let mut body = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8];
        body.extend_from_slice(&list);
        body
    }

    #[test]
    fn a_chain_split_across_records_after_the_server_hello_is_found() {
        let big = vec![0x30; 70_000];
        let mut wire = records(2, &[3, 3, 0, 0], 16_384);
        wire.extend(records(11, &certificate_body(&[&big, b"\x30\x00"]), 16_384));
        let chain = certificates(&wire).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), big.as_slice());
        assert_eq!(chain[1].as_ref(), b"\x30\x00");
    }

    #[test]
    fn cut_short_or_foreign_bytes_give_nothing_and_never_panic() {
        let whole = records(11, &certificate_body(&[b"\x30\x00"]), 16_384);
        for end in 0..whole.len() {
            assert_eq!(certificates(&whole[..end]), None, "cut at {end}");
        }
        assert!(certificates(&whole).is_some());
        for garbage in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            &[0xff; 64],
            &[22, 3, 3, 0xff, 0xff],
        ] {
            assert_eq!(certificates(garbage), None);
        }
        // An application-data record (TLS 1.3) hides the message.
        let mut hidden = records(2, &[3, 3], 100);
        hidden.extend_from_slice(&[23, 3, 3, 0, 2, 1, 2]);
        hidden.extend(whole);
        assert_eq!(certificates(&hidden), None);
    }
}
