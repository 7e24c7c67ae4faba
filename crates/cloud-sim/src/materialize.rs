//! `unicni cloud-sim --materialize-enis`: the emulated ENIs made real. An ENI attached to
//! an instance whose namespace is known becomes a veth pair: `ethN` with the ENI's MAC in
//! the instance's namespace, its peer a port of the VPC bridge in the emulator's own
//! namespace. Every address of the ENI (its primary IP, each secondary IP, each IPv6
//! address) gets a host route (/32, /128) and a permanent neighbour entry (the ENI's MAC)
//! on the bridge, so the VPC sends that address's traffic into the ENI's link, like the
//! real vSwitch delivers it to the ENI. Detach removes the pair, wherever its node end is
//! by then (an exclusive-ENI pod's namespace, for instance): deleting the VPC-side port
//! deletes both ends. A delegated prefix is routed the same way, address by address
//! (all 16 of a /28; the start of a /80, see [`V6_PREFIX_ROUTED`]).
//!
//! The bridge needs a fixed MAC (created with an address): a bridge that takes the lowest
//! MAC of its ports changes its address as ENI ports come and go, and the kernel flushes a
//! device's neighbour table, permanent entries included, when its address changes.
//!
//! Everything is netlink (unicni-net) from a dedicated thread with a runtime of its own:
//! the emulator's namespace is the process's, and an instance's namespace is only entered
//! by unicni-net's short-lived thread that opens a netlink socket there, never by a tokio
//! worker.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use tokio::sync::broadcast;
use unicni_net::Route;
use unicni_net::{NetError, NetNs, Netlink, VethSpec};

use crate::{CloudSim, SimEvent};

/// The ENI's link pair and the addresses routed into it.
struct Link {
    netns: String,
    vpc_port: String,
    node_name: String,
    mac: [u8; 6],
    ips: BTreeSet<IpAddr>,
}

/// Turns the emulator's ENI events into links, routes and neighbours (see the module doc).
pub struct Materializer {
    /// Instance ID → network namespace of that instance.
    netns: BTreeMap<String, String>,
    bridge: String,
    links: BTreeMap<String, Link>,
}

/// Addresses of an IPv6 /80 the VPC side routes: a /80 cannot be enumerated, and the
/// pool hands out its addresses from the start (`::1` on), at most one per IPv4 address
/// the ENI's /28s can hold (49 of them, 784 addresses, on the largest types).
const V6_PREFIX_ROUTED: u128 = 784;

/// The addresses of delegated prefixes the VPC delivers into the ENI: every address of
/// a /28; the first [`V6_PREFIX_ROUTED`] after the network address of a /80.
fn prefix_addresses(prefixes: &[IpNet]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for p in prefixes {
        match p {
            IpNet::V4(n) => out.extend(
                (u32::from(n.network())..=u32::from(n.broadcast())).map(|i| IpAddr::V4(i.into())),
            ),
            IpNet::V6(n) => {
                let base = u128::from(n.network());
                out.extend((1..=V6_PREFIX_ROUTED).map(|i| IpAddr::V6((base + i).into())));
            }
        }
    }
    out
}

/// `INSTANCE=NETNS`, as given to `--instance-netns`.
pub fn parse_instance_netns(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((i, n)) if !i.is_empty() && !n.is_empty() && !n.contains('/') => {
            Ok((i.to_string(), n.to_string()))
        }
        _ => Err(format!(
            "`{s}` is not INSTANCE=NETNS (e.g. i-node1=ulab-n1, a name under /var/run/netns)"
        )),
    }
}

/// The bridge port name: `e` + the tail of the ENI ID, within the 15-byte limit.
fn vpc_port_name(eni_id: &str) -> String {
    let alnum: Vec<char> = eni_id
        .strip_prefix("eni-")
        .unwrap_or(eni_id)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let tail: String = alnum[alnum.len().saturating_sub(13)..].iter().collect();
    format!("e{tail}")
}

/// The first `ethN` (N ≥ 1) neither among `present` nor given to a link that left its
/// namespace (an exclusive-ENI pod has it and will move it back).
fn free_eth_name<'a>(
    present: impl Iterator<Item = &'a String>,
    taken: &BTreeSet<String>,
) -> Option<String> {
    let mut names: BTreeSet<&str> = present.map(String::as_str).collect();
    names.extend(taken.iter().map(String::as_str));
    (1..100)
        .map(|n| format!("eth{n}"))
        .find(|n| !names.contains(n.as_str()))
}

/// The host route (/32, /128) of one ENI address.
fn host_route(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// A handle in instance namespace `netns` (a name under /var/run/netns).
fn netns_handle(netns: &str) -> Result<(NetNs, Netlink), NetError> {
    let ns = NetNs::open(&Path::new("/var/run/netns").join(netns))?;
    let nl = Netlink::in_netns(&ns)?;
    Ok((ns, nl))
}

async fn index_of(nl: &Netlink, name: &str) -> Result<u32, String> {
    match nl.link(name).await {
        Ok(Some(l)) => Ok(l.index),
        Ok(None) => Err(format!("link {name} does not exist")),
        Err(e) => Err(e.to_string()),
    }
}

impl Materializer {
    pub fn new(netns: BTreeMap<String, String>, bridge: String) -> Self {
        Self {
            netns,
            bridge,
            links: BTreeMap::new(),
        }
    }

    async fn attach(
        &mut self,
        nl: &Netlink,
        sim: &CloudSim,
        eni_id: &str,
        instance_id: &str,
        mac_text: &str,
    ) {
        let Some(netns) = self.netns.get(instance_id).cloned() else {
            tracing::debug!(
                "materialize ENI: instance {instance_id} has no namespace; {eni_id} stays virtual"
            );
            return;
        };
        let Some(mac) = unicni_net::overlay::parse_mac(mac_text) else {
            return tracing::warn!("materialize ENI {eni_id}: MAC {mac_text:?} is unreadable");
        };
        self.detach(nl, eni_id).await;
        let vpc_port = vpc_port_name(eni_id);
        // A leftover port from an earlier run would make the add fail.
        let _ = nl.delete_link(&vpc_port).await;
        let taken: BTreeSet<String> = self
            .links
            .values()
            .filter(|l| l.netns == netns)
            .map(|l| l.node_name.clone())
            .collect();
        let (ns, node_nl) = match netns_handle(&netns) {
            Ok(h) => h,
            Err(e) => return tracing::warn!("materialize ENI {eni_id} on {instance_id}: {e}"),
        };
        let present = match node_nl.links().await {
            Ok(l) => l,
            Err(e) => return tracing::warn!("materialize ENI {eni_id} on {instance_id}: {e}"),
        };
        let Some(node_name) = free_eth_name(present.iter().map(|l| &l.name), &taken) else {
            return tracing::warn!("materialize ENI {eni_id}: no free ethN name in {netns}");
        };
        let bridge = match nl.link(&self.bridge).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return tracing::warn!(
                    "materialize ENI {eni_id}: the VPC bridge {} does not exist",
                    self.bridge
                )
            }
            Err(e) => return tracing::warn!("materialize ENI {eni_id}: {e}"),
        };
        // The node's end is visible from the moment it exists: an agent may find it by its
        // MAC and hand it to an exclusive-ENI pod before the steps after the first are done.
        // So only the VPC side's steps undo the pair when they fail; bringing the node's
        // end up is a courtesy (the agent and the plugin bring it up themselves), and it
        // fails, harmlessly, when the link has already moved into a pod.
        let created = async {
            nl.create_veth(&VethSpec {
                host_name: &vpc_port,
                peer_name: &node_name,
                peer_netns: &ns,
                master: Some(bridge.index),
                mtu: bridge.mtu,
                host_mac: None,
                peer_mac: Some(mac),
            })
            .await
            .map_err(|e| e.to_string())?;
            let port = index_of(nl, &vpc_port).await?;
            nl.replace_bridge_fdb_static(port, mac)
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(e) = created.await {
            tracing::warn!("materialize ENI {eni_id} on {instance_id}: {e}");
            let _ = nl.delete_link(&vpc_port).await;
            return;
        }
        let up = async {
            let i = index_of(&node_nl, &node_name).await?;
            node_nl.set_up(i).await.map_err(|e| e.to_string())
        };
        if let Err(e) = up.await {
            tracing::debug!(
                "materialize ENI {eni_id}: {node_name} not brought up (already taken?): {e}"
            );
        }
        tracing::info!(
            eni = eni_id,
            instance = instance_id,
            mac = mac_text,
            netns,
            link = node_name,
            "ENI materialized"
        );
        let (ips, prefixes): (Vec<IpAddr>, Vec<IpNet>) = sim
            .snapshot()
            .enis
            .get(eni_id)
            .map(|e| {
                (
                    std::iter::once(e.primary_ip)
                        .chain(e.secondary_ips.iter().copied())
                        .map(IpAddr::V4)
                        .chain(e.ipv6s.iter().copied().map(IpAddr::V6))
                        .collect(),
                    e.prefix_events(),
                )
            })
            .unwrap_or_default();
        self.links.insert(
            eni_id.to_string(),
            Link {
                netns,
                vpc_port,
                node_name,
                mac,
                ips: BTreeSet::new(),
            },
        );
        self.assign(nl, eni_id, &ips).await;
        self.assign(nl, eni_id, &prefix_addresses(&prefixes)).await;
    }

    async fn detach(&mut self, nl: &Netlink, eni_id: &str) {
        let Some(link) = self.links.remove(eni_id) else {
            return;
        };
        for ip in &link.ips {
            self.unroute(nl, *ip).await;
        }
        // Deleting one end of a veth pair deletes the other end in the node namespace.
        if let Err(e) = nl.delete_link(&link.vpc_port).await {
            tracing::warn!("materialize ENI: remove {} of {eni_id}: {e}", link.vpc_port);
        }
        tracing::info!(
            eni = eni_id,
            netns = link.netns,
            link = link.node_name,
            "ENI link removed"
        );
    }

    async fn assign(&mut self, nl: &Netlink, eni_id: &str, ips: &[IpAddr]) {
        let Some(link) = self.links.get_mut(eni_id) else {
            return;
        };
        let bridge = match index_of(nl, &self.bridge).await {
            Ok(i) => i,
            Err(e) => return tracing::warn!("materialize ENI {eni_id}: VPC bridge: {e}"),
        };
        for ip in ips {
            let dst = host_route(*ip);
            let route = Route::new(dst).dev(bridge);
            if let Err(e) = nl.replace_route(&route).await {
                tracing::warn!("materialize ENI: route {dst} of {eni_id}: {e}");
            }
            if let Err(e) = nl.replace_neighbour(bridge, *ip, link.mac).await {
                tracing::warn!("materialize ENI: neighbour {ip} of {eni_id}: {e}");
            }
            link.ips.insert(*ip);
        }
    }

    async fn unroute(&self, nl: &Netlink, ip: IpAddr) {
        let dst = host_route(ip);
        let bridge = match index_of(nl, &self.bridge).await {
            Ok(i) => i,
            Err(e) => {
                return tracing::warn!("materialize ENI: remove route {dst}: VPC bridge: {e}")
            }
        };
        if let Err(e) = nl.delete_route(&Route::new(dst).dev(bridge)).await {
            tracing::warn!("materialize ENI: remove route {dst}: {e}");
        }
        let _ = nl.delete_neighbour(bridge, ip).await;
    }

    async fn unassign(&mut self, nl: &Netlink, eni_id: &str, ips: &[IpAddr]) {
        let Some(link) = self.links.get_mut(eni_id) else {
            return;
        };
        let gone: Vec<IpAddr> = ips
            .iter()
            .filter(|ip| link.ips.remove(ip))
            .copied()
            .collect();
        for ip in gone {
            self.unroute(nl, ip).await;
        }
    }

    async fn apply(&mut self, nl: &Netlink, sim: &CloudSim, ev: &SimEvent) {
        match ev {
            SimEvent::EniAttached {
                eni_id,
                instance_id,
                mac,
            } => self.attach(nl, sim, eni_id, instance_id, mac).await,
            SimEvent::EniDetached { eni_id, .. } | SimEvent::EniDeleted { eni_id } => {
                self.detach(nl, eni_id).await
            }
            SimEvent::IpsAssigned { eni_id, ips } => self.assign(nl, eni_id, ips).await,
            SimEvent::IpsUnassigned { eni_id, ips } => self.unassign(nl, eni_id, ips).await,
            SimEvent::PrefixesAssigned { eni_id, prefixes } => {
                self.assign(nl, eni_id, &prefix_addresses(prefixes)).await
            }
            SimEvent::PrefixesUnassigned { eni_id, prefixes } => {
                self.unassign(nl, eni_id, &prefix_addresses(prefixes)).await
            }
            _ => {}
        }
    }

    /// Runs [`Materializer::run`] for `sim`'s events from now on, on a thread of its own
    /// (`materialize-enis`); a failure there is logged.
    pub fn spawn(self, sim: &CloudSim) -> std::io::Result<std::thread::JoinHandle<()>> {
        let (sim, events) = (sim.clone(), sim.subscribe());
        std::thread::Builder::new()
            .name("materialize-enis".into())
            .spawn(move || {
                if let Err(e) = self.run(sim, events) {
                    tracing::error!("materialize ENI: {e}; ENIs stay virtual");
                }
            })
    }

    /// Applies events until the emulator's channel closes. Blocking: run it on a thread of
    /// its own (it builds its own runtime there). ENIs already `InUse` in a loaded state
    /// file never publish an event again, so they are materialized first. Fails only when
    /// no netlink socket can be opened in the emulator's namespace.
    pub fn run(
        mut self,
        sim: CloudSim,
        mut events: broadcast::Receiver<SimEvent>,
    ) -> Result<(), NetError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NetError::Io {
                what: "start the ENI materializer's runtime".into(),
                source,
            })?;
        rt.block_on(async move {
            let nl = Netlink::current()?;
            let existing: Vec<(String, String, String)> = sim
                .snapshot()
                .enis
                .values()
                .filter(|e| e.status == "InUse" && e.eni_type == "Secondary")
                .filter_map(|e| Some((e.id.clone(), e.instance_id.clone()?, e.mac.clone())))
                .collect();
            for (eni, instance, mac) in existing {
                self.attach(&nl, &sim, &eni, &instance, &mac).await;
            }
            loop {
                match events.recv().await {
                    Ok(ev) => self.apply(&nl, &sim, &ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("materialize ENI: {n} events missed; ENI links may be stale")
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_fit_and_differ() {
        let a = vpc_port_name("eni-sim0000000005");
        let b = vpc_port_name("eni-sim0000000006");
        assert!(a.len() <= 15 && b.len() <= 15, "{a} {b}");
        assert_ne!(a, b);
    }

    #[test]
    fn host_routes_per_family() {
        assert_eq!(
            host_route("192.168.252.5".parse().unwrap()).to_string(),
            "192.168.252.5/32"
        );
        assert_eq!(
            host_route("fd00:252::2".parse().unwrap()).to_string(),
            "fd00:252::2/128"
        );
    }

    #[test]
    fn eth_names_skip_present_and_promised_ones() {
        let present = ["lo", "eth0", "eth1"].map(String::from);
        let taken = BTreeSet::from(["eth2".to_string()]);
        assert_eq!(
            free_eth_name(present.iter(), &taken).as_deref(),
            Some("eth3")
        );
    }

    #[test]
    fn instance_netns_parses_and_refuses_bad_input() {
        assert_eq!(
            parse_instance_netns("i-a=ulab-n1").unwrap(),
            ("i-a".to_string(), "ulab-n1".to_string())
        );
        for bad in ["i-a", "=ns", "i-a=", "i-a=/var/run/netns/x"] {
            let e = parse_instance_netns(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
