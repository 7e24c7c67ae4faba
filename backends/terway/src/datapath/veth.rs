//! The veth every terway pod has, the pod's next hop behind it, and the host-side state
//! (routes, neighbours, policy rules) that hangs off the host end.

use super::host_prefix;
use super::names::{self, GATEWAY_V4, GATEWAY_V6, RULE_FROM_POD, RULE_TO_POD};
use ipnet::IpNet;
use std::net::IpAddr;
use unicni_core::{Error, InterfaceConfig, Result};
use unicni_net::netlink::{format_mac, AddressFamily};
use unicni_net::rules::TABLE_MAIN;
use unicni_net::{NetNs, Netlink, Route, Rule, VethSpec};

/// Both ends of a pod veth once it exists.
pub(super) struct Veth {
    pub host_name: String,
    pub host_index: u32,
    pub host_mac: [u8; 6],
    pub pod_name: String,
    pub pod_index: u32,
    pub pod_mac: [u8; 6],
}

impl Veth {
    pub fn host_mac_str(&self) -> String {
        format_mac(&self.host_mac)
    }
    pub fn pod_mac_str(&self) -> String {
        format_mac(&self.pod_mac)
    }

    /// The host end, as the CNI result lists it.
    pub fn host_interface(&self, mtu: u32) -> InterfaceConfig {
        InterfaceConfig {
            name: self.host_name.clone(),
            mac: self.host_mac_str(),
            mtu: Some(mtu),
            sandbox: None,
        }
    }

    /// The pod end, inside the network namespace at `sandbox`.
    pub fn pod_interface(&self, mtu: u32, sandbox: String) -> InterfaceConfig {
        InterfaceConfig {
            name: self.pod_name.clone(),
            mac: self.pod_mac_str(),
            mtu: Some(mtu),
            sandbox: Some(sandbox),
        }
    }
}

/// Creates the veth `host_name` ↔ `pod_name` (pod end inside `ns`), both ends up.
/// A host veth of the same name can only be the leftover of an ADD that was killed: it
/// goes first. `AlreadyExists` when `pod_name` is taken in the pod.
pub(super) async fn create(
    host: &Netlink,
    pod: &Netlink,
    ns: &NetNs,
    host_name: &str,
    pod_name: &str,
    mtu: u32,
) -> Result<Veth> {
    host.delete_link(host_name).await?;
    let host_mac = names::mac_for_name(host_name);
    let pod_mac = names::pod_mac(host_name);
    let spec = VethSpec {
        host_name,
        peer_name: pod_name,
        peer_netns: ns,
        master: None,
        mtu,
        host_mac: Some(host_mac),
        peer_mac: Some(pod_mac),
    };
    if let Err(e) = host.create_veth(&spec).await {
        if e.is_exists() && matches!(pod.link(pod_name).await, Ok(Some(_))) {
            return Err(Error::AlreadyExists(format!(
                "interface {pod_name} already exists in {}",
                ns.path().display()
            )));
        }
        return Err(e.into());
    }
    let host_link = host
        .link(host_name)
        .await?
        .ok_or_else(|| Error::kernel(format!("host veth {host_name} vanished after creation")))?;
    let pod_link = pod.link(pod_name).await?.ok_or_else(|| {
        Error::kernel(format!(
            "{pod_name} vanished from {} after creation",
            ns.path().display()
        ))
    })?;
    pod.set_up(pod_link.index).await?;
    Ok(Veth {
        host_name: host_name.to_string(),
        host_index: host_link.index,
        host_mac,
        pod_name: pod_name.to_string(),
        pod_index: pod_link.index,
        pod_mac,
    })
}

/// Inside the pod: the next hops 169.254.1.1 (and fe80::1) on the veth, resolved by
/// permanent neighbours to the host end's MAC, so no ARP/NDP is ever needed for them.
/// The link must be up (bringing a link up or down flushes its neighbours).
pub(super) async fn pod_next_hops(pod: &Netlink, veth: &Veth, v4: bool, v6: bool) -> Result<()> {
    if v4 {
        pod.replace_neighbour(veth.pod_index, GATEWAY_V4.into(), veth.host_mac)
            .await?;
        pod.replace_route(&Route::new(host_prefix(GATEWAY_V4.into())).dev(veth.pod_index))
            .await?;
    }
    if v6 {
        pod.replace_neighbour(veth.pod_index, GATEWAY_V6.into(), veth.host_mac)
            .await?;
    }
    Ok(())
}

/// Inside the pod: `dst` via the next hop of its family on the veth.
pub(super) async fn pod_route_via_host(pod: &Netlink, veth: &Veth, dst: IpNet) -> Result<()> {
    let (gateway, onlink) = match dst {
        IpNet::V4(_) => (IpAddr::from(GATEWAY_V4), true),
        IpNet::V6(_) => (IpAddr::from(GATEWAY_V6), false),
    };
    let route = Route::new(dst).via(gateway).dev(veth.pod_index);
    pod.replace_route(&Route { onlink, ..route })
        .await
        .map_err(Error::from)
}

/// On the host: `ip/32` (or /128) dev host veth in the main table, with a permanent
/// neighbour for the pod end so the host never has to resolve the pod.
pub(super) async fn host_routes(host: &Netlink, veth: &Veth, ips: &[IpAddr]) -> Result<()> {
    for ip in ips {
        host.replace_neighbour(veth.host_index, *ip, veth.pod_mac)
            .await?;
        host.replace_route(&Route::new(host_prefix(*ip)).dev(veth.host_index))
            .await?;
    }
    Ok(())
}

pub(super) fn rule_to_pod(ip: IpAddr) -> Rule {
    Rule {
        priority: RULE_TO_POD,
        src: None,
        dst: Some(host_prefix(ip)),
        table: TABLE_MAIN,
    }
}

pub(super) fn rule_from_pod(ip: IpAddr, table: u32) -> Rule {
    Rule {
        priority: RULE_FROM_POD,
        src: Some(host_prefix(ip)),
        dst: None,
        table,
    }
}

/// Whether `r` is one of the two rules terway makes for a pod address.
pub(super) fn is_pod_rule(r: &Rule) -> Option<IpAddr> {
    let single = |n: &IpNet| n.prefix_len() == n.max_prefix_len();
    match (r.priority, r.src, r.dst) {
        (RULE_TO_POD, None, Some(d)) if r.table == TABLE_MAIN && single(&d) => Some(d.addr()),
        (RULE_FROM_POD, Some(s), None) if r.table > names::ENI_TABLE_BASE && single(&s) => {
            Some(s.addr())
        }
        _ => None,
    }
}

fn families(ips: &[IpAddr]) -> Vec<AddressFamily> {
    let mut out = Vec::new();
    if ips.iter().any(|i| i.is_ipv4()) {
        out.push(AddressFamily::Inet);
    }
    if ips.iter().any(|i| i.is_ipv6()) {
        out.push(AddressFamily::Inet6);
    }
    out
}

/// Deletes the pod rules (512 and 2048, whatever table) of `ips`.
pub(super) async fn delete_rules(host: &Netlink, ips: &[IpAddr]) -> Result<()> {
    delete_stale_rules(host, ips, &[]).await
}

/// Deletes the pod rules of `ips` that are not in `keep`.
pub(super) async fn delete_stale_rules(
    host: &Netlink,
    ips: &[IpAddr],
    keep: &[Rule],
) -> Result<()> {
    for family in families(ips) {
        for r in host.rules(family).await? {
            if is_pod_rule(&r).is_some_and(|ip| ips.contains(&ip)) && !keep.contains(&r) {
                host.delete_rule(&r).await?;
            }
        }
    }
    Ok(())
}

/// The pod addresses routed to link `index` in the main table (its /32 and /128 routes).
pub(super) async fn routed_ips(host: &Netlink, index: u32) -> Result<Vec<IpAddr>> {
    let mut ips = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        for r in host.routes(family, Some(TABLE_MAIN)).await? {
            if r.oif == Some(index)
                && r.gateway.is_none()
                && r.dst.prefix_len() == r.dst.max_prefix_len()
            {
                ips.push(r.dst.addr());
            }
        }
    }
    Ok(ips)
}

/// Removes host veth `host_name` and the rules of every address routed to it, plus the
/// rules of `known` addresses. Rules go first: while the veth lives its routes still say
/// which addresses were the pod's, so an interrupted removal can be repeated. Returns
/// whether the veth existed.
pub(super) async fn remove_host(host: &Netlink, host_name: &str, known: &[IpAddr]) -> Result<bool> {
    let link = host.link(host_name).await?;
    let mut ips = known.to_vec();
    if let Some(l) = &link {
        for ip in routed_ips(host, l.index).await? {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    delete_rules(host, &ips).await?;
    if link.is_some() {
        host.delete_link(host_name).await?;
    }
    Ok(link.is_some())
}
