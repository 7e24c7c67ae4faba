//! `unicni install`: run once per node (the DaemonSet's init container) to validate the
//! config, check the cluster lock, write the conflist and copy the binary.

use super::common::{self, write_atomic};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use unicni_config::{BackendKind, Config, FlannelMode};
use unicni_net::Netlink;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: common::NodePaths,
    /// A node agent (`unicni agent`) provides this node's subnet lease: write the conflist
    /// without a subnet (the plugin reads the agent's lease file and answers "try again
    /// later" until it exists) and leave leasing to the agent.
    #[arg(long)]
    pub with_agent: bool,
}

/// vxlan adds outer Ethernet (14), IPv4 (20), UDP (8) and vxlan (8) headers.
const VXLAN_OVERHEAD_V4: u32 = 50;

pub fn run(args: Args) -> Result<ExitCode> {
    let config = common::load_config(&args.paths.config)?;
    let rt = common::runtime()?;
    if config.backend.kind == BackendKind::Terway {
        // Before the lock: a node that cannot host the mode must not create the cluster.
        rt.block_on(admit_instance(&config))?;
    }
    let store = rt.block_on(unicni_store::open(&config.store))?;
    let (lock, created) = rt.block_on(common::check_lock(store.as_ref(), &config))?;
    if created {
        eprintln!(
            "cluster lock created in {} (backend {} / {})",
            store.describe(),
            lock.backend,
            lock.mode
        );
    } else {
        eprintln!("config matches the cluster lock in {}", store.describe());
    }
    if config.backend.kind == BackendKind::Terway {
        return finish_terway(&config, &args.paths);
    }
    let node = common::node_name(&config);
    let subnet = match &config.flannel.node_subnet {
        Some(s) => Some(s.clone()),
        None if args.with_agent => None,
        None => {
            let network = config.flannel.network.parse().context("flannel.network")?;
            let s = rt.block_on(unicni_flannel::lease::acquire(
                store.as_ref(),
                network,
                config.flannel.subnet_len,
                &node,
            ))?;
            Some(s.to_string())
        }
    };
    let mtu = match config.flannel.mtu {
        Some(m) => m,
        None => rt.block_on(pod_mtu(&config))?,
    };
    let version = conflist_version(&config, &args.paths.cni_bin_dir);
    let conflist = conflist(&config, subnet.as_deref(), mtu, &version);
    let conf_path = args.paths.cni_conf_dir.join(&config.cni.conf_name);
    write_atomic(
        &conf_path,
        serde_json::to_string_pretty(&conflist)?.as_bytes(),
        0o644,
    )?;
    let subnet = subnet.unwrap_or_else(|| "from the agent's lease".into());
    eprintln!(
        "wrote {} (node {node}, subnet {subnet}, mtu {mtu})",
        conf_path.display()
    );
    let bin = install_binary(&args.paths.cni_bin_dir)?;
    eprintln!("installed {}", bin.display());
    Ok(ExitCode::SUCCESS)
}

/// Refuses a node whose instance type cannot host the configured terway mode or stack
/// (shared-ENI nodes need more than 11 pods; dual stack needs IPv6 = IPv4 per ENI).
async fn admit_instance(c: &Config) -> Result<()> {
    let md = unicni_cloud::MetadataClient::new(c.cloud.metadata_endpoint.as_deref())?;
    let instance_type = md.instance_type().await.with_context(|| {
        format!(
            "backend.kind = \"terway\": learn this node's instance type from the metadata service at {}",
            md.endpoint()
        )
    })?;
    let cloud = unicni_cloud::from_config(&c.cloud)
        .await
        .context("backend.kind = \"terway\" needs the [cloud] section")?;
    let limits = unicni_terway::agent::limits_of(&cloud, &instance_type).await?;
    unicni_terway::agent::admit(&limits, c.terway.mode, c.cluster.ip_stack)
        .map_err(|why| anyhow::anyhow!("this node cannot join: {why}"))
}

fn finish_terway(config: &Config, paths: &common::NodePaths) -> Result<ExitCode> {
    let version = conflist_version(config, &paths.cni_bin_dir);
    let conflist = conflist_terway(config, &version);
    let conf_path = paths.cni_conf_dir.join(&config.cni.conf_name);
    write_atomic(
        &conf_path,
        serde_json::to_string_pretty(&conflist)?.as_bytes(),
        0o644,
    )?;
    eprintln!(
        "wrote {} (terway {}, addresses from the agent on {})",
        conf_path.display(),
        config.terway.mode.as_str(),
        unicni_terway::server::socket_path(Path::new(&config.node.run_dir)).display()
    );
    let bin = install_binary(&paths.cni_bin_dir)?;
    eprintln!("installed {}", bin.display());
    Ok(ExitCode::SUCCESS)
}

/// The terway conflist: the plugin only needs the agent's socket and the mode.
pub fn conflist_terway(c: &Config, version: &str) -> Value {
    let first = json!({
        "type": crate::cmd::cni::PLUGIN_TYPE,
        "backend": "terway",
        "mode": c.terway.mode.as_str(),
        "socket": unicni_terway::server::socket_path(Path::new(&c.node.run_dir)),
        "timeoutSeconds": c.terway.agent_timeout_seconds,
    });
    let mut list = conflist(c, None, 1500, version);
    list["plugins"][0] = first;
    list
}

/// The plugin list the runtime executes: unicni first, then the configured chain.
pub fn conflist(c: &Config, subnet: Option<&str>, mtu: u32, version: &str) -> Value {
    let mut first = json!({
        "type": crate::cmd::cni::PLUGIN_TYPE,
        "backend": "flannel",
        "clusterNetwork": c.flannel.network,
        "subnet": subnet,
        "bridge": c.flannel.bridge,
        "mtu": mtu,
        "stateDir": c.node.state_dir,
        "runDir": c.node.run_dir,
        "ipMasq": c.flannel.masquerade,
        "hairpin": true,
    });
    match subnet {
        Some(s) => first["subnet"] = json!(s),
        None => {
            if let Some(o) = first.as_object_mut() {
                o.remove("subnet");
            }
        }
    }
    let mut plugins = vec![first];
    for p in &c.cni.chain {
        plugins.push(match p.as_str() {
            "portmap" => {
                json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true})
            }
            "bandwidth" => json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
            other => json!({"type": other}),
        });
    }
    json!({
        "cniVersion": version,
        "name": c.cni.network_name,
        "plugins": plugins,
    })
}

/// The conflist's cniVersion: `cni.version`, lowered to the highest version every chained
/// plugin says it supports (a plugin refuses a config newer than it knows, and the runtime
/// then drops the whole network).
fn conflist_version(c: &Config, bin_dir: &Path) -> String {
    let mut version = c.cni.version.clone();
    for plugin in &c.cni.chain {
        let exe = bin_dir.join(plugin);
        let supported: Vec<String> = std::process::Command::new(&exe)
            .env("CNI_COMMAND", "VERSION")
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| {
                v["supportedVersions"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default();
        if supported.is_empty() {
            eprintln!(
                "warning: chained plugin {} did not answer VERSION; is it in {}?",
                plugin,
                bin_dir.display()
            );
            continue;
        }
        if !supported.contains(&version) {
            if let Some(best) = supported
                .iter()
                .filter(|v| unicni_cni::SUPPORTED_VERSIONS.contains(&v.as_str()))
                .filter(|v| unicni_cni::version::at_least(&version, v))
                .max_by(|a, b| {
                    if unicni_cni::version::at_least(a, b) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Less
                    }
                })
            {
                eprintln!("{plugin} supports up to {best}: writing cniVersion {best}");
                version = best.clone();
            }
        }
    }
    version
}

/// Pod MTU: the underlay interface's MTU minus the encapsulation the mode adds.
async fn pod_mtu(c: &Config) -> Result<u32> {
    let nl = Netlink::current()?;
    let underlay = match &c.flannel.interface {
        Some(name) => nl
            .link(name)
            .await?
            .with_context(|| format!("flannel.interface = {name:?} does not exist on this node"))?,
        None => {
            let routes = nl.routes(unicni_net::netlink::AddressFamily::Inet).await?;
            let oif = routes
                .iter()
                .find(|r| r.dst.prefix_len() == 0)
                .and_then(|r| r.oif);
            let links = nl.links().await?;
            match oif.and_then(|i| links.into_iter().find(|l| l.index == i)) {
                Some(l) => l,
                // No default route (an isolated lab host): assume an Ethernet MTU.
                None => return Ok(overhead_adjusted(c, 1500)),
            }
        }
    };
    Ok(overhead_adjusted(c, underlay.mtu))
}

fn overhead_adjusted(c: &Config, underlay: u32) -> u32 {
    match c.flannel.mode {
        FlannelMode::Vxlan => underlay.saturating_sub(VXLAN_OVERHEAD_V4),
        FlannelMode::HostGw | FlannelMode::VpcRoute => underlay,
    }
}

/// Copies the running binary to `<dir>/unicni` atomically, unless it already runs from there.
fn install_binary(dir: &Path) -> Result<PathBuf> {
    let me = std::env::current_exe().context("locate the running binary")?;
    let target = dir.join(crate::cmd::cni::PLUGIN_TYPE);
    if let (Ok(a), Ok(b)) = (me.canonicalize(), target.canonicalize()) {
        if a == b {
            return Ok(target);
        }
    }
    let bytes = std::fs::read(&me).with_context(|| format!("read {}", me.display()))?;
    write_atomic(&target, &bytes, 0o755)?;
    Ok(target)
}
