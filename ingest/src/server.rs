//! The accept loop: hyper connections with a header-read timeout (slowloris),
//! and a graceful shutdown that stops accepting, lets in-flight requests
//! finish, then returns.
//!
//! `axum::serve` offers no header timeout, hence this small loop.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The TCP peer of a request, inserted by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Serves `app` on `listener` until `shutdown` resolves, then waits up to
/// `drain` for open requests. `open_connections` counts the connections (one
/// task each) being served, so an SRE can see slow clients pile up, or not.
pub async fn serve_with_timeouts(
    app: Router,
    listener: TcpListener,
    header_timeout: Duration,
    drain: Duration,
    open_connections: prometheus::IntGauge,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: CI webhooks are one request per connection or keep-alive,
    // and HTTP/1 is where hyper offers the header-read timeout.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Every request carries its TCP peer, for the per-client-IP rate limit.
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req
            },
        ));
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let open = open_connections.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            open.dec();
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain period");
    }
    Ok(())
}
