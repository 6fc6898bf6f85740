//! A real ingest on port 0 for CLI tests that talk to it.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use vibemon_runtime::KafkaArgs;

pub struct Ingest {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Ingest {
    pub async fn spawn(db_url: &str, kafka: KafkaArgs) -> Self {
        Self::spawn_with(vibemon_ingest::config::Config::new(db_url, kafka)).await
    }

    pub async fn spawn_with(config: vibemon_ingest::config::Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(vibemon_ingest::serve(config, listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }
}

/// A real projector in this process, stopped like SIGTERM would.
pub struct Projector {
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Projector {
    pub async fn spawn(db_url: &str, kafka: KafkaArgs, group: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(vibemon_projector::serve(
            vibemon_projector::config::Config::new(db_url, kafka, group),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Finishes the batch, commits, leaves the group; panics if it failed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }
}
