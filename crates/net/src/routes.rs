//! Routes and neighbours, of either family and in any table: the one API every datapath
//! (pod namespaces, policy-routed ENIs, the flannel peers) programs and reads them with.

use crate::{NetError, Netlink, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;
use std::net::IpAddr;

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;
/// `proto static`: what a route written without a protocol of its own carries.
pub const PROTO_STATIC: u8 = 4;

/// How far a route's destination is (`ip route`'s `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Universe,
    Link,
    Host,
    Other(u8),
}

impl Scope {
    fn header(self) -> RouteScope {
        match self {
            Scope::Universe => RouteScope::Universe,
            Scope::Link => RouteScope::Link,
            Scope::Host => RouteScope::Host,
            Scope::Other(n) => RouteScope::from(n),
        }
    }

    fn from_header(s: RouteScope) -> Scope {
        match s {
            RouteScope::Universe => Scope::Universe,
            RouteScope::Link => Scope::Link,
            RouteScope::Host => Scope::Host,
            other => Scope::Other(u8::from(other)),
        }
    }
}

/// A unicast route: what to program, and what [`Netlink::routes`] reads back.
/// `dst` [via `gateway`] [dev `oif`] [onlink] table `table` proto `protocol` scope `scope`;
/// the family is the destination's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
    /// Marks who owns the route, so a reconcile removes only its own.
    pub protocol: u8,
    pub scope: Scope,
    pub onlink: bool,
}

impl Route {
    /// A directly connected route to `dst` in the main table, `proto static`; link-scoped
    /// for IPv4 as `ip route` makes it (IPv6 routes carry no meaningful scope).
    pub fn new(dst: IpNet) -> Route {
        Route {
            dst,
            gateway: None,
            oif: None,
            table: TABLE_MAIN,
            protocol: PROTO_STATIC,
            scope: if dst.addr().is_ipv4() {
                Scope::Link
            } else {
                Scope::Universe
            },
            onlink: false,
        }
    }

    /// Through `gateway` (which makes the route universe-scoped).
    pub fn via(mut self, gateway: IpAddr) -> Route {
        self.gateway = Some(gateway);
        self.scope = Scope::Universe;
        self
    }

    pub fn dev(mut self, oif: u32) -> Route {
        self.oif = Some(oif);
        self
    }

    pub fn table(mut self, table: u32) -> Route {
        self.table = table;
        self
    }

    pub fn protocol(mut self, protocol: u8) -> Route {
        self.protocol = protocol;
        self
    }

    pub fn scope(mut self, scope: Scope) -> Route {
        self.scope = scope;
        self
    }

    /// The gateway is reachable on the link even if no address says so.
    pub fn onlink(mut self) -> Route {
        self.onlink = true;
        self
    }

    pub fn family(&self) -> AddressFamily {
        family_of(self.dst.addr())
    }

    fn message(&self) -> Result<RouteMessage> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(self.dst.addr(), self.dst.prefix_len())
            .map_err(|e| build_error(self, e))?
            .table_id(self.table)
            .protocol(RouteProtocol::from(self.protocol))
            .scope(self.scope.header());
        if let Some(gw) = self.gateway {
            b = b.gateway(gw).map_err(|e| build_error(self, e))?;
        }
        if let Some(i) = self.oif {
            b = b.output_interface(i);
        }
        if self.onlink {
            b = b.onlink();
        }
        Ok(b.build())
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(i) = self.oif {
            write!(f, " dev {i}")?;
        }
        if self.table != TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// A neighbour entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    /// `aa:bb:cc:dd:ee:ff`; empty while the entry is unresolved.
    pub mac: String,
    pub permanent: bool,
}

fn build_error(route: &Route, e: impl std::fmt::Display) -> NetError {
    NetError::Netlink {
        op: "build route",
        object: route.to_string(),
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

/// A missing object is success for a delete.
pub(crate) fn ignore_missing(
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

impl Netlink {
    /// Adds `route`, or replaces the route to the same destination in its table.
    pub async fn replace_route(&self, route: &Route) -> Result<()> {
        self.handle
            .route()
            .add(route.message()?)
            .replace()
            .execute()
            .await
            .map_err(|e| NetError::netlink("replace route", self.obj(route), e))
    }

    /// Deletes the route to `route.dst` in `route.table` (out of `route.oif` when given;
    /// whatever its scope, protocol and gateway); a missing route is success.
    pub async fn delete_route(&self, route: &Route) -> Result<()> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.dst.addr(), route.dst.prefix_len())
            .map_err(|e| build_error(route, e))?
            .table_id(route.table);
        if let Some(i) = route.oif {
            b = b.output_interface(i);
        }
        let mut msg = b.build();
        // A delete must not restrict by scope/protocol, or it misses routes added differently.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.protocol = RouteProtocol::Unspec;
        ignore_missing(self.handle.route().del(msg).execute().await, |e| {
            NetError::netlink("delete route", self.obj(route), e)
        })
    }

    /// Unicast routes of one family, of `table` only when given.
    pub async fn routes(&self, family: AddressFamily, table: Option<u32>) -> Result<Vec<Route>> {
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
            .filter_map(parse_route)
            .filter(|r| table.is_none_or(|t| t == r.table))
            .collect())
    }

    /// Adds or replaces the permanent neighbour `ip` → `mac` on link `index`.
    pub async fn replace_neighbour(&self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
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

    /// Deletes neighbour `ip` on link `index`; a missing entry is success.
    pub async fn delete_neighbour(&self, index: u32, ip: IpAddr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = family_of(ip);
        m.header.ifindex = index;
        let dst = match ip {
            IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
            IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
        };
        m.attributes.push(NeighbourAttribute::Destination(dst));
        ignore_missing(self.handle.neighbours().del(m).execute().await, |e| {
            NetError::netlink("delete neighbour", self.obj(format!("{ip} on {index}")), e)
        })
    }

    /// The neighbours of one family on link `index`.
    pub async fn neighbours(&self, index: u32, family: AddressFamily) -> Result<Vec<Neighbour>> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
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
                            ip = Some(IpAddr::V4(*v4))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                            ip = Some(IpAddr::V6(*v6))
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
}

fn parse_route(m: &RouteMessage) -> Option<Route> {
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
        None if m.header.address_family == AddressFamily::Inet => "0.0.0.0/0".parse().ok()?,
        None => return None,
    };
    Some(Route {
        dst,
        gateway,
        oif,
        table,
        protocol: u8::from(m.header.protocol),
        scope: Scope::from_header(m.header.scope),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_route_is_main_static_and_link_scoped_until_it_has_a_gateway() {
        let r = Route::new("10.1.0.0/24".parse().unwrap()).dev(3);
        assert_eq!(
            (r.table, r.protocol, r.scope),
            (TABLE_MAIN, PROTO_STATIC, Scope::Link)
        );
        let r = r
            .via("10.0.0.1".parse().unwrap())
            .protocol(77)
            .table(1003)
            .onlink();
        assert_eq!((r.table, r.protocol, r.scope), (1003, 77, Scope::Universe));
        assert_eq!(
            r.to_string(),
            "10.1.0.0/24 via 10.0.0.1 dev 3 table 1003 onlink"
        );
        assert_eq!(r.family(), AddressFamily::Inet);
        let v6 = Route::new("::/0".parse().unwrap());
        assert_eq!(
            (v6.scope, v6.family()),
            (Scope::Universe, AddressFamily::Inet6)
        );
    }

    #[test]
    fn the_message_carries_every_field() {
        let r = Route::new("10.1.0.0/24".parse().unwrap())
            .via("10.0.0.1".parse().unwrap())
            .dev(3)
            .table(1003)
            .protocol(77)
            .onlink();
        assert_eq!(parse_route(&r.message().unwrap()), Some(r));
    }

    #[test]
    fn scopes_round_trip_through_the_header() {
        for s in [Scope::Universe, Scope::Link, Scope::Host, Scope::Other(200)] {
            assert_eq!(Scope::from_header(s.header()), s);
        }
    }
}
