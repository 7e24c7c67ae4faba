//! A netlink handle bound to one namespace, with the few operations the datapaths need.
//!
//! Every operation is one request/acknowledge round trip where the kernel allows it (a
//! veth pair is created with its peer already named, sized, up and inside the pod's
//! namespace), because the CNI ADD path is measured in milliseconds.

use crate::ifquery::{Brief, IfQuery};
use crate::netns::{open_sockets, sockets_in, sockets_in_background, Sockets};
use crate::{NetError, NetNs, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
pub use rtnetlink::packet_route::AddressFamily;
use rtnetlink::sys::TokioSocket;
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

/// What the datapaths need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    pub master: Option<u32>,
    pub up: bool,
    pub loopback: bool,
    pub kind: Option<String>,
}

/// A veth pair whose peer is created directly inside another namespace.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub peer_name: &'a str,
    /// Namespace the peer is created in.
    pub peer_netns: &'a NetNs,
    /// Bridge the host side is enslaved to.
    pub master: Option<u32>,
    pub mtu: u32,
    pub host_mac: Option<[u8; 6]>,
    pub peer_mac: Option<[u8; 6]>,
}

pub struct Netlink {
    pub(crate) handle: Handle,
    query: IfQuery,
    label: String,
}

impl Netlink {
    /// A handle in the calling thread's namespace. Must be called inside a tokio runtime.
    pub fn current() -> Result<Netlink> {
        let sockets = open_sockets(std::path::Path::new("the current namespace"))?;
        Ok(Self::from_sockets(sockets, "host".into()))
    }

    /// A handle inside `ns`. Must be called inside a tokio runtime.
    pub fn in_netns(ns: &NetNs) -> Result<Netlink> {
        let sockets = sockets_in(ns)?;
        Ok(Self::from_sockets(sockets, ns.path().display().to_string()))
    }

    /// A handle inside `ns`, opened on a thread that starts now: await it when needed, so
    /// the namespace switch overlaps the caller's work in between.
    pub fn in_netns_soon(ns: &NetNs) -> Result<impl std::future::Future<Output = Result<Netlink>>> {
        let pending = sockets_in_background(ns)?;
        let label = ns.path().display().to_string();
        Ok(async move {
            let sockets = pending.await.map_err(|_| NetError::Io {
                what: format!("open sockets in {label}"),
                source: std::io::Error::other("the namespace thread ended without an answer"),
            })??;
            Ok(Self::from_sockets(sockets, label))
        })
    }

    #[allow(unsafe_code)]
    fn from_sockets((fd, query): Sockets, label: String) -> Netlink {
        // SAFETY: the descriptor is a valid netlink socket whose ownership moves here.
        let socket = unsafe { TokioSocket::from_raw_fd(fd.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Netlink {
            handle,
            query,
            label,
        }
    }

    /// The index of link `name`, asked without netlink (see [`IfQuery`]).
    pub fn index(&self, name: &str) -> Result<Option<u32>> {
        self.query.index(name).map_err(|source| NetError::Io {
            what: format!("look up {}", self.obj(name)),
            source,
        })
    }

    /// Index, up flag and primary IPv4 address of link `name` (see [`IfQuery`]).
    pub fn brief(&self, name: &str) -> Result<Option<Brief>> {
        self.query.brief(name).map_err(|source| NetError::Io {
            what: format!("look up {}", self.obj(name)),
            source,
        })
    }

    pub(crate) fn obj(&self, what: impl std::fmt::Display) -> String {
        format!("{what} (netns {})", self.label)
    }

    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut req = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match req.try_next().await {
            Ok(Some(msg)) => Ok(Some(parse_link(&msg))),
            Ok(None) => Ok(None),
            Err(e) => {
                let err = NetError::netlink("get link", self.obj(name), e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        self.handle
            .link()
            .get()
            .execute()
            .map_ok(|m| parse_link(&m))
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list links", self.obj("all"), e))
    }

    /// Deletes link `name`. Returns false when it did not exist.
    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        let msg = LinkUnspec::new_with_name(name).build();
        match self.handle.link().del_with_message(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = NetError::netlink("delete link", self.obj(name), e);
                if err.is_not_found() {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Creates bridge `name`, up. Fails with EEXIST if it exists.
    pub async fn create_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let mut b = LinkBridge::new(name).up();
        if let Some(m) = mac {
            b = b.address(m.to_vec());
        }
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| NetError::netlink("create bridge", self.obj(name), e))
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetError::netlink("set link up", self.obj(index), e))
    }

    /// Creates a veth pair in one request: host side up and enslaved, peer named and
    /// sized inside the target namespace (still down). EEXIST means one of the two names is taken.
    pub async fn create_veth(&self, spec: &VethSpec<'_>) -> Result<()> {
        // The peer cannot be created up (the kernel answers ENOTCONN when the peer lands in
        // another namespace up); the caller brings it up from inside the namespace.
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.peer_name.to_string())
            .mtu(spec.mtu)
            .setns_by_fd(spec.peer_netns.raw_fd());
        if let Some(mac) = spec.peer_mac {
            peer = peer.address(mac.to_vec());
        }
        let mut host = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(spec.host_name.to_string())
            .mtu(spec.mtu)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(mac) = spec.host_mac {
            host = host.address(mac.to_vec());
        }
        if let Some(m) = spec.master {
            host = host.controller(m);
        }
        self.handle
            .link()
            .add(host.build())
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink(
                    "create veth",
                    self.obj(format!("{} <-> {}", spec.host_name, spec.peer_name)),
                    e,
                )
            })
    }

    /// Sets hairpin mode of bridge port `name` (what `ip link set NAME type bridge_slave
    /// hairpin on` sends). Unlike the sysfs file `brport/hairpin_mode`, whose write spins
    /// (restarting the syscall) while anyone else holds the kernel's rtnl lock, this
    /// request waits for the lock: parallel pod starts do not burn CPU against each other.
    pub async fn set_bridge_port_hairpin(&self, name: &str, on: bool) -> Result<()> {
        let msg = LinkUnspec::new_with_name(name)
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )]))
            .build();
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(|e| NetError::netlink("set bridge port hairpin", self.obj(name), e))
    }

    /// Adds `addr` to link `index`; an existing identical address is success.
    pub async fn add_address(&self, index: u32, addr: IpNet) -> Result<()> {
        self.add_address_with(index, addr, false).await
    }

    /// Adds `addr` to link `index` without duplicate address detection (IPv6: usable at
    /// once, which policy-routed pods need); an existing identical address is success.
    pub async fn add_address_nodad(&self, index: u32, addr: IpNet) -> Result<()> {
        self.add_address_with(index, addr, true).await
    }

    async fn add_address_with(&self, index: u32, addr: IpNet, nodad: bool) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        if nodad {
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err =
                    NetError::netlink("add address", self.obj(format!("{addr} on {index}")), e);
                if err.is_exists() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list addresses", self.obj(index), e))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => IpNet::new(*ip, m.header.prefix_len).ok(),
                    _ => None,
                })
            })
            .collect())
    }

    /// Every address configured in the namespace, on any link (loopback and link-local
    /// included; a point-to-point link's local address too).
    pub async fn all_addresses(&self) -> Result<BTreeSet<IpAddr>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list addresses", self.obj("all links"), e))?;
        Ok(msgs
            .iter()
            .flat_map(|m| &m.attributes)
            .filter_map(|a| match a {
                AddressAttribute::Address(ip) | AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            })
            .collect())
    }
}

fn parse_link(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mac: String::new(),
        mtu: 0,
        master: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        loopback: msg.header.flags.contains(LinkFlags::Loopback),
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Address(a) => info.mac = format_mac(a),
            LinkAttribute::Mtu(m) => info.mtu = *m,
            LinkAttribute::Controller(m) => info.master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        info.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    info
}

pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
