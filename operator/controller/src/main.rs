use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = silo_operator::config::Args::parse();
    silo_runtime::telemetry::init(&args.log);
    if let Some(silo_operator::config::Command::Onboard(onboard)) = args.command {
        silo_operator::onboard::run(onboard).await?;
        return Ok(());
    }
    silo_operator::run::run(args).await?;
    Ok(())
}
