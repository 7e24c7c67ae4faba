//! The tc primitives every program set attaches with: a tcx link pinned in bpffs, or a
//! direct-action cls_bpf filter on the clsact qdisc at a fixed priority and handle (so any
//! process can find and replace it). Either way the attachment outlives this process.

use crate::error::{find_io, BpfError, Result};
use crate::fastpath::{AttachMode, Attachment};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use std::path::Path;

pub(crate) fn errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    find_io(e).and_then(|io| io.raw_os_error())
}

/// Names of the programs in the tcx chain of `ifname`'s `hook`, in chain order.
fn tcx_programs(ifname: &str, hook: TcAttachType) -> Result<Vec<Option<String>>> {
    let (_, progs) = SchedClassifier::query_tcx(ifname, hook)
        .map_err(|e| BpfError::from_err(format!("query the tcx programs of {ifname}"), &e))?;
    Ok(progs
        .iter()
        .map(|p| p.name_as_str().map(str::to_string))
        .collect())
}

pub(crate) fn tcx_has_program(ifname: &str, prog: &str, hook: TcAttachType) -> Result<bool> {
    Ok(tcx_programs(ifname, hook)?
        .iter()
        .any(|p| p.as_deref() == Some(prog)))
}

pub(crate) fn tcx_first_is(ifname: &str, prog: &str, hook: TcAttachType) -> Result<bool> {
    Ok(tcx_programs(ifname, hook)?
        .first()
        .and_then(|p| p.as_deref())
        == Some(prog))
}

/// Attaches with `tcx`, or with `netlink` (clsact filters) when `mode` says so or, in
/// `Auto` mode, when tcx fails for another reason than privilege (an older kernel). In
/// `Tcx` mode a tcx error is returned. `set` names the program set in the log.
pub(crate) fn attach_with_fallback<S>(
    state: &mut S,
    mode: AttachMode,
    ifname: &str,
    set: &str,
    tcx: impl FnOnce(&mut S) -> Result<()>,
    netlink: impl FnOnce(&mut S) -> Result<()>,
) -> Result<Attachment> {
    if mode != AttachMode::Netlink {
        match tcx(state) {
            Ok(()) => return Ok(Attachment::Tcx),
            Err(e @ BpfError::PermissionDenied { .. }) => return Err(e),
            Err(e) if mode == AttachMode::Tcx => return Err(e),
            Err(e) => {
                tracing::info!(interface = %ifname, error = %e, set, "tcx unavailable, using clsact");
            }
        }
    }
    netlink(state)?;
    Ok(Attachment::Netlink)
}

/// Whether each program is first in the tcx chain of its hook on `ifname`.
pub(crate) fn tcx_first<'a>(
    ifname: &str,
    progs: impl IntoIterator<Item = (&'a str, TcAttachType)>,
) -> Result<bool> {
    for (prog, hook) in progs {
        if !tcx_first_is(ifname, prog, hook)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Attaches `prog` to `ifname` with tcx (first in the chain or last) and pins the link at
/// `pin`. Idempotent: a pin whose interface carries the program already is left alone.
pub(crate) fn attach_tcx(
    prog: &mut SchedClassifier,
    prog_name: &str,
    ifname: &str,
    hook: TcAttachType,
    first: bool,
    pin: &Path,
) -> Result<()> {
    if pin.exists() {
        if tcx_has_program(ifname, prog_name, hook).unwrap_or(false) {
            return Ok(());
        }
        // The pin belonged to an interface that was deleted; its index (or, inside a pod,
        // its key) now names a new one.
        let _ = unpin_tcx_link(pin);
    }
    let order = if first {
        LinkOrder::first()
    } else {
        LinkOrder::default()
    };
    let id = prog
        .attach_with_options(ifname, hook, TcAttachOptions::TcxOrder(order))
        .map_err(|e| BpfError::from_err(format!("attach {prog_name} to {ifname} with tcx"), &e))?;
    let link = prog
        .take_link(id)
        .map_err(|e| BpfError::from_err("take the tcx link", &e))?;
    let fd = FdLink::try_from(link)
        .map_err(|e| BpfError::from_err("use the tcx link as a bpf link", &e))?;
    match fd.pin(pin) {
        Ok(_pinned) => Ok(()),
        // A concurrent attach won the race: ours is dropped (detached) here, theirs stays.
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(BpfError::from_err(
            format!("pin the tcx link of {ifname} at {}", pin.display()),
            &e,
        )),
    }
}

pub(crate) fn add_clsact(ifname: &str) -> Result<()> {
    match tc::qdisc_add_clsact(ifname) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(BpfError::from_err(
            format!("add the clsact qdisc to {ifname}"),
            &e,
        )),
    }
}

/// Attaches `prog` as the cls_bpf filter `priority`/`handle` on `ifname`'s clsact qdisc
/// (which must exist: [`add_clsact`]).
pub(crate) fn attach_netlink(
    prog: &mut SchedClassifier,
    prog_name: &str,
    ifname: &str,
    hook: TcAttachType,
    priority: u16,
    handle: u32,
) -> Result<()> {
    let opts = NlOptions { priority, handle };
    let id = match prog.attach_with_options(ifname, hook, TcAttachOptions::Netlink(opts)) {
        Ok(id) => id,
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            // Ours from an earlier run: replace it in place so the interface never goes
            // without the program.
            let existing = netlink_link(ifname, hook, priority, handle)?;
            prog.attach_to_link(existing)
                .map_err(|e| BpfError::from_err(format!("replace the filter on {ifname}"), &e))?
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
    // Dropping a netlink link deletes the filter; it must outlive this process and is
    // found again by its fixed priority and handle.
    std::mem::forget(link);
    Ok(())
}

pub(crate) fn netlink_link(
    ifname: &str,
    hook: TcAttachType,
    priority: u16,
    handle: u32,
) -> Result<SchedClassifierLink> {
    SchedClassifierLink::attached(ifname, hook, priority, handle)
        .map_err(|e| BpfError::from_err(format!("find the filter on {ifname}"), &e))
}

/// The tcx link pinned at `pin`, or None when there is none.
pub(crate) fn pinned_tcx_link(pin: &Path) -> Result<Option<SchedClassifierLink>> {
    let Ok(pinned) = PinnedLink::from_pin(pin) else {
        return Ok(None);
    };
    SchedClassifierLink::try_from(FdLink::from(pinned))
        .map(Some)
        .map_err(|e| BpfError::from_err(format!("use the pinned link {}", pin.display()), &e))
}

/// Points an existing attachment (`link`) at `prog` without a gap (tcx: bpf_link_update;
/// netlink: in-place filter replace).
pub(crate) fn switch_link(
    prog: &mut SchedClassifier,
    link: SchedClassifierLink,
    what: &str,
    how: crate::fastpath::Attachment,
) -> Result<()> {
    let id = prog
        .attach_to_link(link)
        .map_err(|e| BpfError::from_err(format!("switch {what} to the new program"), &e))?;
    let link = prog
        .take_link(id)
        .map_err(|e| BpfError::from_err("take the switched link", &e))?;
    match how {
        // The pin keeps the tcx link; our fd may go.
        crate::fastpath::Attachment::Tcx => drop(link),
        // Dropping would delete the filter.
        crate::fastpath::Attachment::Netlink => std::mem::forget(link),
    }
    Ok(())
}

/// Removes `prog_name`'s filters from `ifname`'s `hook`; not there is not an error.
pub(crate) fn detach_netlink(
    ifname: &str,
    hook: TcAttachType,
    prog_name: &str,
) -> std::io::Result<()> {
    match tc::qdisc_detach_program(ifname, hook, prog_name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Removes a tcx link pin and detaches the link before returning. Unlinking the pin alone
/// would free the link from a kernel work item, a moment later; holding our own reference
/// across the unlink makes our close the last reference, which detaches synchronously.
pub(crate) fn unpin_tcx_link(pin: &Path) -> Result<()> {
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

/// Unpins every tcx link under `dir` (for `remove_all`); failures are collected.
pub(crate) fn unpin_all(dir: &Path, failures: &mut Vec<String>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Err(e) = unpin_tcx_link(&entry.path()) {
                failures.push(e.to_string());
            }
        }
    }
}
