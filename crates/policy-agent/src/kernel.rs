//! What the engine reads from the node's network namespace, through unicni-net: the pods'
//! host veths and the uplinks (to attach the programs to) and the node's own addresses
//! (always allowed to and from its pods). Change notifications are unicni-net's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use unicni_net::{LinkInfo, Netlink};

pub use unicni_net::events::Changes;

use crate::Error;

/// A netlink handle in the calling thread's network namespace.
pub struct Kernel {
    nl: Netlink,
}

impl Kernel {
    /// Must be called inside a tokio runtime, on a thread in the node's namespace.
    pub fn connect() -> Result<Kernel, Error> {
        Ok(Kernel {
            nl: Netlink::current()?,
        })
    }

    /// The links the programs go on, ifindex → name: pods' host veths (veths whose name
    /// `is_pod_veth` accepts) and uplinks (every other link but loopback and bridges: the
    /// underlay, vxlan and ENI links a translated packet leaves through).
    pub async fn links(
        &self,
        is_pod_veth: fn(&str) -> bool,
    ) -> Result<(BTreeMap<u32, String>, BTreeMap<u32, String>), Error> {
        Ok(classify(self.nl.links().await?, is_pod_veth))
    }

    /// Every address configured in this namespace (loopback and link-local included).
    pub async fn addresses(&self) -> Result<BTreeSet<IpAddr>, Error> {
        Ok(self.nl.all_addresses().await?)
    }
}

type ByIndex = BTreeMap<u32, String>;

fn classify(links: Vec<LinkInfo>, is_pod_veth: fn(&str) -> bool) -> (ByIndex, ByIndex) {
    let (mut pods, mut uplinks) = (BTreeMap::new(), BTreeMap::new());
    for l in links {
        match l.kind.as_deref() {
            Some("veth") if is_pod_veth(&l.name) => {
                pods.insert(l.index, l.name);
            }
            Some("bridge") => {}
            _ if l.loopback => {}
            _ => {
                uplinks.insert(l.index, l.name);
            }
        }
    }
    (pods, uplinks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, kind: Option<&str>, loopback: bool) -> LinkInfo {
        LinkInfo {
            index,
            name: name.into(),
            mac: String::new(),
            mtu: 1500,
            master: None,
            up: true,
            loopback,
            kind: kind.map(String::from),
        }
    }

    #[test]
    fn pod_veths_and_uplinks_are_told_apart() {
        let (pods, uplinks) = classify(
            vec![
                link(1, "lo", None, true),
                link(2, "eth0", None, false),
                link(3, "cni0", Some("bridge"), false),
                link(4, "pod1", Some("veth"), false),
                link(5, "other-veth", Some("veth"), false),
                link(6, "flannel.1", Some("vxlan"), false),
            ],
            |n| n.starts_with("pod"),
        );
        assert_eq!(
            pods.into_iter().collect::<Vec<_>>(),
            [(4, "pod1".to_string())]
        );
        assert_eq!(
            uplinks.into_keys().collect::<Vec<_>>(),
            [2, 5, 6],
            "a veth that is not a pod's is an uplink, as before"
        );
    }
}
