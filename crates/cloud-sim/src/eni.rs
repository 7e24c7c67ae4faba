//! Elastic network interfaces: their state machine (Available → Attaching → InUse →
//! Detaching → Available → Deleting → gone), their addresses, and the ECS actions on them.

use crate::error::{ApiError, ApiResult};
use crate::events::SimEvent;
use crate::pager::{self, SizeLimit};
use crate::params::Params;
use crate::state::{Deferred, State};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Secondary addresses an ENI may hold when it is not attached (the instance type's
/// limit applies once it is).
const UNATTACHED_IP_LIMIT: usize = 50;

/// The most IPv4 prefixes one AssignPrivateIpAddresses (or CreateNetworkInterface) takes
/// ("ECS API AssignPrivateIpAddresses": Ipv4PrefixCount 1–10, Ipv4Prefix.N N ≤ 10).
pub const MAX_PREFIXES_PER_CALL: usize = 10;

/// IPv6 /80 prefixes one ENI may hold (the anchor's dual-stack prefix mode uses one per
/// ENI; docs/cloud.md states this as the emulator's assumption).
pub const IPV6_PREFIXES_PER_ENI: usize = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eni {
    pub id: String,
    /// The vendor's status string: `Available`, `Attaching`, `InUse`, `Detaching`,
    /// `Deleting`.
    pub status: String,
    /// `Primary` or `Secondary`.
    pub eni_type: String,
    pub instance_id: Option<String>,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub zone: String,
    pub mac: String,
    pub primary_ip: Ipv4Addr,
    pub secondary_ips: Vec<Ipv4Addr>,
    pub ipv6s: Vec<Ipv6Addr>,
    /// /28 prefixes (prefix delegation); each takes one of the instance type's IPv4
    /// slots per ENI, like one secondary address.
    #[serde(default)]
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// /80 prefixes.
    #[serde(default)]
    pub ipv6_prefixes: Vec<Ipv6Net>,
    pub security_groups: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub description: String,
}

impl Eni {
    pub fn to_json(&self) -> Value {
        let mut ips =
            vec![json!({"PrivateIpAddress": self.primary_ip.to_string(), "Primary": true})];
        ips.extend(
            self.secondary_ips
                .iter()
                .map(|ip| json!({"PrivateIpAddress": ip.to_string(), "Primary": false})),
        );
        json!({
            "NetworkInterfaceId": self.id,
            "Status": self.status,
            "Type": self.eni_type,
            "InstanceId": self.instance_id.clone().unwrap_or_default(),
            "VpcId": self.vpc_id,
            "VSwitchId": self.vswitch_id,
            "ZoneId": self.zone,
            "MacAddress": self.mac,
            "PrivateIpAddress": self.primary_ip.to_string(),
            "Description": self.description,
            "PrivateIpSets": {"PrivateIpSet": ips},
            "Ipv6Sets": {"Ipv6Set": self.ipv6s.iter().map(|ip| json!({"Ipv6Address": ip.to_string()})).collect::<Vec<_>>()},
            // DescribeNetworkInterfaces' (and CreateNetworkInterface's) response model in
            // the vendor SDKs: Ipv4PrefixSets.Ipv4PrefixSet[].Ipv4Prefix, and the same for
            // IPv6.
            "Ipv4PrefixSets": {"Ipv4PrefixSet": self.ipv4_prefixes.iter().map(|n| json!({"Ipv4Prefix": n.to_string()})).collect::<Vec<_>>()},
            "Ipv6PrefixSets": {"Ipv6PrefixSet": self.ipv6_prefixes.iter().map(|n| json!({"Ipv6Prefix": n.to_string()})).collect::<Vec<_>>()},
            "SecurityGroupIds": {"SecurityGroupId": self.security_groups},
            "Tags": {"Tag": self.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>()},
        })
    }

    /// Every prefix the ENI holds, for the events.
    pub fn prefix_events(&self) -> Vec<IpNet> {
        self.ipv4_prefixes
            .iter()
            .map(|n| IpNet::V4(*n))
            .chain(self.ipv6_prefixes.iter().map(|n| IpNet::V6(*n)))
            .collect()
    }

    /// IPv4 slots taken: the primary, each secondary address, each /28 prefix.
    pub fn ipv4_slots(&self) -> usize {
        1 + self.secondary_ips.len() + self.ipv4_prefixes.len()
    }

    fn ip_events(&self, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Vec<IpAddr> {
        v4.iter()
            .map(|ip| IpAddr::V4(*ip))
            .chain(v6.iter().map(|ip| IpAddr::V6(*ip)))
            .collect()
    }
}

impl State {
    /// Creates the ENI record, taking its addresses from the vSwitch (all or nothing).
    #[allow(clippy::too_many_arguments)]
    pub fn create_eni_record(
        &mut self,
        vswitch_id: &str,
        primary: Option<Ipv4Addr>,
        secondary: usize,
        ipv6: usize,
        security_groups: Vec<String>,
        tags: Vec<(String, String)>,
        eni_type: &str,
    ) -> ApiResult<String> {
        self.create_eni_with_prefixes(
            vswitch_id,
            primary,
            (secondary, ipv6),
            (0, 0),
            security_groups,
            tags,
            eni_type,
        )
    }

    /// [`Self::create_eni_record`] with `prefixes` (IPv4 /28s, IPv6 /80s) as well.
    #[allow(clippy::too_many_arguments)]
    pub fn create_eni_with_prefixes(
        &mut self,
        vswitch_id: &str,
        primary: Option<Ipv4Addr>,
        (secondary, ipv6): (usize, usize),
        prefixes: (usize, usize),
        security_groups: Vec<String>,
        tags: Vec<(String, String)>,
        eni_type: &str,
    ) -> ApiResult<String> {
        let vsw = self.vswitch_mut(vswitch_id)?;
        let mut v4 = match primary {
            Some(ip) => {
                vsw.take_exact_v4(&[ip])?;
                vec![ip]
            }
            None => Vec::new(),
        };
        match vsw.take_v4(secondary + usize::from(primary.is_none())) {
            Ok(more) => v4.extend(more),
            Err(e) => {
                vsw.release_v4(&v4);
                return Err(e);
            }
        }
        let v6 = if ipv6 > 0 {
            match vsw.take_v6(ipv6) {
                Ok(v6) => v6,
                Err(e) => {
                    vsw.release_v4(&v4);
                    return Err(e);
                }
            }
        } else {
            Vec::new()
        };
        let p4 = match vsw.take_v4_prefixes(prefixes.0) {
            Ok(p) => p,
            Err(e) => {
                vsw.release_v4(&v4);
                vsw.release_v6(&v6);
                return Err(e);
            }
        };
        let p6 = if prefixes.1 > 0 {
            match vsw.take_v6_prefixes(prefixes.1) {
                Ok(p) => p,
                Err(e) => {
                    vsw.release_v4(&v4);
                    vsw.release_v6(&v6);
                    vsw.release_v4_prefixes(&p4);
                    return Err(e);
                }
            }
        } else {
            Vec::new()
        };
        let (vpc_id, zone) = (vsw.vpc_id.clone(), vsw.zone.clone());
        let id = self.new_id("eni");
        let mac = self.new_mac();
        self.events.push(SimEvent::EniCreated {
            eni_id: id.clone(),
            vswitch_id: vswitch_id.to_string(),
            mac: mac.clone(),
        });
        self.enis.insert(
            id.clone(),
            Eni {
                id: id.clone(),
                status: "Available".into(),
                eni_type: eni_type.into(),
                instance_id: None,
                vpc_id,
                vswitch_id: vswitch_id.to_string(),
                zone,
                mac,
                primary_ip: v4[0],
                secondary_ips: v4[1..].to_vec(),
                ipv6s: v6,
                ipv4_prefixes: p4,
                ipv6_prefixes: p6,
                security_groups,
                tags,
                description: String::new(),
            },
        );
        Ok(id)
    }

    fn eni(&self, id: &str) -> ApiResult<&Eni> {
        self.enis.get(id).ok_or_else(|| ApiError::eni_not_found(id))
    }

    /// The events of an unassign call: the addresses and the prefixes taken off `eni_id`
    /// (none of either, no event).
    fn push_unassigned(&mut self, eni_id: String, ips: Vec<IpAddr>, prefixes: Vec<IpNet>) {
        if !ips.is_empty() {
            self.events.push(SimEvent::IpsUnassigned {
                eni_id: eni_id.clone(),
                ips,
            });
        }
        if !prefixes.is_empty() {
            self.events
                .push(SimEvent::PrefixesUnassigned { eni_id, prefixes });
        }
    }

    fn eni_mut(&mut self, id: &str) -> ApiResult<&mut Eni> {
        self.enis
            .get_mut(id)
            .ok_or_else(|| ApiError::eni_not_found(id))
    }

    /// Addresses of each family the ENI may hold: the instance type's when attached.
    fn ip_limits(&self, eni: &Eni) -> (usize, usize) {
        match eni
            .instance_id
            .as_deref()
            .and_then(|i| self.instance_type_of(i).ok())
        {
            Some(t) => (t.ipv4_per_eni as usize, t.ipv6_per_eni as usize),
            None => (UNATTACHED_IP_LIMIT, UNATTACHED_IP_LIMIT),
        }
    }

    pub fn create_network_interface(&mut self, p: &Params) -> ApiResult<Value> {
        let vswitch_id = p.req("VSwitchId")?.to_string();
        let mut sgs = p.list("SecurityGroupIds");
        if let Some(sg) = p.get("SecurityGroupId") {
            sgs.insert(0, sg.to_string());
        }
        if sgs.is_empty() {
            return Err(ApiError::missing("SecurityGroupId"));
        }
        for sg in &sgs {
            if !self.security_groups.contains(sg) {
                return Err(ApiError::new(
                    404,
                    "InvalidSecurityGroupId.NotFound",
                    format!("The specified SecurityGroupId {sg} does not exist."),
                ));
            }
        }
        let secondary = p.num("SecondaryPrivateIpAddressCount")?.unwrap_or(0) as usize;
        let ipv6 = p.num("Ipv6AddressCount")?.unwrap_or(0) as usize;
        if secondary + 1 > UNATTACHED_IP_LIMIT {
            return Err(ApiError::invalid(
                "SecondaryPrivateIpAddressCount",
                &secondary.to_string(),
            ));
        }
        let primary = match p.get("PrimaryIpAddress") {
            Some(s) => Some(
                s.parse()
                    .map_err(|_| ApiError::invalid("PrimaryIpAddress", s))?,
            ),
            None => None,
        };
        // "ECS API CreateNetworkInterface": Ipv4PrefixCount and Ipv6PrefixCount; with
        // single addresses in the same call refused (docs/cloud.md: the emulator's
        // reading), and the IPv4 slots of an unattached ENI shared by both.
        let p4 = p.num("Ipv4PrefixCount")?.unwrap_or(0) as usize;
        let p6 = p.num("Ipv6PrefixCount")?.unwrap_or(0) as usize;
        if p4 > 0 && secondary > 0 {
            return Err(ApiError::new(
                400,
                "InvalidParameter.Conflict",
                "Ipv4PrefixCount and SecondaryPrivateIpAddressCount cannot be given together.",
            ));
        }
        if p6 > 0 && ipv6 > 0 {
            return Err(ApiError::new(
                400,
                "InvalidParameter.Conflict",
                "Ipv6PrefixCount and Ipv6AddressCount cannot be given together.",
            ));
        }
        if p4 > MAX_PREFIXES_PER_CALL || p4 + 1 > UNATTACHED_IP_LIMIT {
            return Err(ApiError::invalid("Ipv4PrefixCount", &p4.to_string()));
        }
        if p6 > IPV6_PREFIXES_PER_ENI {
            return Err(ApiError::invalid("Ipv6PrefixCount", &p6.to_string()));
        }
        let id = self.create_eni_with_prefixes(
            &vswitch_id,
            primary,
            (secondary, ipv6),
            (p4, p6),
            sgs,
            p.tags(),
            "Secondary",
        )?;
        let prefixes: Vec<IpNet> = {
            let e = &self.enis[&id];
            e.prefix_events()
        };
        if !prefixes.is_empty() {
            self.events.push(SimEvent::PrefixesAssigned {
                eni_id: id.clone(),
                prefixes,
            });
        }
        let eni = self.enis.get_mut(&id).expect("just created");
        eni.description = p.get("Description").unwrap_or("").to_string();
        // The vendor's CreateNetworkInterface response model has no InstanceId (a new
        // ENI is never attached); DescribeNetworkInterfaces' NetworkInterfaceSet has.
        let mut doc = eni.to_json();
        if let Some(o) = doc.as_object_mut() {
            o.remove("InstanceId");
        }
        Ok(doc)
    }

    pub fn attach_network_interface(&mut self, p: &Params) -> ApiResult<Value> {
        let eni_id = p.req("NetworkInterfaceId")?;
        let inst_id = p.req("InstanceId")?;
        let inst = self
            .instances
            .get(inst_id)
            .ok_or_else(|| ApiError::instance_not_found(inst_id))?
            .clone();
        let limit = self.instance_type_of(inst_id)?.enis as usize;
        let eni = self.eni(eni_id)?;
        if eni.status != "Available" {
            return Err(ApiError::eni_state(
                eni_id,
                &eni.status,
                "AttachNetworkInterface",
            ));
        }
        if eni.zone != inst.zone {
            return Err(ApiError::new(
                403,
                "InvalidOperation.AvailabilityZoneMismatch",
                format!(
                    "The ENI {eni_id} is in zone {}, the instance {inst_id} in {}.",
                    eni.zone, inst.zone
                ),
            ));
        }
        let on_instance = self
            .enis
            .values()
            .filter(|e| e.instance_id.as_deref() == Some(inst_id))
            .count();
        if on_instance >= limit {
            return Err(ApiError::new(
                403,
                "EniPerInstanceLimitExceeded",
                format!(
                    "The instance {inst_id} ({}) already has {on_instance} of its {limit} ENIs.",
                    inst.instance_type
                ),
            ));
        }
        let delay = self.settings.attach_delay;
        let eni = self.eni_mut(eni_id)?;
        eni.status = "Attaching".into();
        eni.instance_id = Some(inst_id.to_string());
        let eni_id = eni_id.to_string();
        self.defer(delay, Deferred::EniAttached { eni_id });
        Ok(json!({}))
    }

    pub fn detach_network_interface(&mut self, p: &Params) -> ApiResult<Value> {
        let eni_id = p.req("NetworkInterfaceId")?;
        let inst_id = p.req("InstanceId")?;
        if !self.instances.contains_key(inst_id) {
            return Err(ApiError::instance_not_found(inst_id));
        }
        let eni = self.eni(eni_id)?;
        if eni.eni_type == "Primary" {
            return Err(ApiError::new(
                403,
                "InvalidOperation.DetachPrimaryEniNotAllowed",
                format!("The ENI {eni_id} is the primary ENI of {inst_id}."),
            ));
        }
        if eni.status != "InUse" || eni.instance_id.as_deref() != Some(inst_id) {
            return Err(ApiError::eni_state(
                eni_id,
                &format!(
                    "{} on {}",
                    eni.status,
                    eni.instance_id.as_deref().unwrap_or("no instance")
                ),
                &format!("DetachNetworkInterface from {inst_id}"),
            ));
        }
        let delay = self.settings.detach_delay;
        self.eni_mut(eni_id)?.status = "Detaching".into();
        self.defer(
            delay,
            Deferred::EniDetached {
                eni_id: eni_id.to_string(),
            },
        );
        Ok(json!({}))
    }

    /// The ENI goes `Deleting` and disappears after `delete_delay` (vendor: "Deleting:
    /// The ENI is being deleted", a state DescribeNetworkInterfaces reports and filters
    /// on); its addresses return to the vSwitch only then.
    pub fn delete_network_interface(&mut self, p: &Params) -> ApiResult<Value> {
        let eni_id = p.req("NetworkInterfaceId")?;
        let eni = self.eni(eni_id)?;
        if eni.status != "Available" || eni.eni_type == "Primary" {
            return Err(ApiError::eni_state(
                eni_id,
                &eni.status,
                "DeleteNetworkInterface",
            ));
        }
        let delay = self.settings.delete_delay;
        self.eni_mut(eni_id)?.status = "Deleting".into();
        self.defer(
            delay,
            Deferred::EniDeleted {
                eni_id: eni_id.to_string(),
            },
        );
        Ok(json!({}))
    }

    /// Ends a `Deleting` ENI: the record goes, its addresses return to the vSwitch.
    pub(crate) fn finish_eni_delete(&mut self, eni_id: &str) -> Option<SimEvent> {
        if self.enis.get(eni_id)?.status != "Deleting" {
            return None;
        }
        let eni = self.enis.remove(eni_id)?;
        if let Ok(vsw) = self.vswitch_mut(&eni.vswitch_id) {
            vsw.release_v4(&[eni.primary_ip]);
            vsw.release_v4(&eni.secondary_ips);
            vsw.release_v6(&eni.ipv6s);
            vsw.release_v4_prefixes(&eni.ipv4_prefixes);
            vsw.release_v6_prefixes(&eni.ipv6_prefixes);
        }
        Some(SimEvent::EniDeleted { eni_id: eni.id })
    }

    pub fn describe_network_interfaces(&self, p: &Params) -> ApiResult<Value> {
        let ids = p.list("NetworkInterfaceId");
        let tags = p.tags();
        let matching: Vec<Value> = self
            .enis
            .values()
            .filter(|e| ids.is_empty() || ids.contains(&e.id))
            .filter(|e| {
                p.get("InstanceId")
                    .is_none_or(|v| e.instance_id.as_deref() == Some(v))
            })
            .filter(|e| p.get("VSwitchId").is_none_or(|v| e.vswitch_id == v))
            .filter(|e| p.get("VpcId").is_none_or(|v| e.vpc_id == v))
            .filter(|e| p.get("Status").is_none_or(|v| e.status == v))
            .filter(|e| p.get("Type").is_none_or(|v| e.eni_type == v))
            .filter(|e| tags.iter().all(|t| e.tags.contains(t)))
            .map(Eni::to_json)
            .collect();
        // Both styles as the vendor documents them (ECS API reference,
        // DescribeNetworkInterfaces; the request model of the official SDKs,
        // alibabacloud_ecs20140526 DescribeNetworkInterfacesRequest): MaxResults 10..=500
        // (below 10 read as 10, above 500 as 500) with NextToken, the recommended style;
        // PageNumber (from 1) / PageSize 1..=1000, default 10, marked for removal.
        if p.get("MaxResults").is_some() || p.get("NextToken").is_some() {
            pager::tokened(
                p,
                matching,
                "MaxResults",
                SizeLimit::Clamp {
                    default: 10,
                    min: 10,
                    max: 500,
                },
                "NetworkInterfaceSets",
                "NetworkInterfaceSet",
            )
        } else {
            pager::numbered(
                p,
                matching,
                SizeLimit::Reject {
                    default: 10,
                    max: 1000,
                },
                "NetworkInterfaceSets",
                "NetworkInterfaceSet",
            )
        }
    }

    pub fn assign_private_ip_addresses(&mut self, p: &Params) -> ApiResult<Value> {
        let eni_id = p.req("NetworkInterfaceId")?.to_string();
        let exact: Vec<Ipv4Addr> = p.parse_list("PrivateIpAddress")?;
        let count = p.num("SecondaryPrivateIpAddressCount")?.unwrap_or(0) as usize;
        let exact_p: Vec<Ipv4Net> = p.parse_list("Ipv4Prefix")?;
        let count_p = p.num("Ipv4PrefixCount")?.unwrap_or(0) as usize;
        // "ECS API AssignPrivateIpAddresses": one of SecondaryPrivateIpAddressCount,
        // PrivateIpAddress.N, Ipv4PrefixCount, Ipv4Prefix.N per call.
        let given = [
            !exact.is_empty(),
            count > 0,
            !exact_p.is_empty(),
            count_p > 0,
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(ApiError::new(
                400,
                "InvalidParameter.Conflict",
                "Exactly one of SecondaryPrivateIpAddressCount, PrivateIpAddress.N, Ipv4PrefixCount and Ipv4Prefix.N must be given.",
            ));
        }
        let prefixes = !exact_p.is_empty() || count_p > 0;
        let want = exact.len().max(count).max(exact_p.len()).max(count_p);
        if prefixes && want > MAX_PREFIXES_PER_CALL {
            // Ipv4PrefixCount 1–10; Ipv4Prefix.N at most 10.
            return Err(ApiError::invalid(
                if count_p > 0 {
                    "Ipv4PrefixCount"
                } else {
                    "Ipv4Prefix.N"
                },
                &want.to_string(),
            ));
        }
        let eni = self.eni(&eni_id)?.clone();
        if eni.status != "InUse" && eni.status != "Available" {
            return Err(ApiError::eni_state(
                &eni_id,
                &eni.status,
                "AssignPrivateIpAddresses",
            ));
        }
        let (limit, _) = self.ip_limits(&eni);
        let have = eni.ipv4_slots();
        if have + want > limit {
            // "ECS API AssignPrivateIpAddresses, error codes": 403
            // MaxEniPrivateIpsCountExceeded (also InvalidOperation.Ipv4CountExceeded).
            // A /28 prefix takes one slot, like one address (REFERENCE: at most
            // IPv4-per-ENI − 1 prefixes, the primary keeping the last slot).
            return Err(ApiError::new(
                403,
                "MaxEniPrivateIpsCountExceeded",
                format!("The ENI {eni_id} has {have} of its {limit} private IP slots (addresses and prefixes); {want} more do not fit."),
            ));
        }
        let vsw = self.vswitch_mut(&eni.vswitch_id)?;
        let no_ip = |vsw: &crate::vpc::VSwitch, e: ApiError| {
            if e.code == crate::vpc::IP_NOT_ENOUGH {
                ApiError::vswitch_no_private_ip(&vsw.id)
            } else {
                e
            }
        };
        if prefixes {
            let got = if exact_p.is_empty() {
                vsw.take_v4_prefixes(count_p).map_err(|e| no_ip(vsw, e))?
            } else {
                vsw.take_exact_v4_prefixes(&exact_p)?;
                exact_p
            };
            let e = self.eni_mut(&eni_id)?;
            e.ipv4_prefixes.extend(got.iter().copied());
            self.events.push(SimEvent::PrefixesAssigned {
                eni_id: eni_id.clone(),
                prefixes: got.iter().map(|n| IpNet::V4(*n)).collect(),
            });
            // The response model of the vendor SDKs:
            // AssignedPrivateIpAddressesSet.Ipv4PrefixSet.Ipv4Prefixes.
            return Ok(json!({
                "AssignedPrivateIpAddressesSet": {
                    "NetworkInterfaceId": eni_id,
                    "PrivateIpSet": {"PrivateIpAddress": []},
                    "Ipv4PrefixSet": {"Ipv4Prefixes": got.iter().map(|n| n.to_string()).collect::<Vec<_>>()},
                }
            }));
        }
        let got = if exact.is_empty() {
            vsw.take_v4(count).map_err(|e| no_ip(vsw, e))?
        } else {
            vsw.take_exact_v4(&exact)?;
            exact
        };
        let e = self.eni_mut(&eni_id)?;
        e.secondary_ips.extend(got.iter().copied());
        let ips = e.ip_events(&got, &[]);
        self.events.push(SimEvent::IpsAssigned {
            eni_id: eni_id.clone(),
            ips,
        });
        Ok(json!({
            "AssignedPrivateIpAddressesSet": {
                "NetworkInterfaceId": eni_id,
                "PrivateIpSet": {"PrivateIpAddress": got.iter().map(|ip| ip.to_string()).collect::<Vec<_>>()},
            }
        }))
    }

    pub fn unassign_private_ip_addresses(&mut self, p: &Params) -> ApiResult<Value> {
        let eni_id = p.req("NetworkInterfaceId")?.to_string();
        let ips: Vec<Ipv4Addr> = p.parse_list("PrivateIpAddress")?;
        let nets: Vec<Ipv4Net> = p.parse_list("Ipv4Prefix")?;
        if ips.is_empty() && nets.is_empty() {
            return Err(ApiError::missing("PrivateIpAddress.1"));
        }
        let eni = self.eni(&eni_id)?;
        if let Some(n) = nets.iter().find(|n| !eni.ipv4_prefixes.contains(n)) {
            return Err(ApiError::new(
                400,
                "InvalidIp.IpUnassigned",
                format!("The prefix {n} is not assigned to {eni_id}."),
            ));
        }
        for ip in &ips {
            if *ip == eni.primary_ip {
                return Err(ApiError::new(
                    403,
                    "InvalidOperation.PrimaryIpUnassignNotAllowed",
                    format!("{ip} is the primary IP of {eni_id}."),
                ));
            }
            if !eni.secondary_ips.contains(ip) {
                return Err(ApiError::new(
                    400,
                    "InvalidIp.IpUnassigned",
                    format!("The IP {ip} is not assigned to {eni_id}."),
                ));
            }
        }
        let vswitch_id = eni.vswitch_id.clone();
        let e = self.eni_mut(&eni_id)?;
        e.secondary_ips.retain(|ip| !ips.contains(ip));
        e.ipv4_prefixes.retain(|n| !nets.contains(n));
        let evs = e.ip_events(&ips, &[]);
        let vsw = self.vswitch_mut(&vswitch_id)?;
        vsw.release_v4(&ips);
        vsw.release_v4_prefixes(&nets);
        self.push_unassigned(eni_id, evs, nets.iter().map(|n| IpNet::V4(*n)).collect());
        Ok(json!({}))
    }

    pub fn assign_ipv6_addresses(&mut self, p: &Params) -> ApiResult<Value> {
        let eni_id = p.req("NetworkInterfaceId")?.to_string();
        let exact: Vec<Ipv6Addr> = p.parse_list("Ipv6Address")?;
        let count = p.num("Ipv6AddressCount")?.unwrap_or(0) as usize;
        let count_p = p.num("Ipv6PrefixCount")?.unwrap_or(0) as usize;
        if !p.list("Ipv6Prefix").is_empty() {
            // Exact /80s are not modelled: the pool only ever asks for a count.
            return Err(ApiError::invalid(
                "Ipv6Prefix.N",
                "not supported by the emulator",
            ));
        }
        let given = [!exact.is_empty(), count > 0, count_p > 0]
            .iter()
            .filter(|g| **g)
            .count();
        if given != 1 {
            return Err(ApiError::new(
                400,
                "InvalidParameter.Conflict",
                "Exactly one of Ipv6AddressCount, Ipv6Address.N and Ipv6PrefixCount must be given.",
            ));
        }
        let eni = self.eni(&eni_id)?.clone();
        if eni.status != "InUse" && eni.status != "Available" {
            return Err(ApiError::eni_state(
                &eni_id,
                &eni.status,
                "AssignIpv6Addresses",
            ));
        }
        if count_p > 0 {
            if eni.ipv6_prefixes.len() + count_p > IPV6_PREFIXES_PER_ENI {
                // docs/cloud.md: the emulator's reading of the one-/80-per-ENI rule.
                return Err(ApiError::new(
                    403,
                    "InvalidOperation.Ipv6PrefixCountExceeded",
                    format!(
                        "The ENI {eni_id} has {} of its {IPV6_PREFIXES_PER_ENI} IPv6 prefixes; {count_p} more do not fit.",
                        eni.ipv6_prefixes.len()
                    ),
                ));
            }
            let got = self
                .vswitch_mut(&eni.vswitch_id)?
                .take_v6_prefixes(count_p)?;
            let e = self.eni_mut(&eni_id)?;
            e.ipv6_prefixes.extend(got.iter().copied());
            self.events.push(SimEvent::PrefixesAssigned {
                eni_id: eni_id.clone(),
                prefixes: got.iter().map(|n| IpNet::V6(*n)).collect(),
            });
            // The vendor SDKs' response model: Ipv6PrefixSets.Ipv6Prefix[].
            return Ok(json!({
                "NetworkInterfaceId": eni_id,
                "Ipv6Sets": {"Ipv6Address": []},
                "Ipv6PrefixSets": {"Ipv6Prefix": got.iter().map(|n| n.to_string()).collect::<Vec<_>>()},
            }));
        }
        let (_, limit) = self.ip_limits(&eni);
        let want = exact.len().max(count);
        if eni.ipv6s.len() + want > limit {
            // "ECS API AssignIpv6Addresses, error codes": 403 MaxEniIpv6IpsCountExceeded
            // (also InvalidOperation.Ipv6CountExceeded).
            return Err(ApiError::new(
                403,
                "MaxEniIpv6IpsCountExceeded",
                format!("The ENI {eni_id} has {} of its {limit} IPv6 addresses; {want} more do not fit.", eni.ipv6s.len()),
            ));
        }
        let vsw = self.vswitch_mut(&eni.vswitch_id)?;
        let got = if exact.is_empty() {
            vsw.take_v6(count)?
        } else {
            vsw.take_exact_v6(&exact)?;
            exact
        };
        let e = self.eni_mut(&eni_id)?;
        e.ipv6s.extend(got.iter().copied());
        let ips = e.ip_events(&[], &got);
        self.events.push(SimEvent::IpsAssigned {
            eni_id: eni_id.clone(),
            ips,
        });
        Ok(json!({
            "NetworkInterfaceId": eni_id,
            "Ipv6Sets": {"Ipv6Address": got.iter().map(|ip| ip.to_string()).collect::<Vec<_>>()},
        }))
    }

    pub fn unassign_ipv6_addresses(&mut self, p: &Params) -> ApiResult<Value> {
        let eni_id = p.req("NetworkInterfaceId")?.to_string();
        let ips: Vec<Ipv6Addr> = p.parse_list("Ipv6Address")?;
        let nets: Vec<Ipv6Net> = p.parse_list("Ipv6Prefix")?;
        if ips.is_empty() && nets.is_empty() {
            return Err(ApiError::missing("Ipv6Address.1"));
        }
        let eni = self.eni(&eni_id)?;
        if let Some(n) = nets.iter().find(|n| !eni.ipv6_prefixes.contains(n)) {
            return Err(ApiError::new(
                400,
                "InvalidIp.IpUnassigned",
                format!("The IPv6 prefix {n} is not assigned to {eni_id}."),
            ));
        }
        if let Some(ip) = ips.iter().find(|ip| !eni.ipv6s.contains(ip)) {
            return Err(ApiError::new(
                400,
                "InvalidIp.IpUnassigned",
                format!("The IPv6 address {ip} is not assigned to {eni_id}."),
            ));
        }
        let vswitch_id = eni.vswitch_id.clone();
        let e = self.eni_mut(&eni_id)?;
        e.ipv6s.retain(|ip| !ips.contains(ip));
        e.ipv6_prefixes.retain(|n| !nets.contains(n));
        let evs = e.ip_events(&[], &ips);
        let vsw = self.vswitch_mut(&vswitch_id)?;
        vsw.release_v6(&ips);
        vsw.release_v6_prefixes(&nets);
        self.push_unassigned(eni_id, evs, nets.iter().map(|n| IpNet::V6(*n)).collect());
        Ok(json!({}))
    }

    pub fn describe_instance_types(&self, p: &Params) -> ApiResult<Value> {
        let wanted = p.list("InstanceTypes");
        let items: Vec<Value> = self
            .instance_types
            .values()
            .filter(|t| wanted.is_empty() || wanted.contains(&t.name))
            .map(|t| {
                json!({
                    "InstanceTypeId": t.name,
                    "EniQuantity": t.enis,
                    "EniPrivateIpAddressQuantity": t.ipv4_per_eni,
                    "EniIpv6AddressQuantity": t.ipv6_per_eni,
                    "EniTotalQuantity": t.enis,
                })
            })
            .collect();
        pager::tokened(
            p,
            items,
            "MaxResults",
            SizeLimit::Reject {
                default: 10,
                max: 100,
            },
            "InstanceTypes",
            "InstanceType",
        )
    }
}
