//! What one reconcile pass reports, and the conventions both peer datapaths share.

use unicni_core::Result;
use unicni_net::netlink::AddressFamily;
use unicni_net::{Netlink, Route, TABLE_MAIN};

/// Route protocol number marking routes the agent owns (`ip route` shows `proto 77`):
/// a reconcile removes stale routes of its own and never touches anyone else's.
pub const ROUTE_PROTO: u8 = 77;

/// The routes of `family` in the main table that the agent owns ([`ROUTE_PROTO`]).
pub async fn own_routes(nl: &Netlink, family: AddressFamily) -> Result<Vec<Route>> {
    Ok(nl
        .routes(family, Some(TABLE_MAIN))
        .await?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTO)
        .collect())
}

/// Peers programmed concurrently; each peer's own entries stay strictly ordered.
pub const PARALLEL: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Peers whose entries are all in place after the pass.
    pub peers: usize,
    pub routes: usize,
    pub neighbours: usize,
    pub fdb: usize,
    /// Entries (or devices) found missing or wrong and written.
    pub repaired: usize,
    /// Entries of peers that left, removed.
    pub removed: usize,
    /// Peers that could not be programmed, with the reason.
    pub refused: Vec<String>,
    /// Kernel operations that failed this pass.
    pub errors: Vec<String>,
}
