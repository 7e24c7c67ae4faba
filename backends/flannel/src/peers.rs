//! The other nodes, as the agent's datapath needs them: parsed and checked once from
//! their leases so that one malformed lease never stalls the programming of the rest.

use crate::lease::Lease;
use ipnet::{IpNet, Ipv4Net};
use std::net::Ipv4Addr;
use unicni_net::overlay::parse_mac;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vtep_mac: Option<[u8; 6]>,
}

impl Peer {
    /// The address a vxlan peer is reached through: its subnet's network address, which
    /// it holds on its vxlan device.
    pub fn vtep_ip(&self) -> Ipv4Addr {
        self.subnet.network()
    }
}

/// Peers from `leases`, without `me`; a lease that cannot be used is returned as a reason.
pub fn from_leases(leases: &[Lease], me: &str, cluster: IpNet) -> (Vec<Peer>, Vec<String>) {
    let mut peers = Vec::new();
    let mut skipped = Vec::new();
    for l in leases.iter().filter(|l| l.node != me) {
        match parse(l, cluster) {
            Ok(p) => peers.push(p),
            Err(why) => skipped.push(format!("lease of node {:?} ({}): {why}", l.node, l.subnet)),
        }
    }
    peers.sort_by_key(|p| p.subnet);
    (peers, skipped)
}

fn parse(l: &Lease, cluster: IpNet) -> Result<Peer, String> {
    let subnet: Ipv4Net = l
        .subnet
        .parse()
        .map_err(|_| "subnet is not an IPv4 CIDR".to_string())?;
    if !cluster.contains(&IpNet::V4(subnet)) {
        return Err(format!("subnet is outside the cluster network {cluster}"));
    }
    let public_ip: Ipv4Addr = l
        .public_ip
        .as_deref()
        .ok_or("no underlay address")?
        .parse()
        .map_err(|_| "underlay address is not IPv4".to_string())?;
    let vtep_mac = match l.vtep_mac.as_deref() {
        Some(m) => Some(parse_mac(m).ok_or_else(|| format!("VTEP MAC {m:?} is malformed"))?),
        None => None,
    };
    Ok(Peer {
        node: l.node.clone(),
        subnet,
        public_ip,
        vtep_mac,
    })
}

/// A VTEP MAC derived from the node name and VNI: the same on every agent restart, so
/// peers' neighbour and FDB entries stay valid, and locally administered unicast.
pub fn stable_vtep_mac(node: &str, vni: u32) -> [u8; 6] {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in node.as_bytes().iter().chain(vni.to_be_bytes().iter()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let b = h.to_be_bytes();
    [(b[0] & 0xfe) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(node: &str, subnet: &str, ip: Option<&str>, mac: Option<&str>) -> Lease {
        Lease {
            node: node.into(),
            subnet: subnet.into(),
            public_ip: ip.map(Into::into),
            vtep_mac: mac.map(Into::into),
            ..Lease::default()
        }
    }

    #[test]
    fn self_is_excluded_and_bad_leases_are_reported() {
        let cluster: IpNet = "10.244.0.0/16".parse().unwrap();
        let leases = vec![
            lease("me", "10.244.1.0/24", Some("192.168.0.1"), None),
            lease(
                "b",
                "10.244.2.0/24",
                Some("192.168.0.2"),
                Some("02:00:00:00:00:02"),
            ),
            lease("c", "10.99.3.0/24", Some("192.168.0.3"), None),
            lease("d", "10.244.4.0/24", None, None),
            lease("e", "10.244.5.0/24", Some("192.168.0.5"), Some("nope")),
        ];
        let (peers, skipped) = from_leases(&leases, "me", cluster);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].node, "b");
        assert_eq!(peers[0].vtep_ip().to_string(), "10.244.2.0");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped
            .iter()
            .any(|s| s.contains("\"c\"") && s.contains("outside")));
    }

    #[test]
    fn vtep_mac_is_stable_local_unicast_and_per_node() {
        let a = stable_vtep_mac("node-a", 1);
        assert_eq!(a, stable_vtep_mac("node-a", 1));
        assert_ne!(a, stable_vtep_mac("node-b", 1));
        assert_ne!(a, stable_vtep_mac("node-a", 2));
        assert_eq!(a[0] & 0x01, 0, "unicast");
        assert_eq!(a[0] & 0x02, 0x02, "locally administered");
    }
}
