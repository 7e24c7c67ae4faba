//! Shared-ENI pods: a veth, the pod's /32 (and /128) routed to it on the host, and two
//! policy rules per address so that the pod's traffic leaves through the ENI that owns
//! the address while traffic to the pod always finds the veth.

use super::names::{self, GATEWAY_V4, GATEWAY_V6};
use super::veth::{self, Veth};
use super::{default_route, host_prefix, missing};
use crate::proto::PodNetwork;
use std::net::IpAddr;
use unicni_core::{Attachment, Error, IpConfig, NetworkResult, Result, RouteConfig};
use unicni_net::netlink::AddressFamily;
use unicni_net::{NetNs, Netlink, Route};

pub(super) fn pod_ips(net: &PodNetwork) -> Vec<IpAddr> {
    net.ipv4
        .map(IpAddr::V4)
        .into_iter()
        .chain(net.ipv6.map(IpAddr::V6))
        .collect()
}

fn next_hop(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => GATEWAY_V4.into(),
        IpAddr::V6(_) => GATEWAY_V6.into(),
    }
}

pub(super) async fn setup(att: &Attachment, net: &PodNetwork, ns: &NetNs) -> Result<NetworkResult> {
    let ips = pod_ips(net);
    if ips.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "the agent gave {} no address",
            att.id
        )));
    }
    let host = Netlink::current()?;
    let pod = Netlink::in_netns(ns)?;
    let host_name = names::host_veth(&att.id);
    let v = veth::create(&host, &pod, ns, &host_name, &att.id.ifname, net.mtu).await?;
    unicni_core::failpoint::hit("veth-created");
    for ip in &ips {
        match ip {
            IpAddr::V4(_) => pod.add_address(v.pod_index, host_prefix(*ip)).await,
            IpAddr::V6(_) => pod.add_address_nodad(v.pod_index, host_prefix(*ip)).await,
        }?;
    }
    veth::pod_next_hops(&pod, &v, net.ipv4.is_some(), net.ipv6.is_some()).await?;
    for ip in &ips {
        let route = Route::new(default_route(*ip))
            .via(next_hop(*ip))
            .dev(v.pod_index);
        pod.replace_route(&Route {
            onlink: ip.is_ipv4(),
            ..route
        })
        .await?;
    }
    // Host route before the rules: teardown finds the pod's addresses from the routes.
    veth::host_routes(&host, &v, &ips).await?;
    let wanted: Vec<_> = ips
        .iter()
        .flat_map(|ip| {
            [
                veth::rule_to_pod(*ip),
                veth::rule_from_pod(*ip, net.eni.table),
            ]
        })
        .collect();
    // A previous owner of these addresses whose namespace vanished before its DEL left
    // its rules; one pointing at another ENI's table would win over ours.
    veth::delete_stale_rules(&host, &ips, &wanted).await?;
    for rule in &wanted {
        host.add_rule(rule).await?;
    }
    // The routing datapath is complete; the fast path only short-cuts it, so a failure
    // here leaves a working (slower) pod, and CHECK reports what is missing.
    if let Some(pin) = &net.fast_path {
        if let Err(e) = super::fastpath::attach_pod(pin, &v, net) {
            tracing::warn!(veth = %v.host_name, error = %e, "pod runs without the eBPF fast path");
        }
    }
    Ok(result(&v, ns, net, &ips))
}

fn result(v: &Veth, ns: &NetNs, net: &PodNetwork, ips: &[IpAddr]) -> NetworkResult {
    NetworkResult {
        interfaces: vec![
            v.host_interface(net.mtu),
            v.pod_interface(net.mtu, ns.path().display().to_string()),
        ],
        ips: ips
            .iter()
            .map(|ip| IpConfig {
                address: host_prefix(*ip),
                gateway: Some(next_hop(*ip)),
                interface: Some(1),
            })
            .collect(),
        routes: ips
            .iter()
            .map(|ip| RouteConfig::via(default_route(*ip), next_hop(*ip)))
            .collect(),
        dns: Default::default(),
    }
}

pub(super) async fn check(att: &Attachment, net: &PodNetwork, ns: &NetNs) -> Result<()> {
    let host = Netlink::current()?;
    let pod = Netlink::in_netns(ns)?;
    let host_name = names::host_veth(&att.id);
    let ips = pod_ips(net);
    let mut gaps = Vec::new();
    match host.link(&host_name).await? {
        None => gaps.push(format!("host veth {host_name}")),
        Some(l) => {
            let routed = veth::routed_ips(&host, l.index).await?;
            for ip in &ips {
                if !routed.contains(ip) {
                    gaps.push(format!("host route {} dev {host_name}", host_prefix(*ip)));
                }
            }
            if let Some(pin) = &net.fast_path {
                super::fastpath::check_pod(pin, l.index, net, &mut gaps);
            }
        }
    }
    match pod.link(&att.id.ifname).await? {
        None => gaps.push(format!(
            "interface {} in {}",
            att.id.ifname,
            ns.path().display()
        )),
        Some(l) => {
            if !l.up {
                gaps.push(format!("interface {} up", att.id.ifname));
            }
            let have = pod.addresses(l.index).await?;
            for ip in &ips {
                if !have.contains(&host_prefix(*ip)) {
                    gaps.push(format!("address {} on {}", host_prefix(*ip), att.id.ifname));
                }
            }
        }
    }
    for ip in &ips {
        let family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let rules = host.rules(family).await?;
        for want in [
            veth::rule_to_pod(*ip),
            veth::rule_from_pod(*ip, net.eni.table),
        ] {
            if !rules.contains(&want) {
                gaps.push(want.to_string());
            }
        }
    }
    missing(&att.id, gaps)
}
