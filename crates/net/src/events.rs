//! Kernel change notifications, so that an agent repairs a deleted device, route or
//! neighbour/FDB entry at once instead of at its next periodic pass. Only deletions wake
//! it: additions are mostly its own writes, and waking on them would loop.

use crate::{NetError, Result};
use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::MulticastGroup;
use std::time::Duration;

pub struct Deletions {
    rx: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl Deletions {
    /// Subscribes in the calling thread's namespace. Must be called inside a tokio runtime.
    pub fn current() -> Result<Deletions> {
        let (conn, _handle, rx) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Neigh,
        ])
        .map_err(|source| NetError::Io {
            what: "subscribe to netlink link/route/neighbour events".into(),
            source,
        })?;
        tokio::spawn(conn);
        Ok(Deletions { rx })
    }

    /// Waits for a deletion, then lets a burst settle for `settle`. Returns false when the
    /// subscription ended (the caller falls back to periodic passes).
    pub async fn next(&mut self, settle: Duration) -> bool {
        loop {
            match self.rx.next().await {
                None => return false,
                Some((m, _)) if is_deletion(&m) => break,
                Some(_) => {}
            }
        }
        let _ =
            tokio::time::timeout(settle, async { while self.rx.next().await.is_some() {} }).await;
        true
    }
}

fn is_deletion(m: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    matches!(
        &m.payload,
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::DelLink(_)
                | RouteNetlinkMessage::DelRoute(_)
                | RouteNetlinkMessage::DelNeighbour(_)
        )
    )
}
