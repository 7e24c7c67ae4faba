//! The emulated region: everything that persists across restarts of the emulator.

use crate::config::SimConfig;
use crate::eni::Eni;
use crate::error::{ApiError, ApiResult, SimError};
use crate::events::SimEvent;
use crate::instance_types::{self, InstanceType};
use crate::latency::LatencyTable;
use crate::route_table::RouteTable;
use crate::vpc::{VSwitch, Vpc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StsCredentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
}

impl std::fmt::Debug for StsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    pub vswitch_id: String,
    pub primary_eni_id: String,
    pub metadata_addresses: Vec<IpAddr>,
    pub ram_role: Option<String>,
    pub sts: Option<StsCredentials>,
}

/// A state change that completes later (the cloud's asynchronous operations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferred {
    EniAttached { eni_id: String },
    EniDetached { eni_id: String },
    EniDeleted { eni_id: String },
    RouteAvailable { table: String, entry: String },
    RouteDeleted { table: String, entry: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub region: String,
    pub vpc: Vpc,
    pub vswitches: BTreeMap<String, VSwitch>,
    pub security_groups: BTreeSet<String>,
    pub instances: BTreeMap<String, Instance>,
    pub enis: BTreeMap<String, Eni>,
    pub route_tables: BTreeMap<String, RouteTable>,
    pub instance_types: BTreeMap<String, InstanceType>,
    /// `Action/ClientToken` → the response first given, replayed for the same token.
    pub client_tokens: BTreeMap<String, serde_json::Value>,
    pub next_id: u64,
    /// Produced by the last operation, drained by the server.
    #[serde(skip)]
    pub events: Vec<SimEvent>,
    #[serde(skip)]
    pub deferred: Vec<(Duration, Deferred)>,
    #[serde(skip)]
    pub settings: Settings,
}

/// Behaviour knobs copied from the config (not persisted: the config wins on restart).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    pub attach_delay: Duration,
    pub detach_delay: Duration,
    pub delete_delay: Duration,
    pub route_pending: Duration,
    pub route_table_quota: u32,
    pub route_table_serial: bool,
}

impl Settings {
    /// The state durations are the medians of the config's latency profile; the
    /// emulator adds the profile's jitter when it schedules them.
    pub fn from_config(c: &SimConfig) -> Self {
        let t = LatencyTable::for_profile(c.profile, c);
        Self {
            attach_delay: t.attach.median(),
            detach_delay: t.detach.median(),
            delete_delay: t.delete.median(),
            route_pending: t.route_pending.median(),
            route_table_quota: c.route_table_quota,
            route_table_serial: c.route_table_serial,
        }
    }
}

fn cfg_err(msg: String) -> SimError {
    SimError::Config(msg)
}

impl State {
    pub fn from_config(c: &SimConfig) -> Result<Self, SimError> {
        c.faults.validate().map_err(cfg_err)?;
        let vpc_cidr = c
            .vpc
            .cidr
            .parse()
            .map_err(|_| cfg_err(format!("vpc.cidr {:?} is not an IPv4 CIDR", c.vpc.cidr)))?;
        let mut st = State {
            region: c.region.clone(),
            vpc: Vpc {
                id: c.vpc.id.clone(),
                cidr: vpc_cidr,
            },
            vswitches: BTreeMap::new(),
            security_groups: c.security_groups.iter().cloned().collect(),
            instances: BTreeMap::new(),
            enis: BTreeMap::new(),
            route_tables: BTreeMap::new(),
            instance_types: instance_types::load(c.instance_types_file.as_deref().map(Path::new))?,
            client_tokens: BTreeMap::new(),
            next_id: 1,
            events: Vec::new(),
            deferred: Vec::new(),
            settings: Settings::from_config(c),
        };
        for v in &c.vswitches {
            let cidr: ipnet::Ipv4Net = v.cidr.parse().map_err(|_| {
                cfg_err(format!(
                    "vswitch {}: cidr {:?} is not an IPv4 CIDR",
                    v.id, v.cidr
                ))
            })?;
            if !vpc_cidr.contains(&cidr) {
                return Err(cfg_err(format!(
                    "vswitch {}: cidr {cidr} is outside vpc.cidr {vpc_cidr}",
                    v.id
                )));
            }
            if cidr.prefix_len() > 29 {
                return Err(cfg_err(format!(
                    "vswitch {}: cidr {cidr} is smaller than /29",
                    v.id
                )));
            }
            let ipv6_cidr = match &v.ipv6_cidr {
                None => None,
                Some(s) => Some(s.parse().map_err(|_| {
                    cfg_err(format!(
                        "vswitch {}: ipv6_cidr {s:?} is not an IPv6 CIDR",
                        v.id
                    ))
                })?),
            };
            st.vswitches.insert(
                v.id.clone(),
                VSwitch {
                    id: v.id.clone(),
                    vpc_id: c.vpc.id.clone(),
                    zone: v.zone.clone(),
                    cidr,
                    ipv6_cidr,
                    used: Default::default(),
                    used6: Default::default(),
                    prefixes6: Default::default(),
                },
            );
        }
        st.route_tables.insert(
            c.vpc.route_table_id.clone(),
            RouteTable::system(&c.vpc.route_table_id, &c.vpc.id, &c.vpc.router_id),
        );
        for i in &c.instances {
            st.add_instance(i)
                .map_err(|e| cfg_err(format!("instance {}: {}", i.id, e.message)))?;
        }
        st.events.clear();
        Ok(st)
    }

    pub fn new_id(&mut self, prefix: &str) -> String {
        let n = self.next_id;
        self.next_id += 1;
        format!("{prefix}-sim{n:010x}")
    }

    /// Alibaba's OUI, then the ID counter.
    pub fn new_mac(&mut self) -> String {
        let n = self.next_id;
        self.next_id += 1;
        format!(
            "00:16:3e:{:02x}:{:02x}:{:02x}",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        )
    }

    pub fn vswitch_mut(&mut self, id: &str) -> ApiResult<&mut VSwitch> {
        self.vswitches.get_mut(id).ok_or_else(|| {
            ApiError::new(
                404,
                "InvalidVSwitchId.NotFound",
                format!("The specified VSwitchId {id} does not exist."),
            )
        })
    }

    pub fn instance_type_of(&self, instance_id: &str) -> ApiResult<&InstanceType> {
        let inst = self
            .instances
            .get(instance_id)
            .ok_or_else(|| ApiError::instance_not_found(instance_id))?;
        self.instance_types.get(&inst.instance_type).ok_or_else(|| {
            ApiError::new(
                404,
                "InvalidInstanceType.NotFound",
                format!(
                    "The instance type {} of {instance_id} is not in the emulator's table.",
                    inst.instance_type
                ),
            )
        })
    }

    /// Adds an instance with its primary ENI (in use at once, as for a running instance).
    pub fn add_instance(&mut self, spec: &crate::config::InstanceSpec) -> ApiResult<()> {
        if self.instances.contains_key(&spec.id) {
            return Err(ApiError::new(
                400,
                "InvalidInstanceId.Duplicate",
                format!("Instance {} exists.", spec.id),
            ));
        }
        if !self.instance_types.contains_key(&spec.instance_type) {
            return Err(ApiError::new(
                404,
                "InvalidInstanceType.NotFound",
                format!(
                    "The instance type {} is not in the emulator's table.",
                    spec.instance_type
                ),
            ));
        }
        let mut metadata_addresses = Vec::new();
        for a in &spec.metadata_addresses {
            metadata_addresses.push(
                a.parse()
                    .map_err(|_| ApiError::invalid("metadata_addresses", a))?,
            );
        }
        let primary: Option<Ipv4Addr> = match &spec.primary_ip {
            Some(s) => Some(s.parse().map_err(|_| ApiError::invalid("primary_ip", s))?),
            None => None,
        };
        let zone = self.vswitch_mut(&spec.vswitch_id)?.zone.clone();
        let eni_id = self.create_eni_record(
            &spec.vswitch_id,
            primary,
            0,
            0,
            Vec::new(),
            Vec::new(),
            "Primary",
        )?;
        let eni = self.enis.get_mut(&eni_id).expect("just created");
        eni.status = "InUse".into();
        eni.instance_id = Some(spec.id.clone());
        let sts = spec.ram_role.as_ref().map(|_| StsCredentials {
            access_key_id: format!("STS.{}", spec.id),
            access_key_secret: format!("{:032x}", fastrand::u128(..)),
            security_token: format!("{:064x}", fastrand::u128(..)),
        });
        self.instances.insert(
            spec.id.clone(),
            Instance {
                id: spec.id.clone(),
                instance_type: spec.instance_type.clone(),
                zone,
                vswitch_id: spec.vswitch_id.clone(),
                primary_eni_id: eni_id,
                metadata_addresses,
                ram_role: spec.ram_role.clone(),
                sts,
            },
        );
        Ok(())
    }

    /// Completes an asynchronous change; `None` when the object changed meanwhile.
    pub fn settle(&mut self, d: &Deferred) -> Option<SimEvent> {
        match d {
            Deferred::EniAttached { eni_id } => {
                let e = self.enis.get_mut(eni_id)?;
                (e.status == "Attaching").then(|| {
                    e.status = "InUse".into();
                    SimEvent::EniAttached {
                        eni_id: e.id.clone(),
                        instance_id: e.instance_id.clone().unwrap_or_default(),
                        mac: e.mac.clone(),
                    }
                })
            }
            Deferred::EniDetached { eni_id } => {
                let e = self.enis.get_mut(eni_id)?;
                (e.status == "Detaching").then(|| {
                    e.status = "Available".into();
                    SimEvent::EniDetached {
                        eni_id: e.id.clone(),
                        instance_id: e.instance_id.take().unwrap_or_default(),
                        mac: e.mac.clone(),
                    }
                })
            }
            Deferred::EniDeleted { eni_id } => self.finish_eni_delete(eni_id),
            Deferred::RouteAvailable { table, entry } => {
                let t = self.route_tables.get_mut(table)?;
                let e = t.entries.iter_mut().find(|e| &e.id == entry)?;
                (e.status == "Pending").then(|| {
                    e.status = "Available".into();
                    SimEvent::RouteEntryAvailable {
                        route_table_id: table.clone(),
                        route_entry_id: e.id.clone(),
                        destination_cidr: e.destination_cidr.clone(),
                        next_hop_id: e.next_hop_id.clone(),
                    }
                })
            }
            Deferred::RouteDeleted { table, entry } => {
                let t = self.route_tables.get_mut(table)?;
                let pos = t
                    .entries
                    .iter()
                    .position(|e| &e.id == entry && e.status == "Deleting")?;
                let e = t.entries.remove(pos);
                Some(SimEvent::RouteEntryDeleted {
                    route_table_id: table.clone(),
                    route_entry_id: e.id,
                    destination_cidr: e.destination_cidr,
                    next_hop_id: e.next_hop_id,
                })
            }
        }
    }

    /// Completes every change in flight: used when loading a saved state, whose timers
    /// did not survive the restart.
    pub fn settle_all(&mut self) {
        let mut pending = Vec::new();
        for e in self.enis.values() {
            match e.status.as_str() {
                "Attaching" => pending.push(Deferred::EniAttached {
                    eni_id: e.id.clone(),
                }),
                "Detaching" => pending.push(Deferred::EniDetached {
                    eni_id: e.id.clone(),
                }),
                "Deleting" => pending.push(Deferred::EniDeleted {
                    eni_id: e.id.clone(),
                }),
                _ => {}
            }
        }
        for t in self.route_tables.values() {
            for e in &t.entries {
                let (table, entry) = (t.id.clone(), e.id.clone());
                match e.status.as_str() {
                    "Pending" => pending.push(Deferred::RouteAvailable { table, entry }),
                    "Deleting" => pending.push(Deferred::RouteDeleted { table, entry }),
                    _ => {}
                }
            }
        }
        for d in pending {
            self.settle(&d);
        }
    }

    /// Queues a change to complete after `delay` (at once when zero).
    pub fn defer(&mut self, delay: Duration, d: Deferred) {
        if delay.is_zero() {
            if let Some(ev) = self.settle(&d) {
                self.events.push(ev);
            }
        } else {
            self.deferred.push((delay, d));
        }
    }
}
