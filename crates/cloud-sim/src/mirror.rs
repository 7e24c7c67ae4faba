//! `unicni cloud-sim --mirror-routes`: the emulated route table made real. Each entry that
//! reaches `Available` becomes a kernel route in the emulator's own namespace, so that
//! namespace forwards pod traffic like the VPC router would; a deleted entry's route goes.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use tokio::sync::broadcast::{self, error::RecvError};
use unicni_cloud_sim::{CloudSim, SimEvent};

/// The primary IP of the instance (or ENI) a route entry points at.
fn next_hop_ip(sim: &CloudSim, hop: &str) -> Option<Ipv4Addr> {
    let st = sim.snapshot();
    let eni = match st.instances.get(hop) {
        Some(i) => st.enis.get(&i.primary_eni_id),
        None => st.enis.get(hop),
    };
    eni.map(|e| e.primary_ip)
}

fn ip_route(args: &[&str]) {
    let out = Command::new("ip")
        .arg("route")
        .args(args)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => tracing::info!("mirrored: ip route {}", args.join(" ")),
        Ok(o) => tracing::warn!(
            "mirror route: `ip route {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => tracing::warn!("mirror route: run `ip route {}`: {e}", args.join(" ")),
    }
}

fn apply(sim: &CloudSim, ev: &SimEvent) {
    match ev {
        SimEvent::RouteEntryAvailable {
            destination_cidr,
            next_hop_id,
            ..
        } => match next_hop_ip(sim, next_hop_id) {
            Some(ip) => ip_route(&["replace", destination_cidr, "via", &ip.to_string()]),
            None => tracing::warn!(
                "mirror route: next hop {next_hop_id} of {destination_cidr} has no primary IP"
            ),
        },
        SimEvent::RouteEntryDeleted {
            destination_cidr, ..
        } => ip_route(&["del", destination_cidr]),
        _ => {}
    }
}

pub async fn mirror(sim: CloudSim, mut events: broadcast::Receiver<SimEvent>) {
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
        apply(&sim, ev);
    }
    loop {
        match events.recv().await {
            Ok(ev) => apply(&sim, &ev),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("mirror route: {n} events missed; routes may be stale")
            }
            Err(RecvError::Closed) => return,
        }
    }
}
