//! A service (ingest or projector) running inside the test's own process on
//! port 0, stopped the way SIGTERM stops the binary.
//!
//! Both services expose `serve(config, listener, shutdown)`; [`Spawned`]
//! binds the listener, hands the service a [`Shutdown`] future, and keeps the
//! task so a test can stop it, wait for it to stop by itself, or abort it by
//! dropping it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Resolves when the test asks its service to stop (or drops it).
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A running service: its address, and the means to stop it.
pub struct Spawned {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Spawned {
    /// Binds 127.0.0.1:0 and runs `serve(listener, shutdown)` on a task,
    /// e.g. `Spawned::start(|l, s| vibemon_ingest::serve(config, l, s))`.
    pub async fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(serve(listener, Shutdown(stopped)));
        Self {
            addr,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Whether the service has ended (by itself, or after [`Spawned::stop`]).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Asks the service to stop, and returns how it ended. Panics if it
    /// takes over 30 s, or if its task panicked.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.ended(Duration::from_secs(30))
            .await
            .expect("the service stops within 30 s of being asked")
    }

    /// Waits up to `timeout` for the service to end by itself, and returns
    /// how it ended. If it does not, stops it and returns `None`: a test must
    /// not leave a service running behind its assertions (the projector's
    /// consume loop, on its own thread, would go on writing).
    pub async fn stopped_by_itself(mut self, timeout: Duration) -> Option<anyhow::Result<()>> {
        if let Some(ended) = self.ended(timeout).await {
            return Some(ended);
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.ended(Duration::from_secs(30)).await;
        None
    }

    /// Waits for the service to end by itself, however long it takes.
    pub async fn finished(mut self) -> anyhow::Result<()> {
        let handle = self.handle.take().expect("not yet awaited");
        handle.await.expect("the service's task did not panic")
    }

    async fn ended(&mut self, timeout: Duration) -> Option<anyhow::Result<()>> {
        let handle = self.handle.as_mut()?;
        let ended = tokio::time::timeout(timeout, handle).await.ok()?;
        self.handle = None;
        Some(ended.expect("the service's task did not panic"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}
