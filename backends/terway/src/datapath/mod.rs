//! The pod datapaths of the terway backend (the plugin side) and the ENI links they
//! route through (the agent side).
//!
//! Everything runs in the node's network namespace (the calling thread's); the pod's
//! namespace is `att.netns`. Names are derived from the attachment ([`names`]), so DEL
//! and GC need no saved state:
//!
//! - shared ENI: veth `tw<hash>` ↔ `ifname`; the pod has its /32 (/128) and
//!   `default via 169.254.1.1` (`fe80::1`) resolved by a permanent neighbour to the host
//!   veth's MAC; the host has `podIP dev tw<hash>`, rule 512 `to podIP lookup main` and
//!   rule 2048 `from podIP lookup <ENI table>`, whose default route leaves by the ENI.
//!   With `terway.datapath = "ebpf"` eBPF programs on the veth and the ENI link short-cut
//!   that routing ([`fastpath`], docs/ebpf.md).
//! - exclusive ENI: the ENI's link moves into the pod as `ifname`; a veth
//!   (`v<ifname>` in the pod) carries traffic to the node's addresses and services.
//!   With NetworkPolicy the policy programs go on the ENI inside the pod ([`exclusive`]).

mod eni_link;
mod exclusive;
mod fastpath;
pub mod names;
mod shared;
mod veth;

use crate::proto::{EniInfo, PodMode, PodNetwork};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use unicni_core::{Attachment, AttachmentId, Error, NetworkResult, Result};
use unicni_net::netlink::AddressFamily;
use unicni_net::{NetNs, Netlink};

/// An ENI's link on the node, found by its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniLink {
    pub name: String,
    pub ifindex: u32,
}

/// `ip/32` or `ip/128`.
pub(crate) fn host_prefix(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

pub(crate) fn default_route(of: IpAddr) -> IpNet {
    match of {
        IpAddr::V4(_) => "0.0.0.0/0".parse().expect("constant"),
        IpAddr::V6(_) => "::/0".parse().expect("constant"),
    }
}

/// `CheckFailed` naming everything in `gaps`, or Ok when there is nothing.
pub(crate) fn missing(id: &AttachmentId, gaps: Vec<String>) -> Result<()> {
    if gaps.is_empty() {
        Ok(())
    } else {
        Err(Error::CheckFailed(format!(
            "{id}: missing {}",
            gaps.join("; ")
        )))
    }
}

fn pod_netns(att: &Attachment) -> Result<NetNs> {
    let path = att
        .netns
        .as_deref()
        .ok_or_else(|| Error::InvalidConfig("no network namespace given".into()))?;
    NetNs::open(path).map_err(Error::from)
}

/// Wires the pod: a veth with policy routing (shared) or the whole ENI (exclusive).
pub async fn setup(att: &Attachment, net: &PodNetwork) -> Result<NetworkResult> {
    let ns = pod_netns(att)?;
    match net.mode {
        PodMode::Shared => shared::setup(att, net, &ns).await,
        PodMode::Exclusive => exclusive::setup(att, net, &ns).await,
    }
}

/// Removes what `setup` made; idempotent, and works without `net` (agent down).
pub async fn teardown(att: &Attachment, net: Option<&PodNetwork>) -> Result<()> {
    // A pod namespace that is gone took its veth end with it, and the kernel gave a
    // physical ENI back to the node: only the host side is left.
    let ns = att.netns.as_deref().and_then(|p| match NetNs::open(p) {
        Ok(ns) => Some(ns),
        Err(e) => {
            tracing::debug!(error = %e, "pod namespace gone; cleaning the host side only");
            None
        }
    });
    // A shared pod has no ENI to give back; without the agent's answer, look.
    let may_hold_eni = net.is_none_or(|n| n.mode == PodMode::Exclusive);
    // NetworkPolicy's programs leave the ENI before the ENI leaves the pod.
    let policy = match net.and_then(|n| n.policy.as_deref()) {
        Some(pin) if may_hold_eni => {
            exclusive::detach_policy(std::path::Path::new(pin), att, ns.as_ref())
        }
        _ => Ok(()),
    };
    let returned = match &ns {
        Some(ns) if may_hold_eni => {
            let mac = net
                .filter(|n| n.mode == PodMode::Exclusive)
                .map(|n| n.eni.mac.as_str());
            exclusive::give_back(ns, mac).await
        }
        _ => Ok(()),
    };
    // The host side goes even when the ENI could not be given back (that error wins).
    let host = Netlink::current()?;
    let known = net
        .filter(|n| n.mode == PodMode::Shared)
        .map(shared::pod_ips)
        .unwrap_or_default();
    // The fast path's entry goes before the veth: no redirect into a pod being removed.
    // Without the agent's answer the agent's reconcile removes what is left.
    let fast = match net.and_then(|n| n.fast_path.as_deref()) {
        Some(pin) => {
            let index = host
                .link(&names::host_veth(&att.id))
                .await?
                .map(|l| l.index);
            fastpath::forget_pod(pin, index, &known)
        }
        None => Ok(()),
    };
    let host_side = veth::remove_host(&host, &names::host_veth(&att.id), &known).await;
    returned?;
    policy?;
    fast?;
    host_side.map(|_| ())
}

pub async fn check(att: &Attachment, net: &PodNetwork) -> Result<()> {
    let ns = pod_netns(att)?;
    match net.mode {
        PodMode::Shared => shared::check(att, net, &ns).await,
        PodMode::Exclusive => exclusive::check(att, net, &ns).await,
    }
}

/// Removes host veths of attachments not in `valid`.
pub async fn collect_garbage(valid: &[AttachmentId]) -> Result<usize> {
    let host = Netlink::current()?;
    let keep: HashSet<String> = valid.iter().map(names::host_veth).collect();
    // Rules are read before routes: setup adds a pod's route before its rules, so a rule
    // seen here whose address has no route afterwards is a leftover, not an ADD underway.
    let mut rules = host.rules(AddressFamily::Inet).await?;
    rules.extend(host.rules(AddressFamily::Inet6).await?);
    let links = host.links().await?;
    let mut removed = 0;
    let mut live_ips = Vec::new();
    for l in &links {
        if !names::is_host_veth(&l.name) || l.kind.as_deref() != Some("veth") {
            continue;
        }
        if keep.contains(&l.name) {
            live_ips.extend(veth::routed_ips(&host, l.index).await?);
        } else if veth::remove_host(&host, &l.name, &[]).await? {
            tracing::info!(veth = %l.name, "removed the host veth of a departed attachment");
            removed += 1;
        }
    }
    for r in &rules {
        if let Some(ip) = veth::is_pod_rule(r) {
            if !live_ips.contains(&ip) {
                host.delete_rule(r).await?;
            }
        }
    }
    Ok(removed)
}

/// Node-wide settings: forwarding (IPv4, and IPv6 when `dual`).
pub async fn prepare_node(dual: bool) -> Result<()> {
    eni_link::prepare_node(dual)
}

/// The ENI's link, when present on the node (the current namespace).
pub async fn find_eni_link(mac: &str) -> Result<Option<EniLink>> {
    let host = Netlink::current()?;
    Ok(eni_link::find(&host, mac).await?.map(|l| EniLink {
        name: l.name,
        ifindex: l.index,
    }))
}

/// Brings the ENI's link up and gives it its routing table (shared mode).
pub async fn prepare_eni(eni: &EniInfo, shared: bool) -> Result<EniLink> {
    eni_link::prepare(eni, shared).await
}

/// NetworkPolicy on the ENIs of running exclusive-ENI pods (the agent's pass over its
/// pods, `(id, netns)` each; `pin` the agent's pin directory): attaches the programs
/// where they are missing, opening them once. Err when they cannot be opened; otherwise
/// per pod whether it attached them.
pub fn ensure_exclusive_policy(
    pin: &std::path::Path,
    pods: &[(AttachmentId, String)],
) -> Result<Vec<(AttachmentId, Result<bool>)>> {
    exclusive::ensure_policy(pin, pods)
}

/// The eBPF fast path's program on an ENI link (shared mode, `terway.datapath = "ebpf"`).
pub fn attach_eni_fast_path(pin: &std::path::Path, ifindex: u32) -> Result<()> {
    fastpath::attach_eni(pin, ifindex)
}
