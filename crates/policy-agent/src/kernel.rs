//! What the engine reads from the node's network namespace: the pods' host veths (to
//! attach the programs to) and the node's own addresses (always allowed to and from its
//! pods), plus notifications when links or addresses change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::{Handle, MulticastGroup};

use crate::Error;

/// A netlink handle in the calling thread's network namespace.
pub struct Kernel {
    handle: Handle,
}

impl Kernel {
    /// Must be called inside a tokio runtime, on a thread in the node's namespace.
    pub fn connect() -> Result<Kernel, Error> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| Error::Netlink(format!("open a netlink socket: {e}")))?;
        tokio::spawn(conn);
        Ok(Kernel { handle })
    }

    /// The links the programs go on, ifindex → name: pods' host veths (veths whose name
    /// `is_pod_veth` accepts) and uplinks (every other link but loopback and bridges: the
    /// underlay, vxlan and ENI links a translated packet leaves through).
    pub async fn links(
        &self,
        is_pod_veth: fn(&str) -> bool,
    ) -> Result<(BTreeMap<u32, String>, BTreeMap<u32, String>), Error> {
        let msgs: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::Netlink(format!("list links: {e}")))?;
        let (mut pods, mut uplinks) = (BTreeMap::new(), BTreeMap::new());
        for m in msgs {
            let mut name = None;
            let mut kind = None;
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::LinkInfo(infos) => {
                        for i in infos {
                            if let LinkInfo::Kind(k) = i {
                                kind = Some(k.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
            let Some(name) = name else { continue };
            let loopback = m.header.flags.contains(LinkFlags::Loopback);
            match kind {
                Some(InfoKind::Veth) if is_pod_veth(&name) => {
                    pods.insert(m.header.index, name);
                }
                Some(InfoKind::Bridge) => {}
                _ if loopback => {}
                _ => {
                    uplinks.insert(m.header.index, name);
                }
            }
        }
        Ok((pods, uplinks))
    }

    /// Every address configured in this namespace (loopback and link-local included).
    pub async fn addresses(&self) -> Result<BTreeSet<IpAddr>, Error> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::Netlink(format!("list addresses: {e}")))?;
        let mut out = BTreeSet::new();
        for m in msgs {
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = a {
                    out.insert(*ip);
                }
            }
        }
        Ok(out)
    }
}

/// New links and address changes in the calling thread's namespace.
pub struct Changes {
    rx: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl Changes {
    /// Must be called inside a tokio runtime, on a thread in the node's namespace.
    pub fn subscribe() -> Result<Changes, Error> {
        let (conn, _handle, rx) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(|e| Error::Netlink(format!("subscribe to link and address events: {e}")))?;
        tokio::spawn(conn);
        Ok(Changes { rx })
    }

    /// Waits for a new link or an address change, then lets a burst settle (a CNI ADD
    /// creates a veth, renames, moves and configures it). False when the subscription ended.
    pub async fn next(&mut self, settle: Duration) -> bool {
        loop {
            match self.rx.next().await {
                None => return false,
                Some((m, _)) if relevant(&m) => break,
                Some(_) => {}
            }
        }
        let _ = tokio::time::timeout(settle, async {
            while let Some((m, _)) = self.rx.next().await {
                let _ = relevant(&m);
            }
        })
        .await;
        true
    }
}

fn relevant(m: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    matches!(
        &m.payload,
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewLink(_)
                | RouteNetlinkMessage::NewAddress(_)
                | RouteNetlinkMessage::DelAddress(_)
        )
    )
}
