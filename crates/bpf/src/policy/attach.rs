//! Attaching the policy programs to a pod's host veth (both hooks), in front of anything
//! else there: tcx links placed first in the chain (pinned under `<pin>/policy/links/`),
//! or cls_bpf filters on the clsact qdisc at a priority below the fast path's.

use super::{PolicyDatapath, HOOKS};
use crate::error::{find_io, BpfError, Result};
use crate::fastpath::{AttachMode, Attachment};
use crate::iface;
use crate::layout::Layout;
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use std::path::Path;

/// Priority and handle of the policy's cls_bpf filters: below the fast path's 0x2000, so
/// they run first.
pub(crate) const NL_PRIORITY: u16 = 0x1000;
pub(crate) const NL_HANDLE: u32 = 0x7563_0002;

const ATTACH_TCX: u32 = 1;
const ATTACH_NETLINK: u32 = 2;

fn errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    find_io(e).and_then(|io| io.raw_os_error())
}

fn tcx_has_program(name: &str, prog: &str, hook: TcAttachType) -> Result<bool> {
    let (_, progs) = SchedClassifier::query_tcx(name, hook)
        .map_err(|e| BpfError::from_err(format!("query the tcx programs of {name}"), &e))?;
    Ok(progs.iter().any(|p| p.name_as_str() == Some(prog)))
}

impl PolicyDatapath {
    /// Attaches both programs to `ifindex` (a pod's host veth, in this thread's network
    /// namespace). Idempotent.
    pub fn attach(&mut self, ifindex: u32) -> Result<Attachment> {
        let name = iface::name_of(ifindex).ok_or(BpfError::NoSuchInterface { ifindex })?;
        let recorded = self.links.get(&ifindex, 0).ok();
        let mode = match (self.mode, recorded) {
            (AttachMode::Auto, Some(ATTACH_NETLINK)) => AttachMode::Netlink,
            (AttachMode::Auto, Some(ATTACH_TCX)) => AttachMode::Tcx,
            (m, _) => m,
        };
        let got = match mode {
            AttachMode::Tcx => self.attach_all_tcx(ifindex, &name)?,
            AttachMode::Netlink => self.attach_all_netlink(&name)?,
            AttachMode::Auto => match self.attach_all_tcx(ifindex, &name) {
                Ok(a) => a,
                Err(e @ BpfError::PermissionDenied { .. }) => return Err(e),
                Err(e) => {
                    tracing::info!(interface = %name, error = %e, "tcx unavailable, using clsact for the policy");
                    self.attach_all_netlink(&name)?
                }
            },
        };
        let v = match got {
            Attachment::Tcx => ATTACH_TCX,
            Attachment::Netlink => ATTACH_NETLINK,
        };
        self.links.insert(ifindex, v, 0).map_err(|e| {
            BpfError::from_err(format!("record the policy attachment on {name}"), &e)
        })?;
        Ok(got)
    }

    /// Whether both programs are in the tcx chains of `ifindex`, and first there.
    pub fn tcx_attached_first(&self, ifindex: u32) -> Result<bool> {
        let name = iface::name_of(ifindex).ok_or(BpfError::NoSuchInterface { ifindex })?;
        for (prog, hook) in HOOKS {
            let (_, progs) = SchedClassifier::query_tcx(&name, hook)
                .map_err(|e| BpfError::from_err(format!("query the tcx programs of {name}"), &e))?;
            if progs.first().and_then(|p| p.name_as_str()) != Some(prog) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn attach_all_tcx(&mut self, ifindex: u32, name: &str) -> Result<Attachment> {
        // Into the pod first, then out of it: a reply is never judged before its request.
        for i in [1, 0] {
            self.attach_tcx(i, ifindex, name)?;
        }
        Ok(Attachment::Tcx)
    }

    fn attach_tcx(&mut self, i: usize, ifindex: u32, name: &str) -> Result<()> {
        let (prog_name, hook) = HOOKS[i];
        let pin = self.layout.tcx_link(ifindex, hook);
        if pin.exists() {
            if tcx_has_program(name, prog_name, hook).unwrap_or(false) {
                return Ok(());
            }
            // The pin belonged to a deleted interface whose index was reused.
            let _ = crate::attach::unpin_tcx_link(&pin);
        }
        let prog = &mut self.progs[i];
        let id = prog
            .attach_with_options(name, hook, TcAttachOptions::TcxOrder(LinkOrder::first()))
            .map_err(|e| {
                BpfError::from_err(format!("attach {prog_name} to {name} with tcx"), &e)
            })?;
        let link = prog
            .take_link(id)
            .map_err(|e| BpfError::from_err("take the tcx link", &e))?;
        let fd = FdLink::try_from(link)
            .map_err(|e| BpfError::from_err("use the tcx link as a bpf link", &e))?;
        match fd.pin(&pin) {
            Ok(_pinned) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(BpfError::from_err(
                format!("pin the tcx link of {name} at {}", pin.display()),
                &e,
            )),
        }
    }

    fn attach_all_netlink(&mut self, name: &str) -> Result<Attachment> {
        match tc::qdisc_add_clsact(name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(BpfError::from_err(
                    format!("add the clsact qdisc to {name}"),
                    &e,
                ))
            }
        }
        for i in [1, 0] {
            let (prog_name, hook) = HOOKS[i];
            let prog = &mut self.progs[i];
            let opts = NlOptions {
                priority: NL_PRIORITY,
                handle: NL_HANDLE,
            };
            let id = match prog.attach_with_options(name, hook, TcAttachOptions::Netlink(opts)) {
                Ok(id) => id,
                Err(e) if errno(&e) == Some(libc::EEXIST) => {
                    let existing =
                        SchedClassifierLink::attached(name, hook, NL_PRIORITY, NL_HANDLE).map_err(
                            |e| BpfError::from_err(format!("find the policy filter on {name}"), &e),
                        )?;
                    prog.attach_to_link(existing).map_err(|e| {
                        BpfError::from_err(format!("replace the policy filter on {name}"), &e)
                    })?
                }
                Err(e) => {
                    return Err(BpfError::from_err(
                        format!("attach {prog_name} to {name} with a clsact filter"),
                        &e,
                    ))
                }
            };
            let link = prog
                .take_link(id)
                .map_err(|e| BpfError::from_err("take the netlink link", &e))?;
            // Dropping would delete the filter; it must outlive this process.
            std::mem::forget(link);
        }
        Ok(Attachment::Netlink)
    }

    /// Removes both programs from `ifindex`; not an error when they are not there.
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        let recorded = self.links.get(&ifindex, 0).ok();
        for (prog_name, hook) in HOOKS {
            let pin = self.layout.tcx_link(ifindex, hook);
            if pin.exists() {
                crate::attach::unpin_tcx_link(&pin)?;
            }
            if let Some(name) = iface::name_of(ifindex) {
                match tc::qdisc_detach_program(&name, hook, prog_name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) if recorded != Some(ATTACH_NETLINK) => {}
                    Err(e) => {
                        return Err(BpfError::from_err(
                            format!("remove the {prog_name} filter from {name}"),
                            &e,
                        ))
                    }
                }
            }
        }
        match self.links.remove(&ifindex) {
            Err(e) if errno(&e) != Some(libc::ENOENT) => Err(BpfError::from_err(
                format!("forget the policy attachment on ifindex {ifindex}"),
                &e,
            )),
            _ => Ok(()),
        }
    }

    /// Interfaces carrying the programs, as recorded in `policy_links`.
    pub fn attachments(&self) -> Result<Vec<(u32, Attachment)>> {
        let mut out = Vec::new();
        for item in self.links.iter() {
            let (ifindex, v) =
                item.map_err(|e| BpfError::from_err("list policy attachments", &e))?;
            let a = if v == ATTACH_NETLINK {
                Attachment::Netlink
            } else {
                Attachment::Tcx
            };
            out.push((ifindex, a));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// Forgets attachments of interfaces that no longer exist, records tcx pins that
    /// lost their record, and removes the pins of pod interfaces whose pod's host veth is
    /// gone. Returns (kept, removed).
    pub fn reconcile(&mut self) -> Result<(usize, usize)> {
        let (mut kept, mut removed) = (0, self.prune_pod_interfaces()?);
        for (ifindex, _) in self.attachments()? {
            if iface::exists(ifindex) {
                kept += 1;
            } else {
                self.detach(ifindex)?;
                removed += 1;
            }
        }
        let dir = self.layout.links();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(ifindex) = Layout::tcx_link_ifindex(&name) else {
                    continue;
                };
                if !iface::exists(ifindex) {
                    crate::attach::unpin_tcx_link(&entry.path())?;
                    removed += 1;
                } else if self.links.get(&ifindex, 0).is_err() {
                    self.links
                        .insert(ifindex, ATTACH_TCX, 0)
                        .map_err(|e| BpfError::from_err("record an adopted tcx link", &e))?;
                    kept += 1;
                }
            }
        }
        Ok((kept, removed))
    }

    /// After an upgrade: every existing attachment switched to the newly pinned programs
    /// in place (tcx link update, filter replace).
    pub(crate) fn switch_attachments(&mut self) -> Result<()> {
        self.switch_pod_interfaces()?;
        for (ifindex, kind) in self.attachments()? {
            let Some(name) = iface::name_of(ifindex) else {
                continue;
            };
            for i in [1, 0] {
                let (prog_name, hook) = HOOKS[i];
                let link = match kind {
                    Attachment::Tcx => {
                        let pin = self.layout.tcx_link(ifindex, hook);
                        let Ok(pinned) = PinnedLink::from_pin(&pin) else {
                            self.attach_tcx(i, ifindex, &name)?;
                            continue;
                        };
                        SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|e| {
                            BpfError::from_err(format!("use the pinned link of {name}"), &e)
                        })?
                    }
                    Attachment::Netlink => {
                        SchedClassifierLink::attached(&name, hook, NL_PRIORITY, NL_HANDLE).map_err(
                            |e| BpfError::from_err(format!("find the policy filter on {name}"), &e),
                        )?
                    }
                };
                let prog = &mut self.progs[i];
                let id = prog.attach_to_link(link).map_err(|e| {
                    BpfError::from_err(format!("switch {name} to the new {prog_name}"), &e)
                })?;
                let link = prog
                    .take_link(id)
                    .map_err(|e| BpfError::from_err("take the switched link", &e))?;
                match kind {
                    Attachment::Tcx => drop(link),
                    Attachment::Netlink => std::mem::forget(link),
                }
            }
        }
        Ok(())
    }
}

/// Prefix of the tcx link pins of interfaces inside pods' namespaces:
/// `pod_<key>_{ingress,egress}`.
const POD_PIN_PREFIX: &str = "pod_";

/// The programs on an interface inside a pod's namespace, each with its hook: there tc
/// ingress is what is delivered to the pod and tc egress what the pod sends (the reverse
/// of a host veth). `enforce` does not care, the names only say which way the packet goes.
const POD_HOOKS: [(usize, TcAttachType); 2] =
    [(1, TcAttachType::Ingress), (0, TcAttachType::Egress)];

fn pod_pin(layout: &Layout, key: &str, hook: TcAttachType) -> std::path::PathBuf {
    let dir = match hook {
        TcAttachType::Egress => "egress",
        _ => "ingress",
    };
    layout.links().join(format!("{POD_PIN_PREFIX}{key}_{dir}"))
}

/// The key and hook of a pod-interface pin, from its file name.
fn pod_pin_key(file_name: &str) -> Option<(&str, TcAttachType)> {
    let rest = file_name.strip_prefix(POD_PIN_PREFIX)?;
    if let Some(key) = rest.strip_suffix("_ingress") {
        Some((key, TcAttachType::Ingress))
    } else {
        rest.strip_suffix("_egress")
            .map(|key| (key, TcAttachType::Egress))
    }
}

/// A key must name one pin file, nothing else.
fn valid_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.len() > 64
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(BpfError::Kernel {
            op: "name a pod interface's policy attachment".into(),
            detail: format!("{key:?} is not a valid key (letters, digits, '-', '.')"),
        });
    }
    Ok(())
}

/// The index of interface `name` in the calling thread's network namespace.
fn index_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

impl PolicyDatapath {
    /// Attaches both programs to `ifname` in the calling thread's network namespace: an
    /// interface inside a pod's namespace that carries the pod's traffic past every host
    /// link (an exclusive-ENI pod's ENI). tc ingress gets `uc_pol_to_pod`, tc egress
    /// `uc_pol_from_pod`, first in the chain (tcx) or at the policy's clsact priority.
    /// tcx links are pinned as `<pin>/policy/links/pod_<key>_{ingress,egress}`; nothing
    /// goes into `policy_links` (an index of another namespace means nothing here). `key`
    /// names the pod's attachment on the node (the exclusive-ENI datapath uses the pod's
    /// host veth name, so [`PolicyDatapath::reconcile`] removes the pins of pods whose
    /// veth is gone). Idempotent. Call it on a thread inside the pod's namespace: tcx and
    /// netlink resolve the interface in the caller's namespace.
    pub fn attach_pod_interface(&mut self, key: &str, ifname: &str) -> Result<Attachment> {
        valid_key(key)?;
        index_of(ifname).ok_or_else(|| BpfError::Kernel {
            op: format!("attach the policy programs to {ifname}"),
            detail: "no such interface in this network namespace".into(),
        })?;
        let tcx = match self.mode {
            AttachMode::Netlink => None,
            _ => Some(self.attach_pod_tcx(key, ifname)),
        };
        match tcx {
            Some(Ok(())) => return Ok(Attachment::Tcx),
            Some(Err(e @ BpfError::PermissionDenied { .. })) => return Err(e),
            Some(Err(e)) if self.mode == AttachMode::Tcx => return Err(e),
            Some(Err(e)) => {
                tracing::info!(interface = %ifname, error = %e, "tcx unavailable, using clsact for the policy");
            }
            None => {}
        }
        for (_, hook) in POD_HOOKS {
            let pin = pod_pin(&self.layout, key, hook);
            if pin.exists() {
                let _ = crate::attach::unpin_tcx_link(&pin);
            }
        }
        self.attach_pod_netlink(ifname)?;
        Ok(Attachment::Netlink)
    }

    fn attach_pod_tcx(&mut self, key: &str, ifname: &str) -> Result<()> {
        for (i, hook) in POD_HOOKS {
            let prog_name = HOOKS[i].0;
            let pin = pod_pin(&self.layout, key, hook);
            if pin.exists() {
                if let Ok(pinned) = PinnedLink::from_pin(&pin) {
                    // Ours when the link is on this very interface (a repeated ADD).
                    let (_, progs) = SchedClassifier::query_tcx(ifname, hook).map_err(|e| {
                        BpfError::from_err(format!("query the tcx programs of {ifname}"), &e)
                    })?;
                    drop(pinned);
                    if progs.iter().any(|p| p.name_as_str() == Some(prog_name)) {
                        continue;
                    }
                }
                let _ = crate::attach::unpin_tcx_link(&pin);
            }
            let prog = &mut self.progs[i];
            let id = prog
                .attach_with_options(ifname, hook, TcAttachOptions::TcxOrder(LinkOrder::first()))
                .map_err(|e| {
                    BpfError::from_err(format!("attach {prog_name} to {ifname} with tcx"), &e)
                })?;
            let link = prog
                .take_link(id)
                .map_err(|e| BpfError::from_err("take the tcx link", &e))?;
            let fd = FdLink::try_from(link)
                .map_err(|e| BpfError::from_err("use the tcx link as a bpf link", &e))?;
            match fd.pin(&pin) {
                Ok(_pinned) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(BpfError::from_err(
                        format!("pin the tcx link of {ifname} at {}", pin.display()),
                        &e,
                    ))
                }
            }
        }
        Ok(())
    }

    fn attach_pod_netlink(&mut self, ifname: &str) -> Result<()> {
        match tc::qdisc_add_clsact(ifname) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(BpfError::from_err(
                    format!("add the clsact qdisc to {ifname}"),
                    &e,
                ))
            }
        }
        for (i, hook) in POD_HOOKS {
            let prog_name = HOOKS[i].0;
            let prog = &mut self.progs[i];
            let opts = NlOptions {
                priority: NL_PRIORITY,
                handle: NL_HANDLE,
            };
            let id = match prog.attach_with_options(ifname, hook, TcAttachOptions::Netlink(opts)) {
                Ok(id) => id,
                Err(e) if errno(&e) == Some(libc::EEXIST) => {
                    let existing =
                        SchedClassifierLink::attached(ifname, hook, NL_PRIORITY, NL_HANDLE)
                            .map_err(|e| {
                                BpfError::from_err(
                                    format!("find the policy filter on {ifname}"),
                                    &e,
                                )
                            })?;
                    prog.attach_to_link(existing).map_err(|e| {
                        BpfError::from_err(format!("replace the policy filter on {ifname}"), &e)
                    })?
                }
                Err(e) => {
                    return Err(BpfError::from_err(
                        format!("attach {prog_name} to {ifname} with a clsact filter"),
                        &e,
                    ))
                }
            };
            let link = prog
                .take_link(id)
                .map_err(|e| BpfError::from_err("take the netlink link", &e))?;
            // The filter must outlive this process (it goes with the interface's qdisc).
            std::mem::forget(link);
        }
        Ok(())
    }

    /// Keys of the pod interfaces carrying the programs by tcx (their pins).
    pub fn pod_interfaces(&self) -> Vec<String> {
        pod_interface_keys(self.layout.root())
    }

    /// Whether both programs are first in the tcx chains of `ifname` (calling thread's
    /// namespace), each on its pod-side hook.
    pub fn pod_interface_tcx_first(ifname: &str) -> Result<bool> {
        for (i, hook) in POD_HOOKS {
            let (_, progs) = SchedClassifier::query_tcx(ifname, hook).map_err(|e| {
                BpfError::from_err(format!("query the tcx programs of {ifname}"), &e)
            })?;
            if progs.first().and_then(|p| p.name_as_str()) != Some(HOOKS[i].0) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Removes the pins (tcx links) of pod interfaces whose key is not an interface of the
    /// calling thread's namespace (the node's): their pod is gone. Returns how many.
    fn prune_pod_interfaces(&self) -> Result<usize> {
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(self.layout.links()) else {
            return Ok(0);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((key, _)) = pod_pin_key(&name) else {
                continue;
            };
            if index_of(key).is_none() {
                crate::attach::unpin_tcx_link(&entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// After an upgrade: the pod interfaces' tcx links to the new programs, in place.
    /// (clsact filters inside pods cannot be reached from here; they keep the old build
    /// until their pod is re-created.)
    fn switch_pod_interfaces(&mut self) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(self.layout.links()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((_, hook)) = pod_pin_key(&name) else {
                continue;
            };
            let i = if hook == TcAttachType::Ingress { 1 } else { 0 };
            let Ok(pinned) = PinnedLink::from_pin(entry.path()) else {
                continue;
            };
            let link = SchedClassifierLink::try_from(FdLink::from(pinned))
                .map_err(|e| BpfError::from_err(format!("use the pinned link {name}"), &e))?;
            let prog = &mut self.progs[i];
            let id = prog
                .attach_to_link(link)
                .map_err(|e| BpfError::from_err(format!("switch {name} to the new program"), &e))?;
            drop(
                prog.take_link(id)
                    .map_err(|e| BpfError::from_err("take the switched link", &e))?,
            );
        }
        Ok(())
    }
}

fn pod_interface_keys(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(Layout::new(root).links())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            pod_pin_key(&name).map(|(k, _)| k.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Removes the programs from a pod interface attached with
/// [`PolicyDatapath::attach_pod_interface`]: its tcx link pins (detached before this
/// returns), and, when `ifname` is given, the clsact filters on that interface in the
/// calling thread's namespace. Nothing there (or no policy pinned at all) is not an error.
pub fn detach_pod_interface(pin_dir: &Path, key: &str, ifname: Option<&str>) -> Result<()> {
    valid_key(key)?;
    let layout = Layout::new(&super::policy_dir(pin_dir));
    for (i, hook) in POD_HOOKS {
        let pin = pod_pin(&layout, key, hook);
        if pin.exists() {
            crate::attach::unpin_tcx_link(&pin)?;
        }
        let Some(ifname) = ifname else { continue };
        if index_of(ifname).is_none() {
            continue;
        }
        // An error here means no filter of ours, or no clsact qdisc at all.
        let _ = tc::qdisc_detach_program(ifname, hook, HOOKS[i].0);
    }
    Ok(())
}

/// Removes the policy under `pin_dir` (the agent's pin directory): its clsact filters,
/// its tcx links and every pin of `<pin_dir>/policy`. Nothing there is not an error.
pub fn remove_all(pin_dir: &Path) -> Result<()> {
    let root = super::policy_dir(pin_dir);
    if !root.exists() {
        return Ok(());
    }
    let layout = Layout::new(&root);
    let mut failures = Vec::new();
    if let Ok(md) = MapData::from_pin(layout.map(super::maps::LINKS)) {
        if let Ok(links) = BpfHashMap::<MapData, u32, u32>::try_from(Map::HashMap(md)) {
            for (ifindex, how) in links.iter().flatten() {
                if how != ATTACH_NETLINK {
                    continue;
                }
                let Some(name) = iface::name_of(ifindex) else {
                    continue;
                };
                for (prog, hook) in HOOKS {
                    match tc::qdisc_detach_program(&name, hook, prog) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => failures.push(format!("{name} {prog}: {e}")),
                    }
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(layout.links()) {
        for entry in entries.flatten() {
            if let Err(e) = crate::attach::unpin_tcx_link(&entry.path()) {
                failures.push(e.to_string());
            }
        }
    }
    std::fs::remove_dir_all(&root).map_err(|e| BpfError::Kernel {
        op: format!("remove {}", root.display()),
        detail: e.to_string(),
    })?;
    if !failures.is_empty() {
        return Err(BpfError::Kernel {
            op: "detach the policy programs everywhere".into(),
            detail: format!(
                "{}; remove them with `tc filter del dev <if> ingress pref {}` (and egress)",
                failures.join(", "),
                NL_PRIORITY
            ),
        });
    }
    Ok(())
}
