//! Accepting TCP connections under limits, for both the gRPC and the HTTP face: at most
//! `max_connections` open per listener (beyond that the listener stops accepting and new
//! clients wait in the kernel's backlog until one closes), and a deadline for a new
//! connection's opening bytes, so sockets that never speak cannot hold file descriptors.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_stream::wrappers::ReceiverStream;

/// Bytes a gRPC client sends first: the HTTP/2 connection preface.
pub const HTTP2_PREFACE_LEN: usize = 24;
/// How long the kernel may keep probing a silent peer before the connection is dropped.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The limits one listener enforces.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a new connection has to send its opening bytes.
    pub handshake_timeout: Duration,
    /// How many opening bytes end the handshake deadline.
    pub handshake_bytes: usize,
}

/// Accepts connections from `listener` under `limits` until the returned stream is dropped.
pub fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> ReceiverStream<io::Result<LimitedStream>> {
    let (tx, rx) = mpsc::channel(1);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = tx.closed() => break,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            configure(&stream);
            let limited = LimitedStream::new(stream, permit, limits);
            if tx.send(Ok(limited)).await.is_err() {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Without TCP_NODELAY, Nagle's algorithm holds multi-frame responses for ~40 ms; keep-alive
/// probes drop peers that vanished without closing.
fn configure(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE)
        .with_interval(Duration::from_secs(10));
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "TCP keep-alive");
    }
}

/// An accepted connection holding one of its listener's slots until it closes.
pub struct LimitedStream {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Running until the opening bytes have arrived; then `None`.
    handshake_deadline: Option<Pin<Box<Sleep>>>,
    handshake_bytes_left: usize,
}

impl LimitedStream {
    fn new(inner: TcpStream, slot: OwnedSemaphorePermit, limits: ConnectionLimits) -> Self {
        Self {
            inner,
            _slot: slot,
            handshake_deadline: Some(Box::pin(tokio::time::sleep(limits.handshake_timeout))),
            handshake_bytes_left: limits.handshake_bytes.max(1),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.handshake_deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection sent nothing usable in time",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && this.handshake_deadline.is_some()
        {
            let read = buf.filled().len() - before;
            this.handshake_bytes_left = this.handshake_bytes_left.saturating_sub(read);
            if this.handshake_bytes_left == 0 {
                this.handshake_deadline = None;
            }
        }
        polled
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Raises the open-files soft limit to the hard limit, so the connection caps, not the
/// process's default of often 1,024 descriptors, decide when clients wait. Returns the limit.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    async fn listen(
        limits: ConnectionLimits,
    ) -> (
        std::net::SocketAddr,
        ReceiverStream<io::Result<LimitedStream>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, accept(listener, limits))
    }

    fn limits(max_connections: usize, handshake_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            handshake_timeout: Duration::from_millis(handshake_ms),
            handshake_bytes: 4,
        }
    }

    #[tokio::test]
    async fn a_silent_connection_fails_its_handshake_deadline() {
        let (addr, mut incoming) = listen(limits(4, 50)).await;
        let _client = TcpStream::connect(addr).await.unwrap();
        let mut server_side = incoming.next().await.unwrap().unwrap();
        let mut buf = [0u8; 8];
        let error = server_side.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn once_the_opening_bytes_arrive_the_deadline_no_longer_applies() {
        let (addr, mut incoming) = listen(limits(4, 50)).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut server_side = incoming.next().await.unwrap().unwrap();
        client.write_all(b"PRI *").await.unwrap();
        let mut buf = [0u8; 5];
        server_side.read_exact(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        server_side.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }

    #[tokio::test]
    async fn beyond_the_cap_a_connection_waits_until_a_slot_frees() {
        let (addr, mut incoming) = listen(limits(1, 60_000)).await;
        let _first_client = TcpStream::connect(addr).await.unwrap();
        let first = incoming.next().await.unwrap().unwrap();
        let _second_client = TcpStream::connect(addr).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
        assert!(
            waited.is_err(),
            "the second connection must wait for a slot"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
        assert!(matches!(second, Ok(Some(Ok(_)))));
    }
}
