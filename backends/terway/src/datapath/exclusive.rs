//! Exclusive-ENI pods: the ENI's link moves into the pod and becomes its interface; a
//! veth carries the pod's traffic to the node and to services.
//!
//! The ENI is marked with an alias before it moves (see [`names::eni_alias`]), so a DEL
//! without the agent, or after an ADD that failed half-way, still finds it and gives it
//! back to the node under its old name.
//!
//! NetworkPolicy (`PodNetwork::policy`): the pod's VPC traffic never touches the node's
//! namespace, so the policy programs go on the ENI inside the pod (tc ingress: what is
//! delivered to the pod, tc egress: what it sends), attached while the ENI is still down
//! after the move, so the pod never has a moment without them. Their tcx links are pinned
//! under the agent's `<pin>/policy/links/pod_<host veth>_*`; DEL removes them before the
//! ENI goes back to the node, and the agent's policy engine removes those of pods whose
//! host veth is gone (a pod deleted without DEL). When the programs are not pinned (the
//! agent's policy engine has not loaded them), ADD fails with "try again later" rather
//! than run the pod unenforced.

use super::names::{self, GATEWAY_V4, GATEWAY_V6};
use super::veth::{self, Veth};
use super::{default_route, host_prefix, missing};
use crate::proto::PodNetwork;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;
use unicni_bpf::policy::PodPrograms;
use unicni_bpf::{BpfError, PolicyDatapath};
use unicni_core::{
    Attachment, AttachmentId, Error, InterfaceConfig, IpConfig, NetworkResult, Result, RouteConfig,
};
use unicni_net::{LinkInfo, NetNs, Netlink, Route};

/// The ENI's addresses in the pod: the primary IP with the vSwitch prefix, and the IPv6
/// address with the IPv6 vSwitch prefix (/128 when none is known).
fn eni_addresses(net: &PodNetwork) -> Vec<(IpNet, Option<IpAddr>)> {
    let mut out = vec![(
        IpNet::new(net.eni.primary_ip.into(), net.eni.cidr.prefix_len()).expect("valid prefix"),
        Some(IpAddr::V4(net.eni.gateway)),
    )];
    if let Some(v6) = net.ipv6 {
        let len = net.eni.cidr_v6.map(|c| c.prefix_len()).unwrap_or(128);
        out.push((
            IpNet::new(v6.into(), len).expect("valid prefix"),
            net.eni.gateway_v6.map(IpAddr::V6),
        ));
    }
    out
}

fn by_mac<'a>(links: &'a [LinkInfo], mac: &str) -> Option<&'a LinkInfo> {
    links.iter().find(|l| l.mac.eq_ignore_ascii_case(mac))
}

/// Moves the ENI into the pod as `ifname`; returns its index there.
async fn move_in(
    host: &Netlink,
    pod: &Netlink,
    ns: &NetNs,
    net: &PodNetwork,
    ifname: &str,
) -> Result<u32> {
    let mac = &net.eni.mac;
    if let Some(l) = pod.link(ifname).await? {
        if l.mac.eq_ignore_ascii_case(mac) {
            // A repeated ADD: the ENI is already the pod's interface.
            return Ok(l.index);
        }
        return Err(Error::AlreadyExists(format!(
            "interface {ifname} already exists in {}",
            ns.path().display()
        )));
    }
    let host_links = host.links().await?;
    let Some(link) = by_mac(&host_links, mac) else {
        // Moved by an earlier ADD that failed before the rename?
        let pod_links = pod.links().await?;
        if let Some(l) = by_mac(&pod_links, mac) {
            pod.set_down(l.index).await?;
            pod.rename_link(l.index, ifname).await?;
            return Ok(l.index);
        }
        return Err(Error::kernel(format!(
            "ENI {} (MAC {mac}) has no link on this node",
            net.eni.id
        )));
    };
    host.set_alias(link.index, &names::eni_alias(&link.name))
        .await?;
    if let Err(e) = host.move_link(link.index, ns, Some(ifname), None).await {
        if let Ok(links) = host.links().await {
            if let Some(still) = by_mac(&links, mac) {
                let _ = host.set_alias(still.index, "").await;
            }
        }
        return Err(e.into());
    }
    pod.link(ifname).await?.map(|l| l.index).ok_or_else(|| {
        Error::kernel(format!(
            "ENI {} moved into {} but {ifname} is not there",
            net.eni.id,
            ns.path().display()
        ))
    })
}

pub(super) async fn setup(att: &Attachment, net: &PodNetwork, ns: &NetNs) -> Result<NetworkResult> {
    let host = Netlink::current()?;
    let pod = Netlink::in_netns(ns)?;
    let ifname = &att.id.ifname;
    let eni_index = move_in(&host, &pod, ns, net, ifname).await?;
    // The veth first: the policy's pins are named after it, and the agent removes pins
    // whose veth does not exist.
    let host_name = names::host_veth(&att.id);
    let pod_veth = names::pod_veth(ifname);
    let v = veth::create(&host, &pod, ns, &host_name, &pod_veth, net.mtu).await?;
    // Moving a link brings it down: policy on it before it comes up.
    if let Some(pin) = &net.policy {
        attach_policy(Path::new(pin), ns, &host_name, ifname)?;
    }
    pod.set_up(eni_index).await?;
    let addrs = eni_addresses(net);
    for (addr, _) in &addrs {
        match addr {
            IpNet::V4(_) => pod.add_address(eni_index, *addr).await,
            IpNet::V6(_) => pod.add_address_nodad(eni_index, *addr).await,
        }?;
    }
    for (addr, gw) in &addrs {
        if let Some(gw) = gw {
            pod.replace_route(
                &Route::new(default_route(addr.addr()))
                    .via(*gw)
                    .dev(eni_index)
                    .onlink(),
            )
            .await?;
        }
    }

    let via_host: Vec<IpNet> = net
        .node_ips
        .iter()
        .chain(&net.service_cidrs)
        .map(|n| n.trunc())
        .collect();
    veth::pod_next_hops(
        &pod,
        &v,
        via_host.iter().any(|n| n.addr().is_ipv4()),
        via_host.iter().any(|n| n.addr().is_ipv6()),
    )
    .await?;
    for dst in &via_host {
        veth::pod_route_via_host(&pod, &v, *dst).await?;
    }
    let pod_ips: Vec<IpAddr> = addrs.iter().map(|(a, _)| a.addr()).collect();
    veth::host_routes(&host, &v, &pod_ips).await?;
    Ok(result(att, net, ns, &v, &addrs, &via_host))
}

fn policy_error(pin: &Path, e: BpfError) -> Error {
    match e {
        BpfError::NotLoaded { .. } => Error::TryAgain(format!(
            "NetworkPolicy is enforced on this node but its eBPF programs are not loaded \
             under {} yet (the agent's policy engine starts them); not starting the pod \
             unenforced: {e}",
            pin.display()
        )),
        e => Error::kernel_in("NetworkPolicy on the pod's ENI", e),
    }
}

/// The policy programs on the ENI (`ifname` in the pod), attached from a thread inside
/// the pod's namespace (tcx and netlink resolve the interface there).
fn attach_policy(pin: &Path, ns: &NetNs, key: &str, ifname: &str) -> Result<()> {
    let attached = ns.run(|| {
        let mut progs = PodPrograms::open(pin)?;
        progs.attach(key, ifname)
    })?;
    match attached {
        Ok(how) => {
            tracing::debug!(interface = ifname, ?how, "NetworkPolicy on the pod's ENI");
            Ok(())
        }
        Err(e) => Err(policy_error(pin, e)),
    }
}

/// The agent's pass over running exclusive-ENI pods (`(id, netns)` each): the policy
/// programs on the pod's ENI (`id.ifname` in `netns`) when they are not there, for pods
/// that started before `policy.enabled` was turned on. The programs are opened once.
/// Skips pods being added or deleted (no host veth on the node, or no ENI in the pod yet),
/// and pods whose tcx pins exist (without tcx, clsact filters are replaced in place; the
/// agent runs the pass once after a restart, again only while it has errors). Err when the programs cannot be opened; otherwise per pod whether it attached them.
pub(super) fn ensure_policy(
    pin: &Path,
    pods: &[(AttachmentId, String)],
) -> Result<Vec<(AttachmentId, Result<bool>)>> {
    let mut progs = PodPrograms::open(pin).map_err(|e| policy_error(pin, e))?;
    Ok(pods
        .iter()
        .map(|(id, netns)| {
            let done = ensure_pod_policy(&mut progs, pin, id, Path::new(netns));
            (id.clone(), done)
        })
        .collect())
}

fn ensure_pod_policy(
    progs: &mut PodPrograms,
    pin: &Path,
    id: &AttachmentId,
    netns: &Path,
) -> Result<bool> {
    let key = names::host_veth(id);
    if !link_exists(&key) || unicni_bpf::policy::pod_interface_pinned(pin, &key) {
        return Ok(false);
    }
    let ns = NetNs::open(netns)?;
    let ifname = id.ifname.as_str();
    let done = ns.run(|| -> std::result::Result<bool, BpfError> {
        // The ENI becomes `ifname` only when ADD moves it in.
        if !link_exists(ifname) {
            return Ok(false);
        }
        progs.attach(&key, ifname).map(|_| true)
    })?;
    done.map_err(|e| policy_error(pin, e))
}

/// Whether `name` is a link of the calling thread's namespace.
fn link_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// Removes the policy programs from the pod's ENI (DEL, before it goes back to the node).
/// Without the pod's namespace only the pins go (the interface left with it).
pub(super) fn detach_policy(pin: &Path, att: &Attachment, ns: Option<&NetNs>) -> Result<()> {
    let key = names::host_veth(&att.id);
    let ifname = att.id.ifname.as_str();
    let done = match ns {
        Some(ns) => ns.run(|| unicni_bpf::policy::detach_pod_interface(pin, &key, Some(ifname)))?,
        None => unicni_bpf::policy::detach_pod_interface(pin, &key, None),
    };
    done.map_err(|e| Error::kernel_in("remove NetworkPolicy from the pod's ENI", e))
}

/// What CHECK expects of the policy: the ENI's tcx link pins (clsact filters, on kernels
/// without tcx, are not looked at).
fn check_policy(pin: &Path, att: &Attachment, ns: &NetNs, gaps: &mut Vec<String>) {
    let key = names::host_veth(&att.id);
    if unicni_bpf::policy::pod_interface_pinned(pin, &key) {
        return;
    }
    let ifname = att.id.ifname.as_str();
    match ns.run(|| PolicyDatapath::pod_interface_tcx_first(ifname)) {
        Ok(Err(_)) => {} // no tcx on this kernel: clsact filters
        _ => gaps.push(format!(
            "NetworkPolicy programs on {ifname} (pinned under {})",
            pin.display()
        )),
    }
}

fn result(
    att: &Attachment,
    net: &PodNetwork,
    ns: &NetNs,
    v: &Veth,
    addrs: &[(IpNet, Option<IpAddr>)],
    via_host: &[IpNet],
) -> NetworkResult {
    let sandbox = ns.path().display().to_string();
    let mut routes: Vec<RouteConfig> = addrs
        .iter()
        .filter_map(|(a, gw)| gw.map(|gw| RouteConfig::via(default_route(a.addr()), gw)))
        .collect();
    routes.extend(via_host.iter().map(|dst| {
        let gw = if dst.addr().is_ipv4() {
            GATEWAY_V4.into()
        } else {
            GATEWAY_V6.into()
        };
        RouteConfig::via(*dst, gw)
    }));
    NetworkResult {
        interfaces: vec![
            v.host_interface(net.mtu),
            InterfaceConfig {
                name: att.id.ifname.clone(),
                mac: net.eni.mac.to_ascii_lowercase(),
                mtu: None,
                sandbox: Some(sandbox.clone()),
            },
            v.pod_interface(net.mtu, sandbox),
        ],
        ips: addrs
            .iter()
            .map(|(a, gw)| IpConfig {
                address: *a,
                gateway: *gw,
                interface: Some(1),
            })
            .collect(),
        routes,
        dns: Default::default(),
    }
}

pub(super) async fn check(att: &Attachment, net: &PodNetwork, ns: &NetNs) -> Result<()> {
    let host = Netlink::current()?;
    let pod = Netlink::in_netns(ns)?;
    let ifname = &att.id.ifname;
    let host_name = names::host_veth(&att.id);
    let addrs = eni_addresses(net);
    let mut gaps = Vec::new();
    match pod.link(ifname).await? {
        Some(l) if l.mac.eq_ignore_ascii_case(&net.eni.mac) => {
            if !l.up {
                gaps.push(format!("ENI {} ({ifname}) up", net.eni.id));
            }
            let have = pod.addresses(l.index).await?;
            for (a, _) in &addrs {
                if !have.contains(a) {
                    gaps.push(format!("address {a} on {ifname}"));
                }
            }
        }
        Some(l) => gaps.push(format!(
            "ENI {} as {ifname} in {} ({ifname} has MAC {}, not {})",
            net.eni.id,
            ns.path().display(),
            l.mac,
            net.eni.mac
        )),
        None => gaps.push(format!(
            "ENI {} as {ifname} in {}",
            net.eni.id,
            ns.path().display()
        )),
    }
    match host.link(&host_name).await? {
        None => gaps.push(format!("host veth {host_name}")),
        Some(l) => {
            let routed = veth::routed_ips(&host, l.index).await?;
            let primary = IpAddr::V4(net.eni.primary_ip);
            if !routed.contains(&primary) {
                gaps.push(format!(
                    "host route {} dev {host_name}",
                    host_prefix(primary)
                ));
            }
        }
    }
    if let Some(pin) = &net.policy {
        check_policy(Path::new(pin), att, ns, &mut gaps);
    }
    missing(&att.id, gaps)
}

/// Gives every ENI in the pod back to the node (the current namespace): those marked by
/// our alias, and the one with `eni_mac` when the agent said which. They come back down,
/// under the name they had on the node (or a free `ethN`), unmarked.
pub(super) async fn give_back(ns: &NetNs, eni_mac: Option<&str>) -> Result<()> {
    let pod = Netlink::in_netns(ns)?;
    let aliases = pod.link_aliases().await?;
    let marked = |index: u32| {
        aliases
            .iter()
            .find(|(i, _)| *i == index)
            .and_then(|(_, a)| names::eni_original_name(a))
    };
    let links = pod.links().await?;
    let targets: Vec<(&LinkInfo, Option<&str>)> = links
        .iter()
        .filter_map(|l| match marked(l.index) {
            Some(original) => Some((l, Some(original))),
            None if eni_mac.is_some_and(|m| l.mac.eq_ignore_ascii_case(m)) => Some((l, None)),
            None => None,
        })
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    // The node is the namespace of the calling thread (the plugin runs there).
    let node = NetNs::open(std::path::Path::new("/proc/thread-self/ns/net"))?;
    for (link, original) in targets {
        pod.set_down(link.index).await?;
        let name = original
            .filter(|n| !n.is_empty() && n.len() <= 15)
            .unwrap_or("eth%d");
        let Err(e) = pod.move_link(link.index, &node, Some(name), Some("")).await else {
            continue;
        };
        let still_here = pod.links().await?.iter().any(|l| l.index == link.index);
        if !still_here {
            // Moved, but its old name is taken on the node: it keeps the name it had in
            // the pod (the agent finds it by MAC). The rename failed before the alias
            // was cleared: clear it now.
            let host = Netlink::current()?;
            let host_links = host.links().await?;
            if let Some(l) = by_mac(&host_links, &link.mac) {
                host.set_alias(l.index, "").await?;
            }
            tracing::warn!(error = %e, mac = %link.mac, "ENI returned to the node under another name");
            continue;
        }
        if !e.is_exists() {
            return Err(e.into());
        }
        pod.move_link(link.index, &node, Some("eth%d"), Some(""))
            .await?;
    }
    Ok(())
}
