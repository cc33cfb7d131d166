//! Accepting connections with bounds, so slow or silent clients cannot starve the service:
//! a header-read timeout (a request's head must arrive whole within it), an idle timeout
//! (a keep-alive connection with no request in progress is closed after it) and a cap on
//! open connections (beyond it, new clients wait in the kernel's accept queue until a slot
//! frees, so the service keeps its file descriptors for the clients it serves).
//!
//! axum's own `serve` offers none of these, so connections are driven by hyper directly,
//! with hyper-util's graceful shutdown: on a signal, stop accepting and let open
//! connections finish their requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The bounds `keyledger serve` applies to every connection (flags of `serve`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's head (request line and headers) must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub connections_max: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            connections_max: 1024,
        }
    }
}

impl From<&crate::cli::ServeArgs> for ConnectionLimits {
    fn from(args: &crate::cli::ServeArgs) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(args.header_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            connections_max: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// The address a request's connection came from (what the activation throttle counts by).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::IpAddr);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves, then waits
/// up to 30 s for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections_max.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin, and keep serving.
                    tracing::warn!("keyledger: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let tracked = Tracked {
            stream,
            activity: Arc::clone(&activity),
        };
        let service = service_for(router.clone(), peer.ip(), Arc::clone(&activity));
        let (watcher, tls) = (graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let idle = idle_watch(&activity, limits.idle_timeout);
            tokio::select! {
                () = drive(tracked, service, tls, limits, watcher) => {}
                () = idle => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("keyledger: some connections did not finish within 30 s; closing them");
        }
    }
}

/// The router as one connection's hyper service: each request learns its peer's address,
/// and the connection's activity counts it as busy while it is answered.
fn service_for(
    router: axum::Router,
    peer: std::net::IpAddr,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (mut router, activity) = (router.clone(), Arc::clone(&activity));
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(Peer(peer));
        async move {
            use tower_service::Service;
            activity.busy.fetch_add(1, Ordering::Relaxed);
            let response = router.call(request).await;
            activity.busy.fetch_sub(1, Ordering::Relaxed);
            activity.touch();
            response
        }
    })
}

/// Serves one connection's requests, over TLS when `tls` is given: the handshake is bounded
/// like a request's head (a client that starts one and stalls is cut), and a client that
/// does not speak TLS fails it and is never answered.
async fn drive<S>(
    tracked: Tracked,
    service: S,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: hyper::service::HttpService<hyper::body::Incoming> + Send + 'static,
    S::Future: Send,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    match tls {
        None => {
            let _ = watcher
                .watch(builder.serve_connection(TokioIo::new(tracked), service))
                .await;
        }
        Some(acceptor) => {
            let handshake = acceptor.accept(tracked);
            let Ok(Ok(stream)) = tokio::time::timeout(limits.header_read_timeout, handshake).await
            else {
                return;
            };
            let _ = watcher
                .watch(builder.serve_connection(TokioIo::new(stream), service))
                .await;
        }
    }
}

/// What the idle timeout looks at: when bytes last moved on the connection, and how many of
/// its requests are being answered (a long `GET /v1/verify` moves no byte for a while).
struct Activity {
    started: Instant,
    /// Milliseconds since `started` when bytes last moved.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            started: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// How long the connection has been idle: no request in progress and no byte moved.
    fn quiet(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// Resolves once the connection has been idle for `idle`.
async fn idle_watch(activity: &Activity, idle: Duration) {
    loop {
        let quiet = activity.quiet();
        if quiet >= idle {
            return;
        }
        tokio::time::sleep(idle - quiet).await;
    }
}

/// A TCP stream that records when bytes last moved.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    fn touch(&self) {
        self.activity.touch();
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
