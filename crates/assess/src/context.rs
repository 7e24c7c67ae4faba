//! What every check reads: the inventory, the target, and indexes built once.

use crate::inventory::{Inventory, IpStack};
use crate::{suggest, AssessError, CheckId};
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap};
use unicni_capacity::InstanceTypeTable;
use unicni_config::{BackendKind, Config};

/// What the caller chose.
pub struct Options {
    pub to: BackendKind,
    /// The target's config (`--config`); the inventory's `target` section otherwise.
    pub target_config: Option<(Config, String)>,
    pub instance_types: InstanceTypeTable,
    pub ignore: Vec<CheckId>,
}

/// The network the cluster should move to.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: Config,
    /// Where the config came from, for messages.
    pub source: String,
    /// No config was given: the values are unicni's defaults adapted to the inventory.
    pub assumed: bool,
}

impl Target {
    pub fn backend(&self) -> BackendKind {
        self.config.backend.kind
    }

    pub fn mode(&self) -> &'static str {
        match self.backend() {
            BackendKind::Flannel => self.config.flannel.mode.as_str(),
            BackendKind::Terway => self.config.terway.mode.as_str(),
        }
    }

    pub fn resolve(inv: &Inventory, opts: &Options) -> Result<Target, AssessError> {
        let given = match &opts.target_config {
            Some((c, source)) => Some((c.clone(), source.clone())),
            None => inv
                .target
                .clone()
                .map(|c| (c, "the inventory's `target` section".to_string())),
        };
        if let Some((config, source)) = given {
            if config.backend.kind != opts.to {
                return Err(AssessError::TargetConfig(format!(
                    "{source} has backend.kind = {:?} but --to is {:?}; make them agree",
                    config.backend.kind.as_str(),
                    opts.to.as_str()
                )));
            }
            let errors = unicni_config::validate::validate(&config);
            if !errors.is_empty() {
                let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                return Err(AssessError::TargetConfig(format!(
                    "{source} is invalid: {}",
                    list.join("; ")
                )));
            }
            return Ok(Target {
                config,
                source,
                assumed: false,
            });
        }
        Ok(Target {
            config: assumed_config(inv, opts.to),
            source: "unicni's defaults adapted to this inventory (pass --config to assess \
                     a specific target)"
                .into(),
            assumed: true,
        })
    }
}

/// The target config when none is given: defaults, with what the inventory tells.
fn assumed_config(inv: &Inventory, to: BackendKind) -> Config {
    let mut c = Config::default();
    c.backend.kind = to;
    if let Some(svc) = inv.cluster.service_cidr {
        c.cluster.service_cidr = svc.to_string();
    }
    c.cluster.vpc_cidr = inv.cluster.vpc_cidr.map(|v| v.to_string());
    match to {
        BackendKind::Terway => {
            c.terway.vswitches = inv.cloud.vswitches.iter().map(|v| v.id.clone()).collect();
            let types: BTreeSet<&str> = inv
                .nodes
                .iter()
                .filter_map(|n| n.instance_type.as_deref())
                .collect();
            c.terway.instance_types = types.into_iter().map(String::from).collect();
            if inv.cluster.ip_stack == IpStack::Dual {
                c.cluster.ip_stack = unicni_config::IpStack::Dual;
            }
        }
        BackendKind::Flannel => {
            let mut avoid: Vec<IpNet> = inv.cluster.other_cluster_cidrs.clone();
            avoid.extend(inv.cluster.vpc_cidr);
            avoid.extend(inv.cluster.service_cidr);
            avoid.extend(inv.cloud.vswitches.iter().map(|v| v.cidr));
            avoid.extend(inv.cluster.network.cluster_cidr);
            let prefix = suggest::network_prefix_for(inv.nodes.len() as u64, c.flannel.subnet_len);
            if let Some(net) = suggest::free_network(prefix, &avoid) {
                c.flannel.network = net.to_string();
            }
            if inv.cluster.ip_stack == IpStack::Dual {
                // A unique local range holding an IPv6 /64 for every IPv4 node subnet.
                let need = match c.flannel.network.parse::<IpNet>() {
                    Ok(n) => c.flannel.subnet_len.saturating_sub(n.prefix_len()),
                    Err(_) => 8,
                };
                let len = c.flannel.ipv6_subnet_len.saturating_sub(need).max(8);
                let base: std::net::Ipv6Addr = "fd00:10:244::".parse().expect("constant");
                c.cluster.ip_stack = unicni_config::IpStack::Dual;
                c.flannel.ipv6_network = ipnet::Ipv6Net::new(base, len)
                    .ok()
                    .map(|n| n.trunc().to_string());
            }
            if inv.cluster.network.backend == "flannel" {
                if let Some(mode) = &inv.cluster.network.mode {
                    if let Ok(m) = serde_json::from_value(serde_json::Value::from(mode.as_str())) {
                        c.flannel.mode = m;
                    }
                }
            }
        }
    }
    c
}

/// Pods on one node, split by whether they use the pod network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeLoad {
    pub pod_network: u64,
    pub host_network: u64,
}

pub struct Context<'a> {
    pub inv: &'a Inventory,
    pub target: &'a Target,
    pub table: &'a InstanceTypeTable,
    pub load: HashMap<&'a str, NodeLoad>,
}

impl<'a> Context<'a> {
    pub fn new(inv: &'a Inventory, target: &'a Target, table: &'a InstanceTypeTable) -> Self {
        let mut load: HashMap<&str, NodeLoad> = HashMap::with_capacity(inv.nodes.len());
        for p in &inv.pods {
            let Some(node) = p.node.as_deref() else {
                continue;
            };
            if !p.phase.holds_address() {
                continue;
            }
            let l = load.entry(node).or_default();
            if p.host_network {
                l.host_network += 1;
            } else {
                l.pod_network += 1;
            }
        }
        Self {
            inv,
            target,
            table,
            load,
        }
    }

    pub fn load_of(&self, node: &str) -> NodeLoad {
        self.load.get(node).copied().unwrap_or_default()
    }

    pub fn current_backend(&self) -> &str {
        &self.inv.cluster.network.backend
    }

    pub fn current_mode(&self) -> &str {
        self.inv
            .cluster
            .network
            .mode
            .as_deref()
            .unwrap_or("unknown")
    }

    /// Pods that take a pod-network address now.
    pub fn pod_network_pods(&self) -> u64 {
        self.load.values().map(|l| l.pod_network).sum()
    }
}
