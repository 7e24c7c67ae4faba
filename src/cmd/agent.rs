//! `unicni agent`: the node agent (the DaemonSet's main container). Wiring only: the
//! backend's node agent (`unicni_core::NodeAgent`) runs in the agent runtime
//! (`unicni_agent`), which serves `/healthz`, `/readyz` and `/metrics` on `agent.listen`.

use super::common;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use unicni_config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// The cluster's config file (TOML or YAML).
    #[arg(long, default_value = "/etc/unicni/unicni.toml")]
    pub config: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = common::load_config(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> Result<()> {
    let node = common::node_name(&config);
    // The node agent first: flannel's vpc-route connects to the cloud before anything
    // else, so a node that cannot reach it does not touch the cluster's store.
    let agent = crate::factory::node_agent(&config, &node).await?;
    let store = unicni_store::open(&config.store).await?;
    let (lock, created) = common::check_lock(store.as_ref(), &config).await?;
    tracing::info!(store = %store.describe(), created, backend = %lock.backend, mode = %lock.mode, "config matches the cluster lock");
    unicni_agent::run(&config, &node, agent).await?;
    Ok(())
}
