//! vxlan mode: one device for the whole cluster; per peer a permanent neighbour entry
//! (peer VTEP IP → VTEP MAC), an FDB entry (VTEP MAC → peer underlay IP) and an on-link
//! route (peer subnet via VTEP IP), written in that order so a packet never takes a route
//! whose next hop cannot be resolved yet.
//!
//! Dual stack over the IPv4 underlay: the same device carries IPv6. It holds the IPv6
//! subnet's network address too, and each peer gets an IPv6 neighbour entry (its IPv6
//! VTEP address → the same VTEP MAC) and an IPv6 on-link route; the FDB entry is shared.
//! Upstream flannel's separate `flannel-v6.<vni>` device exists for an IPv6 underlay,
//! which the IPv4 VPC here never is (docs/flannel.md).

use crate::peers::Peer;
use crate::reconcile::{own_routes, Pass, PARALLEL, ROUTE_PROTO};
use futures::stream::{self, StreamExt};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use unicni_core::Result;
use unicni_net::netlink::AddressFamily;
use unicni_net::overlay::{parse_mac, VxlanSpec};
use unicni_net::{Netlink, Route, TABLE_MAIN};

/// vxlan adds outer Ethernet (14), IPv4 (20), UDP (8) and vxlan (8) headers.
pub const OVERHEAD_V4: u32 = 50;

#[derive(Debug, Clone)]
pub struct Vxlan {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub mac: [u8; 6],
    pub local: Ipv4Addr,
    pub underlay: u32,
    pub mtu: u32,
    /// This node's subnet: its network address goes on the device (the VTEP IP).
    pub subnet: Ipv4Net,
    /// Dual stack: this node's IPv6 subnet, whose network address goes on the device too.
    pub subnet6: Option<Ipv6Net>,
}

impl Vxlan {
    /// Makes the device exist with the right kind, MAC, MTU, address and state. Returns
    /// its index and whether anything had to be fixed.
    pub async fn ensure(&self, nl: &Netlink) -> Result<(u32, bool)> {
        let mut fixed = false;
        let mut link = nl.link(&self.name).await?;
        if let Some(l) = &link {
            let wrong = l.kind.as_deref() != Some("vxlan") || parse_mac(&l.mac) != Some(self.mac);
            if wrong {
                tracing::warn!(device = %self.name, kind = ?l.kind, mac = %l.mac, "replacing a device that is not our vxlan device");
                nl.delete_link(&self.name).await?;
                link = None;
            }
        }
        let link = match link {
            Some(l) => l,
            None => {
                fixed = true;
                nl.create_vxlan(&VxlanSpec {
                    name: &self.name,
                    vni: self.vni,
                    port: self.port,
                    local: self.local,
                    underlay: self.underlay,
                    mac: self.mac,
                    mtu: self.mtu,
                })
                .await?;
                nl.link(&self.name).await?.ok_or_else(|| {
                    unicni_core::Error::kernel(format!(
                        "vxlan device {} vanished after creation",
                        self.name
                    ))
                })?
            }
        };
        if link.mtu != self.mtu {
            fixed = true;
            nl.set_mtu(link.index, self.mtu).await?;
        }
        let addr = Ipv4Net::new(self.subnet.network(), 32).expect("/32");
        let addrs = nl.ipv4_addresses(link.index).await?;
        if !addrs.contains(&addr) {
            fixed = true;
            nl.add_address(link.index, IpNet::V4(addr)).await?;
        }
        if let Some(s6) = self.subnet6 {
            let addr6 = IpNet::new(s6.network().into(), 128).expect("/128");
            if !nl.addresses(link.index).await?.contains(&addr6) {
                fixed = true;
                // No duplicate address detection: nobody else holds it (the lease says so),
                // and a tentative address could not source ICMPv6 errors yet.
                nl.add_address_nodad(link.index, addr6).await?;
            }
        }
        if !link.up {
            fixed = true;
            nl.set_up(link.index).await?;
        }
        Ok((link.index, fixed))
    }

    /// Brings the device and every peer's entries to the wanted state; removes entries of
    /// peers that are gone.
    pub async fn reconcile(&self, nl: &Netlink, peers: &[Peer]) -> Result<Pass> {
        let mut pass = Pass::default();
        let (idx, fixed) = self.ensure(nl).await?;
        if fixed {
            pass.repaired += 1;
        }
        let neigh: HashMap<IpAddr, (String, bool)> = nl
            .neighbours(idx, AddressFamily::Inet)
            .await?
            .into_iter()
            .map(|n| (n.ip, (n.mac, n.permanent)))
            .collect();
        let fdb = nl.fdb(idx).await?;
        let fdb_set: HashSet<(String, Option<IpAddr>)> =
            fdb.iter().map(|f| (f.mac.clone(), f.dst)).collect();
        let routes: Vec<_> = nl
            .routes(AddressFamily::Inet, Some(TABLE_MAIN))
            .await?
            .into_iter()
            .filter(|r| r.oif == Some(idx) || r.protocol == ROUTE_PROTO)
            .collect();
        let mut route_set: HashSet<(IpNet, Option<IpAddr>, Option<u32>)> =
            routes.iter().map(|r| (r.dst, r.gateway, r.oif)).collect();
        // IPv6: only routes the agent wrote (the kernel's fe80::/64 on the device stays).
        let routes6 = if self.subnet6.is_some() {
            own_routes(nl, AddressFamily::Inet6).await?
        } else {
            Vec::new()
        };
        route_set.extend(routes6.iter().map(|r| (r.dst, r.gateway, r.oif)));
        let neigh6: HashMap<IpAddr, (String, bool)> = if self.subnet6.is_some() {
            nl.neighbours(idx, AddressFamily::Inet6)
                .await?
                .into_iter()
                .map(|n| (n.ip, (n.mac, n.permanent)))
                .collect()
        } else {
            HashMap::new()
        };

        let mut work = Vec::new();
        let mut want_neigh = HashSet::new();
        let mut want_mac = HashMap::new();
        let mut want_dst = HashSet::new();
        for p in peers {
            let Some(mac) = p.vtep_mac else {
                pass.refused.push(format!(
                    "peer {:?} ({}) published no VTEP MAC: is it running vxlan mode?",
                    p.node, p.subnet
                ));
                continue;
            };
            let mac_s = unicni_net::netlink::format_mac(&mac);
            let gw = IpAddr::V4(p.vtep_ip());
            want_neigh.insert(gw);
            want_mac.insert(mac_s.clone(), p.public_ip);
            want_dst.insert(IpNet::V4(p.subnet));
            let need_n = neigh.get(&gw) != Some(&(mac_s.clone(), true));
            let need_f = !fdb_set.contains(&(mac_s.clone(), Some(IpAddr::V4(p.public_ip))));
            let need_r = !route_set.contains(&(p.subnet.into(), Some(gw), Some(idx)));
            let mut need6 = (false, false);
            if let (Some(_), Some(s6), Some(gw6)) = (self.subnet6, p.ipv6_subnet, p.vtep_ipv6()) {
                let gw6 = IpAddr::V6(gw6);
                want_neigh.insert(gw6);
                want_dst.insert(IpNet::V6(s6));
                need6 = (
                    neigh6.get(&gw6) != Some(&(mac_s.clone(), true)),
                    !route_set.contains(&(s6.into(), Some(gw6), Some(idx))),
                );
            }
            if need_n || need_f || need_r || need6.0 || need6.1 {
                work.push((p.clone(), mac, need_n, need_f, need_r, need6));
            } else {
                pass.peers += 1;
            }
        }
        let results: Vec<(String, Vec<String>, usize)> = stream::iter(work)
            .map(|(p, mac, need_n, need_f, need_r, need6)| async move {
                let mut errs = Vec::new();
                let mut n = 0;
                let gw = IpAddr::V4(p.vtep_ip());
                if need_n {
                    match nl.replace_neighbour(idx, gw, mac).await {
                        Ok(()) => n += 1,
                        Err(e) => errs.push(e.to_string()),
                    }
                }
                if need_f && errs.is_empty() {
                    match nl.replace_fdb(idx, mac, p.public_ip).await {
                        Ok(()) => n += 1,
                        Err(e) => errs.push(e.to_string()),
                    }
                }
                if need_r && errs.is_empty() {
                    let route = Route::new(p.subnet.into())
                        .via(gw)
                        .dev(idx)
                        .protocol(ROUTE_PROTO)
                        .onlink();
                    match nl.replace_route(&route).await {
                        Ok(()) => n += 1,
                        Err(e) => errs.push(e.to_string()),
                    }
                }
                if let (Some(s6), Some(gw6)) = (p.ipv6_subnet, p.vtep_ipv6()) {
                    let gw6 = IpAddr::V6(gw6);
                    if need6.0 && errs.is_empty() {
                        match nl.replace_neighbour(idx, gw6, mac).await {
                            Ok(()) => n += 1,
                            Err(e) => errs.push(e.to_string()),
                        }
                    }
                    if need6.1 && errs.is_empty() {
                        let route = Route::new(s6.into())
                            .via(gw6)
                            .dev(idx)
                            .protocol(ROUTE_PROTO)
                            .onlink();
                        match nl.replace_route(&route).await {
                            Ok(()) => n += 1,
                            Err(e) => errs.push(e.to_string()),
                        }
                    }
                }
                (p.node, errs, n)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (node, errs, n) in results {
            pass.repaired += n;
            if errs.is_empty() {
                pass.peers += 1;
            } else {
                pass.errors
                    .extend(errs.into_iter().map(|e| format!("peer {node:?}: {e}")));
            }
        }

        // Peers that left: route first, then FDB, then neighbour (reverse of adding).
        for r in routes
            .iter()
            .filter(|r| !want_dst.contains(&r.dst) && r.dst.prefix_len() < 32)
            .chain(routes6.iter().filter(|r| !want_dst.contains(&r.dst)))
        {
            match nl.delete_route(r).await {
                Ok(()) => pass.removed += 1,
                Err(e) => pass.errors.push(e.to_string()),
            }
        }
        for f in &fdb {
            let keep = want_mac
                .get(&f.mac)
                .is_some_and(|ip| f.dst == Some(IpAddr::V4(*ip)));
            if !keep {
                if let Some(mac) = parse_mac(&f.mac) {
                    match nl.delete_fdb(idx, mac, f.dst).await {
                        Ok(()) => pass.removed += 1,
                        Err(e) => pass.errors.push(e.to_string()),
                    }
                }
            }
        }
        for (ip, (_, permanent)) in neigh.iter().chain(&neigh6) {
            if *permanent && !want_neigh.contains(ip) {
                match nl.delete_neighbour(idx, *ip).await {
                    Ok(()) => pass.removed += 1,
                    Err(e) => pass.errors.push(e.to_string()),
                }
            }
        }
        pass.routes = want_dst.len();
        pass.neighbours = want_neigh.len();
        pass.fdb = want_mac.len();
        Ok(pass)
    }
}
