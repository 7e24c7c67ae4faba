//! The other nodes, as the agent's datapath needs them: parsed and checked once from
//! their leases so that one malformed lease never stalls the programming of the rest.

use crate::lease::Lease;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};
use unicni_net::overlay::parse_mac;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vtep_mac: Option<[u8; 6]>,
    /// Dual stack: the peer's IPv6 subnet (inside the cluster's IPv6 network).
    pub ipv6_subnet: Option<Ipv6Net>,
    /// Dual stack: the peer's underlay IPv6 address (host-gw's IPv6 next hop).
    pub public_ipv6: Option<Ipv6Addr>,
}

impl Peer {
    /// The address a vxlan peer is reached through: its subnet's network address, which
    /// it holds on its vxlan device.
    pub fn vtep_ip(&self) -> Ipv4Addr {
        self.subnet.network()
    }

    /// The IPv6 counterpart: the IPv6 subnet's network address, on the same vxlan device.
    pub fn vtep_ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6_subnet.map(|s| s.network())
    }
}

/// Peers from `leases`, without `me`; a lease that cannot be used is returned as a reason.
/// `cluster6` is the IPv6 cluster network of a dual-stack cluster: a peer's IPv6 subnet
/// outside it is dropped with a reason (its IPv4 side is still programmed).
pub fn from_leases(
    leases: &[Lease],
    me: &str,
    cluster: IpNet,
    cluster6: Option<Ipv6Net>,
) -> (Vec<Peer>, Vec<String>) {
    let mut peers = Vec::new();
    let mut skipped = Vec::new();
    for l in leases.iter().filter(|l| l.node != me) {
        match parse(l, cluster, cluster6, &mut skipped) {
            Ok(p) => peers.push(p),
            Err(why) => skipped.push(format!("lease of node {:?} ({}): {why}", l.node, l.subnet)),
        }
    }
    peers.sort_by_key(|p| p.subnet);
    (peers, skipped)
}

fn parse(
    l: &Lease,
    cluster: IpNet,
    cluster6: Option<Ipv6Net>,
    skipped: &mut Vec<String>,
) -> Result<Peer, String> {
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
    let mut ipv6_subnet = None;
    let mut public_ipv6 = None;
    if let Some(c6) = cluster6 {
        let why = match l.ipv6_subnet.as_deref().map(str::parse::<Ipv6Net>) {
            None => Some("published no IPv6 subnet (an agent without dual stack?)".to_string()),
            Some(Err(_)) => Some("IPv6 subnet is not an IPv6 CIDR".to_string()),
            Some(Ok(s)) if !c6.contains(&s) => Some(format!(
                "IPv6 subnet {s} is outside the IPv6 cluster network {c6}"
            )),
            Some(Ok(s)) => {
                ipv6_subnet = Some(s);
                None
            }
        };
        if let Some(why) = why {
            skipped.push(format!(
                "lease of node {:?} ({}): {why}; its pods are reachable over IPv4 only",
                l.node, l.subnet
            ));
        }
        public_ipv6 = l.public_ipv6.as_deref().and_then(|a| a.parse().ok());
    }
    Ok(Peer {
        node: l.node.clone(),
        subnet,
        public_ip,
        vtep_mac,
        ipv6_subnet,
        public_ipv6,
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
        let (peers, skipped) = from_leases(&leases, "me", cluster, None);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].node, "b");
        assert_eq!(peers[0].vtep_ip().to_string(), "10.244.2.0");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped
            .iter()
            .any(|s| s.contains("\"c\"") && s.contains("outside")));
    }

    #[test]
    fn dual_stack_peers_carry_their_ipv6_side_or_say_why_not() {
        let cluster: IpNet = "10.244.0.0/16".parse().unwrap();
        let c6: Ipv6Net = "fd00:10:244::/56".parse().unwrap();
        let mut b = lease("b", "10.244.2.0/24", Some("192.168.0.2"), None);
        b.ipv6_subnet = Some("fd00:10:244:2::/64".into());
        b.public_ipv6 = Some("fe80::2".into());
        let mut c = lease("c", "10.244.3.0/24", Some("192.168.0.3"), None);
        c.ipv6_subnet = Some("fd00:99::/64".into());
        let d = lease("d", "10.244.4.0/24", Some("192.168.0.4"), None);
        let (peers, skipped) = from_leases(&[b, c, d], "me", cluster, Some(c6));
        assert_eq!(peers.len(), 3, "IPv4 sides are all programmed");
        assert_eq!(
            peers[0].vtep_ipv6().map(|a| a.to_string()).as_deref(),
            Some("fd00:10:244:2::")
        );
        assert_eq!(peers[0].public_ipv6, Some("fe80::2".parse().unwrap()));
        assert_eq!(peers[1].ipv6_subnet, None);
        assert_eq!(peers[2].ipv6_subnet, None);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].contains("\"c\"") && skipped[0].contains("outside"));
        assert!(skipped[1].contains("\"d\"") && skipped[1].contains("no IPv6"));
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
