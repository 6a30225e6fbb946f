//! A partner socket whose writes must make progress. A client that sends requests and
//! never reads the answers (HTTP/1.1 pipelining, or HTTP/2 with its window shut) would
//! otherwise keep its connection, and what the kernel holds for it, for as long as it
//! likes: 290 such connections held 845 MB of send queues for 200 s. A write (or flush)
//! that cannot move a byte for `timeout` fails here, which ends the connection; how much
//! is queued meanwhile is bounded by the socket's send buffer (`server.send_buffer_bytes`,
//! set where the connection is accepted).
//!
//! At the deadline the connection is reset (SO_LINGER 0), not closed: closed, its unsent
//! answers would stay queued in the kernel (FIN_WAIT1, probing the peer's shut window) for
//! minutes after the gateway let go of it.
//!
//! The timer exists only while a write waits: the usual write completes at once and
//! costs nothing more.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub struct WriteDeadline<T> {
    io: T,
    timeout: Duration,
    /// Armed when a write first waits, dropped when one completes.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T: AsFd> WriteDeadline<T> {
    pub fn new(io: T, timeout: Duration) -> WriteDeadline<T> {
        WriteDeadline {
            io,
            timeout,
            stalled: None,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// `Pending` from the socket: still waiting, or the deadline has passed.
    fn waiting<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        // Best effort: the error below ends the connection either way.
        let _ = socket2::SockRef::from(&self.io).set_linger(Some(Duration::ZERO));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer read nothing of the answers for the write timeout",
        )))
    }

    fn progressed<R>(&mut self, r: io::Result<R>) -> Poll<io::Result<R>> {
        self.stalled = None;
        Poll::Ready(r)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + AsFd + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.waiting(cx),
            Poll::Ready(r) => this.progressed(r),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.waiting(cx),
            Poll::Ready(r) => this.progressed(r),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.waiting(cx),
            Poll::Ready(r) => this.progressed(r),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Pending => this.waiting(cx),
            Poll::Ready(r) => this.progressed(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_at_the_deadline() {
        let (ours, _theirs) = tokio::net::UnixStream::pair().expect("pair");
        let mut w = WriteDeadline::new(ours, Duration::from_millis(100));
        let started = std::time::Instant::now();
        let e = w
            .write_all(&[0u8; 4 << 20])
            .await
            .expect_err("the peer reads nothing");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_never_cut() {
        use tokio::io::AsyncReadExt;
        let (ours, mut theirs) = tokio::net::UnixStream::pair().expect("pair");
        // A deadline well above the reader's pauses, so that a busy machine stretching
        // them does not cut it; still under the whole write's two seconds, so that a
        // deadline on the whole write instead of on each wait would.
        let mut w = WriteDeadline::new(ours, Duration::from_millis(1000));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            while total < 4 << 20 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                total += theirs.read(&mut buf).await.expect("read");
            }
        });
        // 4 MiB through a socket pair read 64 KiB every 30 ms: at least two seconds, the
        // writer waiting often, each wait shorter than the deadline.
        w.write_all(&vec![1u8; 4 << 20]).await.expect("progress");
        reader.await.expect("reader");
    }
}
