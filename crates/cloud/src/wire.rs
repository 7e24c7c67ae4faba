//! Reading the vendor's JSON documents. Lists come wrapped (`{"VSwitches": {"VSwitch":
//! [...]}}`) and numbers sometimes as strings, so access goes through these helpers.

use crate::error::{CloudError, Result};
use crate::types::*;
use serde_json::Value;

pub(crate) fn str_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

pub(crate) fn u64_of(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// `{"Outer": {"Inner": [..]}}` → the items (empty when absent).
pub(crate) fn list<'a>(v: &'a Value, outer: &str, inner: &str) -> &'a [Value] {
    v.get(outer)
        .and_then(|o| o.get(inner))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn decode_err(action: &str, reason: String) -> CloudError {
    CloudError::Decode {
        action: action.to_string(),
        reason,
    }
}

pub(crate) fn parse_ip<T: std::str::FromStr>(action: &str, what: &str, s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| decode_err(action, format!("{what} {s:?} is not an IP address")))
}

pub(crate) fn eni(action: &str, v: &Value) -> Result<NetworkInterface> {
    let id = str_of(v, "NetworkInterfaceId");
    if id.is_empty() {
        return Err(decode_err(
            action,
            "an ENI without NetworkInterfaceId".into(),
        ));
    }
    let primary_ip = parse_ip(action, "PrivateIpAddress", &str_of(v, "PrivateIpAddress"))?;
    let mut private_ips = vec![primary_ip];
    for p in list(v, "PrivateIpSets", "PrivateIpSet") {
        let ip = parse_ip(action, "PrivateIpSet entry", &str_of(p, "PrivateIpAddress"))?;
        if !private_ips.contains(&ip) {
            private_ips.push(ip);
        }
    }
    let ipv6s = list(v, "Ipv6Sets", "Ipv6Set")
        .iter()
        .map(|p| parse_ip(action, "Ipv6Set entry", &str_of(p, "Ipv6Address")))
        .collect::<Result<Vec<_>>>()?;
    let net = |what: &str, s: String| -> Result<ipnet::IpNet> {
        s.parse()
            .map_err(|_| decode_err(action, format!("{what} {s:?} is not a prefix")))
    };
    let mut ipv4_prefixes = Vec::new();
    let mut ipv6_prefixes = Vec::new();
    for p in list(v, "Ipv4PrefixSets", "Ipv4PrefixSet") {
        match net("Ipv4PrefixSet entry", str_of(p, "Ipv4Prefix"))? {
            ipnet::IpNet::V4(n) => ipv4_prefixes.push(n),
            ipnet::IpNet::V6(n) => {
                return Err(decode_err(action, format!("Ipv4Prefix {n} is IPv6")))
            }
        }
    }
    for p in list(v, "Ipv6PrefixSets", "Ipv6PrefixSet") {
        match net("Ipv6PrefixSet entry", str_of(p, "Ipv6Prefix"))? {
            ipnet::IpNet::V6(n) => ipv6_prefixes.push(n),
            ipnet::IpNet::V4(n) => {
                return Err(decode_err(action, format!("Ipv6Prefix {n} is IPv4")))
            }
        }
    }
    let eni_type = match str_of(v, "Type").as_str() {
        "Primary" => EniType::Primary,
        "Trunk" => EniType::Trunk,
        _ => EniType::Secondary,
    };
    let instance_id = Some(str_of(v, "InstanceId")).filter(|s| !s.is_empty());
    Ok(NetworkInterface {
        id,
        status: EniStatus::parse(&str_of(v, "Status")),
        eni_type,
        instance_id,
        vpc_id: str_of(v, "VpcId"),
        vswitch_id: str_of(v, "VSwitchId"),
        zone_id: str_of(v, "ZoneId"),
        mac: str_of(v, "MacAddress"),
        primary_ip,
        private_ips,
        ipv6s,
        ipv4_prefixes,
        ipv6_prefixes,
        security_group_ids: list(v, "SecurityGroupIds", "SecurityGroupId")
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        tags: list(v, "Tags", "Tag")
            .iter()
            .map(|t| (str_of(t, "TagKey"), str_of(t, "TagValue")))
            .collect(),
    })
}

pub(crate) fn instance_type(v: &Value) -> InstanceTypeLimits {
    InstanceTypeLimits {
        instance_type: str_of(v, "InstanceTypeId"),
        eni_quantity: u64_of(v, "EniQuantity") as u32,
        ipv4_per_eni: u64_of(v, "EniPrivateIpAddressQuantity") as u32,
        ipv6_per_eni: u64_of(v, "EniIpv6AddressQuantity") as u32,
        eni_total_quantity: u64_of(v, "EniTotalQuantity") as u32,
    }
}

pub(crate) fn vswitch(v: &Value) -> VSwitch {
    VSwitch {
        id: str_of(v, "VSwitchId"),
        vpc_id: str_of(v, "VpcId"),
        zone_id: str_of(v, "ZoneId"),
        cidr: str_of(v, "CidrBlock"),
        ipv6_cidr: Some(str_of(v, "Ipv6CidrBlock")).filter(|s| !s.is_empty()),
        available_ip_count: u64_of(v, "AvailableIpAddressCount"),
        status: str_of(v, "Status"),
    }
}

pub(crate) fn route_table(v: &Value) -> RouteTable {
    RouteTable {
        id: str_of(v, "RouteTableId"),
        vpc_id: str_of(v, "VpcId"),
        router_id: str_of(v, "RouterId"),
        table_type: str_of(v, "RouteTableType"),
    }
}

pub(crate) fn route_entry(v: &Value) -> RouteEntry {
    let hop = list(v, "NextHops", "NextHop").first();
    RouteEntry {
        id: str_of(v, "RouteEntryId"),
        route_table_id: str_of(v, "RouteTableId"),
        destination_cidr: str_of(v, "DestinationCidrBlock"),
        next_hop_type: hop.map(|h| str_of(h, "NextHopType")).unwrap_or_default(),
        next_hop_id: hop.map(|h| str_of(h, "NextHopId")).unwrap_or_default(),
        status: RouteEntryStatus::parse(&str_of(v, "Status")),
        entry_type: str_of(v, "Type"),
    }
}
