//! The accept loop: hyper connections with a header-read timeout (slowloris),
//! a cap on open connections in all and per client, a refusal of ambiguous message framing, and a
//! graceful shutdown that stops accepting, lets in-flight requests finish,
//! then returns.
//!
//! `axum::serve` offers no header timeout, hence this small loop.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use vibemon_schemas::api::{LocPart, ValidationIssue};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The TCP peer of a request, inserted by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Largest request head (request line and headers) read, in bytes; a larger
/// one is answered 431 by hyper. Real webhooks send well under 4 KiB.
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Sent, without reading the request, to a connection over the cap: cheap
/// enough that a connection flood cannot make the refusal itself expensive.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: application/json\r\nContent-Length: 61\r\nConnection: close\r\n\r\n\
{\"detail\":\"Too many open connections; retry with a new one.\"}";

/// Counts one open connection in the gauge for as long as it lives, on
/// every exit path (a panicking connection task included).
struct OpenConnection(prometheus::IntGauge);

impl OpenConnection {
    fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How the accept loop treats connections.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time allowed to receive a request's headers (slowloris).
    pub header_timeout: Duration,
    /// How long shutdown waits for open requests.
    pub drain: Duration,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Connections one client (IPv4 address, IPv6 /64) may hold at once;
    /// 0 for no limit.
    pub max_connections_per_client: usize,
}

/// Open connections per client, so one host cannot fill the global cap.
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerClient {
    /// Takes one of `max` slots of `ip`'s client, or `None` when it has
    /// them all; `max == 0` never refuses.
    fn open(&self, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let client = crate::limits::client_bucket(ip);
        let mut open = self.0.lock().expect("not poisoned");
        let n = open.entry(client).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            client,
        })
    }
}

/// One open connection of a client, given back when dropped.
struct ClientSlot {
    clients: PerClient,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().expect("not poisoned");
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits up to
/// `limits.drain` for open requests. `metrics.open_connections` counts the
/// connections (one task each) being served, so an SRE can see slow clients
/// pile up, or not; `metrics.connections_refused` those turned away at the cap.
pub async fn serve_with_timeouts(
    app: Router,
    listener: TcpListener,
    limits: ServerLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let clients = PerClient::default();
    let builder = http1_builder(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let client = clients.open(peer.ip(), limits.max_connections_per_client);
        let slot = slots.clone().try_acquire_owned().ok();
        let (Some(client), Some(slot)) = (client, slot) else {
            metrics.connections_refused.inc();
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(per_connection(app.clone(), peer));
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let open = OpenConnection::new(metrics.open_connections.clone());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop((open, slot, client));
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain period");
    }
    Ok(())
}

/// HTTP/1.1 only: CI webhooks are one request per connection or keep-alive,
/// and HTTP/1 is where hyper offers the header-read timeout.
fn http1_builder(header_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
}

/// The next connection. A failed accept (out of file descriptors and the
/// like) backs off and tries again: the server keeps serving.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(conn) => return conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Answers a connection over the cap with a 503 and closes it, giving up
/// after a second on a client that does not read.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(OVER_CAPACITY)).await;
    let _ = stream.shutdown().await;
    // Closing with the request unread would make the kernel reset the
    // connection, which can destroy the 503 before the client reads it:
    // drain what the client sent, briefly.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The router as one connection sees it: every request carries its TCP peer
/// (for the per-client-IP rate limit), and ambiguous framing is refused
/// before any handler reads the body.
fn per_connection(
    app: Router,
    peer: std::net::SocketAddr,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            if let Some(refusal) = ambiguous_framing(&req) {
                return Ok(refusal);
            }
            req.extensions_mut().insert(PeerAddr(peer));
            app.oneshot(req.map(Body::new)).await
        }
    })
}

/// `Content-Length` beside `Transfer-Encoding`, or a transfer coding other
/// than plain `chunked`, is how requests are smuggled past proxies that read
/// the framing differently (RFC 9112 section 6.1): refused with a 422 naming
/// the header, and the connection closed, since its remaining bytes cannot
/// be trusted to start a request.
fn ambiguous_framing<B>(req: &Request<B>) -> Option<Response> {
    let te: Vec<&HeaderValue> = req
        .headers()
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .collect();
    if te.is_empty() {
        return None;
    }
    let msg = if req.headers().contains_key(header::CONTENT_LENGTH) {
        "Content-Length and Transfer-Encoding must not both be sent"
    } else if te.len() != 1 || !te[0].as_bytes().eq_ignore_ascii_case(b"chunked") {
        "Transfer-Encoding must be chunked alone (no other transfer coding is supported)"
    } else {
        return None;
    };
    let mut response = ApiError::Validation(vec![ValidationIssue {
        loc: vec![LocPart::from("header"), LocPart::from("transfer-encoding")],
        msg: msg.to_owned(),
        kind: "value_error".to_owned(),
    }])
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_capacity_answer_declares_its_true_length() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
