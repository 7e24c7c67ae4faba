//! VPC route tables: custom entries under a quota, created `Pending` and deleted
//! `Deleting` asynchronously, one change at a time per table; and the VPC Describe calls.

use crate::error::{ApiError, ApiResult};
use crate::pager::{self, SizeLimit};

const REJECT_ABOVE_50: SizeLimit = SizeLimit::Reject {
    default: 10,
    max: 50,
};
const REJECT_ABOVE_100: SizeLimit = SizeLimit::Reject {
    default: 10,
    max: 100,
};
use crate::params::Params;
use crate::state::{Deferred, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub id: String,
    pub destination_cidr: String,
    pub next_hop_type: String,
    pub next_hop_id: String,
    /// `Pending`, `Available`, `Deleting`.
    pub status: String,
    /// `Custom` or `System`.
    pub entry_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    pub router_id: String,
    pub table_type: String,
    pub entries: Vec<RouteEntry>,
}

impl RouteTable {
    pub fn system(id: &str, vpc_id: &str, router_id: &str) -> Self {
        Self {
            id: id.into(),
            vpc_id: vpc_id.into(),
            router_id: router_id.into(),
            table_type: "System".into(),
            entries: Vec::new(),
        }
    }
}

fn entry_json(table: &str, e: &RouteEntry) -> Value {
    let hops: Vec<Value> = if e.next_hop_id.is_empty() {
        Vec::new()
    } else {
        vec![json!({"NextHopType": e.next_hop_type, "NextHopId": e.next_hop_id})]
    };
    json!({
        "RouteEntryId": e.id,
        "RouteTableId": table,
        "DestinationCidrBlock": e.destination_cidr,
        "Type": e.entry_type,
        "Status": e.status,
        "NextHops": {"NextHop": hops},
    })
}

impl State {
    fn table_mut(&mut self, id: &str) -> ApiResult<&mut RouteTable> {
        self.route_tables.get_mut(id).ok_or_else(|| {
            ApiError::new(
                404,
                "InvalidRouteTableId.NotFound",
                format!("Specified route table {id} does not exist."),
            )
        })
    }

    fn task_conflict(&self, table: &RouteTable) -> ApiResult<()> {
        if self.settings.route_table_serial
            && table
                .entries
                .iter()
                .any(|e| e.status == "Pending" || e.status == "Deleting")
        {
            return Err(ApiError::new(
                400,
                "TaskConflict",
                format!(
                    "The route table {} is being changed by another task; try again later.",
                    table.id
                ),
            ));
        }
        Ok(())
    }

    pub fn create_route_entry(&mut self, p: &Params) -> ApiResult<Value> {
        let table_id = p.req("RouteTableId")?.to_string();
        let dest_raw = p.req("DestinationCidrBlock")?;
        let dest: ipnet::IpNet = dest_raw.parse().map_err(|_| {
            ApiError::new(
                400,
                "InvalidCidrBlock.Malformed",
                format!("Specified CIDR block {dest_raw:?} is not valid."),
            )
        })?;
        let dest = dest.trunc().to_string();
        let hop_type = p.get("NextHopType").unwrap_or("Instance").to_string();
        let hop_id = p.req("NextHopId")?.to_string();
        let hop_exists = match hop_type.as_str() {
            "Instance" => self.instances.contains_key(&hop_id),
            "NetworkInterface" => self.enis.contains_key(&hop_id),
            _ => return Err(ApiError::invalid("NextHopType", &hop_type)),
        };
        if !hop_exists {
            return Err(ApiError::new(
                404,
                "InvalidNextHopId.NotFound",
                format!("Specified next hop {hop_id} does not exist."),
            ));
        }
        let quota = self.settings.route_table_quota as usize;
        let table = self.table_mut(&table_id)?.clone();
        if table.entries.iter().any(|e| e.destination_cidr == dest) {
            return Err(ApiError::new(
                400,
                "InvalidCIDRBlock.Duplicate",
                format!("Specified CIDR block {dest} already exists in {table_id}."),
            ));
        }
        self.task_conflict(&table)?;
        let used = table
            .entries
            .iter()
            .filter(|e| e.entry_type == "Custom")
            .count();
        if used >= quota {
            return Err(ApiError::new(
                400,
                "QuotaExceeded.VpcRouteEntryNum",
                format!("The quota of vpc route entry num is exceeded, usage {used}/{quota}."),
            ));
        }
        let id = self.new_id("rte");
        let delay = self.settings.route_pending;
        self.table_mut(&table_id)?.entries.push(RouteEntry {
            id: id.clone(),
            destination_cidr: dest,
            next_hop_type: hop_type,
            next_hop_id: hop_id,
            status: "Pending".into(),
            entry_type: "Custom".into(),
        });
        self.defer(
            delay,
            Deferred::RouteAvailable {
                table: table_id,
                entry: id.clone(),
            },
        );
        Ok(json!({"RouteEntryId": id}))
    }

    pub fn delete_route_entry(&mut self, p: &Params) -> ApiResult<Value> {
        let entry_id = p.get("RouteEntryId").map(str::to_string);
        let table_id = p.req("RouteTableId")?.to_string();
        let table = self.table_mut(&table_id)?.clone();
        let found = table.entries.iter().find(|e| match &entry_id {
            Some(id) => &e.id == id,
            None => Some(e.destination_cidr.as_str()) == p.get("DestinationCidrBlock"),
        });
        let Some(entry) = found else {
            return Err(ApiError::new(
                404,
                "InvalidRouteEntry.NotFound",
                format!(
                    "Specified route entry {} does not exist in {table_id}.",
                    entry_id.as_deref().unwrap_or("")
                ),
            ));
        };
        if entry.status != "Available" || entry.entry_type != "Custom" {
            // An entry still Pending is the vendor's IncorrectRouteEntryStatus, unless the
            // whole table is busy (TaskConflict), which is checked first.
            self.task_conflict(&table)?;
            return Err(ApiError::new(
                400,
                "IncorrectRouteEntryStatus",
                format!(
                    "The route entry {} is {} ({}).",
                    entry.id, entry.status, entry.entry_type
                ),
            ));
        }
        self.task_conflict(&table)?;
        let entry = entry.id.clone();
        let delay = self.settings.route_pending;
        for e in &mut self.table_mut(&table_id)?.entries {
            if e.id == entry {
                e.status = "Deleting".into();
            }
        }
        self.defer(
            delay,
            Deferred::RouteDeleted {
                table: table_id,
                entry,
            },
        );
        Ok(json!({}))
    }

    pub fn describe_route_entry_list(&self, p: &Params) -> ApiResult<Value> {
        let table_id = p.req("RouteTableId")?;
        let table = self.route_tables.get(table_id).ok_or_else(|| {
            ApiError::new(
                404,
                "InvalidRouteTableId.NotFound",
                format!("Specified route table {table_id} does not exist."),
            )
        })?;
        // The VPC's own routes to each vSwitch come first, as the System entries do.
        let mut items: Vec<Value> = self
            .vswitches
            .values()
            .filter(|v| v.vpc_id == table.vpc_id)
            .map(|v| {
                entry_json(
                    table_id,
                    &RouteEntry {
                        id: format!("rte-system-{}", v.id),
                        destination_cidr: v.cidr.to_string(),
                        next_hop_type: "local".into(),
                        next_hop_id: String::new(),
                        status: "Available".into(),
                        entry_type: "System".into(),
                    },
                )
            })
            .collect();
        items.extend(
            table
                .entries
                .iter()
                .filter(|e| p.get("RouteEntryId").is_none_or(|id| e.id == id))
                .filter(|e| {
                    p.get("DestinationCidrBlock")
                        .is_none_or(|d| e.destination_cidr == d)
                })
                .map(|e| entry_json(table_id, e)),
        );
        if p.get("RouteEntryId").is_some() || p.get("DestinationCidrBlock").is_some() {
            items.retain(|v| v["Type"] != "System");
        }
        pager::tokened(
            p,
            items,
            "MaxResult",
            REJECT_ABOVE_100,
            "RouteEntrys",
            "RouteEntry",
        )
    }

    pub fn describe_route_table_list(&self, p: &Params) -> ApiResult<Value> {
        let items: Vec<Value> = self
            .route_tables
            .values()
            .filter(|t| p.get("VpcId").is_none_or(|v| t.vpc_id == v))
            .filter(|t| p.get("RouteTableId").is_none_or(|v| t.id == v))
            .map(|t| {
                json!({
                    "RouteTableId": t.id,
                    "VpcId": t.vpc_id,
                    "RouterId": t.router_id,
                    "RouterType": "VRouter",
                    "RouteTableType": t.table_type,
                    "Status": "Available",
                })
            })
            .collect();
        pager::numbered(
            p,
            items,
            REJECT_ABOVE_50,
            "RouterTableList",
            "RouterTableListType",
        )
    }

    pub fn describe_vswitches(&self, p: &Params) -> ApiResult<Value> {
        let items: Vec<Value> = self
            .vswitches
            .values()
            .filter(|v| p.get("VpcId").is_none_or(|x| v.vpc_id == x))
            .filter(|v| {
                p.get("VSwitchId")
                    .is_none_or(|x| x.split(',').any(|id| id.trim() == v.id))
            })
            .filter(|v| p.get("ZoneId").is_none_or(|x| v.zone == x))
            .map(|v| {
                json!({
                    "VSwitchId": v.id,
                    "VpcId": v.vpc_id,
                    "ZoneId": v.zone,
                    "CidrBlock": v.cidr.to_string(),
                    "Ipv6CidrBlock": v.ipv6_cidr.map(|c| c.to_string()).unwrap_or_default(),
                    "AvailableIpAddressCount": v.available(),
                    "Status": "Available",
                })
            })
            .collect();
        pager::numbered(p, items, REJECT_ABOVE_50, "VSwitches", "VSwitch")
    }
}
