//! The capacity of the cluster one config file describes.

use crate::limits::{
    CLUSTER_NODES_DEFAULT, CLUSTER_NODES_MAX, NODE_SUBNET_LEN_RANGE, ROUTE_TABLE_QUOTA_DEFAULT,
    ROUTE_TABLE_QUOTA_MAX, SHARED_ENI_MIN_PODS_EXCLUSIVE,
};
use crate::prefix::{
    free_blocks, Blocks, PrefixCapacity, ADDRESSES_PER_PREFIX, KUBELET_MAX_PODS_DEFAULT,
};
use crate::{flannel, terway, CapacityError, InstanceTypeTable, VSwitch};
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use unicni_config::{BackendKind, Config, FlannelMode, IpStack, TerwayMode};

pub struct PlanInput<'a> {
    pub config: &'a Config,
    pub instance_types: &'a InstanceTypeTable,
    /// What the cloud (or an inventory standing in for it) says about vSwitches.
    pub vswitches: Option<&'a [VSwitch]>,
    /// Nodes the cluster may have; `None` is the anchor's default (5,000).
    pub cluster_node_limit: Option<u64>,
    /// The kubelet's maxPods, which caps prefix-mode pods; `None` is Kubernetes' default
    /// (110).
    pub max_pods: Option<u64>,
}

/// One bound on the node count, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLimit {
    /// `cluster-size`, `node-subnets` or `route-table`.
    pub limit: String,
    pub nodes: u64,
    pub detail: String,
}

/// Pods per node of one instance type on terway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerwayPods {
    pub instance_type: String,
    pub enis: u64,
    pub ipv4_per_eni: u64,
    pub ipv6_per_eni: u64,
    pub shared: u64,
    pub exclusive: u64,
    /// The anchor admits the type as a shared-ENI node (shared > 11).
    pub shared_admitted: bool,
    /// Shared mode can give pods IPv6 too (IPv6 per ENI == IPv4 per ENI).
    pub shared_dual_stack: bool,
    /// `terway.ip_prefix = true`: the /28-prefix capacity, which is then the node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<PrefixCapacity>,
}

/// Flannel: one number for every node; terway: one entry per instance type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PodsPerNode {
    Uniform(u64),
    PerInstanceType(Vec<TerwayPods>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAddresses {
    /// Addresses pods can get across the cluster; `None` when unknown.
    pub total: Option<u64>,
    /// Terway: free addresses of the configured vSwitches per zone.
    pub by_zone: BTreeMap<String, u64>,
    pub source: String,
    /// Terway prefix mode: free aligned /28 blocks of the configured vSwitches (`total`
    /// and `by_zone` count `at_most` x 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_blocks: Option<Blocks>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub backend: String,
    pub mode: String,
    pub max_nodes: u64,
    pub max_nodes_reason: String,
    /// Every bound considered; `max_nodes` is the smallest.
    pub node_limits: Vec<NodeLimit>,
    pub pods_per_node: PodsPerNode,
    /// Flannel: addresses in one node subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses_per_node: Option<u64>,
    pub pod_addresses: PodAddresses,
    /// Flannel dual stack: the IPv6 cluster network. It is never a limit (validation
    /// makes it hold a node subnet for every IPv4 one), so it is reported, not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Network>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Network {
    pub network: String,
    pub node_subnet_len: u8,
    /// IPv6 node subnets in the network (saturating at u64::MAX).
    pub node_subnets: u64,
    pub detail: String,
}

/// `12345` as `12,345`, for messages people read.
pub fn thousands(n: u64) -> String {
    if n < 1000 {
        n.to_string()
    } else {
        format!("{},{:03}", thousands(n / 1000), n % 1000)
    }
}

fn cluster_limit(requested: Option<u64>, warnings: &mut Vec<String>) -> NodeLimit {
    let mut nodes = requested.unwrap_or(CLUSTER_NODES_DEFAULT);
    let mut detail = match requested {
        None => format!(
            "cluster size limit: {} nodes by default ({} after a quota increase)",
            thousands(CLUSTER_NODES_DEFAULT),
            thousands(CLUSTER_NODES_MAX)
        ),
        Some(n) => format!("cluster size limit: {} nodes as requested", thousands(n)),
    };
    if nodes > CLUSTER_NODES_MAX {
        warnings.push(format!(
            "a cluster size limit of {} nodes exceeds the platform maximum of {}; planning with {}",
            thousands(nodes),
            thousands(CLUSTER_NODES_MAX),
            thousands(CLUSTER_NODES_MAX)
        ));
        nodes = CLUSTER_NODES_MAX;
        detail = format!(
            "cluster size limit: {} nodes (platform maximum)",
            thousands(nodes)
        );
    }
    NodeLimit {
        limit: "cluster-size".into(),
        nodes,
        detail,
    }
}

/// Picks the smallest limit; on a tie the first listed (the most specific) explains it.
fn smallest(limits: &[NodeLimit]) -> &NodeLimit {
    limits
        .iter()
        .reduce(|best, l| if l.nodes < best.nodes { l } else { best })
        .expect("at least the cluster size limit")
}

pub fn plan(input: &PlanInput) -> Result<Plan, CapacityError> {
    match input.config.backend.kind {
        BackendKind::Flannel => plan_flannel(input),
        BackendKind::Terway => plan_terway(input),
    }
}

/// The IPv6 side of a dual-stack flannel cluster, measured against the IPv4 node subnets.
fn flannel_ipv6(c: &Config, v4_subnets: u64) -> Result<Option<Ipv6Network>, CapacityError> {
    let f = &c.flannel;
    let (IpStack::Dual, Some(text)) = (c.cluster.ip_stack, &f.ipv6_network) else {
        return Ok(None);
    };
    let net = match text.parse::<IpNet>() {
        Ok(IpNet::V6(n)) => n,
        _ => {
            return Err(CapacityError::Config {
                key: "flannel.ipv6_network".into(),
                value: text.clone(),
                message: "an IPv6 CIDR such as fd00:10:244::/56".into(),
            })
        }
    };
    let bits = u32::from(f.ipv6_subnet_len.saturating_sub(net.prefix_len()));
    let node_subnets = if bits >= 64 { u64::MAX } else { 1u64 << bits };
    let detail = if node_subnets >= v4_subnets {
        format!(
            "flannel.ipv6_network {net} cut into /{} node subnets: {} of them for the {} \
             IPv4 node subnets, each node's at its IPv4 subnet's index; IPv4 is the limit",
            f.ipv6_subnet_len,
            if bits >= 64 {
                format!("2^{bits}")
            } else {
                thousands(node_subnets)
            },
            thousands(v4_subnets)
        )
    } else {
        format!(
            "flannel.ipv6_network {net} holds only {} /{} node subnets for {} IPv4 ones: \
             the config is refused (validation)",
            thousands(node_subnets),
            f.ipv6_subnet_len,
            thousands(v4_subnets)
        )
    };
    Ok(Some(Ipv6Network {
        network: net.to_string(),
        node_subnet_len: f.ipv6_subnet_len,
        node_subnets,
        detail,
    }))
}

fn plan_flannel(input: &PlanInput) -> Result<Plan, CapacityError> {
    let c = input.config;
    let f = &c.flannel;
    let mut warnings = Vec::new();
    let network: Ipv4Net = match f.network.parse::<IpNet>() {
        Ok(IpNet::V4(n)) => n,
        _ => {
            return Err(CapacityError::Config {
                key: "flannel.network".into(),
                value: f.network.clone(),
                message: "an IPv4 CIDR such as 10.244.0.0/16".into(),
            })
        }
    };
    let subnets = flannel::node_subnets(network, f.subnet_len);
    let addresses = flannel::addresses_per_node(f.subnet_len);
    let pods = flannel::pods_per_node(f.subnet_len);
    let mut limits = vec![NodeLimit {
        limit: "node-subnets".into(),
        nodes: subnets,
        detail: format!(
            "flannel.network {network} cut into /{} node subnets of {addresses} addresses: \
             2^({} - {}) = {} subnets",
            f.subnet_len,
            f.subnet_len,
            network.prefix_len(),
            thousands(subnets)
        ),
    }];
    if f.mode == FlannelMode::VpcRoute {
        let configured = c.cloud.route_table_quota;
        let mut quota = configured.unwrap_or(ROUTE_TABLE_QUOTA_DEFAULT);
        if quota > ROUTE_TABLE_QUOTA_MAX {
            warnings.push(format!(
                "cloud.route_table_quota = {quota} exceeds the {} entries a route table can \
                 have at most; planning with {}",
                thousands(ROUTE_TABLE_QUOTA_MAX),
                thousands(ROUTE_TABLE_QUOTA_MAX)
            ));
            quota = ROUTE_TABLE_QUOTA_MAX;
        }
        let origin = if configured.is_some() {
            "cloud.route_table_quota"
        } else {
            "the default quota"
        };
        limits.push(NodeLimit {
            limit: "route-table".into(),
            nodes: quota,
            detail: format!(
                "vpc-route mode needs one VPC route entry per node: {origin} allows {} \
                 entries ({} at most after a quota increase)",
                thousands(quota),
                thousands(ROUTE_TABLE_QUOTA_MAX)
            ),
        });
        if quota < subnets {
            warnings.push(format!(
                "the route table quota ({}) allows fewer nodes than there are node subnets \
                 ({}); raise the quota (up to {}) before growing past {} nodes",
                thousands(quota),
                thousands(subnets),
                thousands(ROUTE_TABLE_QUOTA_MAX),
                thousands(quota)
            ));
        }
    }
    let cluster = cluster_limit(input.cluster_node_limit, &mut warnings);
    if subnets < cluster.nodes {
        warnings.push(format!(
            "flannel.network {network} with /{} node subnets allows {} nodes, fewer than the \
             cluster size limit of {}; a wider network or a longer flannel.subnet_len gives \
             more nodes (both are fixed once the cluster exists)",
            f.subnet_len,
            thousands(subnets),
            thousands(cluster.nodes)
        ));
    }
    limits.push(cluster);
    if !NODE_SUBNET_LEN_RANGE.contains(&f.subnet_len) {
        warnings.push(format!(
            "flannel.subnet_len = {} is outside the /{}-/{} range the platform offers",
            f.subnet_len,
            NODE_SUBNET_LEN_RANGE.start(),
            NODE_SUBNET_LEN_RANGE.end()
        ));
    }
    let ipv6 = flannel_ipv6(c, subnets)?;
    let best = smallest(&limits).clone();
    Ok(Plan {
        ipv6,
        backend: "flannel".into(),
        mode: f.mode.as_str().into(),
        max_nodes: best.nodes,
        max_nodes_reason: best.detail,
        node_limits: limits,
        pods_per_node: PodsPerNode::Uniform(pods),
        addresses_per_node: Some(addresses),
        pod_addresses: PodAddresses {
            total: Some(best.nodes * pods),
            by_zone: BTreeMap::new(),
            source: format!(
                "{} nodes x {pods} pods (node subnet minus network, broadcast and gateway)",
                thousands(best.nodes)
            ),
            prefix_blocks: None,
        },
        warnings,
    })
}

fn plan_terway(input: &PlanInput) -> Result<Plan, CapacityError> {
    let c = input.config;
    let t = &c.terway;
    let exclusive = t.mode == TerwayMode::ExclusiveEni;
    // Validation allows prefixes in shared-ENI mode only.
    let prefix = t.ip_prefix && !exclusive;
    let dual = c.cluster.ip_stack == IpStack::Dual;
    let max_pods = input.max_pods.unwrap_or(KUBELET_MAX_PODS_DEFAULT);
    let mut warnings = Vec::new();
    let mut per_type = Vec::new();
    for name in &t.instance_types {
        let l = input.instance_types.require(name)?;
        if !exclusive && !l.shared_admitted() {
            warnings.push(format!(
                "{name} holds only {} pods in shared-ENI mode (not more than {}): the platform \
                 does not admit it as a shared-ENI node; use a larger type or exclusive-ENI mode",
                l.shared_pods(),
                SHARED_ENI_MIN_PODS_EXCLUSIVE
            ));
        }
        if exclusive && l.exclusive_pods() == 0 {
            warnings.push(format!(
                "{name} has no secondary ENI and can hold no pod in exclusive-ENI mode"
            ));
        }
        if prefix && dual && l.ipv6_per_eni == 0 {
            warnings.push(format!(
                "{name} has no IPv6 address per ENI: prefix mode's IPv6 /80 per ENI needs one, \
                 so its pods get no IPv6 address"
            ));
        }
        if dual && !exclusive && !prefix && !l.shared_dual_stack() {
            warnings.push(format!(
                "{name} has {} IPv6 and {} IPv4 addresses per ENI: shared-ENI dual stack needs \
                 equal numbers, so its pods get no IPv6 address",
                l.ipv6_per_eni, l.ipv4_per_eni
            ));
        }
        per_type.push(TerwayPods {
            instance_type: name.clone(),
            enis: l.enis,
            ipv4_per_eni: l.ipv4_per_eni,
            ipv6_per_eni: l.ipv6_per_eni,
            shared: l.shared_pods(),
            exclusive: l.exclusive_pods(),
            shared_admitted: l.shared_admitted(),
            shared_dual_stack: l.shared_dual_stack(),
            prefix: prefix.then(|| l.prefix_capacity(max_pods, dual)),
        });
    }
    if t.instance_types.is_empty() {
        warnings.push(
            "terway.instance_types is empty: pods per node depend on the instance types; list \
             them in the config"
                .into(),
        );
    }
    let pod_addresses = match input.vswitches {
        Some(known) if prefix => prefix_addresses(known, &t.vswitches, &mut warnings),
        Some(known) => {
            let (zones, missing) = terway::free_ips_by_zone(known, &t.vswitches);
            for id in &missing {
                warnings.push(format!(
                    "vSwitch {id} of terway.vswitches is not in the vSwitch data given; its free \
                     addresses are not counted"
                ));
            }
            PodAddresses {
                total: Some(zones.values().sum()),
                by_zone: zones.into_iter().map(|(z, n)| (z.to_string(), n)).collect(),
                source: "free addresses of terway.vswitches, from the vSwitch data given".into(),
                prefix_blocks: None,
            }
        }
        None => PodAddresses {
            total: None,
            by_zone: BTreeMap::new(),
            source: "unknown: pass --inventory FILE with the vSwitches' free addresses".into(),
            prefix_blocks: None,
        },
    };
    if let (Some(total), Some(biggest)) = (
        pod_addresses.total,
        per_type.iter().map(|p| p.pod_count(exclusive)).max(),
    ) {
        // Prefix mode takes addresses in whole /28 blocks.
        let biggest = if prefix {
            biggest.div_ceil(ADDRESSES_PER_PREFIX) * ADDRESSES_PER_PREFIX
        } else {
            biggest
        };
        if total < biggest {
            warnings.push(format!(
                "the configured vSwitches have {total} free addresses{}, fewer than one node of \
                 the largest instance type can use ({biggest}); add vSwitches to terway.vswitches",
                if prefix { " in whole /28 blocks" } else { "" }
            ));
        }
    }
    let cluster = cluster_limit(input.cluster_node_limit, &mut warnings);
    let limits = vec![cluster];
    let best = smallest(&limits).clone();
    Ok(Plan {
        ipv6: None,
        backend: "terway".into(),
        mode: t.mode.as_str().into(),
        max_nodes: best.nodes,
        max_nodes_reason: best.detail,
        node_limits: limits,
        pods_per_node: PodsPerNode::PerInstanceType(per_type),
        addresses_per_node: None,
        pod_addresses,
        warnings,
    })
}

impl TerwayPods {
    /// Pods per node in the planned mode (prefix mode's when [`TerwayPods::prefix`] is set).
    pub fn pod_count(&self, exclusive: bool) -> u64 {
        match (&self.prefix, exclusive) {
            (_, true) => self.exclusive,
            (Some(p), false) => p.pods,
            (None, false) => self.shared,
        }
    }
}

/// Prefix mode: the configured vSwitches' free addresses in whole aligned /28 blocks, per
/// zone (counted as `at_most` blocks x 16, with the guaranteed floor beside them).
fn prefix_addresses(known: &[VSwitch], ids: &[String], warnings: &mut Vec<String>) -> PodAddresses {
    let mut by_zone: BTreeMap<String, u64> = BTreeMap::new();
    let mut blocks = Blocks::default();
    for v in known
        .iter()
        .filter(|v| ids.is_empty() || ids.contains(&v.id))
    {
        let b = match v.cidr {
            IpNet::V4(net) => free_blocks(net, v.free_ips),
            IpNet::V6(_) => continue,
        };
        *by_zone.entry(v.zone.clone()).or_default() += b.at_most * ADDRESSES_PER_PREFIX;
        blocks = blocks + b;
    }
    for id in ids.iter().filter(|id| !known.iter().any(|v| &v.id == *id)) {
        warnings.push(format!(
            "vSwitch {id} of terway.vswitches is not in the vSwitch data given; its free \
             addresses are not counted"
        ));
    }
    if blocks.at_least < blocks.at_most {
        warnings.push(format!(
            "terway.ip_prefix: the configured vSwitches' free addresses hold {} free /28 \
             blocks if their used addresses are packed together, only {} if they are \
             scattered (a prefix must be a whole aligned /28 of free addresses); plan with \
             the lower number or add a vSwitch with room",
            blocks.at_most, blocks.at_least
        ));
    }
    PodAddresses {
        total: Some(blocks.at_most * ADDRESSES_PER_PREFIX),
        by_zone,
        source: format!(
            "free /28 blocks of terway.vswitches (prefix mode), from the vSwitch data given: \
             {} to {} blocks of {ADDRESSES_PER_PREFIX}",
            blocks.at_least, blocks.at_most
        ),
        prefix_blocks: Some(blocks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicni_config::{load_str, Format};

    fn run(toml: &str, vsw: Option<&[VSwitch]>) -> Plan {
        let config = load_str(toml, Format::Toml).expect("valid config");
        let table = InstanceTypeTable::builtin();
        plan(&PlanInput {
            config: &config,
            instance_types: &table,
            vswitches: vsw,
            cluster_node_limit: None,
            max_pods: None,
        })
        .unwrap()
    }

    #[test]
    fn flannel_dual_stack_counts_by_ipv4_and_reports_the_ipv6_network() {
        let v4 = run(
            "[flannel]\nnetwork = \"172.16.0.0/20\"\nsubnet_len = 24\n",
            None,
        );
        let p = run(
            "[cluster]\nip_stack = \"dual\"\n[flannel]\nnetwork = \"172.16.0.0/20\"\n\
             subnet_len = 24\nipv6_network = \"fd00:10:244::/48\"\n",
            None,
        );
        // The same nodes and pods as the IPv4-only cluster: IPv6 is never the limit.
        assert_eq!(p.max_nodes, 16);
        assert_eq!(p.node_limits, v4.node_limits);
        assert_eq!(p.pod_addresses, v4.pod_addresses);
        assert!(v4.ipv6.is_none());
        let six = p.ipv6.as_ref().unwrap();
        assert_eq!(six.network, "fd00:10:244::/48");
        assert_eq!((six.node_subnet_len, six.node_subnets), (64, 65536));
        assert!(six.detail.contains("IPv4 is the limit"), "{}", six.detail);
        let text = crate::render::table("c", &p);
        assert!(text.contains("IPv6 network: fd00:10:244::/48"), "{text}");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["ipv6"]["node_subnets"], 65536);
    }

    #[test]
    fn seed_flannel_slash_20_holds_16_nodes() {
        let p = run(
            "[flannel]\nnetwork = \"172.16.0.0/20\"\nsubnet_len = 24\n",
            None,
        );
        assert_eq!(p.max_nodes, 16);
        assert_eq!(p.addresses_per_node, Some(256));
        assert!(
            p.max_nodes_reason.contains("16 subnets"),
            "{}",
            p.max_nodes_reason
        );
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("fewer than the cluster size limit")));
    }

    #[test]
    fn seed_vpc_route_default_quota_holds_200_nodes() {
        let p = run(
            "[cluster]\nservice_cidr = \"192.168.0.0/16\"\n[flannel]\nnetwork = \"10.0.0.0/8\"\nsubnet_len = 24\nmode = \"vpc-route\"\n",
            None,
        );
        assert_eq!(p.max_nodes, 200);
        assert!(
            p.max_nodes_reason.contains("route entry"),
            "{}",
            p.max_nodes_reason
        );
        let p = run(
            "[cluster]\nservice_cidr = \"192.168.0.0/16\"\n[flannel]\nnetwork = \"10.0.0.0/8\"\nmode = \"vpc-route\"\n[cloud]\nroute_table_quota = 800\n",
            None,
        );
        assert_eq!(p.max_nodes, 800);
    }

    #[test]
    fn route_quota_above_platform_maximum_is_clamped_with_a_warning() {
        let p = run(
            "[cluster]\nservice_cidr = \"192.168.0.0/16\"\n[flannel]\nnetwork = \"10.0.0.0/8\"\nmode = \"vpc-route\"\n[cloud]\nroute_table_quota = 5000\n",
            None,
        );
        assert_eq!(p.max_nodes, 1000);
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("route_table_quota = 5000")));
    }

    #[test]
    fn vxlan_is_bounded_by_cluster_size_when_the_network_is_large() {
        let p = run("[cluster]\nservice_cidr = \"192.168.0.0/16\"\n[flannel]\nnetwork = \"10.0.0.0/8\"\nsubnet_len = 24\n", None);
        assert_eq!(p.max_nodes, 5000);
        assert!(p.max_nodes_reason.starts_with("cluster size limit"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.pods_per_node, PodsPerNode::Uniform(253));
    }

    #[test]
    fn subnet_len_outside_platform_range_warns() {
        let p = run("[cluster]\nservice_cidr = \"192.168.0.0/16\"\n[flannel]\nnetwork = \"10.0.0.0/8\"\nsubnet_len = 30\n", None);
        assert!(
            p.warnings.iter().any(|w| w.contains("subnet_len = 30")),
            "{:?}",
            p.warnings
        );
    }

    const TERWAY: &str = "[backend]\nkind = \"terway\"\n[cluster]\nservice_cidr = \"192.168.0.0/16\"\n[terway]\nvswitches = [\"vsw-a\", \"vsw-b\"]\n";

    #[test]
    fn seed_terway_per_instance_type() {
        let p = run(
            &format!("{TERWAY}instance_types = [\"ecs.c7.4xlarge\", \"ecs.c6.4xlarge\"]\n"),
            None,
        );
        let PodsPerNode::PerInstanceType(list) = &p.pods_per_node else {
            panic!("terway lists per type")
        };
        assert_eq!((list[0].shared, list[0].exclusive), (210, 7));
        assert_eq!(list[1].shared, 140);
        assert_eq!(p.max_nodes, 5000);
        assert_eq!(p.pod_addresses.total, None);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn small_types_warn_in_shared_mode_only() {
        let p = run(
            &format!("{TERWAY}instance_types = [\"ecs.g6.large\"]\n"),
            None,
        );
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("ecs.g6.large") && w.contains("11")));
        let p = run(
            &format!("{TERWAY}mode = \"exclusive-eni\"\ninstance_types = [\"ecs.g6.large\"]\n"),
            None,
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn free_addresses_come_from_the_given_vswitches() {
        let vsw = |id: &str, zone: &str, free| VSwitch {
            id: id.into(),
            zone: zone.into(),
            cidr: "10.1.0.0/24".parse().unwrap(),
            free_ips: free,
        };
        let known = [
            vsw("vsw-a", "cn-hangzhou-h", 100),
            vsw("vsw-z", "cn-hangzhou-i", 999),
        ];
        let p = run(
            &format!("{TERWAY}instance_types = [\"ecs.c7.4xlarge\"]\n"),
            Some(&known),
        );
        assert_eq!(p.pod_addresses.total, Some(100));
        assert!(
            p.warnings.iter().any(|w| w.contains("vsw-b")),
            "{:?}",
            p.warnings
        );
        assert!(
            p.warnings.iter().any(|w| w.contains("fewer than one node")),
            "{:?}",
            p.warnings
        );
    }

    fn vsw(id: &str, zone: &str, cidr: &str, free: u64) -> VSwitch {
        VSwitch {
            id: id.into(),
            zone: zone.into(),
            cidr: cidr.parse().unwrap(),
            free_ips: free,
        }
    }

    #[test]
    fn prefix_mode_counts_304_addresses_per_eni_capped_by_max_pods() {
        let toml = format!(
            "{TERWAY}ip_prefix = true\ninstance_types = [\"ecs.g6.4xlarge\", \"ecs.g7.large\"]\n"
        );
        let p = run(&toml, None);
        let PodsPerNode::PerInstanceType(list) = &p.pods_per_node else {
            panic!("terway lists per type")
        };
        // g6.4xlarge: 8 ENIs x 20 slots: 19 x 16 = 304 per ENI, 7 secondary ENIs.
        let g6 = list[0].prefix.as_ref().unwrap();
        assert_eq!((g6.prefixes_per_eni, g6.addresses_per_eni), (19, 304));
        assert_eq!(g6.addresses, 2128);
        assert_eq!(g6.pods, 110, "kubelet's default maxPods");
        assert_eq!(list[0].pod_count(false), 110);
        assert_eq!(list[0].shared, 140, "the secondary-address figure stays");
        // g7.large: 2 x 5 x 16 = 160 addresses, still above 110.
        assert_eq!(list[1].prefix.as_ref().unwrap().addresses, 160);
        // A raised maxPods: the addresses bound it.
        let config = load_str(&toml, Format::Toml).unwrap();
        let table = InstanceTypeTable::builtin();
        let p = plan(&PlanInput {
            config: &config,
            instance_types: &table,
            vswitches: None,
            cluster_node_limit: None,
            max_pods: Some(250),
        })
        .unwrap();
        let PodsPerNode::PerInstanceType(list) = &p.pods_per_node else {
            panic!()
        };
        assert_eq!(list[0].pod_count(false), 250);
        assert_eq!(list[1].pod_count(false), 160);
        let text = crate::render::table("c", &p);
        assert!(text.contains("Prefix mode"), "{text}");
        assert!(text.contains("304"), "{text}");
        // Without prefixes nothing of it shows.
        let plain = run(
            &format!("{TERWAY}instance_types = [\"ecs.g6.4xlarge\"]\n"),
            None,
        );
        let PodsPerNode::PerInstanceType(list) = &plain.pods_per_node else {
            panic!()
        };
        assert!(list[0].prefix.is_none());
        assert!(!serde_json::to_string(&plain).unwrap().contains("prefix"));
    }

    #[test]
    fn prefix_mode_counts_vswitch_room_in_whole_blocks() {
        let toml = format!("{TERWAY}ip_prefix = true\ninstance_types = [\"ecs.g6.4xlarge\"]\n");
        let known = [
            // Empty /24: 14 whole blocks, not 252 / 16 = 15.
            vsw("vsw-a", "z-a", "10.0.0.0/24", 252),
            // 100 used: 9 blocks if packed, none if scattered.
            vsw("vsw-b", "z-b", "10.0.1.0/24", 152),
        ];
        let p = run(&toml, Some(&known));
        let b = p.pod_addresses.prefix_blocks.unwrap();
        assert_eq!((b.at_least, b.at_most), (14, 23));
        assert_eq!(p.pod_addresses.total, Some(23 * 16));
        assert_eq!(p.pod_addresses.by_zone.get("z-a"), Some(&(14 * 16)));
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("23 free /28") && w.contains("only 14")),
            "{:?}",
            p.warnings
        );
        // Room for fewer blocks than one node's pods: 110 pods take 7 blocks (112).
        let small = [vsw("vsw-a", "z-a", "10.0.0.0/25", 100)];
        let p = run(&toml, Some(&small));
        assert_eq!(p.pod_addresses.total, Some(6 * 16));
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("whole /28 blocks") && w.contains("(112)")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn unknown_instance_type_is_an_error() {
        let config = load_str(
            &format!("{TERWAY}instance_types = [\"ecs.nope.large\"]\n"),
            Format::Toml,
        )
        .unwrap();
        let table = InstanceTypeTable::builtin();
        let e = plan(&PlanInput {
            config: &config,
            instance_types: &table,
            vswitches: None,
            cluster_node_limit: None,
            max_pods: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("ecs.nope.large"));
    }

    #[test]
    fn cluster_limit_above_maximum_is_clamped() {
        let config = load_str(TERWAY, Format::Toml).unwrap();
        let table = InstanceTypeTable::builtin();
        let p = plan(&PlanInput {
            config: &config,
            instance_types: &table,
            vswitches: None,
            cluster_node_limit: Some(20_000),
            max_pods: None,
        })
        .unwrap();
        assert_eq!(p.max_nodes, 15_000);
        assert!(p.warnings.iter().any(|w| w.contains("20,000")));
    }
}
