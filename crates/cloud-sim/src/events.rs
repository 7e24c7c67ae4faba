//! What the emulated cloud did, for whoever embeds it: the lab turns `EniAttached` into a
//! link in the node's namespace, `RouteEntryAvailable` into a route on the VPC router.

use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event")]
pub enum SimEvent {
    EniCreated {
        eni_id: String,
        vswitch_id: String,
        mac: String,
    },
    /// The ENI reached `InUse` on the instance.
    EniAttached {
        eni_id: String,
        instance_id: String,
        mac: String,
    },
    /// The ENI is back to `Available`.
    EniDetached {
        eni_id: String,
        instance_id: String,
        mac: String,
    },
    EniDeleted {
        eni_id: String,
    },
    IpsAssigned {
        eni_id: String,
        ips: Vec<IpAddr>,
    },
    IpsUnassigned {
        eni_id: String,
        ips: Vec<IpAddr>,
    },
    /// IPv4 /28 or IPv6 /80 prefixes delegated to the ENI: every address inside is
    /// the ENI's.
    PrefixesAssigned {
        eni_id: String,
        prefixes: Vec<IpNet>,
    },
    PrefixesUnassigned {
        eni_id: String,
        prefixes: Vec<IpNet>,
    },
    /// The entry reached `Available`.
    RouteEntryAvailable {
        route_table_id: String,
        route_entry_id: String,
        destination_cidr: String,
        next_hop_id: String,
    },
    RouteEntryDeleted {
        route_table_id: String,
        route_entry_id: String,
        destination_cidr: String,
        next_hop_id: String,
    },
}
