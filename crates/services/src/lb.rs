//! The node's load balancer in the kernel and the diff that keeps it equal to a
//! [`ServiceTable`].

use crate::error::Error;
use crate::model::{BackendState, ServiceTable};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use unicni_bpf::services::{
    self as bpf, BackendEntry, FrontendKey, FrontendValue, ServiceDatapath, ServiceStats,
};
use unicni_bpf::BpfError;

/// What one [`Lb::apply`] changed in the maps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub frontends_added: usize,
    /// Frontends whose backends, slots or affinity changed.
    pub frontends_updated: usize,
    pub frontends_removed: usize,
    pub backends_added: usize,
    pub backends_removed: usize,
}

impl ApplyReport {
    pub fn is_empty(&self) -> bool {
        *self == ApplyReport::default()
    }
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LbStatus {
    /// Frontends (ClusterIP, port, protocol) in the maps.
    pub frontends: usize,
    /// Backends of all frontends (one per frontend and endpoint).
    pub backends: usize,
    /// Registered pod network namespaces.
    pub pods: usize,
    /// The programs' counters.
    pub stats: ServiceStats,
}

/// One frontend's backends as the maps hold them: (address, port) -> (id, terminating).
type Backends = HashMap<(IpAddr, u16), (u32, bool)>;

/// What is in the maps, read once and then kept in step with every write.
#[derive(Debug, Default)]
struct Applied {
    frontends: HashMap<FrontendKey, FrontendValue>,
    /// By frontend id.
    backends: HashMap<u32, Backends>,
    /// By frontend id: slot -> backend id.
    slots: HashMap<u32, BTreeMap<u32, u32>>,
    svc_ids: Ids,
    backend_ids: Ids,
}

/// Ids in use, handed out from a cursor (never 0: a zeroed value is no id).
#[derive(Debug, Default)]
struct Ids {
    used: BTreeSet<u32>,
    next: u32,
}

impl Ids {
    fn take(&mut self, what: &'static str) -> Result<u32, Error> {
        if self.used.len() >= u32::MAX as usize - 1 {
            return Err(Error::OutOfIds { what });
        }
        loop {
            self.next = self.next.wrapping_add(1).max(1);
            if self.used.insert(self.next) {
                return Ok(self.next);
            }
        }
    }
    fn release(&mut self, id: u32) {
        self.used.remove(&id);
    }
}

/// The node's Service load balancer: the pinned programs and maps under
/// `<pin dir>/services/`. Dropping it changes nothing in the kernel: the programs stay
/// attached and keep balancing with the last table applied.
///
/// One writer of Services per node (the agent): a handle remembers what it applied and
/// writes only differences. Any number of handles may register and unregister pods.
pub struct Lb {
    pin_dir: PathBuf,
    dp: ServiceDatapath,
    /// `None` until the first apply (and after a failed one): then read from the maps.
    applied: Option<Applied>,
}

impl std::fmt::Debug for Lb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lb")
            .field("pin_dir", &self.pin_dir)
            .finish()
    }
}

impl Lb {
    /// For the agent at start: loads (or adopts) the programs and attaches them to the
    /// root cgroup v2, reusing pinned maps, so Services, registered pods and flows survive
    /// a restart or an upgrade. `pin_dir` is the agent's pin directory (`bpf.pin_dir`).
    pub fn load(pin_dir: &Path) -> Result<Lb, Error> {
        Self::load_at(pin_dir, None)
    }

    /// [`Lb::load`] attaching to the root of the cgroup v2 hierarchy mounted at
    /// `cgroup_root` (`services.cgroup_root`; `None` finds it in this mount namespace).
    pub fn load_at(pin_dir: &Path, cgroup_root: Option<&Path>) -> Result<Lb, Error> {
        let dp = ServiceDatapath::load_or_adopt_at(pin_dir, cgroup_root).map_err(|source| {
            Error::Datapath {
                pin_dir: pin_dir.to_path_buf(),
                source,
            }
        })?;
        Ok(Lb {
            pin_dir: pin_dir.to_path_buf(),
            dp,
            applied: None,
        })
    }

    /// For the CNI plugin: opens the maps the agent pinned, loading nothing (a few
    /// syscalls). Fails with `NotLoaded` inside [`Error::Datapath`] when the agent has not
    /// loaded the load balancer.
    pub fn open(pin_dir: &Path) -> Result<Lb, Error> {
        let dp = ServiceDatapath::open(pin_dir).map_err(|source| Error::Datapath {
            pin_dir: pin_dir.to_path_buf(),
            source,
        })?;
        Ok(Lb {
            pin_dir: pin_dir.to_path_buf(),
            dp,
            applied: None,
        })
    }

    /// Detaches the programs and removes `<pin dir>/services` (uninstall; also done by
    /// `unicni_bpf::remove_all` for the whole pin directory).
    pub fn unload(pin_dir: &Path) -> Result<(), Error> {
        bpf::remove_all(pin_dir).map_err(|source| Error::Datapath {
            pin_dir: pin_dir.to_path_buf(),
            source,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Puts the pod whose network namespace is at `netns` (e.g. the runtime's
    /// `CNI_NETNS`) in scope: its sockets' connections to ClusterIPs are load balanced.
    /// Returns the namespace's cookie (what the maps key it by). Safe on any thread: the
    /// namespace is entered on a thread of its own.
    pub fn register_pod(&mut self, netns: &Path) -> Result<u64, Error> {
        let pod_err = |source| Error::Pod {
            netns: netns.to_path_buf(),
            source,
        };
        let cookie = bpf::netns_cookie(netns).map_err(pod_err)?;
        self.dp.add_pod(cookie).map_err(pod_err)?;
        Ok(cookie)
    }

    /// Takes the pod at `netns` out of scope. `Ok(None)` when the namespace is already
    /// gone (its cookie can no longer be read; a cookie is never reused, so the stale entry
    /// matches nothing — remove it with [`Lb::unregister_cookie`] if it was recorded).
    pub fn unregister_pod(&mut self, netns: &Path) -> Result<Option<u64>, Error> {
        if !netns.exists() {
            return Ok(None);
        }
        let pod_err = |source| Error::Pod {
            netns: netns.to_path_buf(),
            source,
        };
        let cookie = match bpf::netns_cookie(netns) {
            Ok(c) => c,
            Err(BpfError::Kernel { .. }) if !netns.exists() => return Ok(None),
            Err(e) => return Err(pod_err(e)),
        };
        self.dp.remove_pod(cookie).map_err(pod_err)?;
        Ok(Some(cookie))
    }

    /// Takes a pod out of scope by the cookie [`Lb::register_pod`] returned.
    pub fn unregister_cookie(&mut self, cookie: u64) -> Result<(), Error> {
        self.dp.remove_pod(cookie).map_err(|source| Error::Pod {
            netns: PathBuf::from(format!("netns cookie {cookie}")),
            source,
        })
    }

    /// The registered pods' netns cookies.
    pub fn pods(&self) -> Result<Vec<u64>, Error> {
        self.dp.pods().map_err(|source| self.datapath_err(source))
    }

    fn datapath_err(&self, source: BpfError) -> Error {
        Error::Datapath {
            pin_dir: self.pin_dir.clone(),
            source,
        }
    }

    /// Counts for metrics. Frontends and backends come from what this handle applied
    /// (cheap at any size); before its first apply they are read from the maps.
    pub fn status(&self) -> Result<LbStatus, Error> {
        let e = |s| self.datapath_err(s);
        let (frontends, backends) = match &self.applied {
            Some(a) => (
                a.frontends.len(),
                a.backends.values().map(HashMap::len).sum(),
            ),
            None => (
                self.dp.frontends().map_err(e)?.len(),
                self.dp.backends().map_err(e)?.len(),
            ),
        };
        Ok(LbStatus {
            frontends,
            backends,
            pods: self.dp.pods().map_err(e)?.len(),
            stats: self.dp.stats().map_err(e)?,
        })
    }

    /// Makes the maps serve `table`, as a diff against what they hold: entries are
    /// updated in place, so a connection never finds a Service empty or missing while it
    /// changes. Frontends no longer in the table are deleted first (entries and all, so
    /// their room is free); then, per frontend, new backends and slots go in before its
    /// count, and its slots and backends that are no longer wanted are deleted last. A
    /// table larger than a map is refused before anything is written
    /// ([`Error::TableTooLarge`]). Frontends keep
    /// their ids and backends theirs, so established UDP flows and ClientIP affinity
    /// keep their backend while it stays in the table (terminating or not).
    pub fn apply(&mut self, table: &ServiceTable) -> Result<ApplyReport, Error> {
        check_capacity(table)?;
        let mut applied = match self.applied.take() {
            Some(a) => a,
            None => self.read_applied().map_err(|s| self.apply_err(s))?,
        };
        match apply_diff(&mut self.dp, &mut applied, table) {
            Ok(report) => {
                self.applied = Some(applied);
                if !report.is_empty() {
                    tracing::debug!(?report, frontends = table.len(), "Service table applied");
                }
                Ok(report)
            }
            // What the maps hold is unknown now: read them again next time.
            Err(e) => Err(match e {
                DiffError::Bpf(s) => self.apply_err(s),
                DiffError::Other(e) => e,
            }),
        }
    }

    fn apply_err(&self, source: BpfError) -> Error {
        Error::Apply {
            pin_dir: self.pin_dir.clone(),
            source,
        }
    }

    fn read_applied(&self) -> Result<Applied, BpfError> {
        let mut a = Applied::default();
        for (k, v) in self.dp.frontends()? {
            a.svc_ids.used.insert(v.id);
            a.frontends.insert(k, v);
        }
        for (id, b) in self.dp.backends()? {
            a.backend_ids.used.insert(id);
            a.backends
                .entry(b.svc_id)
                .or_default()
                .insert((b.ip, b.port), (id, b.terminating));
        }
        for (svc, slot, bid) in self.dp.slots()? {
            a.slots.entry(svc).or_default().insert(slot, bid);
        }
        // Ids of leftovers without a frontend stay taken until apply deletes them.
        let orphans: Vec<u32> = a.backends.keys().chain(a.slots.keys()).copied().collect();
        a.svc_ids.used.extend(orphans);
        a.svc_ids.next = a.svc_ids.used.iter().next_back().copied().unwrap_or(0);
        a.backend_ids.next = a.backend_ids.used.iter().next_back().copied().unwrap_or(0);
        Ok(a)
    }
}

/// Refuses a table that cannot fit in the maps, before a single entry is written, so a
/// too-large table never leaves some Services updated and others not.
fn check_capacity(table: &ServiceTable) -> Result<(), Error> {
    let mut backends = 0usize;
    let mut slots = 0usize;
    for (_, e) in table.iter() {
        backends += e.backends.len();
        slots += e.choosable().len();
    }
    for (map, wanted, max) in [
        ("svc_frontends", table.len(), bpf::MAX_FRONTENDS),
        ("svc_backends", backends, bpf::MAX_BACKENDS),
        ("svc_slots", slots, bpf::MAX_SLOTS),
    ] {
        if wanted > max {
            return Err(Error::TableTooLarge { map, wanted, max });
        }
    }
    Ok(())
}

enum DiffError {
    Bpf(BpfError),
    Other(Error),
}

impl From<BpfError> for DiffError {
    fn from(e: BpfError) -> Self {
        DiffError::Bpf(e)
    }
}

impl From<Error> for DiffError {
    fn from(e: Error) -> Self {
        DiffError::Other(e)
    }
}

fn apply_diff(
    dp: &mut ServiceDatapath,
    a: &mut Applied,
    table: &ServiceTable,
) -> Result<ApplyReport, DiffError> {
    let mut report = ApplyReport::default();
    // Deletions wait until every wanted entry is in.
    let mut stale_slots: Vec<(u32, u32)> = Vec::new();
    let mut stale_backends: Vec<(u32, (IpAddr, u16), u32)> = Vec::new();
    let key_of = |fe: &crate::model::Frontend| FrontendKey {
        ip: fe.ip,
        port: fe.port,
        proto: fe.protocol.number(),
    };
    let wanted_keys: BTreeSet<FrontendKey> = table.iter().map(|(fe, _)| key_of(fe)).collect();

    // Frontends no longer wanted go first, entries and all: nothing wants them, and their
    // room in the maps is then free for what is added (a table that replaces many
    // Services must not need the old and the new ones in the maps at once). The frontend
    // first (no new lookup reaches its slots), then its slots, then its backends.
    let gone: Vec<(FrontendKey, u32)> = a
        .frontends
        .iter()
        .filter(|(k, _)| !wanted_keys.contains(k))
        .map(|(k, v)| (*k, v.id))
        .collect();
    for (key, id) in &gone {
        dp.remove_frontend(key)?;
        a.frontends.remove(key);
        report.frontends_removed += 1;
        if let Some(slots) = a.slots.get_mut(id) {
            for slot in std::mem::take(slots).into_keys() {
                dp.remove_slot(*id, slot)?;
            }
        }
        if let Some(bs) = a.backends.get_mut(id) {
            for (_, (bid, _)) in std::mem::take(bs) {
                dp.remove_backend(bid)?;
                a.backend_ids.release(bid);
                report.backends_removed += 1;
            }
        }
    }

    for (fe, entry) in table.iter() {
        let key = key_of(fe);
        let old = a.frontends.get(&key).copied();
        let id = match old {
            Some(v) => v.id,
            None => a.svc_ids.take("frontend")?,
        };
        let mut changed = false;

        // Backends: new ones in, changed flags in place.
        let cur = a.backends.entry(id).or_default();
        let mut wanted: HashMap<(IpAddr, u16), u32> = HashMap::new();
        for b in &entry.backends {
            let terminating = matches!(b.state, BackendState::Terminating { .. });
            let bid = match cur.get(&(b.ip, b.port)) {
                Some(&(bid, t)) if t == terminating => bid,
                Some(&(bid, _)) => {
                    dp.set_backend(bid, &backend(b.ip, b.port, terminating, id))?;
                    cur.insert((b.ip, b.port), (bid, terminating));
                    changed = true;
                    bid
                }
                None => {
                    let bid = a.backend_ids.take("backend")?;
                    dp.set_backend(bid, &backend(b.ip, b.port, terminating, id))?;
                    cur.insert((b.ip, b.port), (bid, terminating));
                    report.backends_added += 1;
                    changed = true;
                    bid
                }
            };
            wanted.insert((b.ip, b.port), bid);
        }
        for (addr, &(bid, _)) in cur.iter() {
            if !wanted.contains_key(addr) {
                stale_backends.push((id, *addr, bid));
                changed = true;
            }
        }

        // Slots 0..n in place, then the count.
        let choosable: Vec<u32> = entry
            .choosable()
            .iter()
            .map(|b| wanted[&(b.ip, b.port)])
            .collect();
        let slots = a.slots.entry(id).or_default();
        for (i, bid) in choosable.iter().enumerate() {
            let i = i as u32;
            if slots.get(&i) != Some(bid) {
                dp.set_slot(id, i, *bid)?;
                slots.insert(i, *bid);
                changed = true;
            }
        }
        let n = choosable.len() as u32;
        for (&slot, _) in slots.range(n..) {
            stale_slots.push((id, slot));
        }
        let value = FrontendValue {
            id,
            count: n,
            affinity_sec: entry.affinity_timeout.unwrap_or(0),
        };
        if old != Some(value) {
            dp.set_frontend(&key, &value)?;
            a.frontends.insert(key, value);
            changed = true;
        }
        match (old, changed) {
            (None, _) => report.frontends_added += 1,
            (Some(_), true) => report.frontends_updated += 1,
            _ => {}
        }
    }

    // Leftovers of an apply interrupted before it cleaned up: ids no frontend has.
    let live: BTreeSet<u32> = a.frontends.values().map(|v| v.id).collect();
    let gone_ids: BTreeSet<u32> = gone.iter().map(|(_, id)| *id).collect();
    for (id, slots) in &a.slots {
        if !live.contains(id) && !gone_ids.contains(id) {
            stale_slots.extend(slots.keys().map(|s| (*id, *s)));
        }
    }
    for (id, bs) in &a.backends {
        if !live.contains(id) && !gone_ids.contains(id) {
            stale_backends.extend(bs.iter().map(|(addr, (bid, _))| (*id, *addr, *bid)));
        }
    }

    for (id, slot) in stale_slots {
        dp.remove_slot(id, slot)?;
        if let Some(s) = a.slots.get_mut(&id) {
            s.remove(&slot);
        }
    }
    for (id, addr, bid) in stale_backends {
        dp.remove_backend(bid)?;
        a.backend_ids.release(bid);
        if let Some(bs) = a.backends.get_mut(&id) {
            bs.remove(&addr);
        }
        report.backends_removed += 1;
    }
    let dead: BTreeSet<u32> = a
        .slots
        .keys()
        .chain(a.backends.keys())
        .copied()
        .chain(gone_ids.iter().copied())
        .filter(|id| !live.contains(id))
        .collect();
    for id in dead {
        a.slots.remove(&id);
        a.backends.remove(&id);
        a.svc_ids.release(id);
    }
    Ok(report)
}

fn backend(ip: IpAddr, port: u16, terminating: bool, svc_id: u32) -> BackendEntry {
    BackendEntry {
        ip,
        port,
        terminating,
        svc_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Frontend, Protocol, ServiceEntry};
    use std::net::Ipv4Addr;

    fn fe(n: u32) -> Frontend {
        Frontend {
            ip: IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + n)),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn backends(n: u32, state: BackendState) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                port: 8080,
                state,
            })
            .collect()
    }

    fn too_large(e: Error) -> (&'static str, usize, usize) {
        match e {
            Error::TableTooLarge { map, wanted, max } => (map, wanted, max),
            other => panic!("expected TableTooLarge, got {other}"),
        }
    }

    #[test]
    fn a_table_that_fits_passes_the_capacity_check() {
        let mut t = ServiceTable::new();
        for n in 0..10_000 {
            t.insert(
                fe(n),
                ServiceEntry {
                    backends: backends(3, BackendState::Ready),
                    ..Default::default()
                },
            );
        }
        check_capacity(&t).unwrap();
    }

    #[test]
    fn too_many_frontends_are_refused_naming_the_map() {
        let mut t = ServiceTable::new();
        for n in 0..=bpf::MAX_FRONTENDS as u32 {
            t.insert(fe(n), ServiceEntry::default());
        }
        let e = check_capacity(&t).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("svc_frontends") && msg.contains("nothing was applied"),
            "{msg}"
        );
        assert_eq!(
            too_large(e),
            ("svc_frontends", bpf::MAX_FRONTENDS + 1, bpf::MAX_FRONTENDS)
        );
    }

    #[test]
    fn too_many_backends_are_refused_naming_the_map() {
        let half = (bpf::MAX_BACKENDS / 2) as u32 + 1;
        // Terminating, not serving: backends without slots.
        let mut t = ServiceTable::new();
        for n in 0..2 {
            t.insert(
                fe(n),
                ServiceEntry {
                    backends: backends(half, BackendState::Terminating { serving: false }),
                    ..Default::default()
                },
            );
        }
        assert_eq!(
            too_large(check_capacity(&t).unwrap_err()),
            ("svc_backends", 2 * half as usize, bpf::MAX_BACKENDS)
        );
    }
}
