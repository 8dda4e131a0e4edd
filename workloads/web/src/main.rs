//! `web`: the silo API server (`web` / `web serve`) and migration runner (`web migrate`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = silo_web::cli::Cli::parse();
    silo_web::app::run(cli).await?;
    Ok(())
}
