//! The agent's side of the datapath: node-wide settings and the ENI links on the node.

use super::{default_route, EniLink};
use crate::proto::EniInfo;
use std::net::IpAddr;
use unicni_core::{Error, Result};
use unicni_net::{LinkInfo, Netlink, Route};

/// Loose reverse-path filtering: a pod's reply may come in through an ENI other than the
/// one the node would route the source to. The kernel uses max(all, dev), so setting the
/// device to 2 is enough whatever `all` says.
const RP_FILTER_LOOSE: &str = "2";

pub(super) fn prepare_node(dual: bool) -> Result<()> {
    unicni_net::sysctl::ensure("net.ipv4.ip_forward", "1")?;
    if dual {
        unicni_net::sysctl::ensure("net.ipv6.conf.all.forwarding", "1")?;
    }
    Ok(())
}

/// Picks the link with `mac`; a physical link (no kind) wins over virtual ones that
/// inherited the MAC (VLANs, macvlans in passthru mode).
fn pick(links: Vec<LinkInfo>, mac: &str) -> Option<LinkInfo> {
    let mut found: Vec<LinkInfo> = links
        .into_iter()
        .filter(|l| l.mac.eq_ignore_ascii_case(mac))
        .collect();
    found.sort_by_key(|l| l.kind.is_some());
    found.into_iter().next()
}

pub(super) async fn find(host: &Netlink, mac: &str) -> Result<Option<LinkInfo>> {
    Ok(pick(host.links().await?, mac))
}

/// Writes a per-device sysctl by path: device names may contain dots, which the dotted
/// sysctl form cannot express.
fn set_dev_sysctl(dev: &str, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{dev}/{key}");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|e| Error::io(format!("set {path} to {value}"), e))
}

pub(super) async fn prepare(eni: &EniInfo, shared: bool) -> Result<EniLink> {
    let host = Netlink::current()?;
    let link = find(&host, &eni.mac).await?.ok_or_else(|| {
        Error::kernel(format!(
            "ENI {} (MAC {}) has no link on this node",
            eni.id, eni.mac
        ))
    })?;
    host.set_up(link.index).await?;
    set_dev_sysctl(&link.name, "rp_filter", RP_FILTER_LOOSE)?;
    if shared {
        let mut gateways = vec![IpAddr::V4(eni.gateway)];
        gateways.extend(eni.gateway_v6.map(IpAddr::V6));
        for gw in gateways {
            host.replace_route(
                &Route::new(default_route(gw))
                    .via(gw)
                    .dev(link.index)
                    .table(eni.table)
                    .onlink(),
            )
            .await
            .map_err(|e| {
                Error::kernel_in(
                    format!("ENI {} ({}): table {}", eni.id, link.name, eni.table),
                    e,
                )
            })?;
        }
    }
    Ok(EniLink {
        name: link.name,
        ifindex: link.index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, mac: &str, kind: Option<&str>) -> LinkInfo {
        LinkInfo {
            index,
            name: format!("l{index}"),
            mac: mac.into(),
            mtu: 1500,
            master: None,
            up: true,
            loopback: false,
            kind: kind.map(String::from),
        }
    }

    #[test]
    fn mac_match_ignores_case_and_prefers_physical_links() {
        let links = vec![
            link(3, "02:aa:bb:cc:dd:ee", Some("vlan")),
            link(4, "02:aa:bb:cc:dd:ee", None),
            link(5, "02:00:00:00:00:01", None),
        ];
        assert_eq!(pick(links.clone(), "02:AA:BB:CC:DD:EE").unwrap().index, 4);
        assert!(pick(links, "02:00:00:00:00:09").is_none());
    }
}
