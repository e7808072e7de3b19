//! Accepting TCP connections under limits, for both the gRPC and the HTTP face: at most
//! `max_connections` open per listener (beyond that the listener stops accepting and new
//! clients wait in the kernel's backlog until one closes) and `max_per_ip` from one address, a
//! deadline for a new connection's opening bytes, and an idle timeout for connections with no
//! call in flight, so sockets that never speak, or only answer pings, cannot hold the slots.
//! Every accepted stream writes through [`crate::batched_writes`].

use crate::batched_writes::BatchedWrites;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
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
    /// Most connections open at once from one IP address; more are closed at once.
    pub max_per_ip: usize,
    /// A connection with no call in flight for this long is closed; `None` never closes it.
    /// Only meaningful where calls are tracked with [`TrackCalls`].
    pub idle_timeout: Option<Duration>,
}

/// Whether a connection has calls in flight, and since when it has had none.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    /// Marks a call in flight until the returned guard drops.
    pub fn start_call(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// How long the connection has been without calls, or `None` while one is in flight.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        Some(since.elapsed())
    }
}

/// A call in flight on a connection.
#[derive(Debug)]
pub struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a request knows of its connection: the peer's address and the connection's activity.
/// tonic puts it in every request's extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's address.
    pub addr: Option<SocketAddr>,
    /// The connection's calls.
    pub activity: Arc<Activity>,
}

/// The [`PeerInfo`] tonic put in a request's extensions, over plain TCP or TLS.
pub fn peer_info(extensions: &http::Extensions) -> Option<&PeerInfo> {
    extensions.get::<PeerInfo>().or_else(|| {
        extensions
            .get::<tonic::transport::server::TlsConnectInfo<PeerInfo>>()
            .map(|tls| tls.get_ref())
    })
}

/// The caller's address: the connection's `peer` or, when the peer is a trusted proxy, the
/// client it names in `x-forwarded-for` (`forwarded`: the header's values in order; `None` for one
/// that is not text). A client can write any `x-forwarded-for` it likes and proxies append to
/// what it sent, so the header is read from the right: trusted proxies are skipped and the first
/// other address is the client. An entry that cannot be read before that address is found leaves
/// the client unknown (`None`): allowlists then refuse, rather than taking the proxy for the
/// client.
pub fn client_address<'a>(
    peer: Option<SocketAddr>,
    forwarded: impl Iterator<Item = Option<&'a str>>,
    trusted_proxies: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = peer.map(|a| a.ip().to_canonical())?;
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let values: Vec<&str> = forwarded.collect::<Option<_>>()?;
    let mut nearest = peer;
    for entry in values.iter().flat_map(|v| v.split(',')).rev() {
        let hop = forwarded_hop(entry.trim())?;
        if !trusted(&hop) {
            return Some(hop);
        }
        nearest = hop;
    }
    // Every hop is a trusted proxy: the farthest one is the client.
    Some(nearest)
}

/// One `x-forwarded-for` entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn forwarded_hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Open connections per IP address (IPv6: per /64) on one listener.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Accepts connections from `listener` under `limits` until the returned stream is dropped.
pub fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> ReceiverStream<io::Result<LimitedStream>> {
    let (tx, rx) = mpsc::channel(1);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip: PerIp = Arc::default();
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
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            {
                let mut open = per_ip.lock().unwrap_or_else(|p| p.into_inner());
                let count = open
                    .entry(crate::domain::throttle::address_bucket(peer.ip()))
                    .or_default();
                if *count >= limits.max_per_ip {
                    tracing::debug!(peer = %peer.ip(), "too many connections from one address");
                    continue;
                }
                *count += 1;
            }
            configure(&stream);
            let limited = LimitedStream::new(stream, peer, permit, per_ip.clone(), limits);
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
    inner: BatchedWrites<TcpStream>,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    per_ip: PerIp,
    /// Running until the opening bytes have arrived; then `None`.
    handshake_deadline: Option<Pin<Box<Sleep>>>,
    handshake_bytes_left: usize,
    activity: Arc<Activity>,
    idle_timeout: Option<Duration>,
    idle_check: Pin<Box<Sleep>>,
}

impl LimitedStream {
    fn new(
        inner: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        per_ip: PerIp,
        limits: ConnectionLimits,
    ) -> Self {
        let first_idle_check = limits.idle_timeout.unwrap_or(Duration::from_secs(3600));
        Self {
            inner: BatchedWrites::new(inner),
            peer,
            _slot: slot,
            per_ip,
            handshake_deadline: Some(Box::pin(tokio::time::sleep(limits.handshake_timeout))),
            handshake_bytes_left: limits.handshake_bytes.max(1),
            activity: Arc::new(Activity::new()),
            idle_timeout: limits.idle_timeout,
            idle_check: Box::pin(tokio::time::sleep(first_idle_check)),
        }
    }

    /// `Err` once the connection has had no call in flight for the idle timeout; otherwise
    /// re-arms the check for when it could next be idle that long.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(timeout) = self.idle_timeout else {
            return Ok(());
        };
        if self.idle_check.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        let next = match self.activity.idle_for() {
            Some(idle) if idle >= timeout => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle too long",
                ));
            }
            Some(idle) => timeout - idle,
            None => timeout,
        };
        self.idle_check.as_mut().reset(Instant::now() + next);
        // Register for the re-armed deadline.
        let _ = self.idle_check.as_mut().poll(cx);
        Ok(())
    }
}

impl Drop for LimitedStream {
    fn drop(&mut self) {
        let mut open = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&crate::domain::throttle::address_bucket(self.peer.ip()))
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&crate::domain::throttle::address_bucket(self.peer.ip()));
            }
        }
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
        if let Err(idle) = this.check_idle(cx) {
            return Poll::Ready(Err(idle));
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

impl LimitedStream {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        PeerInfo {
            addr: Some(self.peer),
            activity: self.activity.clone(),
        }
    }
}

/// A tower layer marking each gRPC call in flight on its connection until its response body
/// ends, so the idle timeout counts only connections with nothing to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackCalls;

impl<S> tower_layer::Layer<S> for TrackCalls {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tracked(inner)
    }
}

/// The service [`TrackCalls`] wraps.
#[derive(Clone, Debug)]
pub struct Tracked<S>(S);

impl<S, B, R> tower_service::Service<http::Request<B>> for Tracked<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TrackedBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guard = peer_info(request.extensions()).map(|peer| peer.activity.start_call());
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

/// A response body that keeps its call counted until it is finished or dropped.
#[derive(Debug)]
pub struct TrackedBody<B> {
    body: B,
    _guard: Option<CallGuard>,
}

impl<B: http_body::Body + Unpin> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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
            max_per_ip: 100,
            idle_timeout: None,
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
    async fn a_connection_without_calls_is_closed_after_the_idle_timeout_but_not_during_one() {
        let mut idle = limits(4, 60_000);
        idle.idle_timeout = Some(Duration::from_millis(100));
        let (addr, mut incoming) = listen(idle).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"PRI *").await.unwrap();
        let mut server_side = incoming.next().await.unwrap().unwrap();
        let mut buf = [0u8; 5];
        server_side.read_exact(&mut buf).await.unwrap();
        let call = server_side.activity.start_call();
        let mut one = [0u8; 1];
        let busy = tokio::time::timeout(Duration::from_millis(300), server_side.read(&mut one));
        assert!(busy.await.is_err(), "a call in flight keeps the connection");
        drop(call);
        let error = server_side.read(&mut one).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn connections_beyond_the_per_address_cap_are_closed() {
        let mut capped = limits(10, 60_000);
        capped.max_per_ip = 1;
        let (addr, mut incoming) = listen(capped).await;
        let _first_client = TcpStream::connect(addr).await.unwrap();
        let first = incoming.next().await.unwrap().unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "closed at once");
        drop(first);
        let _third = TcpStream::connect(addr).await.unwrap();
        assert!(
            incoming.next().await.is_some(),
            "a slot of that address freed"
        );
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
