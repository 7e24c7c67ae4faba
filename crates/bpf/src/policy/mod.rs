//! NetworkPolicy enforcement (`bpf/policy.c`): the programs on every pod's host veth and
//! the maps the policy engine fills. This module only knows the map layouts; what goes
//! into them (compiled NetworkPolicies) is the engine's business (`unicni-policy-agent`).
//!
//! Everything lives under `<pin dir>/policy/` (default `/sys/fs/bpf/unicni/policy`), apart
//! from the fast path's pins, so both can be loaded, upgraded and attached independently:
//!
//! ```text
//! <pin>/policy/maps/policy_pods, policy_node, policy_v{4,6}_{ingress,egress},
//!                   policy_ports, policy_services, policy_ct, policy_stats, policy_links
//! <pin>/policy/progs/uc_pol_from_pod, uc_pol_to_pod
//! <pin>/policy/links/tcx_{ingress,egress}_<ifindex>
//!                    pod_<key>_{ingress,egress}      an interface inside a pod (exclusive ENI)
//! ```
//!
//! The programs go in front of anything else on the hook (tcx: first in the chain; clsact:
//! a lower priority than the fast path's filters), so a packet the policy drops never
//! reaches a redirect.

mod attach;
pub(crate) mod maps;

use crate::error::{find_io, BpfError, Result};
use crate::fastpath::AttachMode;
use crate::progset::{open_map, ProgSet};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use aya::programs::TcAttachType;
use maps::{CtKey, CtValue, Lpm4, Lpm6, Port, Rule};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use attach::{detach_pod_interface, pod_interface_pinned, remove_all, PodPrograms};

/// The program at tc ingress of a pod's host veth (what the pod sends).
pub const PROGRAM_FROM_POD: &str = "uc_pol_from_pod";
/// The program at tc egress of a pod's host veth (what is delivered to the pod).
pub const PROGRAM_TO_POD: &str = "uc_pol_to_pod";

pub(crate) const HOOKS: [(&str, TcAttachType); 2] = [
    (PROGRAM_FROM_POD, TcAttachType::Ingress),
    (PROGRAM_TO_POD, TcAttachType::Egress),
];

/// `policy_pods` flag: a policy selects the pod for ingress.
pub const ISOLATED_INGRESS: u32 = 1;
/// `policy_pods` flag: a policy selects the pod for egress.
pub const ISOLATED_EGRESS: u32 = 2;

/// The policy's own directory under the agent's pin directory.
pub fn policy_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("policy")
}

/// Which side of the pod a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleDirection {
    /// Traffic into the local pod; the remote is the source.
    Ingress,
    /// Traffic out of the local pod; the remote is the destination.
    Egress,
}

/// A key of the remote-address tries: a local pod address and a remote prefix of the same
/// family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub direction: RuleDirection,
    pub local: IpAddr,
    /// The remote prefix's first address (host bits zero).
    pub remote: IpAddr,
    pub prefix_len: u8,
}

/// What a remote prefix allows: everything, or the ports of a port set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleValue {
    Any,
    PortSet(u32),
}

/// An entry of `policy_ports`: the aligned block of `2^(16 - prefix_len)` ports starting
/// at `port`, of one protocol, in port set `port_set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortEntry {
    pub port_set: u32,
    pub protocol: u8,
    pub port: u16,
    /// 0..=16 bits of the port.
    pub prefix_len: u8,
}

/// Packet counters since the maps were first created on this node (summed over CPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyStats {
    pub not_ip: u64,
    /// Neither end a local pod.
    pub no_pod: u64,
    /// Passed on a conntrack entry (established flows, replies).
    pub established: u64,
    /// New flows allowed (conntrack entries created).
    pub new_flows: u64,
    /// To or from the node's own addresses.
    pub node: u64,
    /// NDP/MLD, ICMP errors of tracked flows, non-first fragments, a pod to itself.
    pub control: u64,
    /// Dropped by the source pod's egress policy.
    pub dropped_egress: u64,
    /// Dropped by the destination pod's ingress policy.
    pub dropped_ingress: u64,
    /// From a local pod to a Service address: passed, judged after translation.
    pub service: u64,
}

impl PolicyStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_egress + self.dropped_ingress
    }
}

/// Handle on the pinned policy programs and maps. Dropping it changes nothing in the
/// kernel: attachments, programs and maps stay pinned.
pub struct PolicyDatapath {
    /// The programs (in the order of `HOOKS`) and `policy_links`.
    pub(crate) set: ProgSet,
    pods: BpfHashMap<MapData, [u8; 16], u32>,
    node: BpfHashMap<MapData, [u8; 16], u32>,
    v4: [LpmTrie<MapData, Lpm4, Rule>; 2],
    v6: [LpmTrie<MapData, Lpm6, Rule>; 2],
    ports: LpmTrie<MapData, Port, u32>,
    services: LpmTrie<MapData, [u8; 16], u32>,
    ct: BpfHashMap<MapData, CtKey, CtValue>,
    stats: PerCpuArray<MapData, u64>,
}

fn index(d: RuleDirection) -> usize {
    match d {
        RuleDirection::Ingress => 0,
        RuleDirection::Egress => 1,
    }
}

fn not_found(e: &(dyn std::error::Error + 'static)) -> bool {
    find_io(e).and_then(|io| io.raw_os_error()) == Some(libc::ENOENT)
}

impl PolicyDatapath {
    /// At agent start: mounts bpffs if needed, loads the embedded programs (reusing pinned
    /// maps, so rules and conntrack survive), keeps the pinned programs when they are the
    /// same code or pins the new ones and switches every attachment to them without a gap,
    /// and forgets attachments of interfaces that are gone. `pin_dir` is the agent's pin
    /// directory; the policy lives in its `policy/` subdirectory.
    pub fn load_or_adopt(pin_dir: &Path) -> Result<PolicyDatapath> {
        Self::load_or_adopt_with(pin_dir, AttachMode::Auto)
    }

    pub fn load_or_adopt_with(pin_dir: &Path, mode: AttachMode) -> Result<PolicyDatapath> {
        Self::load_or_adopt_object(pin_dir, mode, crate::objects::POLICY)
    }

    /// `load_or_adopt_with` for another build of the programs (tests of upgrades).
    #[doc(hidden)]
    pub fn load_or_adopt_object(
        pin_dir: &Path,
        mode: AttachMode,
        object: &[u8],
    ) -> Result<PolicyDatapath> {
        let root = policy_dir(pin_dir);
        let upgrade = ProgSet::pin_programs(&root, &attach::FAMILY, object)?;
        let mut dp = Self::open_with(pin_dir, mode)?;
        if upgrade {
            tracing::info!(pin_dir = %root.display(), "policy program changed; switching attachments");
            dp.switch_pod_interfaces()?;
            dp.set.switch_attachments()?;
        }
        let (kept, removed) = dp.reconcile()?;
        tracing::info!(pin_dir = %root.display(), adopted = kept, stale = removed, "eBPF policy ready");
        Ok(dp)
    }

    /// Opens what the agent pinned without loading anything.
    pub fn open(pin_dir: &Path) -> Result<PolicyDatapath> {
        Self::open_with(pin_dir, AttachMode::Auto)
    }

    pub fn open_with(pin_dir: &Path, mode: AttachMode) -> Result<PolicyDatapath> {
        let set = ProgSet::open(&policy_dir(pin_dir), mode, &attach::FAMILY)?;
        let open = |name: &str| open_map(&set.layout, name);
        let wrap = |what: &str, e: aya::maps::MapError| {
            BpfError::from_err(format!("use the {what} map"), &e)
        };
        let hash = |name: &str| -> Result<BpfHashMap<MapData, [u8; 16], u32>> {
            BpfHashMap::try_from(Map::HashMap(open(name)?)).map_err(|e| wrap(name, e))
        };
        let lpm4 = |name: &str| -> Result<LpmTrie<MapData, Lpm4, Rule>> {
            LpmTrie::try_from(Map::LpmTrie(open(name)?)).map_err(|e| wrap(name, e))
        };
        let lpm6 = |name: &str| -> Result<LpmTrie<MapData, Lpm6, Rule>> {
            LpmTrie::try_from(Map::LpmTrie(open(name)?)).map_err(|e| wrap(name, e))
        };
        Ok(PolicyDatapath {
            pods: hash(maps::PODS)?,
            node: hash(maps::NODE)?,
            v4: [lpm4(maps::V4_INGRESS)?, lpm4(maps::V4_EGRESS)?],
            v6: [lpm6(maps::V6_INGRESS)?, lpm6(maps::V6_EGRESS)?],
            ports: LpmTrie::try_from(Map::LpmTrie(open(maps::PORTS)?))
                .map_err(|e| wrap(maps::PORTS, e))?,
            services: LpmTrie::try_from(Map::LpmTrie(open(maps::SERVICES)?))
                .map_err(|e| wrap(maps::SERVICES, e))?,
            ct: BpfHashMap::try_from(Map::LruHashMap(open(maps::CT)?))
                .map_err(|e| wrap(maps::CT, e))?,
            stats: PerCpuArray::try_from(Map::PerCpuArray(open(maps::STATS)?))
                .map_err(|e| wrap(maps::STATS, e))?,
            set,
        })
    }

    /// The policy's pin directory (`<pin>/policy`).
    pub fn dir(&self) -> &Path {
        self.set.layout.root()
    }

    /// The kernel's tags of the pinned programs.
    pub fn program_tags(&self) -> Result<[u64; 2]> {
        Ok([self.set.tag(0)?, self.set.tag(1)?])
    }

    // ---- policy_pods ----

    /// Every local pod address with its isolation flags ([`ISOLATED_INGRESS`],
    /// [`ISOLATED_EGRESS`]).
    pub fn pods(&self) -> Result<Vec<(IpAddr, u32)>> {
        let mut out = Vec::new();
        for item in self.pods.iter() {
            let (k, v) = item.map_err(|e| BpfError::from_err("list policy pods", &e))?;
            out.push((maps::ip_of16(k), v));
        }
        out.sort();
        Ok(out)
    }

    pub fn set_pod(&mut self, ip: IpAddr, flags: u32) -> Result<()> {
        self.pods
            .insert(maps::addr16(ip), flags, 0)
            .map_err(|e| BpfError::from_err(format!("set policy pod {ip}"), &e))
    }

    pub fn remove_pod(&mut self, ip: IpAddr) -> Result<()> {
        match self.pods.remove(&maps::addr16(ip)) {
            Err(e) if !not_found(&e) => {
                Err(BpfError::from_err(format!("remove policy pod {ip}"), &e))
            }
            _ => Ok(()),
        }
    }

    // ---- policy_node ----

    /// The node's own addresses: traffic between them and local pods is always allowed.
    pub fn node_addresses(&self) -> Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        for k in self.node.keys() {
            let k = k.map_err(|e| BpfError::from_err("list node addresses", &e))?;
            out.push(maps::ip_of16(k));
        }
        out.sort();
        Ok(out)
    }

    pub fn add_node_address(&mut self, ip: IpAddr) -> Result<()> {
        self.node
            .insert(maps::addr16(ip), 1, 0)
            .map_err(|e| BpfError::from_err(format!("add node address {ip}"), &e))
    }

    pub fn remove_node_address(&mut self, ip: IpAddr) -> Result<()> {
        match self.node.remove(&maps::addr16(ip)) {
            Err(e) if !not_found(&e) => {
                Err(BpfError::from_err(format!("remove node address {ip}"), &e))
            }
            _ => Ok(()),
        }
    }

    // ---- policy_v{4,6}_{ingress,egress} ----

    /// Every entry of the four remote-address tries.
    pub fn rules(&self) -> Result<Vec<(RuleKey, RuleValue)>> {
        let mut out = Vec::new();
        for direction in [RuleDirection::Ingress, RuleDirection::Egress] {
            let i = index(direction);
            for item in self.v4[i].iter() {
                let (k, v) = item.map_err(|e| BpfError::from_err("list policy rules", &e))?;
                let data = k.data();
                out.push((
                    RuleKey {
                        direction,
                        local: maps::v4_of(data.local).into(),
                        remote: maps::v4_of(data.remote).into(),
                        prefix_len: k.prefix_len().saturating_sub(32) as u8,
                    },
                    rule_value(v),
                ));
            }
            for item in self.v6[i].iter() {
                let (k, v) = item.map_err(|e| BpfError::from_err("list policy rules", &e))?;
                let data = k.data();
                out.push((
                    RuleKey {
                        direction,
                        local: std::net::Ipv6Addr::from(data.local).into(),
                        remote: std::net::Ipv6Addr::from(data.remote).into(),
                        prefix_len: k.prefix_len().saturating_sub(128) as u8,
                    },
                    rule_value(v),
                ));
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn upsert_rule(&mut self, key: &RuleKey, value: RuleValue) -> Result<()> {
        let v = match value {
            RuleValue::Any => Rule {
                port_set: 0,
                flags: maps::RULE_ANY,
            },
            RuleValue::PortSet(id) => Rule {
                port_set: id,
                flags: 0,
            },
        };
        let i = index(key.direction);
        let op = || format!("add policy rule {key:?}");
        match (key.local, key.remote) {
            (IpAddr::V4(l), IpAddr::V4(r)) => self.v4[i]
                .insert(&v4_key(l, r, key.prefix_len), v, 0)
                .map_err(|e| BpfError::from_err(op(), &e)),
            (IpAddr::V6(l), IpAddr::V6(r)) => self.v6[i]
                .insert(&v6_key(l, r, key.prefix_len), v, 0)
                .map_err(|e| BpfError::from_err(op(), &e)),
            _ => Err(BpfError::Kernel {
                op: op(),
                detail: "the local and remote addresses are of different families".into(),
            }),
        }
    }

    pub fn remove_rule(&mut self, key: &RuleKey) -> Result<()> {
        let i = index(key.direction);
        let r = match (key.local, key.remote) {
            (IpAddr::V4(l), IpAddr::V4(r)) => self.v4[i].remove(&v4_key(l, r, key.prefix_len)),
            (IpAddr::V6(l), IpAddr::V6(r)) => self.v6[i].remove(&v6_key(l, r, key.prefix_len)),
            _ => return Ok(()),
        };
        match r {
            Err(e) if !not_found(&e) => Err(BpfError::from_err(
                format!("remove policy rule {key:?}"),
                &e,
            )),
            _ => Ok(()),
        }
    }

    // ---- policy_ports ----

    pub fn ports(&self) -> Result<Vec<PortEntry>> {
        let mut out = Vec::new();
        for k in self.ports.keys() {
            let k = k.map_err(|e| BpfError::from_err("list policy port sets", &e))?;
            let d = k.data();
            out.push(PortEntry {
                port_set: d.port_set,
                protocol: d.proto,
                port: u16::from_be(d.port),
                prefix_len: k.prefix_len().saturating_sub(48) as u8,
            });
        }
        out.sort();
        Ok(out)
    }

    pub fn add_port(&mut self, e: &PortEntry) -> Result<()> {
        self.ports
            .insert(&port_key(e), 1, 0)
            .map_err(|err| BpfError::from_err(format!("add policy port {e:?}"), &err))
    }

    pub fn remove_port(&mut self, e: &PortEntry) -> Result<()> {
        match self.ports.remove(&port_key(e)) {
            Err(err) if !not_found(&err) => Err(BpfError::from_err(
                format!("remove policy port {e:?}"),
                &err,
            )),
            _ => Ok(()),
        }
    }

    // ---- policy_services ----

    /// The Service CIDRs, as (first address, prefix length).
    pub fn services(&self) -> Result<Vec<(IpAddr, u8)>> {
        let mut out = Vec::new();
        for k in self.services.keys() {
            let k = k.map_err(|e| BpfError::from_err("list Service CIDRs", &e))?;
            let ip = maps::ip_of16(k.data());
            let len = k.prefix_len() - if ip.is_ipv4() { 96 } else { 0 };
            out.push((ip, len as u8));
        }
        out.sort();
        Ok(out)
    }

    /// Makes the Service CIDRs exactly `cidrs` (first address, prefix length): traffic from
    /// a local pod to them is judged after the host translated it to a backend.
    pub fn set_services(&mut self, cidrs: &[(IpAddr, u8)]) -> Result<()> {
        let key = |(ip, len): (IpAddr, u8)| {
            let bits = if ip.is_ipv4() {
                96 + u32::from(len.min(32))
            } else {
                u32::from(len.min(128))
            };
            Key::new(bits, maps::addr16(ip))
        };
        let have = self.services()?;
        for c in &have {
            if !cidrs.contains(c) {
                match self.services.remove(&key(*c)) {
                    Err(e) if !not_found(&e) => {
                        return Err(BpfError::from_err(
                            format!("remove Service CIDR {}/{}", c.0, c.1),
                            &e,
                        ))
                    }
                    _ => {}
                }
            }
        }
        for c in cidrs {
            if !have.contains(c) {
                self.services.insert(&key(*c), 1, 0).map_err(|e| {
                    BpfError::from_err(format!("add Service CIDR {}/{}", c.0, c.1), &e)
                })?;
            }
        }
        Ok(())
    }

    // ---- policy_ct, policy_stats ----

    /// Conntrack entries (each allowed flow has two). The agent never flushes them; they
    /// age out (LRU) or stop counting after their idle time.
    pub fn conntrack_entries(&self) -> Result<usize> {
        let mut n = 0;
        for k in self.ct.keys() {
            k.map_err(|e| BpfError::from_err("list conntrack entries", &e))?;
            n += 1;
        }
        Ok(n)
    }

    pub fn stats(&self) -> Result<PolicyStats> {
        let read = |slot: u32| crate::counters::read(&self.stats, slot, "policy");
        Ok(PolicyStats {
            not_ip: read(maps::STAT_NOT_IP)?,
            no_pod: read(maps::STAT_NO_POD)?,
            established: read(maps::STAT_ESTABLISHED)?,
            new_flows: read(maps::STAT_NEW)?,
            node: read(maps::STAT_NODE)?,
            control: read(maps::STAT_CONTROL)?,
            dropped_egress: read(maps::STAT_DROP_EGRESS)?,
            dropped_ingress: read(maps::STAT_DROP_INGRESS)?,
            service: read(maps::STAT_SERVICE)?,
        })
    }
}

fn rule_value(v: Rule) -> RuleValue {
    if v.flags & maps::RULE_ANY != 0 {
        RuleValue::Any
    } else {
        RuleValue::PortSet(v.port_set)
    }
}

fn v4_key(local: std::net::Ipv4Addr, remote: std::net::Ipv4Addr, len: u8) -> Key<Lpm4> {
    Key::new(
        32 + u32::from(len.min(32)),
        Lpm4 {
            local: maps::v4_key(local),
            remote: maps::v4_key(remote),
        },
    )
}

fn v6_key(local: std::net::Ipv6Addr, remote: std::net::Ipv6Addr, len: u8) -> Key<Lpm6> {
    Key::new(
        128 + u32::from(len.min(128)),
        Lpm6 {
            local: local.octets(),
            remote: remote.octets(),
        },
    )
}

fn port_key(e: &PortEntry) -> Key<Port> {
    Key::new(
        48 + u32::from(e.prefix_len.min(16)),
        Port {
            port_set: e.port_set,
            proto: e.protocol,
            pad: 0,
            port: e.port.to_be(),
        },
    )
}
