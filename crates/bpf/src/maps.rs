//! Rust mirrors of the map layouts in `bpf/fastpath.h`.

use std::net::Ipv4Addr;

pub const ENDPOINTS: &str = "endpoints";
pub const STATS: &str = "fastpath_stats";
pub const LINKS: &str = "fastpath_links";

/// `struct endpoint` in fastpath.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndpointValue {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub flags: u16,
}

// SAFETY: repr(C), only integer fields, no padding (4 + 6 + 2 bytes).
#[allow(unsafe_code)]
unsafe impl aya::Pod for EndpointValue {}

/// The key of `endpoints`: the address in network byte order, as the program reads it from
/// the IP header.
pub(crate) fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub(crate) fn ip_of(key: u32) -> Ipv4Addr {
    Ipv4Addr::from(key.to_ne_bytes())
}

/// Slots of `fastpath_stats` (enum fastpath_stat).
pub(crate) const STAT_REDIRECT: u32 = 0;
pub(crate) const STAT_PASS_NOT_IPV4: u32 = 1;
pub(crate) const STAT_PASS_NO_ENDPOINT: u32 = 2;
pub(crate) const STAT_PASS_OTHER_MAC: u32 = 3;
pub(crate) const STAT_PASS_HOST_FLOW: u32 = 4;
