//! Adopting leftovers at start and removing everything at uninstall.

use crate::error::{BpfError, Result};
use crate::fastpath::FastPath;
use crate::iface;
use crate::layout::{Layout, HOOKS, PROGRAM};
use crate::maps::{self, ATTACH_NETLINK};
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use aya::programs::tc;
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

impl FastPath {
    /// Makes the pinned state match the interfaces of this network namespace: forgets
    /// attachments and endpoints of interfaces that no longer exist (an endpoint pointing at
    /// a vanished interface would black-hole traffic to that IP), and records tcx pins that
    /// lost their record. Live attachments are left untouched, so traffic never stops.
    pub fn reconcile(&mut self) -> Result<ReconcileReport> {
        let mut r = ReconcileReport::default();
        for (ifindex, _) in self.attachments()? {
            if iface::exists(ifindex) {
                r.kept_attachments += 1;
            } else {
                self.detach(ifindex)?;
                r.removed_attachments += 1;
            }
        }
        let links_dir = self.layout.links();
        let entries = std::fs::read_dir(&links_dir).map_err(|e| BpfError::Kernel {
            op: format!("list {}", links_dir.display()),
            detail: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(ifindex) = Layout::tcx_link_ifindex(&name) else {
                continue;
            };
            if !iface::exists(ifindex) {
                crate::attach::unpin_tcx_link(&entry.path())?;
                r.removed_attachments += 1;
            } else if self.links.get(&ifindex, 0).is_err() {
                self.links
                    .insert(ifindex, maps::ATTACH_TCX, 0)
                    .map_err(|e| BpfError::from_err("record an adopted tcx link", &e))?;
                r.kept_attachments += 1;
            }
        }
        for ep in self.endpoints()? {
            if !iface::exists(ep.ifindex) {
                self.remove_endpoint(ep.ip)?;
                r.removed_endpoints += 1;
            }
        }
        Ok(r)
    }
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
    if let Ok(md) = MapData::from_pin(layout.map(maps::LINKS)) {
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
                crate::attach::NL_PRIORITY
            ),
        });
    }
    Ok(())
}
