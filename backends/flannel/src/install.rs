//! The flannel install half: the conflist entry (the node's subnet lease and the pod MTU)
//! and uninstall (the bridge, the vxlan device, the peers' routes, masquerade, pins, the
//! lease file and, on purge, the IPAM state).

use crate::reconcile::own_routes;
use crate::{masq, names};
use async_trait::async_trait;
use serde_json::json;
use std::path::{Path, PathBuf};
use unicni_config::{Config, FlannelMode, StoreKind};
use unicni_core::{
    ApiAccess, ConflistEntry, DeployNeeds, Error, Install, Result, Store, UninstallOptions,
};
use unicni_net::netlink::AddressFamily;
use unicni_net::Netlink;

/// vxlan adds outer Ethernet (14), IPv4 (20), UDP (8) and vxlan (8) headers.
const VXLAN_OVERHEAD_V4: u32 = 50;

pub struct FlannelInstall {
    config: Config,
}

impl FlannelInstall {
    pub fn new(config: &Config) -> Self {
        Self {
            config: config.clone(),
        }
    }

    fn node_name(&self) -> String {
        self.config.node.name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into())
        })
    }

    /// Pod MTU: the underlay interface's MTU minus the encapsulation the mode adds.
    async fn pod_mtu(&self) -> Result<u32> {
        let c = &self.config;
        let nl = Netlink::current()?;
        let underlay = match &c.flannel.interface {
            Some(name) => nl.link(name).await?.ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "flannel.interface = {name:?} does not exist on this node"
                ))
            })?,
            None => {
                let routes = nl
                    .routes(
                        unicni_net::netlink::AddressFamily::Inet,
                        Some(unicni_net::TABLE_MAIN),
                    )
                    .await?;
                let oif = routes
                    .iter()
                    .find(|r| r.dst.prefix_len() == 0)
                    .and_then(|r| r.oif);
                let links = nl.links().await?;
                match oif.and_then(|i| links.into_iter().find(|l| l.index == i)) {
                    Some(l) => l,
                    // No default route (an isolated lab host): assume an Ethernet MTU.
                    None => return Ok(self.overhead_adjusted(1500)),
                }
            }
        };
        Ok(self.overhead_adjusted(underlay.mtu))
    }

    fn overhead_adjusted(&self, underlay: u32) -> u32 {
        match self.config.flannel.mode {
            FlannelMode::Vxlan => underlay.saturating_sub(VXLAN_OVERHEAD_V4),
            FlannelMode::HostGw | FlannelMode::VpcRoute => underlay,
        }
    }
}

impl FlannelInstall {
    /// Dual stack: the IPv6 cluster network and, when the IPv4 subnet is known here
    /// (pinned, or leased without an agent), the IPv6 subnet at its index.
    fn ipv6_subnet(&self, subnet: Option<&str>) -> Result<Option<(String, Option<String>)>> {
        let c = &self.config;
        let Some(network6) = c.flannel.ipv6_network.clone() else {
            return Ok(None);
        };
        let Some(subnet) = subnet else {
            return Ok(Some((network6, None)));
        };
        let bad = |what: &str, v: &str| {
            Error::InvalidConfig(format!("{what} = {v:?} is not a CIDR of the right family"))
        };
        let plan = crate::lease::Ipv6Plan {
            network: network6
                .parse()
                .map_err(|_| bad("flannel.ipv6_network", &network6))?,
            subnet_len: c.flannel.ipv6_subnet_len,
        };
        let network = c
            .flannel
            .network
            .parse()
            .map_err(|_| bad("flannel.network", &c.flannel.network))?;
        let sub = subnet
            .parse()
            .map_err(|_| bad("flannel.node_subnet", subnet))?;
        let s6 = crate::lease::ipv6_subnet_of(network, sub, plan).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "flannel.ipv6_network {network6} holds no /{} for node subnet {subnet}",
                plan.subnet_len
            ))
        })?;
        Ok(Some((network6, Some(s6.to_string()))))
    }

    /// vpc-route: deletes this instance's entries (next hop = this node) of the cluster
    /// network from the VPC's route table, so the decommissioned node keeps no route.
    async fn release_route_entry(&self, done: &mut Vec<String>) -> Result<()> {
        let c = &self.config;
        let network = c.flannel.network.parse().map_err(|e| {
            Error::InvalidConfig(format!("flannel.network = {:?}: {e}", c.flannel.network))
        })?;
        let vpc = crate::vpcroute::connect(&c.cloud, network).await?;
        let cloud_err = |what: String| {
            move |e: unicni_cloud::CloudError| {
                Error::Unavailable(format!("{what}: {e}; run uninstall --release-cloud again"))
            }
        };
        let entries = vpc
            .cloud
            .describe_route_entries(&vpc.route_table)
            .await
            .map_err(cloud_err(format!("list route table {}", vpc.route_table)))?;
        for e in entries {
            let in_network = e
                .destination_cidr
                .parse::<ipnet::IpNet>()
                .is_ok_and(|d| network.contains(&d));
            if e.entry_type == "Custom" && in_network && e.next_hop_id == vpc.instance {
                match vpc.cloud.delete_route_entry(&vpc.route_table, &e.id).await {
                    Ok(()) | Err(unicni_cloud::CloudError::NotFound(_)) => done.push(format!(
                        "removed route entry {} ({} via {}) from {}",
                        e.id, e.destination_cidr, vpc.instance, vpc.route_table
                    )),
                    Err(err) => return Err(cloud_err(format!("delete route entry {}", e.id))(err)),
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Install for FlannelInstall {
    fn deploy_needs(&self) -> DeployNeeds {
        let c = &self.config;
        let mut api = Vec::new();
        // With the Kubernetes store the subnet leases are the nodes' spec.podCIDR and
        // unicni annotations (lease_store::KubeLeases): a watched Node cache (list once,
        // then watch), merge-patch the node's own annotations. Other stores keep leases
        // elsewhere.
        if c.store.kind == StoreKind::Kubernetes {
            api.push(ApiAccess {
                group: "",
                resource: "nodes",
                verbs: vec!["get", "list", "watch", "patch"],
                why: "flannel: subnet leases are nodes' spec.podCIDR and annotations",
            });
        }
        DeployNeeds {
            api,
            host_paths: Vec::new(),
            // vpc-route writes each node's subnet into the VPC route table.
            cloud: c.flannel.mode == FlannelMode::VpcRoute,
            ebpf: c.flannel.fast_path,
        }
    }

    /// Any node can host a flannel mode: the limits are cluster-wide (the CIDR, the route
    /// table quota) and checked by the config's validation and `plan`.
    async fn admit(&self) -> Result<()> {
        Ok(())
    }

    async fn entry(&self, store: &dyn Store, with_agent: bool) -> Result<ConflistEntry> {
        let c = &self.config;
        let node = self.node_name();
        let subnet = match &c.flannel.node_subnet {
            Some(s) => Some(s.clone()),
            None if with_agent => None,
            None => {
                let network = c.flannel.network.parse().map_err(|e| {
                    Error::InvalidConfig(format!("flannel.network = {:?}: {e}", c.flannel.network))
                })?;
                let s = crate::lease::acquire(store, network, c.flannel.subnet_len, &node).await?;
                Some(s.to_string())
            }
        };
        let mtu = match c.flannel.mtu {
            Some(m) => m,
            None => self.pod_mtu().await?,
        };
        let ipv6 = self.ipv6_subnet(subnet.as_deref())?;
        let mut plugin = json!({
            "backend": "flannel",
            "clusterNetwork": c.flannel.network,
            "bridge": c.flannel.bridge,
            "mtu": mtu,
            "stateDir": c.node.state_dir,
            "runDir": c.node.run_dir,
            "ipMasq": c.flannel.masquerade,
            "hairpin": true,
        });
        if let Some(s) = &subnet {
            plugin["subnet"] = json!(s);
        }
        if let Some((network6, subnet6)) = &ipv6 {
            plugin["ipv6ClusterNetwork"] = json!(network6);
            if let Some(s6) = subnet6 {
                plugin["ipv6Subnet"] = json!(s6);
            }
        }
        let subnet = subnet.unwrap_or_else(|| "from the agent's lease".into());
        Ok(ConflistEntry {
            plugin,
            summary: format!("node {node}, subnet {subnet}, mtu {mtu}"),
        })
    }

    async fn uninstall(&self, opts: UninstallOptions) -> Result<Vec<String>> {
        let c = &self.config;
        let mut done = Vec::new();
        let nl = Netlink::current()?;
        // Host ends of pods still on the bridge (a node decommissioned without draining):
        // only this network's, found by their bridge, never by name alone.
        if let Some(bridge) = nl.link(&c.flannel.bridge).await? {
            for l in nl.links().await? {
                if l.master == Some(bridge.index)
                    && names::is_host_veth(&l.name)
                    && nl.delete_link(&l.name).await?
                {
                    done.push(format!("removed pod veth {}", l.name));
                }
            }
        }
        if nl.delete_link(&c.flannel.bridge).await? {
            done.push(format!("removed bridge {}", c.flannel.bridge));
        }
        // The agent's datapath: its vxlan device and its peer routes (host-gw).
        let vxlan = format!("flannel.{}", c.flannel.vni);
        if nl.delete_link(&vxlan).await? {
            done.push(format!("removed vxlan device {vxlan}"));
        }
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for r in own_routes(&nl, family).await? {
                nl.delete_route(&r).await?;
                done.push(format!("removed peer route {}", r.dst));
            }
        }
        if let Some(line) = unicni_bpf::uninstall(Path::new(&c.bpf.pin_dir))
            .map_err(|e| Error::Kernel(Box::new(e)))?
        {
            done.push(line);
        }
        let table = masq::table_name(&c.cni.network_name);
        if unicni_net::nft::table_exists("ip6", &table) {
            unicni_net::nft::delete_table("ip6", &table)?;
            done.push(format!("removed nftables table ip6 {table}"));
        }
        if unicni_net::nft::table_exists("ip", &table) {
            masq::remove(&table)?;
            done.push(format!("removed nftables table ip {table}"));
        }
        if opts.release_cloud && c.flannel.mode == FlannelMode::VpcRoute {
            self.release_route_entry(&mut done).await?;
        }
        // Without the agent's lease file the plugin refuses new pods ("try again later").
        let run = PathBuf::from(&c.node.run_dir).join("flannel");
        remove(&run, &mut done)?;
        if opts.purge {
            let state = PathBuf::from(&c.node.state_dir);
            remove(&state.join("ipam").join(&c.cni.network_name), &mut done)?;
            remove(&state.join("flannel"), &mut done)?;
            // The bridge datapath's node-preparation lock (bridge.rs).
            let lock = state.join(format!(".node-{}.lock", c.cni.network_name));
            if std::fs::remove_file(&lock).is_ok() {
                done.push(format!("removed {}", lock.display()));
            }
        }
        Ok(done)
    }
}

/// Removes `path` (a file or a whole directory) and reports it when there was one.
fn remove(path: &Path, done: &mut Vec<String>) -> Result<()> {
    if unicni_fsutil::remove_if_present(path)? {
        done.push(format!("removed {}", path.display()));
    }
    Ok(())
}
