//! host-gw mode: one route per peer, its subnet via its underlay address. That only
//! works when the peer is on the same L2 segment (its address is on-link on the
//! underlay interface); a peer that is not is refused by name, never half-programmed.
//!
//! Dual stack: the peer's IPv6 subnet via the peer's underlay IPv6 address (global, else
//! link-local, which every node on the segment has). The kernel refuses an IPv4 next hop
//! for an IPv6 route ("IPv6 does not support RTA_VIA", and no IPv4 nexthop objects for
//! IPv6 routes), so `via inet <IPv4>` is no option.

use crate::peers::Peer;
use crate::reconcile::{own_routes, Pass, PARALLEL, ROUTE_PROTO};
use futures::stream::{self, StreamExt};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use unicni_core::Result;
use unicni_net::netlink::AddressFamily;
use unicni_net::{Netlink, Route};

#[derive(Debug, Clone)]
pub struct HostGw {
    pub underlay: u32,
    pub underlay_name: String,
    /// Dual stack: program the peers' IPv6 subnets too.
    pub dual: bool,
}

impl HostGw {
    pub async fn reconcile(&self, nl: &Netlink, peers: &[Peer]) -> Result<Pass> {
        let mut pass = Pass::default();
        let segments = nl.ipv4_addresses(self.underlay).await?;
        let routes = own_routes(nl, AddressFamily::Inet).await?;
        let routes6 = if self.dual {
            own_routes(nl, AddressFamily::Inet6).await?
        } else {
            Vec::new()
        };
        let have: HashSet<(IpNet, Option<IpAddr>, Option<u32>)> = routes
            .iter()
            .chain(&routes6)
            .map(|r| (r.dst, r.gateway, r.oif))
            .collect();
        let mut want = HashSet::new();
        let mut work = Vec::new();
        for p in peers {
            if !segments.iter().any(|s| s.contains(&p.public_ip)) {
                pass.refused.push(format!(
                    "peer {:?} ({}) has underlay address {} which is not on the L2 segment of {} ({}): \
                     host-gw needs every node on one segment; use mode vxlan for routed underlays",
                    p.node,
                    p.subnet,
                    p.public_ip,
                    self.underlay_name,
                    segments.iter().map(|s| s.trunc().to_string()).collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            want.insert(IpNet::V4(p.subnet));
            let mut wanted = vec![Route::new(p.subnet.into())
                .via(p.public_ip.into())
                .dev(self.underlay)
                .protocol(ROUTE_PROTO)];
            if let (true, Some(s6)) = (self.dual, p.ipv6_subnet) {
                match p.public_ipv6 {
                    Some(gw6) => {
                        want.insert(IpNet::V6(s6));
                        wanted.push(
                            Route::new(s6.into())
                                .via(gw6.into())
                                .dev(self.underlay)
                                .protocol(ROUTE_PROTO),
                        );
                    }
                    None => pass.refused.push(format!(
                        "peer {:?} ({s6}) published no underlay IPv6 address: its IPv6 subnet \
                         has no next hop (is IPv6 disabled on its underlay interface?)",
                        p.node
                    )),
                }
            }
            let missing: Vec<Route> = wanted
                .into_iter()
                .filter(|r| !have.contains(&(r.dst, r.gateway, r.oif)))
                .collect();
            if missing.is_empty() {
                pass.peers += 1;
            } else {
                work.push((p.node.clone(), missing));
            }
        }
        let results: Vec<(String, Option<String>)> = stream::iter(work)
            .map(|(node, missing)| async move {
                for route in &missing {
                    if let Err(e) = nl.replace_route(route).await {
                        return (node, Some(e.to_string()));
                    }
                }
                (node, None)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (node, err) in results {
            match err {
                None => {
                    pass.peers += 1;
                    pass.repaired += 1;
                }
                Some(e) => pass.errors.push(format!("peer {node:?}: {e}")),
            }
        }
        for r in routes
            .iter()
            .chain(&routes6)
            .filter(|r| !want.contains(&r.dst))
        {
            match nl.delete_route(r).await {
                Ok(()) => pass.removed += 1,
                Err(e) => pass.errors.push(e.to_string()),
            }
        }
        pass.routes = want.len();
        Ok(pass)
    }
}
