//! The `ingest` binary: parse configuration, set up logging and traces, bind, serve.

use anyhow::Context;
use clap::Parser;
use vibemon_ingest::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Kept to the end of main: dropping it exports the last spans.
    let _telemetry = vibemon_runtime::telemetry::init("ingest");
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding INGEST_ADDR {}", config.addr))?;
    vibemon_ingest::serve(config, listener, vibemon_runtime::shutdown_signal()).await
}
