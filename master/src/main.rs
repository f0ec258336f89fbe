//! `jetwork-master`: runs one master candidate. Any number may run; one leads.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use jetwork_master::MasterSettings;

/// A jetwork master candidate: stands by until it wins the lease, then leads.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// NATS server URL(s), comma separated (overrides the config file).
    #[arg(long, env = "NATS_URL")]
    nats_url: Option<String>,
    /// Configuration file (TOML); `JETWORK_*` variables override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A name for this candidate (overrides `master.id`).
    #[arg(long)]
    id: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jetwork_shared::telemetry::init("info");
    let args = Args::parse();
    let mut settings =
        MasterSettings::load(args.config.as_deref()).context("loading configuration")?;
    if let Some(url) = args.nats_url {
        settings.nats.url = url;
    }
    if let Some(id) = args.id {
        settings.master.id = id;
    }
    settings.validate().context("checking configuration")?;
    jetwork_master::run(settings, jetwork_shared::telemetry::shutdown_signal())
        .await
        .context("master failed")?;
    Ok(())
}
