//! The `dashboard` binary: parse configuration, set up logging, bind, serve.

use anyhow::Context;
use clap::Parser;
use vibemon_dashboard::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    vibemon_runtime::init_tracing();
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding DASHBOARD_ADDR {}", config.addr))?;
    vibemon_dashboard::serve(config, listener, vibemon_runtime::shutdown_signal()).await
}
