//! Node subnet leases in the cluster store.
//!
//! A lease is the key `flannel/subnets/<net>-<len>` created with the store's create-only
//! primitive, so two nodes can never hold the same subnet; a node that already holds one
//! gets the same subnet back.

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use unicni_core::{CreateOutcome, Error, Result, Store};

pub const PREFIX: &str = "flannel/subnets/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Lease {
    pub subnet: String,
    pub node: String,
    /// The node's underlay (VPC) address: where peers send its pods' traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// The node's IPv6 subnet (dual stack), the one at the IPv4 subnet's index in the
    /// IPv6 network (see [`ipv6_subnet_of`]), or `spec.podCIDRs`' IPv6 entry (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<String>,
    /// The node's underlay IPv6 address, global or link-local (dual-stack host-gw: the
    /// next hop of its IPv6 subnet, since the kernel takes no IPv4 gateway for an IPv6
    /// route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv6: Option<String>,
    /// The MAC of the node's vxlan device (vxlan mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
    /// The datapath mode the node runs (`vxlan`, `host-gw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Seconds since the epoch after which the lease is void unless renewed (stores
    /// without native TTLs; etcd deletes the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// The IPv6 side of a dual-stack cluster network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Plan {
    pub network: Ipv6Net,
    pub subnet_len: u8,
}

/// The IPv6 subnet that goes with IPv4 subnet `subnet` of `network`: the one at the same
/// index of the IPv6 network. The IPv4 lease key alone then makes both unique, in every
/// store, with no second key to take atomically. `None` when `subnet` is not a subnet of
/// `network` or the IPv6 network holds too few subnets (validation refuses that config).
pub fn ipv6_subnet_of(network: IpNet, subnet: IpNet, v6: Ipv6Plan) -> Option<Ipv6Net> {
    let (IpNet::V4(net), IpNet::V4(sub)) = (network, subnet) else {
        return None;
    };
    if !net.contains(&sub) || sub.prefix_len() < net.prefix_len() {
        return None;
    }
    let index = u64::from(u32::from(sub.network()) - u32::from(net.network()))
        >> (32 - u32::from(sub.prefix_len()));
    let bits = u32::from(v6.subnet_len.checked_sub(v6.network.prefix_len())?);
    if bits < 64 && index >= 1u64 << bits {
        return None;
    }
    let base = u128::from(v6.network.network());
    let addr = base + (u128::from(index) << (128 - u32::from(v6.subnet_len)));
    Ipv6Net::new(addr.into(), v6.subnet_len).ok()
}

pub fn key(subnet: &IpNet) -> String {
    format!("{PREFIX}{}-{}", subnet.network(), subnet.prefix_len())
}

/// Returns the subnet `node` holds, taking the first free one if it holds none.
pub async fn acquire(
    store: &dyn Store,
    network: IpNet,
    subnet_len: u8,
    node: &str,
) -> Result<IpNet> {
    let mut taken = HashSet::new();
    for (k, v) in store.list(PREFIX).await? {
        if let Ok(l) = serde_json::from_slice::<Lease>(&v) {
            if l.node == node {
                if let Ok(s) = l.subnet.parse() {
                    return Ok(s);
                }
            }
        }
        taken.insert(k);
    }
    let subnets = network.subnets(subnet_len).map_err(|_| {
        Error::InvalidConfig(format!(
            "subnet length /{subnet_len} does not fit network {network}"
        ))
    })?;
    for s in subnets {
        let k = key(&s);
        if taken.contains(&k) {
            continue;
        }
        let lease = Lease {
            subnet: s.to_string(),
            node: node.to_string(),
            ..Lease::default()
        };
        let body = serde_json::to_vec(&lease).expect("lease serializes");
        if store.create(&k, &body).await? == CreateOutcome::Created {
            return Ok(s);
        }
    }
    Err(Error::Exhausted(format!(
        "cluster network {network} has no free /{subnet_len} subnet for node {node:?}: every \
         subnet is leased ({} leases in {}); remove leases of nodes that left",
        taken.len(),
        store.describe()
    )))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use async_trait::async_trait;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Mem(Mutex<BTreeMap<String, Vec<u8>>>);

    #[async_trait]
    impl Store for Mem {
        fn describe(&self) -> String {
            "memory".into()
        }
        async fn get(&self, k: &str) -> Result<Option<Vec<u8>>> {
            Ok(self.0.lock().unwrap().get(k).cloned())
        }
        async fn create(&self, k: &str, v: &[u8]) -> Result<CreateOutcome> {
            let mut m = self.0.lock().unwrap();
            if let Some(e) = m.get(k) {
                return Ok(CreateOutcome::Exists(e.clone()));
            }
            m.insert(k.into(), v.into());
            Ok(CreateOutcome::Created)
        }
        async fn put(&self, k: &str, v: &[u8]) -> Result<()> {
            self.0.lock().unwrap().insert(k.into(), v.into());
            Ok(())
        }
        async fn delete(&self, k: &str) -> Result<()> {
            self.0.lock().unwrap().remove(k);
            Ok(())
        }
        async fn list(&self, p: &str) -> Result<Vec<(String, Vec<u8>)>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::Mem;
    use super::*;

    #[tokio::test]
    async fn nodes_get_distinct_subnets_and_keep_them() {
        let s = Mem::default();
        let net: IpNet = "172.16.0.0/20".parse().unwrap();
        let a = acquire(&s, net, 24, "a").await.unwrap();
        let b = acquire(&s, net, 24, "b").await.unwrap();
        assert_ne!(a, b);
        assert_eq!(acquire(&s, net, 24, "a").await.unwrap(), a);
    }

    #[test]
    fn the_ipv6_subnet_sits_at_the_ipv4_subnets_index() {
        let v4: IpNet = "10.244.0.0/16".parse().unwrap();
        let plan = Ipv6Plan {
            network: "fd00:10:244::/56".parse().unwrap(),
            subnet_len: 64,
        };
        let at = |s: &str| ipv6_subnet_of(v4, s.parse().unwrap(), plan).map(|n| n.to_string());
        assert_eq!(at("10.244.0.0/24").as_deref(), Some("fd00:10:244::/64"));
        assert_eq!(at("10.244.1.0/24").as_deref(), Some("fd00:10:244:1::/64"));
        assert_eq!(
            at("10.244.255.0/24").as_deref(),
            Some("fd00:10:244:ff::/64")
        );
        assert_eq!(at("10.245.0.0/24"), None, "outside the IPv4 network");
        // 1024 /26s do not fit in 256 /64s: no silent wrap-around onto another node's.
        assert_eq!(at("10.244.4.64/26").as_deref(), Some("fd00:10:244:11::/64"));
        assert_eq!(at("10.244.255.192/26"), None);
        let wide = Ipv6Plan {
            network: "fd00:10:244::/48".parse().unwrap(),
            subnet_len: 64,
        };
        let s = ipv6_subnet_of(v4, "10.244.255.192/26".parse().unwrap(), wide).unwrap();
        assert_eq!(s.to_string(), "fd00:10:244:3ff::/64");
    }

    #[tokio::test]
    async fn exhaustion_is_a_clear_error() {
        let s = Mem::default();
        let net: IpNet = "172.16.0.0/20".parse().unwrap();
        for n in 0..16 {
            acquire(&s, net, 24, &format!("n{n}")).await.unwrap();
        }
        let e = acquire(&s, net, 24, "late").await.unwrap_err();
        assert!(matches!(e, Error::Exhausted(_)), "{e}");
        assert!(e.to_string().contains("late"));
    }
}
