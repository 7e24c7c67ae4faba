//! Deterministic names and addresses derived from an attachment.
//!
//! The host-side veth name is a hash of (network, container, interface): DEL and GC can
//! find it without any saved state, which is what makes an ADD killed half-way cleanable.

use std::net::IpAddr;
use unicni_core::AttachmentId;

/// Prefix of every host-side veth unicni creates.
pub const VETH_PREFIX: &str = "uc";

fn fnv1a64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0u8)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Hex digits of the hash in [`host_veth`] names.
const HASH_DIGITS: usize = 11;

/// `uc` + 11 hex digits: 13 characters, under the 15-byte interface name limit.
pub fn host_veth(network: &str, id: &AttachmentId) -> String {
    let h = fnv1a64(&[network, &id.container_id, &id.ifname]);
    format!(
        "{VETH_PREFIX}{:0width$x}",
        h & 0xfff_ffff_ffff,
        width = HASH_DIGITS
    )
}

/// Whether `name` has the shape of [`host_veth`] names (`uc` + 11 lowercase hex digits).
pub fn is_host_veth(name: &str) -> bool {
    name.len() == VETH_PREFIX.len() + HASH_DIGITS
        && name.starts_with(VETH_PREFIX)
        && name[VETH_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A locally administered MAC derived from an IPv4 address (`0a:58:` + the address), so
/// a pod re-created with the same address keeps the same MAC and neighbours' caches stay
/// right.
pub fn mac_for_ip(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [0x0a, 0x58, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [0x0a, 0x58, o[12], o[13], o[14], o[15]]
        }
    }
}

/// A locally administered unicast MAC derived from a name.
pub fn mac_for_name(name: &str) -> [u8; 6] {
    let h = fnv1a64(&[name]).to_be_bytes();
    [(h[0] & 0xfe) | 0x02, h[1], h[2], h[3], h[4], h[5]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_short_stable_and_distinct() {
        let a = host_veth("net", &AttachmentId::new("c1", "eth0"));
        assert_eq!(a.len(), 13);
        assert!(is_host_veth(&a), "{a}");
        assert_eq!(a, host_veth("net", &AttachmentId::new("c1", "eth0")));
        assert_ne!(a, host_veth("net", &AttachmentId::new("c1", "eth1")));
        assert_ne!(a, host_veth("other", &AttachmentId::new("c1", "eth0")));
        for other in [
            "uc",
            "ucXYZ0000000000",
            "ucABCDEF01234",
            "cni0",
            "flannel.1",
            "tw0123456789a",
        ] {
            assert!(!is_host_veth(other), "{other}");
        }
    }

    #[test]
    fn macs_are_locally_administered_unicast() {
        for m in [mac_for_ip("10.1.2.3".parse().unwrap()), mac_for_name("x")] {
            assert_eq!(m[0] & 0x01, 0, "unicast");
            assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        }
    }
}
