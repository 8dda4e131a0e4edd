use clap::Parser;
use silo_consumers::{app, args::Args};
use silo_runtime::{ContractHandle, Shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(&args.runtime.log);
    let contract = ContractHandle::from_env()?;
    app::run(args, contract, Shutdown::on_signals()).await?;
    Ok(())
}
