//! Fewer, larger socket writes: a connection's bytes are held until the other tasks that are
//! ready to run have run once, so the responses they finish in the meantime leave in one write.
//!
//! hyper runs each HTTP/2 stream as a task of its own, and every finished response wakes the
//! connection's task, which tokio then runs next: left alone, a busy connection writes (and its
//! peer reads) once per response, one system call and one loopback segment each. Holding the
//! first flush back for one pass of the scheduler lets the responses finished behind it share
//! that write. The idea is Netty's flush consolidation; the bound is one scheduler pass, never
//! a timer, so an idle server answers as fast as before. (tokio's `disable_lifo_slot` would
//! remove the cause, but only under `--cfg tokio_unstable`, and for the whole runtime.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::TcpStream;

/// Bytes held before they are written whatever the scheduler is doing: h2's own frame buffer
/// is 16 KiB, and a token response is about 1 KiB, so a few dozen responses fit.
pub const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// A connection that can take bytes at once, without a task, to hand over what is still held
/// when its [`BatchedWrites`] is dropped.
pub trait WriteNow: AsyncWrite {
    /// Writes what the connection takes without waiting; how much it took.
    fn write_now(&self, bytes: &[u8]) -> io::Result<usize>;
}

impl WriteNow for TcpStream {
    fn write_now(&self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
}

/// A connection whose writes are gathered until it is flushed, and whose first flush after
/// new writes waits for one pass of the scheduler.
#[derive(Debug)]
pub struct BatchedWrites<S: WriteNow> {
    inner: BufWriter<S>,
    /// Set when a flush has been put off once; the next flush goes through.
    flush_deferred: bool,
}

impl<S: WriteNow> BatchedWrites<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner: BufWriter::with_capacity(WRITE_BUFFER_BYTES, inner),
            flush_deferred: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }
}

/// Writers may drop a connection right after a last write they never flush: tokio-rustls
/// writes a TLS alert when it refuses a peer and returns the error, and the stream is dropped.
/// Without the buffer those bytes were already the kernel's; so they are handed to it here.
impl<S: WriteNow> Drop for BatchedWrites<S> {
    fn drop(&mut self) {
        let held = self.inner.buffer();
        if !held.is_empty() {
            // Best effort, as the unbuffered write would have been: a full socket takes less.
            let _ = self.inner.get_ref().write_now(held);
        }
    }
}

impl<S: AsyncRead + WriteNow + Unpin> AsyncRead for BatchedWrites<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: WriteNow + Unpin> AsyncWrite for BatchedWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.flush_deferred && !this.inner.buffer().is_empty() {
            // Waking the task that is running puts it at the back of its worker's queue (a
            // yield), behind the stream tasks whose responses should join this write.
            this.flush_deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_ready() {
            this.flush_deferred = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes what is held first.
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};

    /// Records each write it is given; refuses writes while `blocked`; takes vectored writes
    /// (as a TCP stream does) when `vectored`.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        blocked: bool,
        vectored: bool,
    }

    impl WriteNow for Recorder {
        fn write_now(&self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.blocked {
                return Poll::Pending;
            }
            this.writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.poll_write(cx, &joined)
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A waker that counts how often it was woken.
    #[derive(Default)]
    struct CountWakes(Mutex<usize>);

    impl CountWakes {
        fn count(&self) -> usize {
            *self.0.lock().unwrap()
        }
    }

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            *self.0.lock().unwrap() += 1;
        }
    }

    fn counting_waker() -> (Arc<CountWakes>, Waker) {
        let wakes = Arc::new(CountWakes::default());
        (wakes.clone(), wakes.into())
    }

    fn write(stream: &mut BatchedWrites<Recorder>, cx: &mut Context<'_>, bytes: &[u8]) {
        let written = Pin::new(stream).poll_write(cx, bytes);
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == bytes.len()));
    }

    fn flush(stream: &mut BatchedWrites<Recorder>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(stream).poll_flush(cx).map(|r| r.unwrap())
    }

    #[test]
    fn writes_made_before_a_deferred_flush_leave_in_one_write() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut stream = BatchedWrites::new(Recorder::default());

        write(&mut stream, &mut cx, b"first response ");
        assert_eq!(flush(&mut stream, &mut cx), Poll::Pending);
        assert_eq!(wakes.count(), 1, "a put-off flush wakes its task");
        assert!(stream.get_ref().writes.is_empty());

        // Meanwhile another response is finished.
        write(&mut stream, &mut cx, b"second response");
        assert_eq!(flush(&mut stream, &mut cx), Poll::Ready(()));
        assert_eq!(
            stream.get_ref().writes,
            vec![b"first response second response".to_vec()]
        );
        assert_eq!(stream.get_ref().flushes, 1);
    }

    #[test]
    fn vectored_writes_are_gathered_like_plain_ones() {
        let (_, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut stream = BatchedWrites::new(Recorder {
            vectored: true,
            ..Default::default()
        });
        for frame in [&b"headers data "[..], b"trailers"] {
            let slices = [io::IoSlice::new(frame), io::IoSlice::new(b"|")];
            let written = Pin::new(&mut stream).poll_write_vectored(&mut cx, &slices);
            assert!(matches!(written, Poll::Ready(Ok(n)) if n == frame.len() + 1));
        }
        assert!(stream.get_ref().writes.is_empty());
        assert_eq!(flush(&mut stream, &mut cx), Poll::Pending);
        assert_eq!(flush(&mut stream, &mut cx), Poll::Ready(()));
        assert_eq!(
            stream.get_ref().writes,
            vec![b"headers data |trailers|".to_vec()]
        );
    }

    #[tokio::test]
    async fn bytes_held_when_the_stream_is_dropped_reach_the_peer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let mut stream = BatchedWrites::new(accepted.unwrap().0);
        // Written, never flushed: a TLS alert before the connection is given up.
        stream.write_all(b"alert").await.unwrap();
        drop(stream);
        let mut received = Vec::new();
        client.unwrap().read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"alert");
    }

    #[test]
    fn each_round_of_writes_is_deferred_once() {
        let (_, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut stream = BatchedWrites::new(Recorder::default());
        for round in 1..=2 {
            write(&mut stream, &mut cx, b"response");
            assert_eq!(flush(&mut stream, &mut cx), Poll::Pending, "round {round}");
            assert_eq!(
                flush(&mut stream, &mut cx),
                Poll::Ready(()),
                "round {round}"
            );
            assert_eq!(stream.get_ref().writes.len(), round);
        }
    }

    #[test]
    fn a_flush_with_nothing_held_is_not_deferred() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut stream = BatchedWrites::new(Recorder::default());
        assert_eq!(flush(&mut stream, &mut cx), Poll::Ready(()));
        assert_eq!(wakes.count(), 0);
    }

    #[test]
    fn a_full_buffer_is_written_without_waiting_for_a_flush() {
        let (_, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut stream = BatchedWrites::new(Recorder::default());
        let chunk = vec![7u8; WRITE_BUFFER_BYTES / 2 + 1];
        write(&mut stream, &mut cx, &chunk);
        write(&mut stream, &mut cx, &chunk);
        assert_eq!(
            stream.get_ref().writes,
            vec![chunk],
            "the first half went out"
        );
    }

    #[test]
    fn a_blocked_connection_keeps_the_flush_pending_until_it_takes_the_bytes() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut stream = BatchedWrites::new(Recorder {
            blocked: true,
            ..Default::default()
        });
        write(&mut stream, &mut cx, b"response");
        assert_eq!(flush(&mut stream, &mut cx), Poll::Pending);
        assert_eq!(flush(&mut stream, &mut cx), Poll::Pending);
        // Once put off, it waits on the socket, not on itself: no spin.
        assert_eq!(wakes.count(), 1);
        stream.inner.get_mut().blocked = false;
        assert_eq!(flush(&mut stream, &mut cx), Poll::Ready(()));
        assert_eq!(stream.get_ref().writes, vec![b"response".to_vec()]);
    }

    #[test]
    fn shutting_down_writes_what_is_held() {
        let (_, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut stream = BatchedWrites::new(Recorder::default());
        write(&mut stream, &mut cx, b"goodbye");
        let shut = Pin::new(&mut stream).poll_shutdown(&mut cx);
        assert!(matches!(shut, Poll::Ready(Ok(()))));
        assert_eq!(stream.get_ref().writes, vec![b"goodbye".to_vec()]);
    }
}
