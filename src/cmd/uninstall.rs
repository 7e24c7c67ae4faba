//! `unicni uninstall`: take unicni off this node.

use super::common;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use unicni_flannel::masq;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: common::NodePaths,
    /// Also delete the node's IPAM state (pods must be gone).
    #[arg(long)]
    pub purge: bool,
}

/// Removes the conflist, the plugin binary, the bridge, the masquerade table and every
/// eBPF program and map pinned under `bpf.pin_dir`. The cluster lock stays: it belongs to
/// the cluster, not the node.
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
    let rt = common::runtime()?;
    rt.block_on(async {
        let nl = unicni_net::Netlink::current()?;
        if nl.delete_link(&config.flannel.bridge).await? {
            eprintln!("removed bridge {}", config.flannel.bridge);
        }
        // The agent's datapath: its vxlan device and its peer routes (host-gw).
        let vxlan = format!("flannel.{}", config.flannel.vni);
        if nl.delete_link(&vxlan).await? {
            eprintln!("removed vxlan device {vxlan}");
        }
        let main = Some(unicni_net::TABLE_MAIN);
        for r in nl
            .routes(unicni_net::netlink::AddressFamily::Inet, main)
            .await?
        {
            if r.protocol == unicni_flannel::reconcile::ROUTE_PROTO {
                nl.delete_route(&r).await?;
                eprintln!("removed peer route {}", r.dst);
            }
        }
        anyhow::Ok(())
    })?;
    // eBPF: every program, map and link pinned for the fast paths and NetworkPolicy.
    let pin = PathBuf::from(&config.bpf.pin_dir);
    if pin.exists() {
        unicni_bpf::remove_all(&pin).map_err(|e| {
            anyhow::anyhow!("remove the eBPF programs pinned at {}: {e}", pin.display())
        })?;
        eprintln!(
            "removed eBPF programs, maps and links pinned at {}",
            pin.display()
        );
    }
    let table = masq::table_name(&config.cni.network_name);
    masq::remove(&table)?;
    eprintln!("removed nftables table ip {table} (if present)");
    // Without the agent's lease file the plugin refuses new pods ("try again later").
    let _ = std::fs::remove_file(PathBuf::from(&config.node.run_dir).join("flannel/subnet.json"));
    if args.purge {
        let dir = PathBuf::from(&config.node.state_dir)
            .join("ipam")
            .join(&config.cni.network_name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
            eprintln!("removed {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
