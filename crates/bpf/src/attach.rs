//! Attaching the fast path to a pod's host-side veth: `uc_fastpath` at tc ingress (frames
//! from the pod) and `uc_fastpath_eg` at tc egress (frames into the pod that took the slow
//! way). tcx links pinned in bpffs where the kernel has tcx, direct-action cls_bpf filters
//! on a clsact qdisc otherwise. Either way the attachments outlive this process.

use crate::error::{find_io, BpfError, Result};
use crate::fastpath::{AttachMode, Attachment, FastPath};
use crate::iface;
use crate::layout::HOOKS;
use crate::maps::{ATTACH_NETLINK, ATTACH_TCX};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};

/// Fixed priority and handle of our cls_bpf filters, so any process can find and replace
/// them. The priority sits mid-range, leaving room for filters that must run before or after.
pub(crate) const NL_PRIORITY: u16 = 0x2000;
pub(crate) const NL_HANDLE: u32 = 0x7563_0001;

fn errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    find_io(e).and_then(|io| io.raw_os_error())
}

impl FastPath {
    /// Attaches the programs to `ifindex` (the pod's host-side veth). Idempotent:
    /// attaching where they already are changes nothing.
    pub fn attach(&mut self, ifindex: u32) -> Result<Attachment> {
        let name = iface::name_of(ifindex).ok_or(BpfError::NoSuchInterface { ifindex })?;
        let recorded = self.links.get(&ifindex, 0).ok();
        let mode = match (self.mode, recorded) {
            // Keep an interface on the mechanism it already uses, or it would get both.
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
                    tracing::info!(interface = %name, error = %e, "tcx unavailable, using clsact");
                    self.attach_all_netlink(&name)?
                }
            },
        };
        let v = match got {
            Attachment::Tcx => ATTACH_TCX,
            Attachment::Netlink => ATTACH_NETLINK,
        };
        self.links
            .insert(ifindex, v, 0)
            .map_err(|e| BpfError::from_err(format!("record the attachment on {name}"), &e))?;
        Ok(got)
    }

    /// Whether both programs are in the tcx chains of `ifindex` (false where the kernel has
    /// no tcx or they are attached with clsact).
    pub fn tcx_attached(&self, ifindex: u32) -> Result<bool> {
        let name = iface::name_of(ifindex).ok_or(BpfError::NoSuchInterface { ifindex })?;
        for (prog, hook) in HOOKS {
            if !tcx_has_program(&name, prog, hook)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn attach_all_tcx(&mut self, ifindex: u32, name: &str) -> Result<Attachment> {
        // Egress first: once ingress short-cuts flows, the egress side must already be
        // recording the ones that still take the slow way.
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
            // The pinned link belonged to an interface that was deleted; this index now
            // names a new one.
            let _ = unpin_tcx_link(&pin);
        }
        let prog = &mut self.progs[i];
        let id = prog
            .attach_with_options(name, hook, TcAttachOptions::TcxOrder(LinkOrder::default()))
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
            // A concurrent attach won the race: ours is dropped (detached) here, theirs stays.
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
            self.attach_netlink(i, name)?;
        }
        Ok(Attachment::Netlink)
    }

    fn attach_netlink(&mut self, i: usize, name: &str) -> Result<()> {
        let (prog_name, hook) = HOOKS[i];
        let prog = &mut self.progs[i];
        let opts = NlOptions {
            priority: NL_PRIORITY,
            handle: NL_HANDLE,
        };
        let id = match prog.attach_with_options(name, hook, TcAttachOptions::Netlink(opts)) {
            Ok(id) => id,
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                // Ours (fixed priority/handle) from an earlier run: replace it in place so the
                // interface never goes without the program.
                let existing = SchedClassifierLink::attached(name, hook, NL_PRIORITY, NL_HANDLE)
                    .map_err(|e| BpfError::from_err(format!("find the filter on {name}"), &e))?;
                prog.attach_to_link(existing)
                    .map_err(|e| BpfError::from_err(format!("replace the filter on {name}"), &e))?
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
        // Dropping a netlink link deletes the filter; the filter must outlive this process
        // and is found again by its fixed priority and handle.
        std::mem::forget(link);
        Ok(())
    }

    /// Removes the programs from `ifindex`. Not an error when they are not attached or the
    /// interface is gone (the kernel drops attachments with the interface).
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        let recorded = self.links.get(&ifindex, 0).ok();
        // Ingress first: stop short-cutting before the egress side stops recording.
        for (prog_name, hook) in HOOKS {
            let pin = self.layout.tcx_link(ifindex, hook);
            if pin.exists() {
                unpin_tcx_link(&pin)?;
            }
            if let Some(name) = iface::name_of(ifindex) {
                match tc::qdisc_detach_program(&name, hook, prog_name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    // Without a clsact qdisc the filter dump fails; nothing of ours is there.
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
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(BpfError::from_err(
                format!("forget the attachment on ifindex {ifindex}"),
                &e,
            )),
        }
    }

    /// Interfaces the programs are attached to, as recorded in the pinned `fastpath_links` map.
    pub fn attachments(&self) -> Result<Vec<(u32, Attachment)>> {
        let mut out = Vec::new();
        for item in self.links.iter() {
            let (ifindex, v) = item.map_err(|e| BpfError::from_err("list attachments", &e))?;
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

    /// After an upgrade: points every existing attachment at the newly pinned programs
    /// without a gap (tcx: bpf_link_update; netlink: in-place filter replace).
    pub(crate) fn switch_attachments(&mut self) -> Result<()> {
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
                            // Attached by an older version without this hook: add it.
                            self.attach_tcx(i, ifindex, &name)?;
                            continue;
                        };
                        SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|e| {
                            BpfError::from_err(format!("use the pinned link of {name}"), &e)
                        })?
                    }
                    Attachment::Netlink => {
                        SchedClassifierLink::attached(&name, hook, NL_PRIORITY, NL_HANDLE).map_err(
                            |e| BpfError::from_err(format!("find the filter on {name}"), &e),
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
                    // The pin keeps the tcx link; our fd may go.
                    Attachment::Tcx => drop(link),
                    // Dropping would delete the filter.
                    Attachment::Netlink => std::mem::forget(link),
                }
            }
        }
        Ok(())
    }
}

fn tcx_has_program(name: &str, prog: &str, hook: TcAttachType) -> Result<bool> {
    let (_, progs) = SchedClassifier::query_tcx(name, hook)
        .map_err(|e| BpfError::from_err(format!("query the tcx programs of {name}"), &e))?;
    Ok(progs.iter().any(|p| p.name_as_str() == Some(prog)))
}

/// Removes a tcx link pin and detaches the link before returning. Unlinking the pin alone
/// would free the link from a kernel work item, a moment later; holding our own reference
/// across the unlink makes our close the last reference, which detaches synchronously.
pub(crate) fn unpin_tcx_link(pin: &std::path::Path) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| BpfError::Kernel {
        op: format!("remove tcx link pin {}", pin.display()),
        detail: e.to_string(),
    };
    match PinnedLink::from_pin(pin) {
        Ok(link) => drop(link.unpin().map_err(|e| fail(&e))?),
        // Not a link (or unreadable): still remove the file so nothing is left behind.
        Err(_) => std::fs::remove_file(pin).map_err(|e| fail(&e))?,
    }
    Ok(())
}
