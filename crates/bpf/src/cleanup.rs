//! Adopting leftovers at start and removing everything at uninstall.

use crate::error::{BpfError, Result};
use crate::fastpath::FastPath;
use crate::iface;
use crate::layout::{Layout, PROGRAM};
use std::path::Path;

/// What [`FastPath::reconcile`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Attachments on interfaces that still exist, kept as they are.
    pub kept_attachments: usize,
    /// Attachment records and tcx pins of interfaces that are gone.
    pub removed_attachments: usize,
    /// Endpoints whose host veth is gone (the pod died without a CNI DEL).
    pub removed_endpoints: usize,
}

impl ReconcileReport {
    /// The agent's log line for a reconcile pass that removed something (nothing when it
    /// did not).
    pub fn log(&self) {
        if self.removed_endpoints + self.removed_attachments > 0 {
            tracing::info!(
                stale_endpoints = self.removed_endpoints,
                stale_attachments = self.removed_attachments,
                "eBPF fast path: removed what departed pods left"
            );
        }
    }
}

impl FastPath {
    /// Makes the pinned state match the interfaces of this network namespace: forgets
    /// attachments and endpoints of interfaces that no longer exist (an endpoint pointing at
    /// a vanished interface would black-hole traffic to that IP), and records tcx pins that
    /// lost their record. Live attachments are left untouched, so traffic never stops.
    pub fn reconcile(&mut self) -> Result<ReconcileReport> {
        let mut r = self.set.reconcile_links()?;
        for ep in self.endpoints()? {
            if !iface::exists(ep.ifindex) {
                self.remove_endpoint(ep.ip)?;
                r.removed_endpoints += 1;
            }
        }
        Ok(r)
    }
}

/// The uninstall step of every backend: [`remove_all`] under `pin_dir`, and the line the
/// uninstall report shows for it (`None` when nothing is pinned there).
pub fn uninstall(pin_dir: &Path) -> Result<Option<String>> {
    if !pin_dir.exists() {
        return Ok(None);
    }
    remove_all(pin_dir).map_err(|e| BpfError::Uninstall {
        pin_dir: pin_dir.to_path_buf(),
        source: Box::new(e),
    })?;
    Ok(Some(format!(
        "removed eBPF programs, maps and links pinned at {}",
        pin_dir.display()
    )))
}

/// Removes everything under `pin_dir` (for `unicni uninstall`): the clsact filters recorded
/// in `fastpath_links`, then every pin. Removing the pins drops the last references, so
/// tcx links detach and the program and maps are freed. Needs no loaded program, so it also
/// works when the pinned objects come from another version. Interface indexes are those of
/// the calling thread's network namespace (the node's).
pub fn remove_all(pin_dir: &Path) -> Result<()> {
    if !pin_dir.exists() {
        return Ok(());
    }
    let layout = Layout::new(pin_dir);
    let mut failures = Vec::new();
    crate::progset::remove_netlink_filters(&layout, &crate::terway::FAMILY, &mut failures);
    if let Err(e) = crate::policy::remove_all(pin_dir) {
        failures.push(e.to_string());
    }
    if let Err(e) = crate::services::remove_all(pin_dir) {
        failures.push(e.to_string());
    }
    crate::progset::remove_netlink_filters(&layout, &crate::attach::FAMILY, &mut failures);
    crate::tc::unpin_all(&layout.links(), &mut failures);
    std::fs::remove_dir_all(pin_dir).map_err(|e| BpfError::Kernel {
        op: format!("remove {}", pin_dir.display()),
        detail: format!("{e}; remove the directory by hand (rm -r) to unload the fast path"),
    })?;
    if !failures.is_empty() {
        return Err(BpfError::Kernel {
            op: format!("detach {PROGRAM} everywhere"),
            detail: format!(
                "{}; remove them with `tc filter del dev <if> ingress pref {}` (and egress)",
                failures.join(", "),
                crate::attach::FAMILY.nl_priority
            ),
        });
    }
    Ok(())
}
