//! The flannel keys of the plugin's network configuration (written by `unicni install`).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use unicni_core::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlannelNetConf {
    /// The cluster CIDR; traffic leaving it is masqueraded.
    pub cluster_network: String,
    /// This node's subnet. When absent it is read from the agent's lease file
    /// (`<runDir>/flannel/subnet.json`) at each ADD.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Dual stack: the IPv6 cluster network; pods then get an IPv6 address too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_cluster_network: Option<String>,
    /// This node's IPv6 subnet when pinned; else read from the agent's lease file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<String>,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    #[serde(default = "default_true")]
    pub ip_masq: bool,
    #[serde(default = "default_true")]
    pub hairpin: bool,
}

fn default_bridge() -> String {
    "cni0".into()
}
fn default_mtu() -> u32 {
    1500
}
fn default_state_dir() -> PathBuf {
    "/var/lib/unicni".into()
}
fn default_run_dir() -> PathBuf {
    "/run/unicni".into()
}
fn default_true() -> bool {
    true
}

/// The checked, parsed form the datapath and IPAM work with.
#[derive(Debug, Clone)]
pub struct NodeNetwork {
    pub network_name: String,
    pub cluster: IpNet,
    pub subnet: IpNet,
    pub gateway: IpAddr,
    /// Dual stack: the IPv6 cluster network, this node's IPv6 subnet and its gateway.
    pub ipv6: Option<Ipv6Side>,
    pub bridge: String,
    pub mtu: u32,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub ip_masq: bool,
    pub hairpin: bool,
    /// The eBPF same-node fast path's pin directory, when the agent runs it.
    pub fast_path: Option<PathBuf>,
}

/// The IPv6 half of a dual-stack node network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Side {
    pub cluster: IpNet,
    pub subnet: IpNet,
    /// The subnet's first address after the network address (which IPv6 reserves as the
    /// subnet-router anycast address), held by the bridge.
    pub gateway: IpAddr,
}

fn invalid(field: &str, value: &str, allowed: &str) -> Error {
    Error::InvalidConfig(format!("field {field:?} = {value:?}: {allowed}"))
}

fn parse_cidr(field: &str, value: &str) -> Result<IpNet> {
    let net: IpNet = value
        .parse()
        .map_err(|_| invalid(field, value, "expected a CIDR such as 10.244.1.0/24"))?;
    if net.trunc() != net {
        return Err(invalid(field, value, "host bits must be zero"));
    }
    Ok(net)
}

/// What the agent writes when it holds a lease; read when the config names no subnet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubnetFile {
    pub subnet: String,
    /// Dual stack: the node's IPv6 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The pin directory of the eBPF same-node fast path when the agent loaded it
    /// (`flannel.fast_path = true`): the plugin adds each pod to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<String>,
}

impl FlannelNetConf {
    pub fn from_json(raw: &serde_json::Value) -> Result<FlannelNetConf> {
        serde_json::from_value(raw.clone())
            .map_err(|e| Error::InvalidConfig(format!("flannel network configuration: {e}")))
    }

    pub fn subnet_file(&self) -> PathBuf {
        self.run_dir.join("flannel").join("subnet.json")
    }

    /// Validates every field. `Ok(None)` means the config is fine but the node has no
    /// subnet yet (agent not ready).
    pub fn resolve(&self, network_name: &str) -> Result<Option<NodeNetwork>> {
        self.check_static()?;
        self.resolve_subnet(network_name)
    }

    /// The node network with a stand-in subnet when no lease is known: enough for DEL and
    /// GC, which need only names and state paths.
    pub fn without_lease(&self, network_name: &str) -> Result<NodeNetwork> {
        let cluster = self.check_static()?;
        Ok(NodeNetwork {
            network_name: network_name.to_string(),
            cluster,
            subnet: cluster,
            gateway: cluster.hosts().next().unwrap_or(cluster.addr()),
            ipv6: None,
            bridge: self.bridge.clone(),
            mtu: self.mtu,
            state_dir: self.state_dir.clone(),
            run_dir: self.run_dir.clone(),
            ip_masq: self.ip_masq,
            hairpin: self.hairpin,
            fast_path: self.agent_fast_path(),
        })
    }

    /// What the agent's lease file says about the fast path (nothing without the file).
    fn agent_fast_path(&self) -> Option<PathBuf> {
        let bytes = std::fs::read(self.subnet_file()).ok()?;
        let f: SubnetFile = serde_json::from_slice(&bytes).ok()?;
        f.fast_path.map(PathBuf::from)
    }

    fn check_static(&self) -> Result<IpNet> {
        let cluster = parse_cidr("clusterNetwork", &self.cluster_network)?;
        if !(1..=15).contains(&self.bridge.len()) || self.bridge.contains('/') {
            return Err(invalid(
                "bridge",
                &self.bridge,
                "an interface name of 1-15 characters",
            ));
        }
        // Relative, they would resolve against whatever directory the runtime runs in.
        for (field, dir) in [("stateDir", &self.state_dir), ("runDir", &self.run_dir)] {
            if !dir.is_absolute() {
                return Err(invalid(
                    field,
                    &dir.display().to_string(),
                    "an absolute directory path",
                ));
            }
        }
        if !(576..=65535).contains(&self.mtu) {
            return Err(invalid("mtu", &self.mtu.to_string(), "576 to 65535"));
        }
        Ok(cluster)
    }

    fn resolve_subnet(&self, network_name: &str) -> Result<Option<NodeNetwork>> {
        let cluster = parse_cidr("clusterNetwork", &self.cluster_network)?;
        let (subnet_text, mtu, fast_path, leased6) = match &self.subnet {
            // A pinned subnet: an agent may still run the fast path and say so.
            Some(s) => (s.clone(), self.mtu, self.agent_fast_path(), None),
            None => match std::fs::read(self.subnet_file()) {
                Ok(bytes) => {
                    let f: SubnetFile = serde_json::from_slice(&bytes).map_err(|e| {
                        Error::TryAgain(format!(
                            "lease file {} is unreadable ({e}); the agent rewrites it",
                            self.subnet_file().display()
                        ))
                    })?;
                    (
                        f.subnet,
                        f.mtu.unwrap_or(self.mtu),
                        f.fast_path.map(PathBuf::from),
                        f.ipv6_subnet,
                    )
                }
                Err(_) => return Ok(None),
            },
        };
        let subnet = parse_cidr("subnet", &subnet_text)?;
        if !cluster.contains(&subnet) {
            return Err(invalid(
                "subnet",
                &subnet_text,
                &format!("must lie inside clusterNetwork {cluster}"),
            ));
        }
        if subnet.prefix_len() >= subnet.max_prefix_len() - 1 {
            return Err(invalid(
                "subnet",
                &subnet_text,
                "must hold at least two addresses besides the gateway",
            ));
        }
        let gateway = subnet.hosts().next().expect("subnet has hosts");
        let ipv6 = match &self.ipv6_cluster_network {
            None => None,
            Some(c6) => {
                let Some(text) = self.ipv6_subnet.clone().or(leased6) else {
                    return Err(Error::TryAgain(format!(
                        "ipv6ClusterNetwork is set but the agent's lease file {} names no IPv6 \
                         subnet yet; retry once the agent holds a dual-stack lease",
                        self.subnet_file().display()
                    )));
                };
                Some(ipv6_side(c6, &text)?)
            }
        };
        Ok(Some(NodeNetwork {
            network_name: network_name.to_string(),
            cluster,
            subnet,
            gateway,
            ipv6,
            bridge: self.bridge.clone(),
            mtu,
            state_dir: self.state_dir.clone(),
            run_dir: self.run_dir.clone(),
            ip_masq: self.ip_masq,
            hairpin: self.hairpin,
            fast_path,
        }))
    }
}

/// Checks the IPv6 half: both CIDRs IPv6, the subnet inside the network, room for pods.
fn ipv6_side(cluster_text: &str, subnet_text: &str) -> Result<Ipv6Side> {
    let cluster = parse_cidr("ipv6ClusterNetwork", cluster_text)?;
    let subnet = parse_cidr("ipv6Subnet", subnet_text)?;
    if !cluster.addr().is_ipv6() {
        return Err(invalid(
            "ipv6ClusterNetwork",
            cluster_text,
            "an IPv6 CIDR such as fd00:10:244::/56",
        ));
    }
    if !subnet.addr().is_ipv6() || !cluster.contains(&subnet) {
        return Err(invalid(
            "ipv6Subnet",
            subnet_text,
            &format!("an IPv6 subnet inside ipv6ClusterNetwork {cluster}"),
        ));
    }
    if subnet.prefix_len() > 124 {
        return Err(invalid(
            "ipv6Subnet",
            subnet_text,
            "a /124 or larger (pods need addresses besides the gateway)",
        ));
    }
    let IpAddr::V6(net) = subnet.network() else {
        unreachable!("checked IPv6 above")
    };
    let gateway = IpAddr::V6((u128::from(net) + 1).into());
    Ok(Ipv6Side {
        cluster,
        subnet,
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: serde_json::Value) -> Result<Option<NodeNetwork>> {
        FlannelNetConf::from_json(&v)?.resolve("n")
    }

    #[test]
    fn good_config_resolves_gateway() {
        let n = conf(json!({"clusterNetwork":"10.244.0.0/16","subnet":"10.244.3.0/24"}))
            .unwrap()
            .unwrap();
        assert_eq!(n.gateway.to_string(), "10.244.3.1");
        assert_eq!(n.bridge, "cni0");
    }

    #[test]
    fn bad_and_overlapping_cidrs_are_invalid() {
        for v in [
            json!({"clusterNetwork":"10.244.0.0/33","subnet":"10.244.3.0/24"}),
            json!({"clusterNetwork":"10.244.0.0/16","subnet":"nonsense"}),
            json!({"clusterNetwork":"10.244.0.0/16","subnet":"10.245.3.0/24"}),
            json!({"clusterNetwork":"10.244.0.0/16","subnet":"10.244.3.7/24"}),
            json!({"clusterNetwork":"10.244.0.0/16","subnet":"10.244.3.0/24","mtu":10}),
            json!({"subnet":"10.244.3.0/24"}),
        ] {
            assert!(
                matches!(conf(v.clone()), Err(Error::InvalidConfig(_))),
                "{v}"
            );
        }
    }

    #[test]
    fn no_subnet_and_no_lease_file_is_not_ready() {
        let d = tempfile::tempdir().unwrap();
        let v = json!({"clusterNetwork":"10.244.0.0/16","runDir": d.path()});
        assert!(conf(v).unwrap().is_none());
    }

    #[test]
    fn lease_file_supplies_the_subnet() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("flannel")).unwrap();
        std::fs::write(
            d.path().join("flannel/subnet.json"),
            r#"{"subnet":"10.244.9.0/24","mtu":1450}"#,
        )
        .unwrap();
        let v = json!({"clusterNetwork":"10.244.0.0/16","runDir": d.path()});
        let n = conf(v).unwrap().unwrap();
        assert_eq!(n.subnet.to_string(), "10.244.9.0/24");
        assert_eq!(n.mtu, 1450);
        assert_eq!(n.fast_path, None);
    }

    #[test]
    fn dual_stack_takes_the_ipv6_subnet_from_the_lease_file() {
        let d = tempfile::tempdir().unwrap();
        let v = json!({"clusterNetwork":"10.244.0.0/16",
            "ipv6ClusterNetwork":"fd00:10:244::/56","runDir": d.path()});
        // No lease file: not ready; a lease file without the IPv6 side: try again.
        assert!(conf(v.clone()).unwrap().is_none());
        std::fs::create_dir_all(d.path().join("flannel")).unwrap();
        let file = d.path().join("flannel/subnet.json");
        std::fs::write(&file, r#"{"subnet":"10.244.9.0/24"}"#).unwrap();
        assert!(matches!(conf(v.clone()), Err(Error::TryAgain(_))));
        std::fs::write(
            &file,
            r#"{"subnet":"10.244.9.0/24","ipv6_subnet":"fd00:10:244:9::/64"}"#,
        )
        .unwrap();
        let n = conf(v.clone()).unwrap().unwrap();
        let six = n.ipv6.unwrap();
        assert_eq!(six.subnet.to_string(), "fd00:10:244:9::/64");
        assert_eq!(six.gateway.to_string(), "fd00:10:244:9::1");
        // An IPv6 subnet outside the IPv6 network is a config error naming the field.
        std::fs::write(
            &file,
            r#"{"subnet":"10.244.9.0/24","ipv6_subnet":"fd00:99::/64"}"#,
        )
        .unwrap();
        let e = conf(v).unwrap_err().to_string();
        assert!(
            e.contains("ipv6Subnet") && e.contains("fd00:10:244::/56"),
            "{e}"
        );
        // IPv4-only configs ignore an IPv6 subnet in the file.
        let v4 = json!({"clusterNetwork":"10.244.0.0/16","runDir": d.path()});
        assert!(conf(v4).unwrap().unwrap().ipv6.is_none());
    }

    #[test]
    fn lease_file_names_the_fast_path_also_with_a_pinned_subnet() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("flannel")).unwrap();
        std::fs::write(
            d.path().join("flannel/subnet.json"),
            r#"{"subnet":"10.244.9.0/24","fast_path":"/sys/fs/bpf/n1"}"#,
        )
        .unwrap();
        let v = json!({"clusterNetwork":"10.244.0.0/16","runDir": d.path()});
        let n = conf(v).unwrap().unwrap();
        assert_eq!(n.fast_path, Some(PathBuf::from("/sys/fs/bpf/n1")));
        let v =
            json!({"clusterNetwork":"10.244.0.0/16","subnet":"10.244.3.0/24","runDir": d.path()});
        let n = conf(v).unwrap().unwrap();
        assert_eq!(n.fast_path, Some(PathBuf::from("/sys/fs/bpf/n1")));
        // What an agent without the fast path writes carries no key.
        let f = SubnetFile {
            subnet: "10.244.9.0/24".into(),
            ipv6_subnet: None,
            mtu: None,
            fast_path: None,
        };
        assert!(!serde_json::to_string(&f).unwrap().contains("fast_path"));
    }
}
