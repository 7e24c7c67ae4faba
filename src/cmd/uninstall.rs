//! `unicni uninstall`: take unicni off this node.

use super::common;
use anyhow::Result;
use std::process::ExitCode;
use unicni_core::UninstallOptions;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: common::NodePaths,
    /// Also delete the node's IPAM state (pods must be gone).
    #[arg(long)]
    pub purge: bool,
    /// Also give the node's cloud resources back (terway: detach and delete the secondary
    /// ENIs the agent created for this instance, with their addresses; flannel vpc-route:
    /// delete the node's entry from the VPC route table). Uses the config's [cloud]
    /// section, as the agent does.
    #[arg(long)]
    pub release_cloud: bool,
}

/// Removes the conflist and the plugin binary, then everything the configured backend put
/// on the node (its links, routes, rules, tables, nftables, eBPF pins, socket, state).
/// The cluster lock stays: it belongs to the cluster, not the node.
pub fn run(args: Args) -> Result<ExitCode> {
    let config = common::load_config(&args.paths.config)?;
    for path in [
        args.paths.cni_conf_dir.join(&config.cni.conf_name),
        args.paths.cni_bin_dir.join(crate::cmd::cni::PLUGIN_TYPE),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => eprintln!("removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("remove {}: {e}", path.display())),
        }
    }
    let backend = crate::factory::installer(&config);
    let opts = UninstallOptions {
        purge: args.purge,
        release_cloud: args.release_cloud,
    };
    let done = common::runtime()?.block_on(backend.uninstall(opts))?;
    for line in done {
        eprintln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
