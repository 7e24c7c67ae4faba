//! Routes in any table and of either family, permanent neighbours of either family, and
//! addresses without duplicate address detection: what policy-routed datapaths need.

use crate::{NetError, Netlink, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;
use std::net::IpAddr;

/// A route to program: `dst` [via `gateway`] dev `oif` [onlink] in `table`. Without a
/// gateway the route is link-scoped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub table: u32,
    pub onlink: bool,
}

/// A unicast route as read back, with its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRoute {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
    pub onlink: bool,
}

impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        write!(f, " dev {} table {}", self.oif, self.table)?;
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

fn build_error(what: String, e: impl std::fmt::Display) -> NetError {
    NetError::Netlink {
        op: "build route",
        object: what,
        errno: None,
        message: e.to_string(),
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

impl Netlink {
    /// Adds or replaces `route`.
    pub async fn replace_route(&self, route: &RouteSpec) -> Result<()> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.dst.addr(), route.dst.prefix_len())
            .map_err(|e| build_error(route.to_string(), e))?
            .output_interface(route.oif)
            .table_id(route.table);
        match route.gateway {
            Some(gw) => {
                b = b
                    .gateway(gw)
                    .map_err(|e| build_error(route.to_string(), e))?
            }
            None if route.dst.addr().is_ipv4() => b = b.scope(RouteScope::Link),
            None => {}
        }
        if route.onlink {
            b = b.onlink();
        }
        self.handle
            .route()
            .add(b.build())
            .replace()
            .execute()
            .await
            .map_err(|e| NetError::netlink("replace route", self.obj(route), e))
    }

    /// Deletes the route to `dst` (out of `oif` when given) in `table`; a missing route
    /// is success.
    pub async fn delete_route(&self, dst: IpNet, oif: Option<u32>, table: u32) -> Result<()> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .map_err(|e| build_error(dst.to_string(), e))?
            .table_id(table);
        if let Some(i) = oif {
            b = b.output_interface(i);
        }
        let mut msg = b.build();
        // A delete must not restrict by scope/protocol, or it misses routes added differently.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.protocol = RouteProtocol::Unspec;
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err =
                    NetError::netlink("delete route", self.obj(format!("{dst} table {table}")), e);
                if err.is_not_found() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Unicast routes of one family, of `table` only when given.
    pub async fn table_routes(
        &self,
        family: AddressFamily,
        table: Option<u32>,
    ) -> Result<Vec<TableRoute>> {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list routes", self.obj("all tables"), e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.kind == RouteType::Unicast)
            .filter_map(parse_table_route)
            .filter(|r| table.is_none_or(|t| t == r.table))
            .collect())
    }

    /// Adds or replaces a permanent neighbour `ip` → `mac` on link `index` (either family).
    pub async fn replace_permanent_neighbour(
        &self,
        index: u32,
        ip: IpAddr,
        mac: [u8; 6],
    ) -> Result<()> {
        self.handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink("replace neighbour", self.obj(format!("{ip} on {index}")), e)
            })
    }

    /// The link-layer address of neighbour `ip` on link `index`, if there is an entry.
    pub async fn neighbour_mac(&self, index: u32, ip: IpAddr) -> Result<Option<String>> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family_of(ip))
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list neighbours", self.obj(index), e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            .find_map(|m| {
                let mut found = false;
                let mut mac = None;
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                            found |= IpAddr::V4(*v4) == ip
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                            found |= IpAddr::V6(*v6) == ip
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            mac = Some(crate::netlink::format_mac(l))
                        }
                        _ => {}
                    }
                }
                if found {
                    mac
                } else {
                    None
                }
            }))
    }

    /// Adds `addr` to link `index` without duplicate address detection (IPv6: usable at
    /// once); an existing identical address is success.
    pub async fn add_address_nodad(&self, index: u32, addr: IpNet) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        let m = req.message_mut();
        m.header.flags |= AddressHeaderFlags::Nodad;
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err =
                    NetError::netlink("add address", self.obj(format!("{addr} on {index}")), e);
                if err.is_exists() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}

fn parse_table_route(m: &RouteMessage) -> Option<TableRoute> {
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut table = m.header.table as u32;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(a) => dst = route_addr(a),
            RouteAttribute::Gateway(a) => gateway = route_addr(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    let len = m.header.destination_prefix_length;
    let dst = match dst {
        Some(ip) => IpNet::new(ip, len).ok()?,
        None if m.header.address_family == AddressFamily::Inet6 => "::/0".parse().ok()?,
        None => "0.0.0.0/0".parse().ok()?,
    };
    Some(TableRoute {
        dst,
        gateway,
        oif,
        table,
        onlink: m.header.flags.contains(RouteFlags::Onlink),
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
