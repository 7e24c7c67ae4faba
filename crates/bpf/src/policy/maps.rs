//! Rust mirrors of the map layouts in `bpf/policy.h`.

use std::net::Ipv4Addr;

pub const PODS: &str = "policy_pods";
pub const NODE: &str = "policy_node";
pub const V4_INGRESS: &str = "policy_v4_ingress";
pub const V4_EGRESS: &str = "policy_v4_egress";
pub const V6_INGRESS: &str = "policy_v6_ingress";
pub const V6_EGRESS: &str = "policy_v6_egress";
pub const PORTS: &str = "policy_ports";
pub const CT: &str = "policy_ct";
pub const STATS: &str = "policy_stats";
pub const LINKS: &str = "policy_links";
pub const SERVICES: &str = "policy_services";

/// `struct pol_lpm4` without its prefix length (aya's `Key` adds it).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lpm4 {
    pub local: u32,
    pub remote: u32,
}
// SAFETY: repr(C), two u32 fields, no padding.
#[allow(unsafe_code)]
unsafe impl aya::Pod for Lpm4 {}

/// `struct pol_lpm6` without its prefix length.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lpm6 {
    pub local: [u8; 16],
    pub remote: [u8; 16],
}
// SAFETY: repr(C), byte arrays only.
#[allow(unsafe_code)]
unsafe impl aya::Pod for Lpm6 {}

/// `struct pol_rule`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub port_set: u32,
    pub flags: u32,
}
// SAFETY: repr(C), two u32 fields, no padding.
#[allow(unsafe_code)]
unsafe impl aya::Pod for Rule {}

pub(crate) const RULE_ANY: u32 = 1;

/// `struct pol_port_key` without its prefix length.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Port {
    pub port_set: u32,
    pub proto: u8,
    pub pad: u8,
    /// Network byte order.
    pub port: u16,
}
// SAFETY: repr(C), 4 + 1 + 1 + 2 bytes, no padding.
#[allow(unsafe_code)]
unsafe impl aya::Pod for Port {}

/// `struct pol_ct_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CtKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}
// SAFETY: repr(C), 16 + 16 + 2 + 2 + 1 + 3 bytes, no padding.
#[allow(unsafe_code)]
unsafe impl aya::Pod for CtKey {}

/// `struct pol_ct_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CtValue {
    pub seen_ns: u64,
}
// SAFETY: repr(C), one u64.
#[allow(unsafe_code)]
unsafe impl aya::Pod for CtValue {}

/// Slots of `policy_stats` (enum pol_stat).
pub(crate) const STAT_NOT_IP: u32 = 0;
pub(crate) const STAT_NO_POD: u32 = 1;
pub(crate) const STAT_ESTABLISHED: u32 = 2;
pub(crate) const STAT_NEW: u32 = 3;
pub(crate) const STAT_NODE: u32 = 4;
pub(crate) const STAT_CONTROL: u32 = 5;
pub(crate) const STAT_DROP_EGRESS: u32 = 6;
pub(crate) const STAT_DROP_INGRESS: u32 = 7;
pub(crate) const STAT_SERVICE: u32 = 8;

pub(crate) use crate::addr::{addr16, ip_of16};

/// An IPv4 address as the program reads it from the header (network order in memory).
pub(crate) fn v4_key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub(crate) fn v4_of(key: u32) -> Ipv4Addr {
    Ipv4Addr::from(key.to_ne_bytes())
}
