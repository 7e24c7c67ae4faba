//! Host-local IPAM over the node's subnet, kept on disk.
//!
//! Layout under `<stateDir>/ipam/<network>/`:
//! - `ip/<address>` holds `containerID\nifname\n`: the reservation itself;
//! - `id/<containerID>:<ifname>` holds the address: the index DEL uses;
//! - `.last` is the last address handed out, so addresses rotate instead of being
//!   reused at once;
//! - `.lock` is flock'ed for every change: parallel ADDs serialize here only.
//!
//! Crash safety: a reservation appears whole (unicni-fsutil: written to a temp name, then
//! linked); the index and `.last` are written in place (see `reserve` for why a torn one
//! is harmless).
//! They are not synced: they describe pods running on this node, and a power loss or
//! kernel crash (the only events that lose unsynced data; a killed process does not)
//! takes every pod down with it. What such a loss may leave is a missing or empty
//! record: a missing reservation belongs to a pod that no longer runs, so its address is
//! free indeed; an empty one reserves an address for nobody until GC drops it (`list`),
//! and an empty index or `.last` reads as absent. No outcome hands out an address a
//! running pod holds, and the ADD path (under the lock every parallel ADD waits on)
//! issues no sync.
//! The index is written before the reservation and removed after it, so a reservation
//! always has its index and DEL never needs to scan; a dangling index (crash in
//! between) reserves nothing and is swept by GC.

use async_trait::async_trait;
use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use unicni_core::{Allocation, Attachment, AttachmentId, Error, IpAssignment, Ipam, Result};

pub struct FileIpam {
    dir: PathBuf,
    subnet: IpNet,
    gateway: IpAddr,
}

/// IPAM records are readable by any local tool.
const MODE: u32 = 0o644;

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

impl FileIpam {
    pub fn new(state_dir: &Path, network: &str, subnet: IpNet, gateway: IpAddr) -> FileIpam {
        FileIpam {
            dir: state_dir.join("ipam").join(network),
            subnet,
            gateway,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<Flock<File>> {
        for d in ["ip", "id"] {
            let p = self.dir.join(d);
            std::fs::create_dir_all(&p)
                .map_err(io(format!("create IPAM directory {}", p.display())))?;
        }
        let path = self.dir.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(format!("open IPAM lock {}", path.display())))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(format!("lock {}", path.display()), e.into()))
    }

    fn id_path(&self, id: &AttachmentId) -> PathBuf {
        self.dir
            .join("id")
            .join(format!("{}:{}", id.container_id, id.ifname))
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join("ip").join(ip.to_string())
    }

    fn held_by(&self, ip: IpAddr) -> Option<AttachmentId> {
        let text = std::fs::read_to_string(self.ip_path(ip)).ok()?;
        let mut lines = text.lines();
        Some(AttachmentId::new(lines.next()?, lines.next()?))
    }

    fn assignment(&self, ip: IpAddr) -> IpAssignment {
        IpAssignment {
            address: IpNet::new(ip, self.subnet.prefix_len()).expect("prefix from subnet"),
            gateway: Some(self.gateway),
        }
    }

    /// The address `id` holds, if any.
    pub fn lookup(&self, id: &AttachmentId) -> Option<IpAddr> {
        let ip: IpAddr = std::fs::read_to_string(self.id_path(id))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (self.held_by(ip).as_ref() == Some(id)).then_some(ip)
    }

    /// The first host address and how many there are: IPv4 leaves out the network and
    /// broadcast addresses, IPv6 the subnet-router anycast address. An IPv6 /64 is used
    /// for its first 65,536 hosts: a node's IPv4 subnet (/16 at most) runs out first.
    fn host_range(&self) -> (u128, u128) {
        const MAX_HOSTS: u128 = 1 << 16;
        match self.subnet {
            IpNet::V4(n) => {
                let size = 1u128 << (32 - u32::from(n.prefix_len()));
                (
                    u128::from(u32::from(n.network())) + 1,
                    size.saturating_sub(2),
                )
            }
            IpNet::V6(n) => {
                let bits = 128 - u32::from(n.prefix_len());
                let size = if bits >= 17 {
                    MAX_HOSTS + 1
                } else {
                    1u128 << bits
                };
                (u128::from(n.network()) + 1, (size - 1).min(MAX_HOSTS))
            }
        }
    }

    fn addr_at(&self, v: u128) -> IpAddr {
        match self.subnet {
            IpNet::V4(_) => IpAddr::V4((v as u32).into()),
            IpNet::V6(_) => IpAddr::V6(v.into()),
        }
    }

    fn candidates(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let last: Option<IpAddr> = std::fs::read_to_string(self.dir.join(".last"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let (first, n) = self.host_range();
        let value = |ip: IpAddr| match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let start = last
            .filter(|l| l.is_ipv4() == self.gateway.is_ipv4())
            .map(value)
            .filter(|v| *v >= first && *v < first + n)
            .map(|v| v - first + 1)
            .unwrap_or(0);
        (0..n)
            .map(move |i| self.addr_at(first + (start + i) % n))
            .filter(move |ip| *ip != self.gateway)
    }

    /// Removes temp files and index entries whose reservation is gone (crash leftovers).
    pub fn sweep(&self) -> Result<usize> {
        let _lock = self.lock()?;
        let mut removed = 0;
        for dir in [self.dir.clone(), self.dir.join("ip"), self.dir.join("id")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // `.tmp-<pid>`: what versions before unicni-fsutil left behind.
                if unicni_fsutil::is_temporary(&name) || name.starts_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                    removed += 1;
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join("id")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = match name.split_once(':') {
                    Some((c, i)) => AttachmentId::new(c, i),
                    None => {
                        let _ = std::fs::remove_file(e.path());
                        continue;
                    }
                };
                if self.lookup(&id).is_none() {
                    let _ = std::fs::remove_file(e.path());
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Writes `bytes` over `path` without a temporary file (no new inode once it exists).
fn write_in_place(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let what = || format!("write IPAM record {}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(MODE)
        .open(path)
        .map_err(io(what()))?;
    f.write_all(bytes).map_err(io(what()))?;
    // The umask may have narrowed the mode; records stay readable by local tools.
    f.set_permissions(std::fs::Permissions::from_mode(MODE))
        .map_err(io(what()))
}

/// Width of a `.last` record: the longest address (an IPv6 address in full is 39
/// characters), space-padded, then a newline.
const HINT_WIDTH: usize = 40;

/// Writes the rotation hint over the previous one at offset 0 without truncating: every
/// record has the same width, and truncating a file that has a block (freeing it, then
/// allocating one for the new content) was a third of the IPAM's time on ext4.
fn write_hint(path: &Path, ip: IpAddr) -> Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let what = || format!("write IPAM record {}", path.display());
    let record = format!("{:<width$}\n", ip.to_string(), width = HINT_WIDTH);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(MODE)
        .open(path)
        .map_err(io(what()))?;
    f.write_all_at(record.as_bytes(), 0).map_err(io(what()))
}

impl FileIpam {
    /// Reserves an address for `id` (the attachment's key is all this IPAM needs).
    pub fn reserve(&self, id: &AttachmentId) -> Result<Vec<IpAssignment>> {
        let _lock = self.lock()?;
        if let Some(ip) = self.lookup(id) {
            return Ok(vec![self.assignment(ip)]);
        }
        let record = format!("{}\n{}\n", id.container_id, id.ifname);
        for ip in self.candidates() {
            let ip_path = self.ip_path(ip);
            if ip_path.exists() {
                continue;
            }
            let line = format!("{ip}\n");
            // Written in place: the reservation does not exist yet, so a torn index (a
            // kill mid-write) names nothing this attachment holds, reads as absent and
            // is swept by GC.
            write_in_place(&self.id_path(id), line.as_bytes())?;
            if !unicni_fsutil::create_atomic_unsynced(&ip_path, record.as_bytes(), MODE)? {
                continue;
            }
            // A rotation hint only: torn, it reads as absent and rotation restarts.
            let _ = write_hint(&self.dir.join(".last"), ip);
            return Ok(vec![self.assignment(ip)]);
        }
        Err(Error::Exhausted(format!(
            "no free address left in {} for {id}: every address but the gateway is reserved; \
             delete pods, or run GC if pods were removed without DEL",
            self.subnet
        )))
    }
}

#[async_trait]
impl Ipam for FileIpam {
    async fn allocate(&self, att: &Attachment) -> Result<Vec<IpAssignment>> {
        self.reserve(&att.id)
    }

    async fn held(&self, id: &AttachmentId) -> Result<Vec<IpAssignment>> {
        Ok(self
            .lookup(id)
            .map(|ip| vec![self.assignment(ip)])
            .unwrap_or_default())
    }

    async fn release(&self, id: &AttachmentId) -> Result<()> {
        let _lock = self.lock()?;
        let idx = self.id_path(id);
        let ip: Option<IpAddr> = std::fs::read_to_string(&idx)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(ip) = ip {
            if self.held_by(ip).as_ref() == Some(id) {
                let p = self.ip_path(ip);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("release {ip}"), e)),
                }
            }
        }
        match std::fs::remove_file(&idx) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove IPAM index for {id}"), e)),
        }
    }

    async fn collect_garbage(&self) -> Result<usize> {
        self.sweep()
    }

    async fn list(&self) -> Result<Vec<Allocation>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(self.dir.join("ip")) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("list {}", self.dir.display()), e)),
        };
        for e in entries.flatten() {
            let Ok(ip) = e.file_name().to_string_lossy().parse::<IpAddr>() else {
                continue;
            };
            match self.held_by(ip) {
                Some(id) => out.push(Allocation { address: ip, id }),
                // A reservation without a readable owner cannot be released by any DEL.
                None => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        out.sort_by_key(|a| a.address);
        Ok(out)
    }
}

/// A dual-stack node's IPAM: an IPv4 and an IPv6 address per attachment, each from its
/// own [`FileIpam`] (the IPv6 one under `<stateDir>/ipam/<network>/v6/`, so purging the
/// network's directory removes both). IPv4 first: it is the family that runs out.
pub struct DualIpam {
    pub v4: FileIpam,
    pub v6: Option<FileIpam>,
}

impl DualIpam {
    pub fn new(v4: FileIpam, v6: Option<(IpNet, IpAddr)>) -> DualIpam {
        let v6 = v6.map(|(subnet, gateway)| FileIpam {
            dir: v4.dir.join("v6"),
            subnet,
            gateway,
        });
        DualIpam { v4, v6 }
    }

    fn all(&self) -> impl Iterator<Item = &FileIpam> {
        std::iter::once(&self.v4).chain(self.v6.as_ref())
    }
}

#[async_trait]
impl Ipam for DualIpam {
    async fn allocate(&self, att: &Attachment) -> Result<Vec<IpAssignment>> {
        let mut out = self.v4.reserve(&att.id)?;
        if let Some(v6) = &self.v6 {
            match v6.reserve(&att.id) {
                Ok(a) => out.extend(a),
                Err(e) => {
                    // Never half an allocation: give the IPv4 address back.
                    self.v4.release(&att.id).await?;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    async fn held(&self, id: &AttachmentId) -> Result<Vec<IpAssignment>> {
        let mut out = Vec::new();
        for i in self.all() {
            out.extend(i.held(id).await?);
        }
        Ok(out)
    }

    async fn release(&self, id: &AttachmentId) -> Result<()> {
        for i in self.all() {
            i.release(id).await?;
        }
        Ok(())
    }

    async fn collect_garbage(&self) -> Result<usize> {
        let mut n = 0;
        for i in self.all() {
            n += i.sweep()?;
        }
        Ok(n)
    }

    async fn list(&self) -> Result<Vec<Allocation>> {
        let mut out = Vec::new();
        for i in self.all() {
            out.extend(i.list().await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn ipam(d: &Path, subnet: &str) -> FileIpam {
        let s: IpNet = subnet.parse().unwrap();
        FileIpam::new(d, "t", s, s.hosts().next().unwrap())
    }

    #[tokio::test]
    async fn allocate_is_idempotent_and_skips_gateway() {
        let d = tempfile::tempdir().unwrap();
        let i = ipam(d.path(), "10.1.0.0/29");
        let id = AttachmentId::new("c1", "eth0");
        let a = i.reserve(&id).unwrap();
        assert_eq!(a[0].address.to_string(), "10.1.0.2/29");
        assert_eq!(a[0].gateway.unwrap().to_string(), "10.1.0.1");
        assert_eq!(i.reserve(&id).unwrap(), a);
        assert_eq!(i.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn exhaustion_is_reported_and_release_frees() {
        let d = tempfile::tempdir().unwrap();
        let i = ipam(d.path(), "10.1.0.0/29"); // 6 hosts, 1 gateway -> 5
        for n in 0..5 {
            i.reserve(&AttachmentId::new(format!("c{n}"), "eth0"))
                .unwrap();
        }
        let err = i.reserve(&AttachmentId::new("c9", "eth0")).unwrap_err();
        assert!(matches!(err, Error::Exhausted(_)), "{err}");
        i.release(&AttachmentId::new("c2", "eth0")).await.unwrap();
        i.release(&AttachmentId::new("c2", "eth0")).await.unwrap();
        assert!(i.reserve(&AttachmentId::new("c9", "eth0")).is_ok());
    }

    #[tokio::test]
    async fn addresses_rotate_instead_of_immediate_reuse() {
        let d = tempfile::tempdir().unwrap();
        let i = ipam(d.path(), "10.1.0.0/28");
        let a = i.reserve(&AttachmentId::new("a", "eth0")).unwrap();
        i.release(&AttachmentId::new("a", "eth0")).await.unwrap();
        let b = i.reserve(&AttachmentId::new("b", "eth0")).unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn rotation_hint_overwritten_in_place_reads_back_exactly() {
        let d = tempfile::tempdir().unwrap();
        let i = ipam(d.path(), "10.1.0.0/24");
        // A hint left by an older version (no padding), then a long address over it and a
        // short one over that: each reads back as the last address handed out.
        std::fs::create_dir_all(i.dir()).unwrap();
        std::fs::write(i.dir().join(".last"), "10.1.0.99\n").unwrap();
        let a = i.reserve(&AttachmentId::new("a", "eth0")).unwrap();
        assert_eq!(a[0].address.addr().to_string(), "10.1.0.100");
        write_hint(&i.dir().join(".last"), "10.1.0.7".parse().unwrap()).unwrap();
        let b = i.reserve(&AttachmentId::new("b", "eth0")).unwrap();
        assert_eq!(b[0].address.addr().to_string(), "10.1.0.8");
        let text = std::fs::read_to_string(i.dir().join(".last")).unwrap();
        assert_eq!(text.len(), HINT_WIDTH + 1, "{text:?}");
        assert_eq!(text.trim(), "10.1.0.8");
    }

    #[test]
    fn parallel_processes_never_share_an_address() {
        // Threads with separate FileIpam values model separate plugin processes: the
        // flock is per open file description, so they contend like processes do.
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let handles: Vec<_> = (0..40)
            .map(|n| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        ipam(&dir, "10.1.0.0/24")
                            .reserve(&AttachmentId::new(format!("c{n}"), "eth0"))
                            .unwrap()[0]
                            .address
                    })
                })
            })
            .collect();
        let got: HashSet<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got.len(), 40);
    }

    #[tokio::test]
    async fn dual_stack_gives_one_address_of_each_family_and_frees_both() {
        let d = tempfile::tempdir().unwrap();
        let v6: IpNet = "fd00:10:244:9::/64".parse().unwrap();
        let gw6: IpAddr = "fd00:10:244:9::1".parse().unwrap();
        let i = DualIpam::new(ipam(d.path(), "10.1.0.0/29"), Some((v6, gw6)));
        let att = |c: &str| Attachment {
            id: AttachmentId::new(c, "eth0"),
            netns: None,
            pod: Default::default(),
        };
        let a = i.allocate(&att("c1")).await.unwrap();
        let got: Vec<String> = a.iter().map(|a| a.address.to_string()).collect();
        assert_eq!(got, ["10.1.0.2/29", "fd00:10:244:9::2/64"]);
        assert_eq!(a[1].gateway, Some(gw6));
        assert_eq!(i.held(&AttachmentId::new("c1", "eth0")).await.unwrap(), a);
        assert_eq!(i.list().await.unwrap().len(), 2);
        // A /64 is walked lazily, never collected: the next pod gets ::3 at once.
        let b = i.allocate(&att("c2")).await.unwrap();
        assert_eq!(b[1].address.to_string(), "fd00:10:244:9::3/64");
        i.release(&AttachmentId::new("c1", "eth0")).await.unwrap();
        assert!(i
            .held(&AttachmentId::new("c1", "eth0"))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(i.list().await.unwrap().len(), 2);
        // IPv4 exhausted: no IPv6 address is taken either.
        for n in 3..9 {
            let _ = i.allocate(&att(&format!("c{n}"))).await;
        }
        let before = i.list().await.unwrap().len();
        assert!(i.allocate(&att("late")).await.is_err());
        assert_eq!(i.list().await.unwrap().len(), before);
    }

    #[tokio::test]
    async fn sweep_removes_dangling_index_and_temp_files() {
        let d = tempfile::tempdir().unwrap();
        let i = ipam(d.path(), "10.1.0.0/28");
        let id = AttachmentId::new("a", "eth0");
        i.reserve(&id).unwrap();
        // Simulate a crash after the index was written but before the reservation.
        std::fs::write(i.dir().join("id").join("ghost:eth0"), "10.1.0.9\n").unwrap();
        std::fs::write(i.dir().join(".tmp-999"), "x").unwrap();
        assert_eq!(i.sweep().unwrap(), 2);
        assert!(i.lookup(&id).is_some());
    }
}
