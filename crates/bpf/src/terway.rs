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
use std::net::Ipv4Addr;
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
    nl_handle: 0x7563_0002,
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
unsafe impl aya::Pod for FlowKey {}

/// An address as the programs read it from the IP header (network byte order).
fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

fn ip_of(key: u32) -> Ipv4Addr {
    Ipv4Addr::from(key.to_ne_bytes())
}

/// A shared-ENI pod as the programs see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerwayPod {
    pub ip: Ipv4Addr,
    /// The pod's host-side veth (in the node's namespace).
    pub veth_ifindex: u32,
    /// The link of the ENI that owns `ip`.
    pub eni_ifindex: u32,
    /// The pod's own interface's MAC.
    pub pod_mac: [u8; 6],
    /// The host veth's MAC.
    pub veth_mac: [u8; 6],
}

/// Packet counters since the programs were first loaded on this node (a pinned map).
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
    /// Pod -> not IPv4, fragments, IP options, TTL, ICMP errors, unknown source.
    pub out_pass_other: u64,
    /// ENI -> pod (`bpf_redirect_peer`).
    pub in_redirect: u64,
    /// ENI -> not a pod of this node (the node itself, ARP, IPv6).
    pub in_pass_no_pod: u64,
    /// ENI -> a reply the host must un-NAT.
    pub in_pass_host_flow: u64,
    /// ENI -> fragments, IP options, TTL, ICMP errors, not addressed to the ENI.
    pub in_pass_other: u64,
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
        Ok(TerwayFastPath {
            set,
            pods,
            host_cidrs,
            flows,
            stats,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        self.set.layout.root()
    }

    /// The kernel's tag of the pinned pod-egress program (changes with its code).
    pub fn program_tag(&self) -> Result<u64> {
        self.set.tag(0)
    }

    /// Makes `tw_host_cidrs` hold exactly `cidrs` (Service CIDRs, node addresses): pod
    /// traffic to them keeps the host path.
    pub fn set_host_cidrs(&mut self, cidrs: &[(Ipv4Addr, u8)]) -> Result<()> {
        let want: Vec<(u32, u32)> = cidrs
            .iter()
            .map(|(ip, len)| {
                let len = u32::from((*len).min(32));
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                (len, key(Ipv4Addr::from(u32::from(*ip) & mask)))
            })
            .collect();
        let have: Vec<(u32, u32)> = self
            .host_cidrs
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| (k.prefix_len(), k.data()))
            .collect();
        for (len, addr) in &have {
            if !want.contains(&(*len, *addr)) {
                let _ = self.host_cidrs.remove(&Key::new(*len, *addr));
            }
        }
        for (len, addr) in want {
            self.host_cidrs
                .insert(&Key::new(len, addr), 1, 0)
                .map_err(|e| {
                    BpfError::from_err(format!("add {}/{len} to tw_host_cidrs", ip_of(addr)), &e)
                })?;
        }
        Ok(())
    }

    /// The host-path CIDRs, sorted.
    pub fn host_cidrs(&self) -> Result<Vec<(Ipv4Addr, u8)>> {
        let mut out = Vec::new();
        for k in self.host_cidrs.keys() {
            let k = k.map_err(|e| BpfError::from_err("list tw_host_cidrs", &e))?;
            out.push((ip_of(k.data()), k.prefix_len() as u8));
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
        self.pods.insert(key(pod.ip), v, 0).map_err(|e| {
            BpfError::from_err(
                format!("add pod {} (veth {})", pod.ip, pod.veth_ifindex),
                &e,
            )
        })
    }

    /// Removes a pod's entry and the host flows recorded for its address (a later pod
    /// with the same address starts clean). Removing what is not there is fine.
    pub fn remove_pod(&mut self, ip: Ipv4Addr) -> Result<()> {
        match self.pods.remove(&key(ip)) {
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
                ip: ip_of(k),
                veth_ifindex: v.veth_ifindex,
                eni_ifindex: v.eni_ifindex,
                pod_mac: v.pod_mac,
                veth_mac: v.veth_mac,
            });
        }
        out.sort_by_key(|p| p.ip);
        Ok(out)
    }

    /// How many flows are kept on the host path (those of `ip`, or all).
    pub fn host_flows(&self, ip: Option<Ipv4Addr>) -> usize {
        self.flows
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| ip.is_none_or(|ip| k.pod == key(ip)))
            .count()
    }

    fn forget_flows_of(&mut self, ip: Ipv4Addr) -> Result<()> {
        let mine: Vec<FlowKey> = self
            .flows
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.pod == key(ip))
            .collect();
        for k in mine {
            match self.flows.remove(&k) {
                Ok(()) => {}
                Err(e) if enoent(&e) => {}
                Err(e) => {
                    return Err(BpfError::from_err(
                        format!("forget the host flows of {ip}"),
                        &e,
                    ))
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
        let (kept, removed) = self.set.reconcile_links()?;
        let mut r = ReconcileReport {
            kept_attachments: kept,
            removed_attachments: removed,
            removed_endpoints: 0,
        };
        for p in self.pods()? {
            if iface::mac_of(p.veth_ifindex) != Some(p.veth_mac) {
                self.remove_pod(p.ip)?;
                r.removed_endpoints += 1;
            }
        }
        Ok(r)
    }

    pub fn stats(&self) -> Result<TerwayStats> {
        let read = |slot: u32| -> Result<u64> {
            let v = self
                .stats
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
}
