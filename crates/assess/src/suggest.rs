//! Proposing a cluster network that overlaps nothing already in use.

use ipnet::{IpNet, Ipv4Net};
use unicni_capacity::limits::PRIVATE_V4;

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The smallest network prefix whose `/subnet_len` node subnets number at least `nodes`
/// with a quarter to spare (the network never grows), and never smaller than a /16.
pub fn network_prefix_for(nodes: u64, subnet_len: u8) -> u8 {
    let wanted = (nodes + nodes / 4).max(1);
    let bits = 64 - (wanted - 1).leading_zeros() as u8; // ceil(log2(wanted))
    subnet_len.saturating_sub(bits).min(16)
}

/// The first private IPv4 network of length `prefix_len` that overlaps none of `avoid`,
/// conventional choices first.
pub fn free_network(prefix_len: u8, avoid: &[IpNet]) -> Option<Ipv4Net> {
    let preferred = [
        "10.244.0.0",
        "172.20.0.0",
        "192.168.0.0",
        "10.0.0.0",
        "172.16.0.0",
    ];
    let fits = |n: &Ipv4Net| {
        let net = IpNet::V4(*n);
        PRIVATE_V4
            .iter()
            .any(|p| p.parse::<Ipv4Net>().expect("constant").contains(n))
            && !avoid.iter().any(|a| overlaps(a, &net))
    };
    for p in preferred {
        if let Ok(n) = Ipv4Net::new(p.parse().expect("constant"), prefix_len) {
            if n.trunc() == n && fits(&n) {
                return Some(n);
            }
        }
    }
    for range in PRIVATE_V4 {
        let range: Ipv4Net = range.parse().expect("constant");
        if let Ok(mut subnets) = range.subnets(prefix_len) {
            // Bounded: a /8 split into /24s is 65,536 candidates at most.
            if let Some(n) = subnets.find(fits) {
                return Some(n);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_grows_with_nodes() {
        assert_eq!(network_prefix_for(10, 24), 16);
        assert_eq!(network_prefix_for(1000, 24), 13);
        assert_eq!(network_prefix_for(15000, 24), 9);
    }

    #[test]
    fn avoids_what_is_in_use() {
        let avoid: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            free_network(16, &avoid),
            Some("172.20.0.0/16".parse().unwrap())
        );
        assert_eq!(
            free_network(16, &[]),
            Some("10.244.0.0/16".parse().unwrap())
        );
        let all: Vec<IpNet> = PRIVATE_V4.iter().map(|p| p.parse().unwrap()).collect();
        assert_eq!(free_network(16, &all), None);
    }
}
