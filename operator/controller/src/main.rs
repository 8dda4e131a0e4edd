use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = silo_operator::config::Args::parse();
    silo_runtime::telemetry::init(&args.log);
    silo_operator::run::run(args).await?;
    Ok(())
}
