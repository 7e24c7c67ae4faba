//! The terway shared-ENI fast path (`bpf/terway.c`): pod egress straight out of the
//! owning ENI, ENI ingress straight into the pod, both skipping the host stack. The agent
//! loads and pins it ([`TerwayFastPath::load_or_adopt`]), fills the host-path CIDRs and
//! attaches the ENI program to each ENI it prepares; the CNI plugin opens the pins
//! ([`TerwayFastPath::open`]), attaches the veth programs and adds the pod's entry.
//! See `docs/ebpf.md`.

use crate::cleanup::ReconcileReport;
use crate::error::{find_io, BpfError, Result};
use crate::fastpath::{AttachMode, Attachment};
use crate::iface;
use crate::progset::{open_map, Family, ProgSet};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use aya::programs::TcAttachType;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// At tc ingress of a pod's host veth: pod egress.
pub const PROGRAM_POD: &str = "uc_tw_pod";
/// At tc egress of a pod's host veth: records flows that reach the pod through the host.
pub const PROGRAM_POD_EGRESS: &str = "uc_tw_pod_eg";
/// At tc ingress of an ENI link: traffic for local pods.
pub const PROGRAM_ENI: &str = "uc_tw_eni";

const PODS: &str = "tw_pods";
const HOST_CIDRS: &str = "tw_host_cidrs";
const HOST_FLOWS: &str = "tw_host_flows";
const STATS: &str = "tw_stats";
const PODS6: &str = "tw_pods6";
const HOST_CIDRS6: &str = "tw_host_cidrs6";
const HOST_FLOWS6: &str = "tw_host_flows6";
const STATS6: &str = "tw_stats6";
pub(crate) const LINKS: &str = "tw_links";

/// Roles of `tw_links` values (`TW_ROLE_*` in terway.h).
const ROLE_POD: u32 = 0x100;
const ROLE_ENI: u32 = 0x200;

pub(crate) static FAMILY: Family = Family {
    programs: &[
        (PROGRAM_POD, TcAttachType::Ingress),
        (PROGRAM_POD_EGRESS, TcAttachType::Egress),
        (PROGRAM_ENI, TcAttachType::Ingress),
    ],
    roles: &[(ROLE_POD, &[0, 1]), (ROLE_ENI, &[2])],
    links_map: LINKS,
    link_prefix: "tw",
    nl_priority: 0x2000,
    nl_handle: 0x7563_0002,
    tcx_first: false,
};

/// `struct tw_pod` in terway.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PodValue {
    veth_ifindex: u32,
    eni_ifindex: u32,
    pod_mac: [u8; 6],
    veth_mac: [u8; 6],
}

// SAFETY: repr(C), only integer fields, no padding (4 + 4 + 6 + 6 bytes, align 4).
#[allow(unsafe_code)]
unsafe impl aya::Pod for PodValue {}

/// `struct tw_flow` in terway.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    pod: u32,
    peer: u32,
    pod_port: u16,
    peer_port: u16,
    proto: u8,
    pad: [u8; 3],
}

// SAFETY: repr(C), only integer fields, explicit padding (16 bytes, align 4).
#[allow(unsafe_code)]
unsafe impl aya::Pod for FlowKey {}

/// `struct tw_flow6` in terway.h (40 bytes; the C struct's alignment of 4 does not change
/// its size or layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey6 {
    pod: [u8; 16],
    peer: [u8; 16],
    pod_port: u16,
    peer_port: u16,
    proto: u8,
    pad: [u8; 3],
}

// SAFETY: repr(C), only integer fields, explicit padding (16 + 16 + 2 + 2 + 1 + 3 bytes).
#[allow(unsafe_code)]
unsafe impl aya::Pod for FlowKey6 {}

/// An address as the programs read it from the IP header (network byte order).
fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

fn ip_of(key: u32) -> Ipv4Addr {
    Ipv4Addr::from(key.to_ne_bytes())
}

/// A shared-ENI pod's address as the programs see it (a dual-stack pod has two entries,
/// one per family, with the same interfaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerwayPod {
    pub ip: IpAddr,
    /// The pod's host-side veth (in the node's namespace).
    pub veth_ifindex: u32,
    /// The link of the ENI that owns `ip`.
    pub eni_ifindex: u32,
    /// The pod's own interface's MAC.
    pub pod_mac: [u8; 6],
    /// The host veth's MAC.
    pub veth_mac: [u8; 6],
}

/// Packet counters since the programs were first loaded on this node (pinned maps: one
/// per family, [`TerwayFastPath::stats_v4`] and [`TerwayFastPath::stats_v6`]; frames of
/// neither family count with IPv4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerwayStats {
    /// Pod -> ENI with the neighbour known (`bpf_redirect`).
    pub out_redirect: u64,
    /// Pod -> ENI through `bpf_redirect_neigh` (neighbour resolved by the kernel).
    pub out_redirect_neigh: u64,
    /// Pod -> another pod of this node (`bpf_redirect_peer`).
    pub out_local: u64,
    /// Pod -> a Service CIDR or node address: host path.
    pub out_pass_host_dst: u64,
    /// Pod -> something the FIB does not send out of the pod's ENI (local, unreachable).
    pub out_pass_route: u64,
    /// Pod -> a flow that went through the host before.
    pub out_pass_host_flow: u64,
    /// Pod -> not IP, fragments, IP options or IPv6 extension headers, TTL/hop limit,
    /// ICMP errors, NDP/MLD, link-local or multicast, unknown source.
    pub out_pass_other: u64,
    /// ENI -> pod (`bpf_redirect_peer`).
    pub in_redirect: u64,
    /// ENI -> not a pod of this node (the node itself, ARP).
    pub in_pass_no_pod: u64,
    /// ENI -> a reply the host must un-NAT.
    pub in_pass_host_flow: u64,
    /// ENI -> fragments, IP options or extension headers, TTL, ICMP errors, NDP,
    /// link-local sources, not addressed to the ENI.
    pub in_pass_other: u64,
}

impl std::ops::Add for TerwayStats {
    type Output = TerwayStats;

    fn add(self, o: TerwayStats) -> TerwayStats {
        TerwayStats {
            out_redirect: self.out_redirect + o.out_redirect,
            out_redirect_neigh: self.out_redirect_neigh + o.out_redirect_neigh,
            out_local: self.out_local + o.out_local,
            out_pass_host_dst: self.out_pass_host_dst + o.out_pass_host_dst,
            out_pass_route: self.out_pass_route + o.out_pass_route,
            out_pass_host_flow: self.out_pass_host_flow + o.out_pass_host_flow,
            out_pass_other: self.out_pass_other + o.out_pass_other,
            in_redirect: self.in_redirect + o.in_redirect,
            in_pass_no_pod: self.in_pass_no_pod + o.in_pass_no_pod,
            in_pass_host_flow: self.in_pass_host_flow + o.in_pass_host_flow,
            in_pass_other: self.in_pass_other + o.in_pass_other,
        }
    }
}

impl TerwayStats {
    /// Frames that skipped the host stack, both directions.
    pub fn redirected(&self) -> u64 {
        self.out_redirect + self.out_redirect_neigh + self.out_local + self.in_redirect
    }
}

/// Handle on the pinned terway fast path. Dropping it changes nothing in the kernel.
pub struct TerwayFastPath {
    set: ProgSet,
    pods: BpfHashMap<MapData, u32, PodValue>,
    host_cidrs: LpmTrie<MapData, u32, u8>,
    flows: BpfHashMap<MapData, FlowKey, u8>,
    stats: PerCpuArray<MapData, u64>,
    pods6: BpfHashMap<MapData, [u8; 16], PodValue>,
    host_cidrs6: LpmTrie<MapData, [u8; 16], u8>,
    flows6: BpfHashMap<MapData, FlowKey6, u8>,
    stats6: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for TerwayFastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerwayFastPath")
            .field("pin_dir", &self.set.layout.root())
            .field("mode", &self.set.mode)
            .finish()
    }
}

fn enoent(e: &(dyn std::error::Error + 'static)) -> bool {
    find_io(e).and_then(|io| io.raw_os_error()) == Some(libc::ENOENT)
}

impl TerwayFastPath {
    /// The agent's entry point: mounts bpffs if needed, loads the embedded programs (the
    /// verifier runs here; maps already pinned are reused, so pod entries survive), keeps
    /// pinned programs of the same code or switches every attachment to the new code, and
    /// forgets state of interfaces that are gone ([`TerwayFastPath::reconcile`]).
    pub fn load_or_adopt(pin_dir: &Path) -> Result<TerwayFastPath> {
        Self::load_or_adopt_with(pin_dir, AttachMode::Auto)
    }

    pub fn load_or_adopt_with(pin_dir: &Path, mode: AttachMode) -> Result<TerwayFastPath> {
        Self::load_or_adopt_object(pin_dir, mode, crate::objects::TERWAY)
    }

    /// `load_or_adopt_with` for another build of the programs (tests).
    #[doc(hidden)]
    pub fn load_or_adopt_object(
        pin_dir: &Path,
        mode: AttachMode,
        object: &[u8],
    ) -> Result<TerwayFastPath> {
        let set = ProgSet::load_or_adopt(pin_dir, mode, &FAMILY, object)?;
        let mut fp = Self::with_set(set)?;
        let r = fp.reconcile()?;
        tracing::info!(
            pin_dir = %pin_dir.display(),
            adopted = r.kept_attachments,
            stale_attachments = r.removed_attachments,
            stale_pods = r.removed_endpoints,
            "eBPF terway fast path ready"
        );
        Ok(fp)
    }

    /// Opens what the agent pinned, loading nothing: for the CNI plugin. `NotLoaded` when
    /// the agent has not loaded the fast path.
    pub fn open(pin_dir: &Path) -> Result<TerwayFastPath> {
        Self::open_with(pin_dir, AttachMode::Auto)
    }

    pub fn open_with(pin_dir: &Path, mode: AttachMode) -> Result<TerwayFastPath> {
        Self::with_set(ProgSet::open(pin_dir, mode, &FAMILY)?)
    }

    fn with_set(set: ProgSet) -> Result<TerwayFastPath> {
        let l = &set.layout;
        let pods = BpfHashMap::try_from(Map::HashMap(open_map(l, PODS)?))
            .map_err(|e| BpfError::from_err("use the tw_pods map", &e))?;
        let host_cidrs = LpmTrie::try_from(Map::LpmTrie(open_map(l, HOST_CIDRS)?))
            .map_err(|e| BpfError::from_err("use the tw_host_cidrs map", &e))?;
        let flows = BpfHashMap::try_from(Map::LruHashMap(open_map(l, HOST_FLOWS)?))
            .map_err(|e| BpfError::from_err("use the tw_host_flows map", &e))?;
        let stats = PerCpuArray::try_from(Map::PerCpuArray(open_map(l, STATS)?))
            .map_err(|e| BpfError::from_err("use the tw_stats map", &e))?;
        let pods6 = BpfHashMap::try_from(Map::HashMap(open_map(l, PODS6)?))
            .map_err(|e| BpfError::from_err("use the tw_pods6 map", &e))?;
        let host_cidrs6 = LpmTrie::try_from(Map::LpmTrie(open_map(l, HOST_CIDRS6)?))
            .map_err(|e| BpfError::from_err("use the tw_host_cidrs6 map", &e))?;
        let flows6 = BpfHashMap::try_from(Map::LruHashMap(open_map(l, HOST_FLOWS6)?))
            .map_err(|e| BpfError::from_err("use the tw_host_flows6 map", &e))?;
        let stats6 = PerCpuArray::try_from(Map::PerCpuArray(open_map(l, STATS6)?))
            .map_err(|e| BpfError::from_err("use the tw_stats6 map", &e))?;
        Ok(TerwayFastPath {
            set,
            pods,
            host_cidrs,
            flows,
            stats,
            pods6,
            host_cidrs6,
            flows6,
            stats6,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        self.set.layout.root()
    }

    /// The kernel's tag of the pinned pod-egress program (changes with its code).
    pub fn program_tag(&self) -> Result<u64> {
        self.set.tag(0)
    }

    /// Makes `tw_host_cidrs` and `tw_host_cidrs6` hold exactly `cidrs` (Service CIDRs,
    /// node addresses, either family): pod traffic to them keeps the host path.
    pub fn set_host_cidrs(&mut self, cidrs: &[(IpAddr, u8)]) -> Result<()> {
        let mut want4: Vec<(u32, u32)> = Vec::new();
        let mut want6: Vec<(u32, [u8; 16])> = Vec::new();
        for (ip, len) in cidrs {
            match ip {
                IpAddr::V4(ip) => {
                    let len = u32::from((*len).min(32));
                    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    want4.push((len, key(Ipv4Addr::from(u32::from(*ip) & mask))));
                }
                IpAddr::V6(ip) => {
                    let len = u32::from((*len).min(128));
                    let mask = if len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - len)
                    };
                    want6.push((len, (u128::from(*ip) & mask).to_be_bytes()));
                }
            }
        }
        let have4: Vec<(u32, u32)> = self
            .host_cidrs
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| (k.prefix_len(), k.data()))
            .collect();
        for (len, addr) in &have4 {
            if !want4.contains(&(*len, *addr)) {
                let _ = self.host_cidrs.remove(&Key::new(*len, *addr));
            }
        }
        for (len, addr) in want4 {
            self.host_cidrs
                .insert(&Key::new(len, addr), 1, 0)
                .map_err(|e| {
                    BpfError::from_err(format!("add {}/{len} to tw_host_cidrs", ip_of(addr)), &e)
                })?;
        }
        let have6: Vec<(u32, [u8; 16])> = self
            .host_cidrs6
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| (k.prefix_len(), k.data()))
            .collect();
        for (len, addr) in &have6 {
            if !want6.contains(&(*len, *addr)) {
                let _ = self.host_cidrs6.remove(&Key::new(*len, *addr));
            }
        }
        for (len, addr) in want6 {
            self.host_cidrs6
                .insert(&Key::new(len, addr), 1, 0)
                .map_err(|e| {
                    BpfError::from_err(
                        format!("add {}/{len} to tw_host_cidrs6", Ipv6Addr::from(addr)),
                        &e,
                    )
                })?;
        }
        Ok(())
    }

    /// The host-path CIDRs of both families, sorted (IPv4 first).
    pub fn host_cidrs(&self) -> Result<Vec<(IpAddr, u8)>> {
        let mut out = Vec::new();
        for k in self.host_cidrs.keys() {
            let k = k.map_err(|e| BpfError::from_err("list tw_host_cidrs", &e))?;
            out.push((IpAddr::V4(ip_of(k.data())), k.prefix_len() as u8));
        }
        for k in self.host_cidrs6.keys() {
            let k = k.map_err(|e| BpfError::from_err("list tw_host_cidrs6", &e))?;
            out.push((IpAddr::V6(Ipv6Addr::from(k.data())), k.prefix_len() as u8));
        }
        out.sort();
        Ok(out)
    }

    /// Attaches the pod programs to a pod's host veth (ingress and egress). Idempotent.
    pub fn attach_pod(&mut self, veth_ifindex: u32) -> Result<Attachment> {
        self.set.attach(veth_ifindex, ROLE_POD)
    }

    /// Attaches the ENI program to an ENI's link. Idempotent.
    pub fn attach_eni(&mut self, eni_ifindex: u32) -> Result<Attachment> {
        self.set.attach(eni_ifindex, ROLE_ENI)
    }

    /// Removes this fast path's programs from `ifindex`; fine when there are none.
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        self.set.detach(ifindex)
    }

    /// Whether the programs of the interface's role are all in its tcx chains.
    pub fn tcx_attached(&self, ifindex: u32, eni: bool) -> Result<bool> {
        self.set
            .tcx_attached(ifindex, if eni { ROLE_ENI } else { ROLE_POD })
    }

    /// Interfaces carrying the programs: (ifindex, how, whether it is an ENI).
    pub fn attachments(&self) -> Result<Vec<(u32, Attachment, bool)>> {
        Ok(self
            .set
            .attachments()?
            .into_iter()
            .map(|r| (r.ifindex, r.how, r.role == ROLE_ENI))
            .collect())
    }

    /// Adds or replaces a pod's entry (one map update). Attach the pod programs first:
    /// the ENI program relies on the veth's egress program to know host flows.
    pub fn upsert_pod(&mut self, pod: &TerwayPod) -> Result<()> {
        if pod.veth_ifindex == 0 || pod.eni_ifindex == 0 {
            return Err(BpfError::Kernel {
                op: format!("add pod {}", pod.ip),
                detail: "ifindex 0 is not an interface".into(),
            });
        }
        let v = PodValue {
            veth_ifindex: pod.veth_ifindex,
            eni_ifindex: pod.eni_ifindex,
            pod_mac: pod.pod_mac,
            veth_mac: pod.veth_mac,
        };
        match pod.ip {
            IpAddr::V4(ip) => self.pods.insert(key(ip), v, 0),
            IpAddr::V6(ip) => self.pods6.insert(ip.octets(), v, 0),
        }
        .map_err(|e| {
            BpfError::from_err(
                format!("add pod {} (veth {})", pod.ip, pod.veth_ifindex),
                &e,
            )
        })
    }

    /// Removes a pod's entry and the host flows recorded for its address (a later pod
    /// with the same address starts clean). Removing what is not there is fine.
    pub fn remove_pod(&mut self, ip: IpAddr) -> Result<()> {
        let removed = match ip {
            IpAddr::V4(v4) => self.pods.remove(&key(v4)),
            IpAddr::V6(v6) => self.pods6.remove(&v6.octets()),
        };
        match removed {
            Ok(()) => {}
            Err(e) if enoent(&e) => {}
            Err(e) => return Err(BpfError::from_err(format!("remove pod {ip}"), &e)),
        }
        self.forget_flows_of(ip)
    }

    /// Removes every entry pointing at `veth_ifindex` (DEL without the address).
    pub fn remove_pods_on(&mut self, veth_ifindex: u32) -> Result<usize> {
        let gone: Vec<TerwayPod> = self
            .pods()?
            .into_iter()
            .filter(|p| p.veth_ifindex == veth_ifindex)
            .collect();
        for p in &gone {
            self.remove_pod(p.ip)?;
        }
        Ok(gone.len())
    }

    pub fn pods(&self) -> Result<Vec<TerwayPod>> {
        let mut out = Vec::new();
        for item in self.pods.iter() {
            let (k, v) = item.map_err(|e| BpfError::from_err("list tw_pods", &e))?;
            out.push(TerwayPod {
                ip: IpAddr::V4(ip_of(k)),
                veth_ifindex: v.veth_ifindex,
                eni_ifindex: v.eni_ifindex,
                pod_mac: v.pod_mac,
                veth_mac: v.veth_mac,
            });
        }
        for item in self.pods6.iter() {
            let (k, v) = item.map_err(|e| BpfError::from_err("list tw_pods6", &e))?;
            out.push(TerwayPod {
                ip: IpAddr::V6(Ipv6Addr::from(k)),
                veth_ifindex: v.veth_ifindex,
                eni_ifindex: v.eni_ifindex,
                pod_mac: v.pod_mac,
                veth_mac: v.veth_mac,
            });
        }
        out.sort_by_key(|p| p.ip);
        Ok(out)
    }

    /// How many flows are kept on the host path (those of `ip`, or all of both families).
    pub fn host_flows(&self, ip: Option<IpAddr>) -> usize {
        let v4 = self
            .flows
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| match ip {
                None => true,
                Some(IpAddr::V4(ip)) => k.pod == key(ip),
                Some(IpAddr::V6(_)) => false,
            })
            .count();
        let v6 = self
            .flows6
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| match ip {
                None => true,
                Some(IpAddr::V6(ip)) => k.pod == ip.octets(),
                Some(IpAddr::V4(_)) => false,
            })
            .count();
        v4 + v6
    }

    fn forget_flows_of(&mut self, ip: IpAddr) -> Result<()> {
        let err = |e: &(dyn std::error::Error + 'static)| {
            BpfError::from_err(format!("forget the host flows of {ip}"), e)
        };
        match ip {
            IpAddr::V4(v4) => {
                let mine: Vec<FlowKey> = self
                    .flows
                    .keys()
                    .filter_map(|k| k.ok())
                    .filter(|k| k.pod == key(v4))
                    .collect();
                for k in mine {
                    match self.flows.remove(&k) {
                        Ok(()) => {}
                        Err(e) if enoent(&e) => {}
                        Err(e) => return Err(err(&e)),
                    }
                }
            }
            IpAddr::V6(v6) => {
                let mine: Vec<FlowKey6> = self
                    .flows6
                    .keys()
                    .filter_map(|k| k.ok())
                    .filter(|k| k.pod == v6.octets())
                    .collect();
                for k in mine {
                    match self.flows6.remove(&k) {
                        Ok(()) => {}
                        Err(e) if enoent(&e) => {}
                        Err(e) => return Err(err(&e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes the pinned state match this namespace's interfaces: forgets attachments of
    /// interfaces that are gone, and pod entries whose host veth is gone or is now another
    /// interface (its MAC is not the one recorded: the index was reused). Live state is
    /// untouched, so traffic never stops.
    pub fn reconcile(&mut self) -> Result<ReconcileReport> {
        let mut r = self.set.reconcile_links()?;
        for p in self.pods()? {
            if iface::mac_of(p.veth_ifindex) != Some(p.veth_mac) {
                self.remove_pod(p.ip)?;
                r.removed_endpoints += 1;
            }
        }
        Ok(r)
    }

    /// Counters of both families added up.
    pub fn stats(&self) -> Result<TerwayStats> {
        Ok(self.stats_v4()? + self.stats_v6()?)
    }

    /// IPv4 (and frames of neither family).
    pub fn stats_v4(&self) -> Result<TerwayStats> {
        read_stats(&self.stats)
    }

    /// IPv6.
    pub fn stats_v6(&self) -> Result<TerwayStats> {
        read_stats(&self.stats6)
    }
}

fn read_stats(map: &PerCpuArray<MapData, u64>) -> Result<TerwayStats> {
    let read = |slot: u32| -> Result<u64> {
        let v = map
            .get(&slot, 0)
            .map_err(|e| BpfError::from_err("read terway fast path counters", &e))?;
        Ok(v.iter().sum())
    };
    Ok(TerwayStats {
        out_redirect: read(0)?,
        out_redirect_neigh: read(1)?,
        out_local: read(2)?,
        out_pass_host_dst: read(3)?,
        out_pass_route: read(4)?,
        out_pass_host_flow: read(5)?,
        out_pass_other: read(6)?,
        in_redirect: read(7)?,
        in_pass_no_pod: read(8)?,
        in_pass_host_flow: read(9)?,
        in_pass_other: read(10)?,
    })
}
