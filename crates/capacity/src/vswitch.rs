//! A vSwitch as capacity planning sees it: where it is and how many addresses are left.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VSwitch {
    pub id: String,
    pub zone: String,
    pub cidr: IpNet,
    /// Addresses still free (DescribeVSwitches `AvailableIpAddressCount`).
    pub free_ips: u64,
}
