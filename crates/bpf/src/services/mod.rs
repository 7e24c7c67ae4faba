//! ClusterIP Service load balancing at the socket layer (`bpf/services.c`,
//! docs/services.md): the cgroup sock_addr programs, their links on the root cgroup v2, and
//! the maps a Service table is written into. What goes into the maps (Services,
//! EndpointSlices, the diff) is `unicni-services`' business; this module only knows the
//! layouts.
//!
//! Everything lives under `<pin dir>/services/` (default `/sys/fs/bpf/unicni/services`):
//!
//! ```text
//! <pin>/services/maps/svc_pods, svc_frontends, svc_slots, svc_backends,
//!                     svc_affinity, svc_udp_flows, svc_rev, svc_stats
//! <pin>/services/progs/uc_svc_{connect,sendmsg,recvmsg}{4,6}, uc_svc_getpeer{4,6}
//! <pin>/services/links/<program>            its bpf_link on the root cgroup v2
//! ```
//!
//! The links are cgroup bpf_links (several per hook allowed), so the agents of several
//! lab nodes sharing one kernel each attach their own set; each set only acts on the
//! sockets of the network namespaces registered in its `svc_pods`. Removing a link's pin
//! detaches it (nothing else holds it); [`remove_all`] also detaches explicitly.

pub(crate) mod maps;
mod sys;

use crate::bpffs;
use crate::error::{chain, find_io, BpfError, Result};
use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use aya::programs::{CgroupSockAddr, CgroupSockAddrAttachType, ProgramError};
use aya::EbpfLoader;
use maps::{BackendValue, Key, SlotKey, Value};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The programs, their attach types, and the kernel's `enum bpf_attach_type` of each.
pub const PROGRAMS: [(&str, CgroupSockAddrAttachType, u32); 8] = [
    ("uc_svc_connect4", CgroupSockAddrAttachType::Connect4, 10),
    ("uc_svc_connect6", CgroupSockAddrAttachType::Connect6, 11),
    ("uc_svc_sendmsg4", CgroupSockAddrAttachType::UDPSendMsg4, 14),
    ("uc_svc_sendmsg6", CgroupSockAddrAttachType::UDPSendMsg6, 15),
    ("uc_svc_recvmsg4", CgroupSockAddrAttachType::UDPRecvMsg4, 19),
    ("uc_svc_recvmsg6", CgroupSockAddrAttachType::UDPRecvMsg6, 20),
    (
        "uc_svc_getpeer4",
        CgroupSockAddrAttachType::GetPeerName4,
        29,
    ),
    (
        "uc_svc_getpeer6",
        CgroupSockAddrAttachType::GetPeerName6,
        30,
    ),
];

/// IPPROTO_TCP and IPPROTO_UDP, the protocols a frontend can have.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `max_entries` of the maps user space fills (keep in step with `bpf/services.c`): a
/// table that needs more is refused before anything is written.
pub const MAX_PODS: usize = 65_536;
pub const MAX_FRONTENDS: usize = 131_072;
pub const MAX_SLOTS: usize = 524_288;
pub const MAX_BACKENDS: usize = 524_288;

/// The Service load balancer's own directory under the agent's pin directory.
pub fn services_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("services")
}

/// One frontend: a ClusterIP, port and protocol ([`PROTO_TCP`] or [`PROTO_UDP`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendKey {
    pub ip: IpAddr,
    pub port: u16,
    pub proto: u8,
}

/// What the programs know of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendValue {
    /// Names its slots and backends; chosen by user space, unique among frontends.
    pub id: u32,
    /// Slots `0..count` hold the backends new connections choose from (0: refused).
    pub count: u32,
    /// ClientIP session affinity timeout in seconds, 0 for none.
    pub affinity_sec: u32,
}

/// One backend of one frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendEntry {
    pub ip: IpAddr,
    pub port: u16,
    /// Not chosen by affinity; flows already on it keep it.
    pub terminating: bool,
    /// The frontend's id.
    pub svc_id: u32,
}

/// Counters since the maps were first created on this node (summed over CPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// connect() to a frontend sent to a backend.
    pub connects: u64,
    /// Unconnected UDP datagrams sent to a backend.
    pub datagrams: u64,
    /// connect()/sendmsg() to a frontend without backends, refused.
    pub no_backend: u64,
    /// recvmsg()/getpeername() shown the frontend instead of the backend.
    pub reverse: u64,
    /// Backends taken from ClientIP affinity.
    pub affinity: u64,
    /// Datagrams that kept their socket's earlier backend.
    pub udp_flow_kept: u64,
}

/// Handle on the pinned maps (and, after [`ServiceDatapath::load_or_adopt`], the
/// attached programs). Dropping it changes nothing in the kernel.
pub struct ServiceDatapath {
    dir: PathBuf,
    pods: BpfHashMap<MapData, u64, u32>,
    frontends: BpfHashMap<MapData, Key, Value>,
    slots: BpfHashMap<MapData, SlotKey, u32>,
    backends: BpfHashMap<MapData, u32, BackendValue>,
    stats: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for ServiceDatapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDatapath")
            .field("dir", &self.dir)
            .finish()
    }
}

fn not_found(e: &(dyn std::error::Error + 'static)) -> bool {
    find_io(e).and_then(|io| io.raw_os_error()) == Some(libc::ENOENT)
}

fn kernel(op: String, e: std::io::Error) -> BpfError {
    if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
        return BpfError::PermissionDenied { op, source: e };
    }
    BpfError::Kernel {
        op,
        detail: e.to_string(),
    }
}

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one), whose root the programs attach to.
pub fn cgroup2_root() -> Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| BpfError::Kernel {
        op: "read /proc/self/mountinfo to find the cgroup v2 mount".into(),
        detail: e.to_string(),
    })?;
    // Fields: id parent major:minor root mountpoint options [optional...] - fstype ...
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.get(dash + 1) == Some(&"cgroup2") && fields.get(3) == Some(&"/") {
            if let Some(mp) = fields.get(4) {
                return Ok(PathBuf::from(mp));
            }
        }
    }
    Err(BpfError::Kernel {
        op: "find the cgroup v2 hierarchy".into(),
        detail: "no cgroup2 filesystem is mounted (with its root visible) in this mount \
                 namespace; mount one (`mount -t cgroup2 none /sys/fs/cgroup`) or run the \
                 agent in the host's cgroup namespace"
            .into(),
    })
}

/// `path` if it is the mount point of a cgroup v2 filesystem (a directory below one, or
/// another filesystem, would attach the programs to a subtree or fail later).
fn checked_cgroup2(path: &Path) -> Result<PathBuf> {
    let fs = nix::sys::statfs::statfs(path).map_err(|e| BpfError::Kernel {
        op: format!("statfs {}", path.display()),
        detail: format!(
            "{e}; services.cgroup_root must be where the host's cgroup v2 hierarchy is mounted"
        ),
    })?;
    if fs.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Err(BpfError::Kernel {
            op: format!("use {} as the cgroup v2 root", path.display()),
            detail: "it is not a cgroup2 filesystem; set services.cgroup_root to the mount of \
                     the host's cgroup v2 hierarchy (on the host: /sys/fs/cgroup) or unset it"
                .into(),
        });
    }
    Ok(path.to_path_buf())
}

fn open_cgroup(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| BpfError::Kernel {
        op: format!("open cgroup {}", path.display()),
        detail: e.to_string(),
    })
}

/// The ids of the programs attached to the cgroup at `cgroup` on any of the hooks this
/// module uses (whoever attached them).
pub fn cgroup_program_ids(cgroup: &Path) -> Result<Vec<u32>> {
    let f = open_cgroup(cgroup)?;
    let mut out = Vec::new();
    for (_, _, at) in PROGRAMS {
        let ids = sys::prog_query(f.as_fd(), at)
            .map_err(|e| kernel(format!("query the programs on {}", cgroup.display()), e))?;
        out.extend(ids);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Turns on the kernel's run-time statistics of every BPF program (a little cost on each
/// run, machine-wide) until the returned descriptor is dropped. For measurements only.
#[doc(hidden)]
pub fn enable_run_time_stats() -> Result<std::os::fd::OwnedFd> {
    sys::enable_run_time_stats().map_err(|e| kernel("enable BPF run-time statistics".into(), e))
}

/// The cookie of the network namespace at `netns` (a bind mount such as
/// `/var/run/netns/<name>` or `/proc/<pid>/ns/net`): what the programs compare with
/// `bpf_get_netns_cookie`. Made on a thread of its own, which enters the namespace, opens
/// a socket there and asks it (SO_NETNS_COOKIE); the caller's thread never changes
/// namespace, so this is safe to call from async code.
pub fn netns_cookie(netns: &Path) -> Result<u64> {
    let path = netns.to_path_buf();
    let ns = std::fs::File::open(&path).map_err(|e| BpfError::Kernel {
        op: format!("open network namespace {}", path.display()),
        detail: e.to_string(),
    })?;
    let what = path.display().to_string();
    std::thread::Builder::new()
        .name("netns-cookie".into())
        .spawn(move || -> Result<u64> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                BpfError::Kernel {
                    op: format!("enter network namespace {what}"),
                    detail: e.to_string(),
                }
            })?;
            // The wildcard address binds even before anything (loopback included) is up,
            // which is how a CNI ADD may find the namespace.
            let sock = std::net::UdpSocket::bind("0.0.0.0:0")
                .map_err(|e| kernel(format!("open a socket in {what}"), e))?;
            sys::socket_netns_cookie(sock.as_fd())
                .map_err(|e| kernel(format!("read the netns cookie of {what}"), e))
        })
        .map_err(|e| BpfError::Kernel {
            op: "start a thread to read a netns cookie".into(),
            detail: e.to_string(),
        })?
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

impl ServiceDatapath {
    /// At agent start: mounts bpffs if needed, loads the embedded programs (the verifier
    /// runs here; pinned maps are reused, so Services, pods and flows survive), pins
    /// programs whose code changed, and makes sure each is attached to the root cgroup v2
    /// by a pinned bpf_link: a link pinned by an earlier run is kept (and switched to the
    /// new program, without a gap, when the code changed), a missing one is created.
    pub fn load_or_adopt(pin_dir: &Path) -> Result<ServiceDatapath> {
        Self::load_or_adopt_at(pin_dir, None)
    }

    /// [`ServiceDatapath::load_or_adopt`] attaching to the root cgroup of the cgroup v2
    /// hierarchy mounted at `cgroup_root` (e.g. the host's, bind-mounted into the agent's
    /// container) instead of the one found in this mount namespace.
    pub fn load_or_adopt_at(pin_dir: &Path, cgroup_root: Option<&Path>) -> Result<ServiceDatapath> {
        Self::load_or_adopt_object_at(pin_dir, crate::objects::SERVICES, cgroup_root)
    }

    /// [`ServiceDatapath::load_or_adopt`] for another build of the programs (tests).
    #[doc(hidden)]
    pub fn load_or_adopt_object(pin_dir: &Path, object: &[u8]) -> Result<ServiceDatapath> {
        Self::load_or_adopt_object_at(pin_dir, object, None)
    }

    fn load_or_adopt_object_at(
        pin_dir: &Path,
        object: &[u8],
        cgroup_root: Option<&Path>,
    ) -> Result<ServiceDatapath> {
        let dir = services_dir(pin_dir);
        let maps_dir = dir.join("maps");
        let progs_dir = dir.join("progs");
        let links_dir = dir.join("links");
        bpffs::ensure_dir(&dir)?;
        for d in [&maps_dir, &progs_dir, &links_dir] {
            std::fs::create_dir_all(d).map_err(|e| BpfError::Kernel {
                op: format!("create pin directory {}", d.display()),
                detail: e.to_string(),
            })?;
        }
        let mut loader = EbpfLoader::new();
        loader.map_pin_path(&maps_dir);
        let mut ebpf = loader.load(object).map_err(|e| {
            if find_io(&e).and_then(|io| io.raw_os_error()) == Some(libc::EPERM) {
                BpfError::PermissionDenied {
                    op: "create the Service load balancer's eBPF maps".into(),
                    source: std::io::Error::from_raw_os_error(libc::EPERM),
                }
            } else {
                BpfError::Kernel {
                    op: "load the Service load balancer's eBPF object".into(),
                    detail: chain(&e),
                }
            }
        })?;
        let cgroup_path = match cgroup_root {
            Some(p) => checked_cgroup2(p)?,
            None => cgroup2_root()?,
        };
        let cgroup = open_cgroup(&cgroup_path)?;
        for (name, _, attach_type) in PROGRAMS {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| BpfError::Kernel {
                    op: format!("find program {name} in the eBPF object"),
                    detail: "not in the object (build problem)".into(),
                })?
                .try_into()
                .map_err(|e: ProgramError| {
                    BpfError::from_err(format!("use {name} as a cgroup sock_addr program"), &e)
                })?;
            prog.load()
                .map_err(|e| crate::fastpath::program_error(name, "load", e))?;
            let fresh_tag = prog
                .info()
                .map_err(|e| BpfError::from_err("read the loaded program's info", &e))?
                .tag();
            let prog_pin = progs_dir.join(name);
            let pinned_tag = CgroupSockAddr::from_pin(&prog_pin, attach_type_of(name))
                .ok()
                .and_then(|p| p.info().ok().map(|i| i.tag()));
            let changed = pinned_tag != Some(fresh_tag);
            if changed {
                // Next to the old pin, then renamed over it: `open` never sees a gap.
                let tmp = progs_dir.join(format!("{name}_new"));
                let _ = std::fs::remove_file(&tmp);
                prog.pin(&tmp).map_err(|e| {
                    BpfError::from_err(format!("pin program at {}", tmp.display()), &e)
                })?;
                std::fs::rename(&tmp, &prog_pin).map_err(|e| BpfError::Kernel {
                    op: format!("move the program pin to {}", prog_pin.display()),
                    detail: e.to_string(),
                })?;
            }
            let prog_fd = prog
                .fd()
                .map_err(|e| BpfError::from_err(format!("use program {name}"), &e))?;
            let link_pin = links_dir.join(name);
            match sys::obj_get(&link_pin) {
                Ok(link) => {
                    if changed {
                        sys::link_update(link.as_fd(), prog_fd.as_fd()).map_err(|e| {
                            kernel(
                                format!(
                                    "switch the link {} to the new program",
                                    link_pin.display()
                                ),
                                e,
                            )
                        })?;
                        tracing::info!(program = name, "Service program changed; link switched");
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let link = sys::link_create(prog_fd.as_fd(), cgroup.as_fd(), attach_type)
                        .map_err(|e| {
                            kernel(
                                format!("attach {name} to cgroup {}", cgroup_path.display()),
                                e,
                            )
                        })?;
                    sys::obj_pin(link.as_fd(), &link_pin).map_err(|e| {
                        kernel(
                            format!("pin the link of {name} at {}", link_pin.display()),
                            e,
                        )
                    })?;
                }
                Err(e) => {
                    return Err(kernel(
                        format!("open the pinned link {}", link_pin.display()),
                        e,
                    ))
                }
            }
        }
        tracing::info!(pin_dir = %dir.display(), cgroup = %cgroup_path.display(), "eBPF Service load balancer attached");
        Self::open(pin_dir)
    }

    /// Opens the pinned maps without loading or attaching anything: the cheap path for the
    /// CNI plugin, which only registers pods.
    pub fn open(pin_dir: &Path) -> Result<ServiceDatapath> {
        let dir = services_dir(pin_dir);
        let open = |name: &str| -> Result<MapData> {
            let p = dir.join("maps").join(name);
            if !p.exists() {
                if dir.exists() && !bpffs::is_bpffs(&dir) {
                    return Err(BpfError::NoBpffs {
                        path: dir.clone(),
                        detail: "not on a bpf filesystem".into(),
                    });
                }
                return Err(BpfError::NotLoaded { path: p });
            }
            MapData::from_pin(&p)
                .map_err(|e| BpfError::from_err(format!("open pinned map {}", p.display()), &e))
        };
        let wrap = |what: &str, e: aya::maps::MapError| {
            BpfError::from_err(format!("use the {what} map"), &e)
        };
        Ok(ServiceDatapath {
            pods: BpfHashMap::try_from(Map::HashMap(open(maps::PODS)?))
                .map_err(|e| wrap(maps::PODS, e))?,
            frontends: BpfHashMap::try_from(Map::HashMap(open(maps::FRONTENDS)?))
                .map_err(|e| wrap(maps::FRONTENDS, e))?,
            slots: BpfHashMap::try_from(Map::HashMap(open(maps::SLOTS)?))
                .map_err(|e| wrap(maps::SLOTS, e))?,
            backends: BpfHashMap::try_from(Map::HashMap(open(maps::BACKENDS)?))
                .map_err(|e| wrap(maps::BACKENDS, e))?,
            stats: PerCpuArray::try_from(Map::PerCpuArray(open(maps::STATS)?))
                .map_err(|e| wrap(maps::STATS, e))?,
            dir,
        })
    }

    /// `<pin dir>/services`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel ids of the pinned programs (to find them in a cgroup query).
    pub fn program_ids(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for (name, at, _) in PROGRAMS {
            let p = self.dir.join("progs").join(name);
            let prog = CgroupSockAddr::from_pin(&p, at).map_err(|e| {
                BpfError::from_err(format!("open pinned program {}", p.display()), &e)
            })?;
            out.push(
                prog.info()
                    .map_err(|e| BpfError::from_err("read the pinned program's info", &e))?
                    .id(),
            );
        }
        Ok(out)
    }

    /// (program, runs, total run time) of each pinned program, as counted by the kernel
    /// while run-time statistics are on ([`enable_run_time_stats`]).
    pub fn program_run_stats(&self) -> Result<Vec<(&'static str, u64, std::time::Duration)>> {
        let mut out = Vec::new();
        for (name, at, _) in PROGRAMS {
            let p = self.dir.join("progs").join(name);
            let prog = CgroupSockAddr::from_pin(&p, at).map_err(|e| {
                BpfError::from_err(format!("open pinned program {}", p.display()), &e)
            })?;
            let info = prog
                .info()
                .map_err(|e| BpfError::from_err("read the pinned program's info", &e))?;
            out.push((name, info.run_count(), info.run_time()));
        }
        Ok(out)
    }

    // ---- svc_pods ----

    /// Registers a network namespace (by its cookie, see [`netns_cookie`]) as one of this
    /// node's pods: its sockets get Service load balancing.
    pub fn add_pod(&mut self, netns_cookie: u64) -> Result<()> {
        self.pods.insert(netns_cookie, 1, 0).map_err(|e| {
            BpfError::from_err(
                format!(
                    "register pod netns cookie {netns_cookie} in {} (at most {MAX_PODS} entries)",
                    maps::PODS
                ),
                &e,
            )
        })
    }

    /// Forgets a pod; not an error when it is not registered.
    pub fn remove_pod(&mut self, netns_cookie: u64) -> Result<()> {
        match self.pods.remove(&netns_cookie) {
            Err(e) if !not_found(&e) => Err(BpfError::from_err(
                format!("unregister pod netns cookie {netns_cookie}"),
                &e,
            )),
            _ => Ok(()),
        }
    }

    pub fn pods(&self) -> Result<Vec<u64>> {
        let mut out: Vec<u64> = self
            .pods
            .keys()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| BpfError::from_err("list registered pods", &e))?;
        out.sort_unstable();
        Ok(out)
    }

    // ---- svc_frontends ----

    pub fn frontends(&self) -> Result<Vec<(FrontendKey, FrontendValue)>> {
        let mut out = Vec::new();
        for item in self.frontends.iter() {
            let (k, v) = item.map_err(|e| BpfError::from_err("list Service frontends", &e))?;
            out.push((
                FrontendKey {
                    ip: maps::ip_of16(k.addr),
                    port: maps::port_of(k.port),
                    proto: k.proto,
                },
                FrontendValue {
                    id: v.id,
                    count: v.count,
                    affinity_sec: v.affinity_sec,
                },
            ));
        }
        out.sort_by_key(|(k, _)| *k);
        Ok(out)
    }

    fn key(k: &FrontendKey) -> Key {
        Key {
            addr: maps::addr16(k.ip),
            port: maps::port_key(k.port),
            proto: k.proto,
            pad: 0,
        }
    }

    pub fn set_frontend(&mut self, k: &FrontendKey, v: &FrontendValue) -> Result<()> {
        let value = Value {
            id: v.id,
            count: v.count,
            affinity_sec: v.affinity_sec,
            flags: 0,
        };
        self.frontends.insert(Self::key(k), value, 0).map_err(|e| {
            BpfError::from_err(
                format!(
                    "set Service frontend {}:{} in {} (at most {MAX_FRONTENDS} entries)",
                    k.ip,
                    k.port,
                    maps::FRONTENDS
                ),
                &e,
            )
        })
    }

    pub fn remove_frontend(&mut self, k: &FrontendKey) -> Result<()> {
        match self.frontends.remove(&Self::key(k)) {
            Err(e) if !not_found(&e) => Err(BpfError::from_err(
                format!("remove Service frontend {}:{}", k.ip, k.port),
                &e,
            )),
            _ => Ok(()),
        }
    }

    // ---- svc_slots ----

    /// Every slot as (frontend id, slot, backend id).
    pub fn slots(&self) -> Result<Vec<(u32, u32, u32)>> {
        let mut out = Vec::new();
        for item in self.slots.iter() {
            let (k, v) = item.map_err(|e| BpfError::from_err("list Service slots", &e))?;
            out.push((k.id, k.slot, v));
        }
        out.sort_unstable();
        Ok(out)
    }

    pub fn set_slot(&mut self, svc_id: u32, slot: u32, backend_id: u32) -> Result<()> {
        self.slots
            .insert(SlotKey { id: svc_id, slot }, backend_id, 0)
            .map_err(|e| {
                BpfError::from_err(
                    format!(
                        "set slot {slot} of frontend {svc_id} in {} (at most {MAX_SLOTS} entries)",
                        maps::SLOTS
                    ),
                    &e,
                )
            })
    }

    pub fn remove_slot(&mut self, svc_id: u32, slot: u32) -> Result<()> {
        match self.slots.remove(&SlotKey { id: svc_id, slot }) {
            Err(e) if !not_found(&e) => Err(BpfError::from_err(
                format!("remove slot {slot} of frontend {svc_id}"),
                &e,
            )),
            _ => Ok(()),
        }
    }

    // ---- svc_backends ----

    pub fn backends(&self) -> Result<Vec<(u32, BackendEntry)>> {
        let mut out = Vec::new();
        for item in self.backends.iter() {
            let (id, v) = item.map_err(|e| BpfError::from_err("list Service backends", &e))?;
            out.push((
                id,
                BackendEntry {
                    ip: maps::ip_of16(v.addr),
                    port: maps::port_of(v.port),
                    terminating: v.flags & maps::BACKEND_TERMINATING != 0,
                    svc_id: v.svc_id,
                },
            ));
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    pub fn set_backend(&mut self, id: u32, b: &BackendEntry) -> Result<()> {
        let v = BackendValue {
            addr: maps::addr16(b.ip),
            port: maps::port_key(b.port),
            flags: if b.terminating {
                maps::BACKEND_TERMINATING
            } else {
                0
            },
            pad: 0,
            svc_id: b.svc_id,
        };
        self.backends.insert(id, v, 0).map_err(|e| {
            BpfError::from_err(
                format!(
                    "set Service backend {}:{} in {} (at most {MAX_BACKENDS} entries)",
                    b.ip,
                    b.port,
                    maps::BACKENDS
                ),
                &e,
            )
        })
    }

    pub fn remove_backend(&mut self, id: u32) -> Result<()> {
        match self.backends.remove(&id) {
            Err(e) if !not_found(&e) => Err(BpfError::from_err(
                format!("remove Service backend {id}"),
                &e,
            )),
            _ => Ok(()),
        }
    }

    pub fn stats(&self) -> Result<ServiceStats> {
        let read = |slot: u32| crate::counters::read(&self.stats, slot, "Service load balancer");
        Ok(ServiceStats {
            connects: read(maps::STAT_CONNECT)?,
            datagrams: read(maps::STAT_SENDMSG)?,
            no_backend: read(maps::STAT_NO_BACKEND)?,
            reverse: read(maps::STAT_REV)?,
            affinity: read(maps::STAT_AFFINITY)?,
            udp_flow_kept: read(maps::STAT_UDP_FLOW)?,
        })
    }
}

fn attach_type_of(name: &str) -> CgroupSockAddrAttachType {
    PROGRAMS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, _)| *t)
        .unwrap_or(CgroupSockAddrAttachType::Connect4)
}

/// Detaches the programs (each pinned link, explicitly, so a descriptor some process still
/// holds does not keep them running) and removes `<pin dir>/services`. Needs no loaded
/// program; not an error when nothing is there.
pub fn remove_all(pin_dir: &Path) -> Result<()> {
    let dir = services_dir(pin_dir);
    if !dir.exists() {
        return Ok(());
    }
    let mut failures = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("links")) {
        for entry in entries.flatten() {
            match sys::obj_get(&entry.path()) {
                Ok(link) => {
                    if let Err(e) = sys::link_detach(link.as_fd()) {
                        failures.push(format!("{}: {e}", entry.path().display()));
                    }
                }
                Err(e) => failures.push(format!("{}: {e}", entry.path().display())),
            }
        }
    }
    std::fs::remove_dir_all(&dir).map_err(|e| BpfError::Kernel {
        op: format!("remove {}", dir.display()),
        detail: format!(
            "{e}; remove the directory by hand (rm -r) to unload the Service load balancer"
        ),
    })?;
    if !failures.is_empty() {
        return Err(BpfError::Kernel {
            op: "detach the Service load balancer from the root cgroup".into(),
            detail: format!(
                "{}; the links go away with their pins once no process holds them",
                failures.join(", ")
            ),
        });
    }
    Ok(())
}
