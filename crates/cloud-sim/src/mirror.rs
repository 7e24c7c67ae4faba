//! `unicni cloud-sim --mirror-routes`: the emulated route table made real. Each entry that
//! reaches `Available` becomes a kernel route in the emulator's own namespace, so that
//! namespace forwards pod traffic like the VPC router would; a deleted entry's route goes.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use tokio::sync::broadcast::{self, error::RecvError};
use unicni_net::{NetError, Netlink, Route};

use crate::{CloudSim, SimEvent};

/// The primary IP of the instance (or ENI) a route entry points at.
fn next_hop_ip(sim: &CloudSim, hop: &str) -> Option<Ipv4Addr> {
    let st = sim.snapshot();
    let eni = match st.instances.get(hop) {
        Some(i) => st.enis.get(&i.primary_eni_id),
        None => st.enis.get(hop),
    };
    eni.map(|e| e.primary_ip)
}

/// Mirrors the emulator's custom route entries into the kernel of the calling thread's
/// namespace (the emulator's own).
pub struct RouteMirror {
    nl: Netlink,
}

impl RouteMirror {
    /// A netlink handle in this namespace. Must be called inside a tokio runtime.
    pub fn new() -> Result<Self, NetError> {
        Ok(Self {
            nl: Netlink::current()?,
        })
    }

    /// Mirrors `sim`'s route entries from now on, on a task of the current runtime.
    pub fn spawn(sim: &CloudSim) -> Result<tokio::task::JoinHandle<()>, NetError> {
        let mirror = Self::new()?;
        Ok(tokio::spawn(mirror.run(sim.clone(), sim.subscribe())))
    }

    async fn apply(&self, sim: &CloudSim, ev: &SimEvent) {
        match ev {
            SimEvent::RouteEntryAvailable {
                destination_cidr,
                next_hop_id,
                ..
            } => {
                let Ok(dst) = destination_cidr.parse::<IpNet>() else {
                    return tracing::warn!(
                        "mirror route: destination {destination_cidr:?} is not a CIDR"
                    );
                };
                let Some(via) = next_hop_ip(sim, next_hop_id) else {
                    return tracing::warn!(
                        "mirror route: next hop {next_hop_id} of {destination_cidr} has no primary IP"
                    );
                };
                match self
                    .nl
                    .replace_route(&Route::new(dst).via(IpAddr::V4(via)))
                    .await
                {
                    Ok(()) => tracing::info!("mirrored: route {dst} via {via}"),
                    Err(e) => tracing::warn!("mirror route {dst} via {via}: {e}"),
                }
            }
            SimEvent::RouteEntryDeleted {
                destination_cidr, ..
            } => {
                let Ok(dst) = destination_cidr.parse::<IpNet>() else {
                    return;
                };
                match self.nl.delete_route(&Route::new(dst)).await {
                    Ok(()) => tracing::info!("mirrored: route {dst} removed"),
                    Err(e) => tracing::warn!("mirror route: remove {dst}: {e}"),
                }
            }
            _ => {}
        }
    }

    /// Applies events until the emulator's channel closes.
    pub async fn run(self, sim: CloudSim, mut events: broadcast::Receiver<SimEvent>) {
        // Entries already Available in a loaded state file never publish an event again.
        let existing: Vec<SimEvent> = sim
            .snapshot()
            .route_tables
            .values()
            .flat_map(|t| {
                t.entries
                    .iter()
                    .filter(|e| e.status == "Available" && e.entry_type == "Custom")
                    .map(|e| SimEvent::RouteEntryAvailable {
                        route_table_id: t.id.clone(),
                        route_entry_id: e.id.clone(),
                        destination_cidr: e.destination_cidr.clone(),
                        next_hop_id: e.next_hop_id.clone(),
                    })
            })
            .collect();
        for ev in &existing {
            self.apply(&sim, ev).await;
        }
        loop {
            match events.recv().await {
                Ok(ev) => self.apply(&sim, &ev).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("mirror route: {n} events missed; routes may be stale")
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}
