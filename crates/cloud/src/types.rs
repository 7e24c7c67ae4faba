//! The objects the `Cloud` interface speaks in, independent of the wire format.

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EniStatus {
    Available,
    Attaching,
    InUse,
    Detaching,
    Deleting,
    /// A status this client does not know; kept so a new vendor state is not an error.
    Unknown,
}

impl EniStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "Available" => EniStatus::Available,
            "Attaching" => EniStatus::Attaching,
            "InUse" => EniStatus::InUse,
            "Detaching" => EniStatus::Detaching,
            "Deleting" => EniStatus::Deleting,
            _ => EniStatus::Unknown,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            EniStatus::Available => "Available",
            EniStatus::Attaching => "Attaching",
            EniStatus::InUse => "InUse",
            EniStatus::Detaching => "Detaching",
            EniStatus::Deleting => "Deleting",
            EniStatus::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EniType {
    Primary,
    Secondary,
    Trunk,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub id: String,
    pub status: EniStatus,
    pub eni_type: EniType,
    pub instance_id: Option<String>,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub zone_id: String,
    pub mac: String,
    pub primary_ip: Ipv4Addr,
    /// Every IPv4 address, the primary first.
    pub private_ips: Vec<Ipv4Addr>,
    pub ipv6s: Vec<Ipv6Addr>,
    /// Delegated IPv4 /28 prefixes (DescribeNetworkInterfaces'
    /// `Ipv4PrefixSets.Ipv4PrefixSet[].Ipv4Prefix`).
    #[serde(default)]
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// Delegated IPv6 /80 prefixes (`Ipv6PrefixSets.Ipv6PrefixSet[].Ipv6Prefix`).
    #[serde(default)]
    pub ipv6_prefixes: Vec<Ipv6Net>,
    pub security_group_ids: Vec<String>,
    pub tags: Vec<(String, String)>,
}

impl NetworkInterface {
    pub fn secondary_ips(&self) -> impl Iterator<Item = &Ipv4Addr> {
        self.private_ips
            .iter()
            .filter(move |ip| **ip != self.primary_ip)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateEniRequest {
    pub vswitch_id: String,
    pub security_group_ids: Vec<String>,
    /// Secondary IPv4 addresses to assign at creation.
    pub secondary_ip_count: u32,
    pub ipv6_count: u32,
    /// IPv4 /28 prefixes to delegate at creation (CreateNetworkInterface
    /// `Ipv4PrefixCount`); not together with `secondary_ip_count`.
    pub ipv4_prefix_count: u32,
    /// IPv6 /80 prefixes to delegate at creation (`Ipv6PrefixCount`).
    pub ipv6_prefix_count: u32,
    pub description: Option<String>,
    pub tags: Vec<(String, String)>,
    /// Idempotency token; a fresh one is generated when empty. Passing the same token
    /// again returns the ENI created the first time.
    pub client_token: Option<String>,
}

/// Filter of DescribeNetworkInterfaces; every set field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EniFilter {
    pub ids: Vec<String>,
    pub instance_id: Option<String>,
    pub vswitch_id: Option<String>,
    pub vpc_id: Option<String>,
    pub status: Option<EniStatus>,
    pub tags: Vec<(String, String)>,
}

/// Either a number of addresses the cloud picks, or the exact addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpRequest<T> {
    Count(u32),
    Exact(Vec<T>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTypeLimits {
    pub instance_type: String,
    /// ENIs the instance can have, the primary included.
    pub eni_quantity: u32,
    pub ipv4_per_eni: u32,
    pub ipv6_per_eni: u32,
    /// Including trunk-attached member ENIs; 0 when the type does not report it.
    pub eni_total_quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VSwitch {
    pub id: String,
    pub vpc_id: String,
    pub zone_id: String,
    pub cidr: String,
    pub ipv6_cidr: Option<String>,
    pub available_ip_count: u64,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    pub router_id: String,
    /// `System` or `Custom`.
    pub table_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteEntryStatus {
    Pending,
    Available,
    Modifying,
    Deleting,
    Unknown,
}

impl RouteEntryStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "Pending" => RouteEntryStatus::Pending,
            "Available" => RouteEntryStatus::Available,
            "Modifying" => RouteEntryStatus::Modifying,
            "Deleting" => RouteEntryStatus::Deleting,
            _ => RouteEntryStatus::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub id: String,
    pub route_table_id: String,
    pub destination_cidr: String,
    /// `Instance`, `NetworkInterface`, ...; empty for system entries.
    pub next_hop_type: String,
    pub next_hop_id: String,
    pub status: RouteEntryStatus,
    /// `Custom` or `System`.
    pub entry_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRouteEntryRequest {
    pub route_table_id: String,
    pub destination_cidr: String,
    pub next_hop_type: String,
    pub next_hop_id: String,
    pub client_token: Option<String>,
}
