//! What a node agent programs for its peers: a vxlan device, permanent neighbour and FDB
//! entries, and routes it owns (marked with a route protocol number so that a reconcile
//! can tell its own routes from everyone else's).

use crate::{NetError, Netlink, Result};
use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkUnspec, LinkVxlan, RouteMessageBuilder};
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

/// An IPv4 neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: String,
    pub permanent: bool,
}

/// A unicast FDB entry of a vxlan device: frames for `mac` go to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: String,
    pub dst: Option<IpAddr>,
}

/// An IPv4 route of the main table with what ownership checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route4 {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub protocol: u8,
    pub onlink: bool,
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

    /// IPv4 neighbours on link `index`.
    pub async fn neighbours(&self, index: u32) -> Result<Vec<Neighbour>> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list neighbours", self.obj(index), e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(|m| {
                let mut ip = None;
                let mut mac = String::new();
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                            ip = Some(*v4)
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            mac = crate::netlink::format_mac(l)
                        }
                        _ => {}
                    }
                }
                Some(Neighbour {
                    ip: ip?,
                    mac,
                    permanent: m.header.state == NeighbourState::Permanent,
                })
            })
            .collect())
    }

    /// Adds or replaces a permanent neighbour `ip` → `mac` on link `index`.
    pub async fn replace_neighbour(&self, index: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink("replace neighbour", self.obj(format!("{ip} on {index}")), e)
            })
    }

    /// Deletes neighbour `ip` on link `index`; a missing entry is success.
    pub async fn delete_neighbour(&self, index: u32, ip: Ipv4Addr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.ifindex = index;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        ignore_missing(self.handle.neighbours().del(m).execute().await, |e| {
            NetError::netlink("delete neighbour", self.obj(format!("{ip} on {index}")), e)
        })
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

    /// IPv4 routes of the main table, with protocol and on-link flag.
    pub async fn routes4(&self) -> Result<Vec<Route4>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list routes", self.obj("main"), e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.table == 254 && m.header.kind == RouteType::Unicast)
            .filter_map(|m| {
                let mut dst = Ipv4Addr::UNSPECIFIED;
                let mut gateway = None;
                let mut oif = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(
                            rtnetlink::packet_route::route::RouteAddress::Inet(v4),
                        ) => dst = *v4,
                        RouteAttribute::Gateway(
                            rtnetlink::packet_route::route::RouteAddress::Inet(v4),
                        ) => gateway = Some(*v4),
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                Some(Route4 {
                    dst: Ipv4Net::new(dst, m.header.destination_prefix_length).ok()?,
                    gateway,
                    oif,
                    protocol: u8::from(m.header.protocol),
                    onlink: m.header.flags.contains(RouteFlags::Onlink),
                })
            })
            .collect())
    }

    /// Adds or replaces the route `dst` via `gateway` out of `oif`, marked with `protocol`.
    pub async fn replace_route4(
        &self,
        dst: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        oif: u32,
        onlink: bool,
        protocol: u8,
    ) -> Result<()> {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .output_interface(oif)
            .protocol(RouteProtocol::from(protocol));
        match gateway {
            Some(gw) => b = b.gateway(gw),
            None => b = b.scope(RouteScope::Link),
        }
        if onlink {
            b = b.onlink();
        }
        self.handle
            .route()
            .add(b.build())
            .replace()
            .execute()
            .await
            .map_err(|e| NetError::netlink("replace route", self.obj(dst), e))
    }

    /// Deletes the route to `dst` in the main table; a missing route is success.
    pub async fn delete_route4(&self, dst: Ipv4Net, oif: Option<u32>) -> Result<()> {
        let mut b =
            RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst.addr(), dst.prefix_len());
        if let Some(i) = oif {
            b = b.output_interface(i);
        }
        let mut msg = b.build();
        // A delete must not restrict by scope/protocol, or it misses routes added differently.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.protocol = RouteProtocol::Unspec;
        ignore_missing(self.handle.route().del(msg).execute().await, |e| {
            NetError::netlink("delete route", self.obj(dst), e)
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

fn ignore_missing(
    r: std::result::Result<(), rtnetlink::Error>,
    wrap: impl FnOnce(rtnetlink::Error) -> NetError,
) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            let err = wrap(e);
            if err.is_not_found() {
                Ok(())
            } else {
                Err(err)
            }
        }
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
