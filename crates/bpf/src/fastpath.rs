//! The same-node fast path: load or adopt the pinned program and maps, and manage the
//! `endpoints` map and its counters. Attaching lives in `attach.rs`, clean-up in
//! `cleanup.rs`.

use crate::attach::FAMILY;
use crate::error::{chain, find_io, BpfError, Result};
use crate::maps::{self, EndpointValue};
use crate::progset::{open_map, ProgSet};
use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use std::net::Ipv4Addr;
use std::path::Path;

/// Where the node agent pins everything by default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/unicni";

/// How to attach to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// tcx where the kernel has it (6.6+), the clsact qdisc + cls_bpf filter otherwise.
    #[default]
    Auto,
    /// Only tcx: fail where it is missing.
    Tcx,
    /// Only clsact/netlink, even where tcx exists.
    Netlink,
}

/// How the program ended up attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// A tcx link, pinned under `<pin>/links/`.
    Tcx,
    /// A direct-action cls_bpf filter on the clsact qdisc.
    Netlink,
}

/// One local pod as the program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// The pod's host-side veth, in the node's network namespace.
    pub ifindex: u32,
    /// The pod's own MAC (of its interface inside the pod).
    pub mac: [u8; 6],
}

/// Packet counters, summed over CPUs since the program was first loaded on this node (the
/// counters live in a pinned map and survive restarts of the agent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames redirected straight into a local pod.
    pub redirected: u64,
    /// ARP, IPv6 and other non-IPv4 frames, left to the bridge.
    pub passed_not_ipv4: u64,
    /// IPv4 to anything that is not a local pod (other nodes, services, the host).
    pub passed_no_endpoint: u64,
    /// IPv4 to a local pod's address but not to its MAC (e.g. to the gateway).
    pub passed_other_mac: u64,
    /// IPv4 of a flow that reached a pod through the host (and may be NATed there): its
    /// replies must go back the same way.
    pub passed_host_flow: u64,
}

impl Stats {
    /// Every frame the program let through to the normal path.
    pub fn passed(&self) -> u64 {
        self.passed_not_ipv4
            + self.passed_no_endpoint
            + self.passed_other_mac
            + self.passed_host_flow
    }
}

/// Handle on the pinned fast path. Dropping it changes nothing in the kernel: attachments,
/// endpoints and counters stay (that is what keeps pod traffic flowing across restarts).
/// All interface indexes are in the network namespace of the calling thread.
pub struct FastPath {
    /// The programs (ingress, egress) and `fastpath_links`.
    pub(crate) set: ProgSet,
    pub(crate) endpoints: BpfHashMap<MapData, u32, EndpointValue>,
    pub(crate) stats: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("pin_dir", &self.set.layout.root())
            .field("mode", &self.set.mode)
            .finish()
    }
}

pub(crate) fn program_error(program: &str, op: &str, e: ProgramError) -> BpfError {
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
    {
        if io_error.raw_os_error() == Some(libc::EPERM) {
            return BpfError::PermissionDenied {
                op: format!("load eBPF program {program}"),
                source: io_error,
            };
        }
        return BpfError::Verifier {
            program: program.to_string(),
            log: verifier_log.to_string(),
            source: io_error,
        };
    }
    BpfError::from_err(format!("{op} eBPF program {program}"), &e)
}

/// Parses `object` and loads programs `names` into the kernel, maps pinned by name under
/// `map_dir` (aya would otherwise pin them straight under /sys/fs/bpf). Used by
/// `load_or_adopt`, and by tests to load a program the verifier must refuse.
#[doc(hidden)]
pub fn load_object(object: &[u8], names: &[&str], map_dir: &Path) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader.map_pin_path(map_dir);
    let mut ebpf = loader.load(object).map_err(|e| {
        if find_io(&e).and_then(|io| io.raw_os_error()) == Some(libc::EPERM) {
            BpfError::PermissionDenied {
                op: "create the eBPF maps".into(),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            }
        } else {
            BpfError::Kernel {
                op: format!("load the eBPF object containing {}", names.join(", ")),
                detail: chain(&e),
            }
        }
    })?;
    for name in names {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| BpfError::Kernel {
                op: format!("find program {name} in the eBPF object"),
                detail: "not in the object (build problem)".into(),
            })?
            .try_into()
            .map_err(|e: ProgramError| {
                BpfError::from_err(format!("use {name} as tc program"), &e)
            })?;
        prog.load().map_err(|e| program_error(name, "load", e))?;
    }
    Ok(ebpf)
}

impl FastPath {
    /// The agent's entry point at start: mounts bpffs if needed, loads the embedded program
    /// (reusing pinned maps: endpoints and counters survive), and adopts what an earlier run
    /// left: if the pinned program is the same code it is kept, otherwise the new one is
    /// pinned and every existing attachment is switched to it atomically. Finally it drops
    /// attachments and endpoints of interfaces that no longer exist ([`FastPath::reconcile`]).
    pub fn load_or_adopt(pin_dir: &Path) -> Result<FastPath> {
        Self::load_or_adopt_with(pin_dir, AttachMode::Auto)
    }

    pub fn load_or_adopt_with(pin_dir: &Path, mode: AttachMode) -> Result<FastPath> {
        Self::load_or_adopt_object(pin_dir, mode, crate::objects::FASTPATH)
    }

    /// `load_or_adopt_with` for another build of the program (tests of upgrades).
    #[doc(hidden)]
    pub fn load_or_adopt_object(
        pin_dir: &Path,
        mode: AttachMode,
        object: &[u8],
    ) -> Result<FastPath> {
        let mut fp = Self::with_set(ProgSet::load_or_adopt(pin_dir, mode, &FAMILY, object)?)?;
        let report = fp.reconcile()?;
        tracing::info!(
            pin_dir = %pin_dir.display(),
            adopted = report.kept_attachments,
            stale_attachments = report.removed_attachments,
            stale_endpoints = report.removed_endpoints,
            "eBPF fast path ready"
        );
        Ok(fp)
    }

    /// Opens what the agent pinned, without loading anything (no verifier run): the cheap
    /// path for the CNI plugin (a few BPF syscalls).
    pub fn open(pin_dir: &Path) -> Result<FastPath> {
        Self::open_with(pin_dir, AttachMode::Auto)
    }

    pub fn open_with(pin_dir: &Path, mode: AttachMode) -> Result<FastPath> {
        Self::with_set(ProgSet::open(pin_dir, mode, &FAMILY)?)
    }

    fn with_set(set: ProgSet) -> Result<FastPath> {
        let endpoints = BpfHashMap::try_from(Map::HashMap(open_map(&set.layout, maps::ENDPOINTS)?))
            .map_err(|e| BpfError::from_err("use the endpoints map", &e))?;
        let stats = PerCpuArray::try_from(Map::PerCpuArray(open_map(&set.layout, maps::STATS)?))
            .map_err(|e| BpfError::from_err("use the fastpath_stats map", &e))?;
        Ok(FastPath {
            set,
            endpoints,
            stats,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        self.set.layout.root()
    }

    /// The kernel's tag (hash of the instructions) of the pinned ingress program.
    pub fn program_tag(&self) -> Result<u64> {
        self.set.tag(0)
    }

    /// Adds or replaces the entry of a local pod: one map update, safe to call from
    /// concurrent CNI invocations.
    pub fn upsert_endpoint(&mut self, ip: Ipv4Addr, ifindex: u32, mac: [u8; 6]) -> Result<()> {
        if ifindex == 0 {
            return Err(BpfError::Kernel {
                op: format!("add endpoint {ip}"),
                detail: "ifindex 0 is not an interface".into(),
            });
        }
        let v = EndpointValue {
            ifindex,
            mac,
            flags: 0,
        };
        self.endpoints
            .insert(maps::key(ip), v, 0)
            .map_err(|e| BpfError::from_err(format!("add endpoint {ip} (ifindex {ifindex})"), &e))
    }

    /// Removes a pod's entry; removing one that is not there is not an error (CNI DEL runs
    /// more than once).
    pub fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<()> {
        match self.endpoints.remove(&maps::key(ip)) {
            Ok(()) => Ok(()),
            Err(e) if find_io(&e).and_then(|io| io.raw_os_error()) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(BpfError::from_err(format!("remove endpoint {ip}"), &e)),
        }
    }

    /// Removes every endpoint that points at `ifindex` (CNI DEL without the pod's address);
    /// returns how many there were.
    pub fn remove_endpoints_on(&mut self, ifindex: u32) -> Result<usize> {
        let gone: Vec<Endpoint> = self
            .endpoints()?
            .into_iter()
            .filter(|e| e.ifindex == ifindex)
            .collect();
        for e in &gone {
            self.remove_endpoint(e.ip)?;
        }
        Ok(gone.len())
    }

    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let mut out = Vec::new();
        for item in self.endpoints.iter() {
            let (k, v) = item.map_err(|e| BpfError::from_err("list endpoints", &e))?;
            out.push(Endpoint {
                ip: maps::ip_of(k),
                ifindex: v.ifindex,
                mac: v.mac,
            });
        }
        out.sort_by_key(|e| e.ip);
        Ok(out)
    }

    pub fn stats(&self) -> Result<Stats> {
        let read = |slot: u32| crate::counters::read(&self.stats, slot, "fast path");
        Ok(Stats {
            redirected: read(maps::STAT_REDIRECT)?,
            passed_not_ipv4: read(maps::STAT_PASS_NOT_IPV4)?,
            passed_no_endpoint: read(maps::STAT_PASS_NO_ENDPOINT)?,
            passed_other_mac: read(maps::STAT_PASS_OTHER_MAC)?,
            passed_host_flow: read(maps::STAT_PASS_HOST_FLOW)?,
        })
    }
}
