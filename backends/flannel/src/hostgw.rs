//! host-gw mode: one route per peer, its subnet via its underlay address. That only
//! works when the peer is on the same L2 segment (its address is on-link on the
//! underlay interface); a peer that is not is refused by name, never half-programmed.

use crate::peers::Peer;
use crate::reconcile::{Pass, PARALLEL, ROUTE_PROTO};
use futures::stream::{self, StreamExt};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use unicni_core::Result;
use unicni_net::netlink::AddressFamily;
use unicni_net::{Netlink, Route, TABLE_MAIN};

#[derive(Debug, Clone)]
pub struct HostGw {
    pub underlay: u32,
    pub underlay_name: String,
}

impl HostGw {
    pub async fn reconcile(&self, nl: &Netlink, peers: &[Peer]) -> Result<Pass> {
        let mut pass = Pass::default();
        let segments = nl.ipv4_addresses(self.underlay).await?;
        let routes: Vec<_> = nl
            .routes(AddressFamily::Inet, Some(TABLE_MAIN))
            .await?
            .into_iter()
            .filter(|r| r.protocol == ROUTE_PROTO)
            .collect();
        let have: HashSet<(IpNet, Option<IpAddr>, Option<u32>)> =
            routes.iter().map(|r| (r.dst, r.gateway, r.oif)).collect();
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
            if have.contains(&(
                p.subnet.into(),
                Some(p.public_ip.into()),
                Some(self.underlay),
            )) {
                pass.peers += 1;
            } else {
                work.push(p.clone());
            }
        }
        let underlay = self.underlay;
        let results: Vec<(String, Option<String>)> = stream::iter(work)
            .map(|p| async move {
                let route = Route::new(p.subnet.into())
                    .via(p.public_ip.into())
                    .dev(underlay)
                    .protocol(ROUTE_PROTO);
                let r = nl.replace_route(&route).await;
                (p.node, r.err().map(|e| e.to_string()))
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
        for r in routes.iter().filter(|r| !want.contains(&r.dst)) {
            match nl.delete_route(r).await {
                Ok(()) => pass.removed += 1,
                Err(e) => pass.errors.push(e.to_string()),
            }
        }
        pass.routes = want.len();
        Ok(pass)
    }
}
