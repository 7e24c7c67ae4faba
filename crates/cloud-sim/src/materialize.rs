//! `unicni cloud-sim --materialize-enis`: the emulated ENIs made real. An ENI attached to
//! an instance whose namespace is known becomes a veth pair: `ethN` with the ENI's MAC in
//! the instance's namespace, its peer a port of the VPC bridge in the emulator's own
//! namespace. Every address of the ENI (its primary IP, each secondary IP, each IPv6
//! address) gets a host route (/32, /128) and a permanent neighbour entry (the ENI's MAC)
//! on the bridge, so the VPC sends that address's traffic into the ENI's link, like the
//! real vSwitch delivers it to the ENI. Detach removes the pair, wherever its node end is
//! by then (an exclusive-ENI pod's namespace, for instance): deleting the VPC-side port
//! deletes both ends.
//!
//! The bridge needs a fixed MAC (`ip link add br0 address …`): a bridge that takes the
//! lowest MAC of its ports changes its address as ENI ports come and go, and the kernel
//! flushes a device's neighbour table, permanent entries included, when its address changes.
//!
//! Everything runs as `ip`/`bridge` child processes from a dedicated thread: no namespace
//! switch ever happens in this process, let alone on a tokio worker.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use tokio::sync::broadcast;
use unicni_cloud_sim::{CloudSim, SimEvent};

/// The ENI's link pair and the addresses routed into it.
struct Link {
    netns: String,
    vpc_port: String,
    node_name: String,
    mac: String,
    ips: BTreeSet<IpAddr>,
}

pub struct Materializer {
    /// Instance ID → network namespace of that instance.
    netns: BTreeMap<String, String>,
    bridge: String,
    links: BTreeMap<String, Link>,
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

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run `{cmd} {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn warn_on_err(what: &str, r: Result<String, String>) {
    if let Err(e) = r {
        tracing::warn!("materialize ENI: {what}: {e}");
    }
}

/// The first `ethN` (N ≥ 1) neither present in `netns` nor given to a link that left it
/// (an exclusive-ENI pod has it and will move it back).
fn free_eth_name(netns: &str, taken: &BTreeSet<String>) -> Result<String, String> {
    let out = run("ip", &["-n", netns, "-o", "link", "show"])?;
    let mut names: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect();
    names.extend(taken.iter().cloned());
    (1..100)
        .map(|n| format!("eth{n}"))
        .find(|n| !names.contains(n))
        .ok_or_else(|| format!("no free ethN name in namespace {netns}"))
}

/// `ip` family flag, host-route destination and address text of one ENI address.
fn host_route(ip: IpAddr) -> (&'static str, String, String) {
    match ip {
        IpAddr::V4(v) => ("-4", format!("{v}/32"), v.to_string()),
        IpAddr::V6(v) => ("-6", format!("{v}/128"), v.to_string()),
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

    fn attach(&mut self, sim: &CloudSim, eni_id: &str, instance_id: &str, mac: &str) {
        let Some(netns) = self.netns.get(instance_id).cloned() else {
            tracing::debug!(
                "materialize ENI: instance {instance_id} has no namespace; {eni_id} stays virtual"
            );
            return;
        };
        self.detach(eni_id);
        let vpc_port = vpc_port_name(eni_id);
        // A leftover port from an earlier run would make the add fail.
        let _ = run("ip", &["link", "del", &vpc_port]);
        let taken: BTreeSet<String> = self
            .links
            .values()
            .filter(|l| l.netns == netns)
            .map(|l| l.node_name.clone())
            .collect();
        let node_name = match free_eth_name(&netns, &taken) {
            Ok(n) => n,
            Err(e) => return tracing::warn!("materialize ENI {eni_id}: {e}"),
        };
        // The node's end is visible from the moment it exists: an agent may find it by its
        // MAC and hand it to an exclusive-ENI pod before the steps after the first are done.
        // So only the VPC side's steps undo the pair when they fail; bringing the node's
        // end up is a courtesy (the agent and the plugin bring it up themselves), and it
        // fails, harmlessly, when the link has already moved into a pod.
        let steps: [(&str, Vec<&str>); 3] = [
            (
                "ip",
                vec![
                    "link", "add", &vpc_port, "type", "veth", "peer", "name", &node_name,
                    "address", mac, "netns", &netns,
                ],
            ),
            (
                "ip",
                vec!["link", "set", &vpc_port, "master", &self.bridge, "up"],
            ),
            (
                "bridge",
                vec!["fdb", "replace", mac, "dev", &vpc_port, "master", "static"],
            ),
        ];
        for (cmd, args) in &steps {
            if let Err(e) = run(cmd, args) {
                tracing::warn!("materialize ENI {eni_id} on {instance_id}: {e}");
                let _ = run("ip", &["link", "del", &vpc_port]);
                return;
            }
        }
        if let Err(e) = run("ip", &["-n", &netns, "link", "set", &node_name, "up"]) {
            tracing::debug!(
                "materialize ENI {eni_id}: {node_name} not brought up (already taken?): {e}"
            );
        }
        tracing::info!(eni = eni_id, instance = instance_id, %mac, netns, link = node_name, "ENI materialized");
        let ips: Vec<IpAddr> = sim
            .snapshot()
            .enis
            .get(eni_id)
            .map(|e| {
                std::iter::once(e.primary_ip)
                    .chain(e.secondary_ips.iter().copied())
                    .map(IpAddr::V4)
                    .chain(e.ipv6s.iter().copied().map(IpAddr::V6))
                    .collect()
            })
            .unwrap_or_default();
        self.links.insert(
            eni_id.to_string(),
            Link {
                netns,
                vpc_port,
                node_name,
                mac: mac.to_string(),
                ips: BTreeSet::new(),
            },
        );
        self.assign(eni_id, &ips);
    }

    fn detach(&mut self, eni_id: &str) {
        let Some(link) = self.links.remove(eni_id) else {
            return;
        };
        for ip in &link.ips {
            self.unroute(*ip);
        }
        // Deleting one end of a veth pair deletes the other end in the node namespace.
        warn_on_err(
            &format!("remove {} of {eni_id}", link.vpc_port),
            run("ip", &["link", "del", &link.vpc_port]),
        );
        tracing::info!(
            eni = eni_id,
            netns = link.netns,
            link = link.node_name,
            "ENI link removed"
        );
    }

    fn assign(&mut self, eni_id: &str, ips: &[IpAddr]) {
        let Some(link) = self.links.get_mut(eni_id) else {
            return;
        };
        for ip in ips {
            let (family, dst, ip_s) = host_route(*ip);
            warn_on_err(
                &format!("route {dst} of {eni_id}"),
                run(
                    "ip",
                    &[family, "route", "replace", &dst, "dev", &self.bridge],
                ),
            );
            warn_on_err(
                &format!("neighbour {ip} of {eni_id}"),
                run(
                    "ip",
                    &[
                        family,
                        "neigh",
                        "replace",
                        &ip_s,
                        "lladdr",
                        &link.mac,
                        "dev",
                        &self.bridge,
                        "nud",
                        "permanent",
                    ],
                ),
            );
            link.ips.insert(*ip);
        }
    }

    fn unroute(&self, ip: IpAddr) {
        let (family, dst, ip_s) = host_route(ip);
        warn_on_err(
            &format!("remove route {dst}"),
            run("ip", &[family, "route", "del", &dst, "dev", &self.bridge]),
        );
        let _ = run("ip", &[family, "neigh", "del", &ip_s, "dev", &self.bridge]);
    }

    fn unassign(&mut self, eni_id: &str, ips: &[IpAddr]) {
        let Some(link) = self.links.get_mut(eni_id) else {
            return;
        };
        let gone: Vec<IpAddr> = ips
            .iter()
            .filter(|ip| link.ips.remove(ip))
            .copied()
            .collect();
        for ip in gone {
            self.unroute(ip);
        }
    }

    fn apply(&mut self, sim: &CloudSim, ev: &SimEvent) {
        match ev {
            SimEvent::EniAttached {
                eni_id,
                instance_id,
                mac,
            } => self.attach(sim, eni_id, instance_id, mac),
            SimEvent::EniDetached { eni_id, .. } | SimEvent::EniDeleted { eni_id } => {
                self.detach(eni_id)
            }
            SimEvent::IpsAssigned { eni_id, ips } => self.assign(eni_id, ips),
            SimEvent::IpsUnassigned { eni_id, ips } => self.unassign(eni_id, ips),
            _ => {}
        }
    }

    /// Applies events until the emulator's channel closes. Blocking: run it on its own
    /// thread. ENIs already `InUse` in a loaded state file never publish an event again,
    /// so they are materialized first.
    pub fn run(mut self, sim: CloudSim, mut events: broadcast::Receiver<SimEvent>) {
        let existing: Vec<(String, String, String)> = sim
            .snapshot()
            .enis
            .values()
            .filter(|e| e.status == "InUse" && e.eni_type == "Secondary")
            .filter_map(|e| Some((e.id.clone(), e.instance_id.clone()?, e.mac.clone())))
            .collect();
        for (eni, instance, mac) in existing {
            self.attach(&sim, &eni, &instance, &mac);
        }
        loop {
            match events.blocking_recv() {
                Ok(ev) => self.apply(&sim, &ev),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("materialize ENI: {n} events missed; ENI links may be stale")
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
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
            host_route("192.168.252.5".parse().unwrap()),
            ("-4", "192.168.252.5/32".into(), "192.168.252.5".into())
        );
        assert_eq!(
            host_route("fd00:252::2".parse().unwrap()),
            ("-6", "fd00:252::2/128".into(), "fd00:252::2".into())
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
