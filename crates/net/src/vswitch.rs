//! What a namespace needs to act as an emulated vSwitch and VPC router: a static FDB entry
//! on a bridge port (the MAC lives behind that port), a neighbour of either family removed,
//! and a route through a gateway alone (the kernel picks the link).

use crate::{NetError, Netlink, Result};
use ipnet::IpNet;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;
use std::net::IpAddr;

fn build_error(dst: IpNet, gateway: IpAddr, e: impl std::fmt::Display) -> NetError {
    NetError::Netlink {
        op: "build route",
        object: format!("{dst} via {gateway}"),
        errno: None,
        message: e.to_string(),
    }
}

impl Netlink {
    /// Adds or replaces the static entry `mac` on bridge port `port` in its bridge's FDB
    /// (`bridge fdb replace MAC dev PORT master static`): frames to `mac` leave through
    /// `port` without being learned first.
    pub async fn replace_bridge_fdb_static(&self, port: u32, mac: [u8; 6]) -> Result<()> {
        self.handle
            .neighbours()
            .add_bridge(port, &mac)
            .flags(NeighbourFlags::Controller)
            .state(NeighbourState::Noarp)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink(
                    "replace bridge fdb entry",
                    self.obj(format!(
                        "{} on port {port}",
                        crate::netlink::format_mac(&mac)
                    )),
                    e,
                )
            })
    }

    /// Deletes neighbour `ip` (either family) on link `index`; a missing entry is success.
    pub async fn delete_neighbour_ip(&self, index: u32, ip: IpAddr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.ifindex = index;
        let (family, addr) = match ip {
            IpAddr::V4(v4) => (AddressFamily::Inet, NeighbourAddress::Inet(v4)),
            IpAddr::V6(v6) => (AddressFamily::Inet6, NeighbourAddress::Inet6(v6)),
        };
        m.header.family = family;
        m.attributes.push(NeighbourAttribute::Destination(addr));
        match self.handle.neighbours().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err =
                    NetError::netlink("delete neighbour", self.obj(format!("{ip} on {index}")), e);
                if err.is_not_found() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Adds or replaces the main-table route `dst` via `gateway`, out of whichever link
    /// reaches the gateway (`ip route replace DST via GW`).
    pub async fn replace_gateway_route(&self, dst: IpNet, gateway: IpAddr) -> Result<()> {
        let b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .map_err(|e| build_error(dst, gateway, e))?
            .gateway(gateway)
            .map_err(|e| build_error(dst, gateway, e))?
            .scope(RouteScope::Universe)
            .protocol(RouteProtocol::Static);
        self.handle
            .route()
            .add(b.build())
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink("replace route", self.obj(format!("{dst} via {gateway}")), e)
            })
    }
}
