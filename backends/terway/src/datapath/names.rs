//! Names, MACs and numbers derived from an attachment, so that DEL and GC find what ADD
//! made without any saved state.

use std::net::{Ipv4Addr, Ipv6Addr};
use unicni_core::AttachmentId;
use unicni_net::names::LinkNames;

/// Prefix of every host-side veth of a terway pod.
pub const VETH_PREFIX: &str = HOST_VETHS.prefix();

/// Host-side veths: `tw` + 11 hex digits (13 bytes).
const HOST_VETHS: LinkNames = LinkNames::new("tw");

/// The pod's next hop: answered by the host veth through a permanent neighbour entry.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// `to podIP lookup main`: traffic for the pod reaches its veth whatever the source.
pub const RULE_TO_POD: u32 = 512;
/// `from podIP lookup <ENI table>`: the pod's traffic leaves through its ENI.
pub const RULE_FROM_POD: u32 = 2048;
/// ENI tables are `1000 + ifindex` (see [`crate::proto::eni_table`]).
pub const ENI_TABLE_BASE: u32 = 1000;

/// Alias given to an ENI moved into a pod: marks it as ours and remembers the name it had
/// on the node, so that a DEL without the agent can give it back.
pub const ENI_ALIAS_PREFIX: &str = "unicni-terway-eni:";

/// The host-side veth of `id`.
pub fn host_veth(id: &AttachmentId) -> String {
    HOST_VETHS.name(&[&id.container_id, &id.ifname])
}

/// Whether `name` has the shape of [`host_veth`] names.
pub fn is_host_veth(name: &str) -> bool {
    HOST_VETHS.matches(name)
}

/// The pod side of the node/service veth of an exclusive-ENI pod whose ENI is `ifname`:
/// `v` + ifname (`eth0` → `veth0`), or a hash when that would not fit.
pub fn pod_veth(ifname: &str) -> String {
    let name = format!("v{ifname}");
    if name.len() <= 15 {
        name
    } else {
        HOST_VETHS.name(&["pod-veth", ifname])
    }
}

pub use unicni_net::names::mac_for_name;

/// The MAC of the pod side of host veth `host_name`.
pub fn pod_mac(host_name: &str) -> [u8; 6] {
    mac_for_name(&format!("{host_name}/pod"))
}

pub fn eni_alias(original_name: &str) -> String {
    format!("{ENI_ALIAS_PREFIX}{original_name}")
}

/// The node name recorded in an ENI alias, if the alias is ours.
pub fn eni_original_name(alias: &str) -> Option<&str> {
    alias.strip_prefix(ENI_ALIAS_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_short_stable_distinct_and_recognised() {
        let a = host_veth(&AttachmentId::new("c1", "eth0"));
        assert_eq!(a.len(), 13);
        assert!(is_host_veth(&a), "{a}");
        assert_eq!(a, host_veth(&AttachmentId::new("c1", "eth0")));
        assert_ne!(a, host_veth(&AttachmentId::new("c1", "eth1")));
        assert_ne!(a, host_veth(&AttachmentId::new("c2", "eth0")));
        assert!(!is_host_veth("twin0"));
        assert!(!is_host_veth("eth0"));
        assert!(!is_host_veth("twzzzzzzzzzzz"));
    }

    #[test]
    fn pod_veth_never_clashes_with_the_eni_name() {
        assert_eq!(pod_veth("eth0"), "veth0");
        let long = "abcdefghijklmno";
        assert!(pod_veth(long).len() <= 15);
        assert_ne!(pod_veth(long), long);
        assert_ne!(pod_veth("veth0"), "veth0");
    }

    #[test]
    fn macs_are_locally_administered_unicast_and_distinct() {
        let h = host_veth(&AttachmentId::new("c1", "eth0"));
        let (a, b) = (mac_for_name(&h), pod_mac(&h));
        assert_ne!(a, b);
        for m in [a, b] {
            assert_eq!(m[0] & 0x01, 0, "unicast");
            assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        }
    }

    #[test]
    fn eni_alias_round_trips() {
        assert_eq!(eni_original_name(&eni_alias("eth3")), Some("eth3"));
        assert_eq!(eni_original_name("something else"), None);
    }
}
