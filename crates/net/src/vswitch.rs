//! What a namespace needs to act as an emulated vSwitch: a static FDB entry on a bridge
//! port (the MAC lives behind that port).

use crate::{NetError, Netlink, Result};
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};

impl Netlink {
    /// Adds or replaces the static entry `mac` on bridge port `port` in its bridge's FDB
    /// (`bridge fdb replace MAC dev PORT master static`): frames to `mac` leave through
    /// `port` without being learned first.
    pub async fn replace_bridge_fdb_static(&self, port: u32, mac: [u8; 6]) -> Result<()> {
        self.handle
            .neighbours()
            .add_bridge(port, &mac)
            .flags(NeighbourFlags::Controller)
            .state(NeighbourState::Noarp)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink(
                    "replace bridge fdb entry",
                    self.obj(format!(
                        "{} on port {port}",
                        crate::netlink::format_mac(&mac)
                    )),
                    e,
                )
            })
    }
}
