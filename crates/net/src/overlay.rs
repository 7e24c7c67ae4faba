//! What a vxlan overlay needs beyond routes and neighbours ([`crate::routes`]): the
//! device, and the FDB entries telling it which underlay address a peer's MAC is behind.

use crate::routes::ignore_missing;
use crate::{NetError, Netlink, Result};
use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkUnspec, LinkVxlan};
use std::net::{IpAddr, Ipv4Addr};

/// A vxlan device in "one device, unicast FDB" form (no multicast group, no learning).
#[derive(Debug, Clone)]
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    /// Index of the underlay link the encapsulated packets leave by.
    pub underlay: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// A unicast FDB entry of a vxlan device: frames for `mac` go to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: String,
    pub dst: Option<IpAddr>,
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl Netlink {
    /// Creates the vxlan device, up. Fails with EEXIST if the name is taken.
    pub async fn create_vxlan(&self, spec: &VxlanSpec<'_>) -> Result<()> {
        let msg = LinkVxlan::new(spec.name, spec.vni)
            .dev(spec.underlay)
            .port(spec.port)
            .local(spec.local)
            .learning(false)
            .mtu(spec.mtu)
            .address(spec.mac.to_vec())
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| NetError::netlink("create vxlan", self.obj(spec.name), e))
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(|e| NetError::netlink("set mtu", self.obj(index), e))
    }

    /// Unicast FDB entries of link `index` (the all-zero MAC default entries excluded).
    pub async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list fdb", self.obj(index), e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(|m| {
                let mut mac = None;
                let mut dst = None;
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            mac = Some(crate::netlink::format_mac(l))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                            dst = Some(IpAddr::V4(*v4))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                            dst = Some(IpAddr::V6(*v6))
                        }
                        // In bridge-family messages the kernel's NDA_DST is not decoded by
                        // family: take it by length.
                        NeighbourAttribute::Destination(NeighbourAddress::Other(b))
                            if b.len() == 4 =>
                        {
                            dst = Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
                        }
                        _ => {}
                    }
                }
                let mac = mac?;
                (mac != "00:00:00:00:00:00").then_some(FdbEntry { mac, dst })
            })
            .collect())
    }

    /// Adds or replaces the permanent FDB entry `mac` → `dst` on the vxlan link `index`.
    pub async fn replace_fdb(&self, index: u32, mac: [u8; 6], dst: Ipv4Addr) -> Result<()> {
        self.handle
            .neighbours()
            .add_bridge(index, &mac)
            .destination(IpAddr::V4(dst))
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink(
                    "replace fdb entry",
                    self.obj(format!(
                        "{} dst {dst} on {index}",
                        crate::netlink::format_mac(&mac)
                    )),
                    e,
                )
            })
    }

    /// Deletes FDB entry `mac` (towards `dst`) on link `index`; a missing entry is success.
    pub async fn delete_fdb(&self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.flags = NeighbourFlags::Own;
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        match dst {
            Some(IpAddr::V4(v4)) => m
                .attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(v4))),
            Some(IpAddr::V6(v6)) => m
                .attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6))),
            None => {}
        }
        ignore_missing(self.handle.neighbours().del(m).execute().await, |e| {
            NetError::netlink(
                "delete fdb entry",
                self.obj(format!("{} on {index}", crate::netlink::format_mac(&mac))),
                e,
            )
        })
    }

    /// IPv4 addresses and prefix of link `index`, for finding the underlay address.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>> {
        Ok(self
            .addresses(index)
            .await?
            .into_iter()
            .filter_map(|n| match n {
                IpNet::V4(v4) => Some(v4),
                IpNet::V6(_) => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_reject_garbage() {
        assert_eq!(parse_mac("0a:00:00:00:00:ff"), Some([10, 0, 0, 0, 0, 255]));
        assert_eq!(parse_mac("0a:00:00:00:00"), None);
        assert_eq!(parse_mac("0a:00:00:00:00:ff:01"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:ff"), None);
    }
}
