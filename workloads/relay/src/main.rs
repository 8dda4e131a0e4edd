//! `relay`: Sentry-compatible ingest into Kafka.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = silo_relay::cli::Cli::parse();
    silo_relay::app::run(cli).await?;
    Ok(())
}
