//! Deterministic names and addresses derived from an attachment.
//!
//! The host-side veth name is a hash of (network, container, interface): DEL and GC can
//! find it without any saved state, which is what makes an ADD killed half-way cleanable.

use std::net::IpAddr;
use unicni_core::AttachmentId;
use unicni_net::names::LinkNames;

/// Prefix of every host-side veth unicni creates.
pub const VETH_PREFIX: &str = HOST_VETHS.prefix();

/// Host-side veths: `uc` + 11 hex digits (13 characters).
const HOST_VETHS: LinkNames = LinkNames::new("uc");

/// The host-side veth of `id` on `network`.
pub fn host_veth(network: &str, id: &AttachmentId) -> String {
    HOST_VETHS.name(&[network, &id.container_id, &id.ifname])
}

/// Whether `name` has the shape of [`host_veth`] names.
pub fn is_host_veth(name: &str) -> bool {
    HOST_VETHS.matches(name)
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

pub use unicni_net::names::mac_for_name;

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
