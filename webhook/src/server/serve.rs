//! The accept loop of the admission port and the admin port, bounded in every way a
//! caller could hold the process: a TLS handshake timeout, a header-read timeout, an idle
//! timeout, a per-request deadline and a connection limit at which a new connection closes
//! the one that has waited longest for a request (the body limit is the router's:
//! [`super::MAX_REVIEW_BYTES`]). The webhook is in the path of every Service create, so no
//! caller, slow or hostile, may make it hang or run out of memory or file descriptors.
//! kube-apiserver's secure serving and controller-runtime's webhook server are the models.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::Level;

use super::handshakes::{Handshake, PendingHandshakes};
use super::summary::LogSummary;
use super::waiting::{Connection, MIN_WAIT, OpenConnections};

/// How long a caller may take, and how many may be connected at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// From accept to the end of the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// HTTP/1.1: from the moment the server waits for a request (a new connection, or the
    /// end of the previous response) to the end of its headers. An idle keep-alive
    /// connection is therefore closed after this too.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no bytes moving for this long is closed
    /// (HTTP/2 gets a GOAWAY).
    pub idle_timeout: Duration,
    /// From the request's headers to the end of its response: past it, the answer is 504
    /// and the handler is dropped.
    pub request_timeout: Duration,
    /// Connections served at once. Beyond it, a new connection closes the one that has
    /// waited longest for a request (at least a second), or is closed itself when every
    /// connection is busy or has just sent a request.
    pub max_connections: usize,
    /// Connections in their TLS handshake at once (within `max_connections`); a new one
    /// beyond it closes the oldest pending one, so that callers that never finish a
    /// handshake cannot hold the connection slots.
    pub max_pending_handshakes: usize,
}

/// The defaults of svcplane's flags. The header-read and idle timeouts are close to
/// kube-apiserver's secure serving (32 s and 90 s); the request deadline is below
/// the 5 s timeoutSeconds of svcplane's webhook configurations, so that kube-apiserver gets
/// an answer (and applies the failure policy) rather than giving up on the call.
impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            request_timeout: Duration::from_secs(4),
            max_connections: 1024,
            max_pending_handshakes: 64,
        }
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` resolves,
/// then lets in-flight requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut warnings = LogSummary::new(Duration::from_secs(60), 1);
    let mut handshakes = PendingHandshakes::new(limits.max_pending_handshakes);
    let mut open = OpenConnections::default();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait for connections to end
                    // rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => Ok(slot),
            Err(_) if open.evict_longest_waiting(MIN_WAIT) => {
                warnings.within_budget("connection limit, room made", Level::WARN, || {
                    tracing::warn!(%peer, limit = limits.max_connections, "connection limit reached; closing the connection that has waited longest for a request");
                });
                Err(Arc::clone(&slots))
            }
            Err(_) => {
                warnings.within_budget("connection limit", Level::WARN, || {
                    tracing::warn!(%peer, limit = limits.max_connections, "connection limit reached and every connection busy; closing new connections");
                });
                drop(stream);
                continue;
            }
        };
        let connection = open.register();
        let _ = stream.set_nodelay(true);
        let tls = acceptor.clone().map(|acceptor| {
            let (handshake, evicted) = handshakes.start();
            if evicted {
                warnings.within_budget("pending handshakes", Level::WARN, || {
                    tracing::warn!(%peer, limit = limits.max_pending_handshakes, "too many pending TLS handshakes; closing the oldest");
                });
            }
            (acceptor, handshake)
        });
        connections.spawn(serve_connection(
            stream,
            tls,
            router.clone(),
            limits,
            stopping.clone(),
            slot,
            connection,
        ));
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace; closing them"
        );
    }
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    tls: Option<(TlsAcceptor, Arc<Handshake>)>,
    router: Router,
    limits: ServerLimits,
    stopping: watch::Receiver<bool>,
    slot: Result<OwnedSemaphorePermit, Arc<Semaphore>>,
    connection: Arc<Connection>,
) {
    // The slot of the connection closed to make room, once it has closed.
    let _slot = match slot {
        Ok(slot) => slot,
        Err(slots) => match tokio::time::timeout(MIN_WAIT, slots.acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            _ => return,
        },
    };
    let Some((acceptor, handshake)) = tls else {
        return drive(stream, false, router, limits, stopping, connection).await;
    };
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)) => accepted,
        () = handshake.evicted() => return,
        () = connection.evicted() => return,
    };
    if !handshake.finish() {
        return;
    }
    match accepted {
        Ok(Ok(tls)) => {
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            drive(tls, h2, router, limits, stopping, connection).await;
        }
        // Unknown callers (no or a wrong certificate) end here: not worth a line each.
        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

/// What a connection driver needs of hyper's HTTP/1 and HTTP/2 connections.
trait HttpConnection: Future<Output = hyper::Result<()>> {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S> HttpConnection for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> HttpConnection for hyper::server::conn::http2::Connection<I, S, E>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

async fn drive<I>(
    io: I,
    h2: bool,
    router: Router,
    limits: ServerLimits,
    stopping: watch::Receiver<bool>,
    connection: Arc<Connection>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::default();
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
    });
    let service = {
        let connection = Arc::clone(&connection);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            let guard = connection.request();
            async move {
                let _guard = guard;
                let answer = tokio::time::timeout(
                    limits.request_timeout,
                    router.oneshot(request.map(Body::new)),
                )
                .await;
                Ok::<_, Infallible>(match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => deadline_exceeded(limits.request_timeout),
                })
            }
        })
    };
    if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        // An AdmissionReview needs one stream; kube-apiserver opens a few per connection.
        builder.timer(TokioTimer::new()).max_concurrent_streams(64);
        let http = builder.serve_connection(io, service);
        watch_connection(http, &activity, &connection, limits, stopping).await;
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let http = builder.serve_connection(io, service);
        watch_connection(http, &activity, &connection, limits, stopping).await;
    }
}

/// Runs `http` to its end, asking it to close when the server stops or when it has been
/// idle for the idle timeout, and closing it when a new connection needs its slot.
async fn watch_connection(
    http: impl HttpConnection,
    activity: &Activity,
    connection: &Connection,
    limits: ServerLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let mut http = std::pin::pin!(http);
    let mut closing = false;
    let check_every = (limits.idle_timeout / 4).max(Duration::from_millis(10));
    let mut idle_check = tokio::time::interval(check_every);
    loop {
        tokio::select! {
            result = http.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                closing = true;
                http.as_mut().shut_down();
            }
            // Chosen while no request was in flight; one that started since is finished.
            () = connection.evicted(), if !closing => {
                if !connection.is_busy() {
                    return;
                }
                closing = true;
                http.as_mut().shut_down();
            }
            _ = idle_check.tick(), if !closing => {
                if !connection.is_busy() && activity.idle_for() >= limits.idle_timeout {
                    closing = true;
                    http.as_mut().shut_down();
                }
            }
        }
    }
}

fn deadline_exceeded(deadline: Duration) -> Response<Body> {
    let mut response = Response::new(Body::from(format!(
        "no answer within the request deadline ({})",
        humantime::format_duration(deadline)
    )));
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response
}

/// When bytes last moved on a connection.
#[derive(Clone)]
struct Activity {
    since: Instant,
    last_millis: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            last_millis: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let millis = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// A stream that records [`Activity`] whenever bytes move.
struct Tracked<I> {
    inner: I,
    activity: Activity,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_tells_how_long_a_connection_has_been_quiet() {
        let activity = Activity::default();
        std::thread::sleep(Duration::from_millis(20));
        assert!(activity.idle_for() >= Duration::from_millis(20));
        activity.touch();
        assert!(activity.idle_for() < Duration::from_millis(20));
    }
}
