//! The node bridge datapath: pods are veth pairs hanging off one bridge that holds the
//! gateway address.

use crate::masq;
use crate::names;
use crate::netconf::NodeNetwork;
use async_trait::async_trait;
use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use std::collections::HashSet;
use unicni_bpf::FastPath;
use unicni_core::{
    Attachment, AttachmentId, Datapath, Error, InterfaceConfig, IpAssignment, IpConfig,
    NetworkResult, Result, RouteConfig,
};
use unicni_net::netlink::AddressFamily;
use unicni_net::{NetNs, Netlink, Route, VethSpec, TABLE_MAIN};

pub struct BridgeDatapath {
    net: NodeNetwork,
    host: Netlink,
    /// The bridge's ifindex once this process has seen it, so an ADD asks the kernel once.
    bridge: std::sync::OnceLock<u32>,
}

fn default_route(gw: std::net::IpAddr) -> IpNet {
    if gw.is_ipv4() {
        "0.0.0.0/0".parse().expect("constant")
    } else {
        "::/0".parse().expect("constant")
    }
}

impl BridgeDatapath {
    /// Must be called inside a tokio runtime (it opens the host netlink socket).
    pub fn new(net: NodeNetwork) -> Result<BridgeDatapath> {
        let host = Netlink::current()?;
        Ok(BridgeDatapath {
            net,
            host,
            bridge: std::sync::OnceLock::new(),
        })
    }

    /// The pod's routes with their gateway: per family, the default route and the cluster
    /// network (what flannel's CNI plugin gives a pod too), so that pod-to-pod traffic
    /// keeps going through the bridge when another interface takes the default route.
    /// IPv4, then IPv6 on a dual-stack node.
    fn pod_routes(&self) -> Vec<(IpNet, std::net::IpAddr)> {
        let mut routes = vec![
            (default_route(self.net.gateway), self.net.gateway),
            (self.net.cluster, self.net.gateway),
        ];
        if let Some(v6) = &self.net.ipv6 {
            routes.push((default_route(v6.gateway), v6.gateway));
            routes.push((v6.cluster, v6.gateway));
        }
        routes
    }

    fn gateway_net(&self) -> IpNet {
        IpNet::new(self.net.gateway, self.net.subnet.prefix_len()).expect("valid prefix")
    }

    /// Dual stack: the bridge's IPv6 gateway address with the subnet's prefix.
    fn gateway6_net(&self) -> Option<IpNet> {
        let s = self.net.ipv6.as_ref()?;
        Some(IpNet::new(s.gateway, s.subnet.prefix_len()).expect("valid prefix"))
    }

    async fn bridge_ready(&self) -> Result<Option<u32>> {
        // Every ADD asks; the usual answer (up, the gateway its primary IPv4 address) comes
        // by ioctl. A dual-stack bridge's IPv6 gateway, or anything unusual, is looked at
        // over netlink below.
        if self.gateway6_net().is_none() {
            if let Some(b) = self.host.brief(&self.net.bridge)? {
                let primary = b.ipv4.and_then(|(a, p)| IpNet::new(a.into(), p).ok());
                if b.up && primary == Some(self.gateway_net()) {
                    return Ok(Some(b.index));
                }
            }
        }
        let Some(br) = self.host.link(&self.net.bridge).await? else {
            return Ok(None);
        };
        if !br.up {
            return Ok(None);
        }
        let addrs = self.host.addresses(br.index).await?;
        let ready = addrs.contains(&self.gateway_net())
            && self.gateway6_net().is_none_or(|g| addrs.contains(&g));
        Ok(ready.then_some(br.index))
    }

    async fn bridge_index(&self) -> Result<u32> {
        if let Some(i) = self.bridge.get() {
            return Ok(*i);
        }
        self.host
            .link(&self.net.bridge)
            .await?
            .map(|l| *self.bridge.get_or_init(|| l.index))
            .ok_or_else(|| {
                Error::kernel(format!(
                    "bridge {} vanished while attaching a pod; retry the ADD",
                    self.net.bridge
                ))
            })
    }

    fn node_lock(&self) -> Result<Flock<std::fs::File>> {
        let dir = &self.net.state_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create state directory {}", dir.display()), e))?;
        let path = dir.join(format!(".node-{}.lock", self.net.network_name));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(format!("lock {}", path.display()), e.into()))
    }

    /// Removes the bridge and the masquerade table (`unicni uninstall`).
    pub async fn remove_node(&self) -> Result<()> {
        self.host.delete_link(&self.net.bridge).await?;
        masq::remove(&masq::table_name(&self.net.network_name)).map_err(Error::from)
    }

    /// The fast path's programs on the pod's host veth, then its endpoint (in this order:
    /// the egress companion must see slow-path flows before the pod gets redirects).
    async fn fast_path_add(
        &self,
        pin: &std::path::Path,
        host_name: &str,
        ip: std::net::IpAddr,
        pod_mac: [u8; 6],
    ) -> Result<()> {
        let std::net::IpAddr::V4(ip) = ip else {
            return Ok(());
        };
        let index = self
            .host
            .link(host_name)
            .await?
            .ok_or_else(|| Error::kernel(format!("{host_name} vanished")))?
            .index;
        let mut fp = FastPath::open(pin).map_err(bpf)?;
        fp.attach(index).map_err(bpf)?;
        fp.upsert_endpoint(ip, index, pod_mac).map_err(bpf)
    }

    async fn pod_has_interface(&self, ns: &NetNs, ifname: &str) -> bool {
        match Netlink::in_netns(ns) {
            Ok(nl) => matches!(nl.link(ifname).await, Ok(Some(_))),
            Err(_) => false,
        }
    }
}

fn bpf(e: unicni_bpf::BpfError) -> Error {
    Error::kernel_in("eBPF fast path", e)
}

/// Removes the endpoints on a pod's host veth and the programs on it; nothing pinned
/// (the agent never loaded the fast path, or it was uninstalled) is fine.
fn fast_path_remove(pin: &std::path::Path, index: u32) -> Result<()> {
    let mut fp = match FastPath::open(pin) {
        Ok(fp) => fp,
        Err(unicni_bpf::BpfError::NotLoaded { .. }) => return Ok(()),
        Err(e) => return Err(bpf(e)),
    };
    fp.remove_endpoints_on(index).map_err(bpf)?;
    fp.detach(index).map_err(bpf)
}

fn open_netns(att: &Attachment) -> Result<NetNs> {
    let path = att
        .netns
        .as_deref()
        .ok_or_else(|| Error::InvalidConfig("no network namespace given".into()))?;
    NetNs::open(path).map_err(Error::from)
}

#[async_trait]
impl Datapath for BridgeDatapath {
    async fn prepare_node(&self) -> Result<()> {
        if let Some(index) = self.bridge_ready().await? {
            let _ = self.bridge.set(index);
            return Ok(());
        }
        // First pod on this node (or after a reboot): build under a lock so parallel
        // ADDs do not race to create the same bridge.
        let _lock = self.node_lock()?;
        let br = match self.host.link(&self.net.bridge).await? {
            Some(l) => l,
            None => {
                let mac = names::mac_for_ip(self.net.gateway);
                match self
                    .host
                    .create_bridge(&self.net.bridge, Some(self.net.mtu), Some(mac))
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_exists() => {}
                    Err(e) => return Err(e.into()),
                }
                self.host.link(&self.net.bridge).await?.ok_or_else(|| {
                    Error::kernel(format!(
                        "bridge {} not found after creating it",
                        self.net.bridge
                    ))
                })?
            }
        };
        if br.kind.as_deref().is_some_and(|k| k != "bridge") {
            return Err(Error::InvalidConfig(format!(
                "interface {} exists and is a {}, not a bridge; choose another flannel.bridge",
                self.net.bridge,
                br.kind.as_deref().unwrap_or("?")
            )));
        }
        self.host.add_address(br.index, self.gateway_net()).await?;
        if let Some(g6) = self.gateway6_net() {
            // Usable at once: pods' default routes point at it from their first packet.
            self.host.add_address_nodad(br.index, g6).await?;
        }
        self.host.set_up(br.index).await?;
        let _ = self.bridge.set(br.index);
        unicni_net::sysctl::ensure("net.ipv4.ip_forward", "1")?;
        if let Some(v6) = &self.net.ipv6 {
            unicni_net::sysctl::ensure("net.ipv6.conf.all.forwarding", "1")?;
            if self.net.ip_masq {
                masq::install(&masq::table_name(&self.net.network_name), v6.cluster)?;
            }
        }
        if self.net.ip_masq {
            masq::install(&masq::table_name(&self.net.network_name), self.net.cluster)?;
        }
        Ok(())
    }

    async fn setup(&self, att: &Attachment, ips: &[IpAssignment]) -> Result<NetworkResult> {
        let ns = open_netns(att)?;
        let host_name = names::host_veth(&self.net.network_name, &att.id);
        let bridge = self.bridge_index().await?;
        let ip = ips
            .first()
            .ok_or_else(|| Error::kernel("IPAM returned no address"))?;
        let pod_mac = names::mac_for_ip(ip.address.addr());
        let host_mac = names::mac_for_name(&host_name);
        // The pod-side socket opens on its own thread while the veth is being created.
        let pod = Netlink::in_netns_soon(&ns)?;
        let spec = VethSpec {
            host_name: &host_name,
            peer_name: &att.id.ifname,
            peer_netns: &ns,
            master: Some(bridge),
            mtu: self.net.mtu,
            host_mac: Some(host_mac),
            peer_mac: Some(pod_mac),
        };
        if let Err(e) = self.host.create_veth(&spec).await {
            if !e.is_exists() {
                return Err(e.into());
            }
            // A host veth of this attachment can only be a leftover of an ADD that was
            // killed: remove it (its peer goes with it) and create the pair again. Asked
            // only on this path, so a normal ADD pays no round trip for it.
            if self.host.delete_link(&host_name).await? {
                self.host.create_veth(&spec).await?;
            } else if self.pod_has_interface(&ns, &att.id.ifname).await {
                return Err(Error::AlreadyExists(format!(
                    "interface {} already exists in {}",
                    att.id.ifname,
                    ns.path().display()
                )));
            } else {
                return Err(e.into());
            }
        }
        unicni_core::failpoint::hit("veth-created");
        if self.net.hairpin {
            self.host.set_bridge_port_hairpin(&host_name, true).await?;
        }
        let pod = pod.await?;
        let link = pod.index(&att.id.ifname)?.ok_or_else(|| {
            Error::kernel(format!(
                "{} vanished from {}",
                att.id.ifname,
                ns.path().display()
            ))
        })?;
        for a in ips {
            if a.address.addr().is_ipv6() {
                // No duplicate address detection: the IPAM gave the address to this pod
                // alone, and a tentative address would drop the pod's first packets.
                pod.add_address_nodad(link, a.address).await?;
            } else {
                pod.add_address(link, a.address).await?;
            }
        }
        pod.set_up(link).await?;
        for (dst, gw) in self.pod_routes() {
            pod.replace_route(&Route::new(dst).via(gw).dev(link))
                .await?;
        }
        if let Some(pin) = &self.net.fast_path {
            // The bridge already carries the pod; the fast path only short-cuts it.
            if let Err(e) = self
                .fast_path_add(pin, &host_name, ip.address.addr(), pod_mac)
                .await
            {
                tracing::warn!(veth = %host_name, error = %e, "pod runs without the eBPF fast path");
            }
        }
        let sandbox = ns.path().display().to_string();
        Ok(NetworkResult {
            interfaces: vec![
                InterfaceConfig {
                    name: self.net.bridge.clone(),
                    mac: unicni_net::netlink::format_mac(&names::mac_for_ip(self.net.gateway)),
                    mtu: Some(self.net.mtu),
                    sandbox: None,
                },
                InterfaceConfig {
                    name: host_name,
                    mac: unicni_net::netlink::format_mac(&host_mac),
                    mtu: Some(self.net.mtu),
                    sandbox: None,
                },
                InterfaceConfig {
                    name: att.id.ifname.clone(),
                    mac: unicni_net::netlink::format_mac(&pod_mac),
                    mtu: Some(self.net.mtu),
                    sandbox: Some(sandbox),
                },
            ],
            ips: ips
                .iter()
                .map(|a| IpConfig {
                    address: a.address,
                    gateway: a.gateway,
                    interface: Some(2),
                })
                .collect(),
            routes: self
                .pod_routes()
                .into_iter()
                .map(|(dst, gw)| RouteConfig::via(dst, gw))
                .collect(),
            dns: Default::default(),
        })
    }

    async fn teardown(&self, att: &Attachment) -> Result<()> {
        // Deleting the host side removes the peer in the pod too, wherever the netns is.
        let host_name = names::host_veth(&self.net.network_name, &att.id);
        if let Some(pin) = &self.net.fast_path {
            // The endpoint goes first: nothing is redirected to a pod being removed.
            if let Some(l) = self.host.link(&host_name).await? {
                fast_path_remove(pin, l.index)?;
            }
        }
        self.host.delete_link(&host_name).await?;
        Ok(())
    }

    async fn check(&self, att: &Attachment, ips: &[IpAssignment]) -> Result<()> {
        let ns = open_netns(att)?;
        let host_name = names::host_veth(&self.net.network_name, &att.id);
        let bridge = self.bridge_index().await?;
        match self.host.link(&host_name).await? {
            None => {
                return Err(Error::CheckFailed(format!(
                    "host interface {host_name} of {} is missing",
                    att.id
                )))
            }
            Some(l) if l.master != Some(bridge) => {
                return Err(Error::CheckFailed(format!(
                    "host interface {host_name} is not attached to bridge {}",
                    self.net.bridge
                )))
            }
            Some(_) => {}
        }
        let pod = Netlink::in_netns(&ns)?;
        let link = pod.link(&att.id.ifname).await?.ok_or_else(|| {
            Error::CheckFailed(format!(
                "interface {} is missing in {}",
                att.id.ifname,
                ns.path().display()
            ))
        })?;
        if !link.up {
            return Err(Error::CheckFailed(format!(
                "interface {} is down",
                att.id.ifname
            )));
        }
        let addrs = pod.addresses(link.index).await?;
        for a in ips {
            if !addrs.contains(&a.address) {
                return Err(Error::CheckFailed(format!(
                    "address {} is missing on {}",
                    a.address, att.id.ifname
                )));
            }
        }
        for (want, gw) in self.pod_routes() {
            let family = if gw.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            let routes = pod.routes(family, Some(TABLE_MAIN)).await?;
            if !routes
                .iter()
                .any(|r| r.dst == want && r.gateway == Some(gw))
            {
                return Err(Error::CheckFailed(format!(
                    "route {want} via {gw} is missing in {}",
                    ns.path().display()
                )));
            }
        }
        Ok(())
    }

    async fn collect_garbage(&self, valid: &[AttachmentId]) -> Result<usize> {
        let Some(br) = self.host.link(&self.net.bridge).await? else {
            return Ok(0);
        };
        let keep: HashSet<String> = valid
            .iter()
            .map(|id| names::host_veth(&self.net.network_name, id))
            .collect();
        let mut removed = 0;
        for l in self.host.links().await? {
            if l.master == Some(br.index) && names::is_host_veth(&l.name) && !keep.contains(&l.name)
            {
                self.host.delete_link(&l.name).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
