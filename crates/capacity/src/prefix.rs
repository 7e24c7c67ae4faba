//! Prefix mode (`terway.ip_prefix = true`): an ENI's address slots hold /28 IPv4 prefixes
//! instead of single addresses. Source: REFERENCE.md ("Prefix delegation").
//!
//! - One slot keeps the ENI's primary address; each other slot holds one /28 (16
//!   addresses): `(IPv4 per ENI - 1) x 16` pod addresses per ENI, e.g. 20 slots give
//!   19 x 16 = 304.
//! - Dual stack: one IPv6 /80 per ENI, whatever the IPv6-per-ENI count (it is at least 1).
//! - A prefix is an aligned /28 of free addresses in the ENI's vSwitch, so a vSwitch's
//!   free addresses may hold fewer prefixes than free / 16 ([`free_blocks`]).
//! - The addresses outgrow what one kubelet runs: a node's pods are then capped by the
//!   kubelet's `maxPods` (Kubernetes' default 110), not by the ENIs. In secondary-address
//!   mode the platform sets `maxPods` from the ENI capacity, so there the ENIs are the cap.

use crate::InstanceTypeLimits;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Prefix length of an IPv4 prefix.
pub const V4_PREFIX_LEN: u8 = 28;
/// Addresses in one IPv4 prefix.
pub const ADDRESSES_PER_PREFIX: u64 = 16;
/// Prefix length of the IPv6 prefix each ENI gets in dual stack.
pub const V6_PREFIX_LEN: u8 = 80;
/// Prefixes one AssignPrivateIpAddresses call may ask for.
pub const PREFIXES_PER_CALL: u64 = 10;
/// The kubelet's default `maxPods`.
pub const KUBELET_MAX_PODS_DEFAULT: u64 = 110;
/// Addresses the vendor keeps in every vSwitch: the first one and the last three.
pub const VSWITCH_RESERVED_FIRST: u64 = 1;
pub const VSWITCH_RESERVED_LAST: u64 = 3;

/// Pods per node of one instance type in prefix mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixCapacity {
    /// /28 prefixes one ENI holds: IPv4 per ENI - 1.
    pub prefixes_per_eni: u64,
    /// Pod addresses per ENI: prefixes x 16.
    pub addresses_per_eni: u64,
    /// Pod addresses per node: secondary ENIs x addresses per ENI.
    pub addresses: u64,
    /// The kubelet's maxPods the pods are capped at.
    pub max_pods: u64,
    /// Pods per node: the smaller of `addresses` and `max_pods`.
    pub pods: u64,
    /// Dual stack: IPv6 /80 prefixes per node (one per secondary ENI); 0 otherwise.
    pub ipv6_prefixes: u64,
    /// What bounds `pods`, for people.
    pub limited_by: String,
}

impl InstanceTypeLimits {
    /// Prefix-mode capacity with the kubelet's `max_pods`; `dual` adds the /80s.
    pub fn prefix_capacity(&self, max_pods: u64, dual: bool) -> PrefixCapacity {
        let enis = self.enis.saturating_sub(1);
        let prefixes_per_eni = self.ipv4_per_eni.saturating_sub(1);
        let addresses_per_eni = prefixes_per_eni * ADDRESSES_PER_PREFIX;
        let addresses = enis * addresses_per_eni;
        let pods = addresses.min(max_pods);
        let limited_by = if addresses > max_pods {
            format!(
                "kubelet maxPods {max_pods} (the {enis} secondary ENIs hold {addresses} prefix \
                 addresses: {enis} x ({} - 1) x {ADDRESSES_PER_PREFIX})",
                self.ipv4_per_eni
            )
        } else {
            format!(
                "{enis} secondary ENIs x {prefixes_per_eni} /{V4_PREFIX_LEN} prefixes x \
                 {ADDRESSES_PER_PREFIX} addresses"
            )
        };
        PrefixCapacity {
            prefixes_per_eni,
            addresses_per_eni,
            addresses,
            max_pods,
            pods,
            ipv6_prefixes: if dual && self.ipv6_per_eni > 0 {
                enis
            } else {
                0
            },
            limited_by,
        }
    }
}

/// How many whole /28 blocks a vSwitch's free addresses hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Blocks {
    /// Guaranteed whatever the used addresses are: as if each sat in a block of its own.
    pub at_least: u64,
    /// If the used addresses are packed together: free / 16, at most the blocks the
    /// vSwitch has outside the reserved addresses.
    pub at_most: u64,
}

impl std::ops::Add for Blocks {
    type Output = Blocks;
    fn add(self, o: Blocks) -> Blocks {
        Blocks {
            at_least: self.at_least + o.at_least,
            at_most: self.at_most + o.at_most,
        }
    }
}

/// Free aligned /28 blocks of a vSwitch `cidr` with `free_ips` free addresses
/// (DescribeVSwitches' count, which says nothing about where the used ones are). The
/// blocks holding the vendor's reserved addresses (the first and the last three) never
/// qualify.
pub fn free_blocks(cidr: Ipv4Net, free_ips: u64) -> Blocks {
    let len = cidr.prefix_len();
    if len > V4_PREFIX_LEN {
        return Blocks::default();
    }
    let total_blocks = 1u64 << (V4_PREFIX_LEN - len);
    // The first block holds the first reserved address, the last block the last three
    // (the same block when the vSwitch is one /28).
    let usable_blocks = total_blocks.saturating_sub(2);
    let addresses = 1u64 << (32 - len);
    let usable = addresses - VSWITCH_RESERVED_FIRST - VSWITCH_RESERVED_LAST;
    let used = usable.saturating_sub(free_ips);
    Blocks {
        at_least: usable_blocks.saturating_sub(used),
        at_most: usable_blocks.min(free_ips / ADDRESSES_PER_PREFIX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(enis: u64, v4: u64, v6: u64) -> InstanceTypeLimits {
        InstanceTypeLimits {
            name: "t".into(),
            enis,
            ipv4_per_eni: v4,
            ipv6_per_eni: v6,
        }
    }

    #[test]
    fn twenty_slots_give_304_addresses_per_eni() {
        // g6.4xlarge: 8 ENIs, 20 IPv4 per ENI.
        let c = limits(8, 20, 1).prefix_capacity(KUBELET_MAX_PODS_DEFAULT, false);
        assert_eq!(c.prefixes_per_eni, 19);
        assert_eq!(c.addresses_per_eni, 304);
        assert_eq!(c.addresses, 7 * 304);
        assert_eq!(c.pods, 110, "capped by the kubelet's maxPods");
        assert!(c.limited_by.contains("maxPods 110"), "{}", c.limited_by);
        assert_eq!(c.ipv6_prefixes, 0);
        // A kubelet allowed more pods than the addresses: the ENIs bound it.
        let c = limits(8, 20, 1).prefix_capacity(5000, true);
        assert_eq!(c.pods, 2128);
        assert!(
            c.limited_by.contains("7 secondary ENIs x 19"),
            "{}",
            c.limited_by
        );
        assert_eq!(c.ipv6_prefixes, 7, "one /80 per secondary ENI");
    }

    #[test]
    fn small_types_and_no_secondary_eni() {
        // g7.large: 3 ENIs x 6 slots: 2 x 5 x 16 = 160 addresses vs 12 without prefixes.
        let c = limits(3, 6, 6).prefix_capacity(250, true);
        assert_eq!((c.addresses, c.pods, c.ipv6_prefixes), (160, 160, 2));
        let c = limits(1, 10, 0).prefix_capacity(110, true);
        assert_eq!((c.addresses, c.pods, c.ipv6_prefixes), (0, 0, 0));
    }

    #[test]
    fn free_addresses_hold_fewer_blocks_than_free_over_16() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        // An empty /24: 252 free addresses, 16 blocks of which the first and last hold
        // reserved addresses: 14, not 252 / 16 = 15.
        assert_eq!(
            free_blocks(net("10.0.0.0/24"), 252),
            Blocks {
                at_least: 14,
                at_most: 14
            }
        );
        // 100 addresses used: packed, 152 free hold 9 blocks; scattered, none is whole.
        assert_eq!(
            free_blocks(net("10.0.0.0/24"), 152),
            Blocks {
                at_least: 0,
                at_most: 9
            }
        );
        // 3 used: at least 11 blocks untouched.
        assert_eq!(free_blocks(net("10.0.0.0/24"), 249).at_least, 11);
        // A /28 or smaller vSwitch has no whole block outside the reserved addresses.
        assert_eq!(free_blocks(net("10.0.0.0/28"), 12), Blocks::default());
        assert_eq!(free_blocks(net("10.0.0.0/29"), 4), Blocks::default());
        // A /27: both of its blocks hold reserved addresses.
        assert_eq!(free_blocks(net("10.0.0.0/27"), 28).at_most, 0);
        // A /20: 256 blocks, 254 usable.
        assert_eq!(free_blocks(net("10.0.0.0/20"), 4092).at_most, 254);
    }
}
