//! Flannel subnet arithmetic: a cluster network cut into equal node subnets.

use ipnet::Ipv4Net;

/// Addresses in a node subnet that pods cannot have: network, broadcast, and the node
/// bridge's gateway address.
pub const RESERVED_PER_NODE_SUBNET: u64 = 3;

/// How many node subnets of length `subnet_len` fit in `network`; 0 when they do not fit.
pub fn node_subnets(network: Ipv4Net, subnet_len: u8) -> u64 {
    if subnet_len < network.prefix_len() || subnet_len > 32 {
        return 0;
    }
    1u64 << (subnet_len - network.prefix_len())
}

/// Addresses in one node subnet: `2^(32 - subnet_len)`.
pub fn addresses_per_node(subnet_len: u8) -> u64 {
    1u64 << (32 - u32::from(subnet_len.min(32)))
}

/// Pods one node can run: its subnet's addresses minus network, broadcast and gateway.
pub fn pods_per_node(subnet_len: u8) -> u64 {
    addresses_per_node(subnet_len).saturating_sub(RESERVED_PER_NODE_SUBNET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_example_slash_20_with_256_addresses_per_node_holds_16_nodes() {
        let net: Ipv4Net = "172.16.0.0/20".parse().unwrap();
        assert_eq!(addresses_per_node(24), 256);
        assert_eq!(node_subnets(net, 24), 16);
    }

    #[test]
    fn pods_per_node_leave_out_reserved_addresses() {
        assert_eq!(pods_per_node(24), 253);
        assert_eq!(pods_per_node(28), 13);
    }

    #[test]
    fn subnet_larger_than_network_fits_zero_times() {
        let net: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        assert_eq!(node_subnets(net, 20), 0);
        assert_eq!(node_subnets("10.0.0.0/8".parse().unwrap(), 28), 1 << 20);
    }
}
