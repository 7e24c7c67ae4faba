//! Kernel change notifications in the calling thread's namespace, one subscription type
//! for every agent: the flannel agent repairs a deleted device, route or neighbour/FDB
//! entry at once instead of at its next periodic pass (it wakes on deletions only: the
//! additions are mostly its own writes, and waking on them would loop); the policy engine
//! attaches its programs to a pod's veth as soon as it appears.

use crate::{NetError, Result};
use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::MulticastGroup;
use std::time::Duration;

/// A kind of change a [`Changes`] subscription wakes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    LinkAdded,
    LinkDeleted,
    /// An address added to or removed from any link.
    Address,
    RouteDeleted,
    NeighbourDeleted,
}

impl Change {
    fn groups(self) -> &'static [MulticastGroup] {
        match self {
            Change::LinkAdded | Change::LinkDeleted => &[MulticastGroup::Link],
            Change::Address => &[MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv6Ifaddr],
            Change::RouteDeleted => &[MulticastGroup::Ipv4Route],
            Change::NeighbourDeleted => &[MulticastGroup::Neigh],
        }
    }

    fn matches(self, m: &RouteNetlinkMessage) -> bool {
        use RouteNetlinkMessage as M;
        matches!(
            (self, m),
            (Change::LinkAdded, M::NewLink(_))
                | (Change::LinkDeleted, M::DelLink(_))
                | (Change::Address, M::NewAddress(_) | M::DelAddress(_))
                | (Change::RouteDeleted, M::DelRoute(_))
                | (Change::NeighbourDeleted, M::DelNeighbour(_))
        )
    }
}

/// The deletions an agent that owns devices, routes and neighbours repairs.
pub const DELETIONS: &[Change] = &[
    Change::LinkDeleted,
    Change::RouteDeleted,
    Change::NeighbourDeleted,
];

/// New links and address changes: where programs must be attached, which addresses are
/// the node's.
pub const LINKS_AND_ADDRESSES: &[Change] = &[Change::LinkAdded, Change::Address];

pub struct Changes {
    wanted: Vec<Change>,
    rx: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl Changes {
    /// Subscribes to `wanted` in the calling thread's namespace. Must be called inside a
    /// tokio runtime.
    pub fn subscribe(wanted: &[Change]) -> Result<Changes> {
        let mut groups: Vec<MulticastGroup> = Vec::new();
        for g in wanted.iter().flat_map(|c| c.groups()) {
            if !groups.contains(g) {
                groups.push(*g);
            }
        }
        let (conn, _handle, rx) =
            rtnetlink::new_multicast_connection(&groups).map_err(|source| NetError::Io {
                what: format!("subscribe to netlink events ({wanted:?})"),
                source,
            })?;
        tokio::spawn(conn);
        Ok(Changes {
            wanted: wanted.to_vec(),
            rx,
        })
    }

    /// Waits for a wanted change, then lets a burst settle for `settle` (a CNI ADD
    /// creates, moves and configures a veth in several steps). Returns false when the
    /// subscription ended (the caller falls back to periodic passes).
    pub async fn next(&mut self, settle: Duration) -> bool {
        loop {
            match self.rx.next().await {
                None => return false,
                Some((m, _)) if self.wanted(&m) => break,
                Some(_) => {}
            }
        }
        let _ =
            tokio::time::timeout(settle, async { while self.rx.next().await.is_some() {} }).await;
        true
    }

    fn wanted(&self, m: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
        match &m.payload {
            NetlinkPayload::InnerMessage(inner) => self.wanted.iter().any(|c| c.matches(inner)),
            _ => false,
        }
    }
}
