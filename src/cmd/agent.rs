//! `unicni agent`: the node agent (the DaemonSet's main container). Wiring only: the
//! backend's node agent (`unicni_core::NodeAgent`) runs in the agent runtime
//! (`unicni_agent`), which serves `/healthz`, `/readyz` and `/metrics` on `agent.listen`.

use super::common;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use unicni_config::{BackendKind, Config};
use unicni_core::NodeAgent;

#[derive(clap::Args)]
pub struct Args {
    /// The cluster's config file (TOML or YAML).
    #[arg(long, default_value = "/etc/unicni/unicni.toml")]
    pub config: PathBuf,
}

/// Where the Kubernetes store keeps its records (the cluster lock).
pub const KUBE_NAMESPACE: &str = "kube-system";

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

/// The backend's node agent for `config`.
async fn node_agent(config: &Config, node: &str) -> Result<Arc<dyn NodeAgent>> {
    Ok(match config.backend.kind {
        BackendKind::Flannel => {
            Arc::new(unicni_flannel::agent::FlannelNode::new(config, node.to_string()).await?)
        }
        BackendKind::Terway => Arc::new(unicni_terway::agent::TerwayNode::new(config).await?),
    })
}

async fn serve(config: Config) -> Result<()> {
    let node = common::node_name(&config);
    // The node agent first: flannel's vpc-route connects to the cloud before anything
    // else, so a node that cannot reach it does not touch the cluster's store.
    let agent = node_agent(&config, &node).await?;
    let store = common::open_store_async(&config).await?;
    let (lock, created) = common::check_lock(store.as_ref(), &config).await?;
    tracing::info!(store = %store.describe(), created, backend = %lock.backend, mode = %lock.mode, "config matches the cluster lock");
    unicni_agent::run(&config, &node, agent).await?;
    Ok(())
}
