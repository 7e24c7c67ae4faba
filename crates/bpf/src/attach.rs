//! Attaching the fast path to a pod's host-side veth: `uc_fastpath` at tc ingress (frames
//! from the pod) and `uc_fastpath_eg` at tc egress (frames into the pod that took the slow
//! way), as a program set of one role (`progset.rs`): tcx links pinned in bpffs where the
//! kernel has tcx, direct-action cls_bpf filters on a clsact qdisc otherwise. Either way
//! the attachments outlive this process.

use crate::error::Result;
use crate::fastpath::{Attachment, FastPath};
use crate::layout::HOOKS;
use crate::maps;
use crate::progset::Family;

/// The one role: both programs.
const ROLE: u32 = 0;

/// Pins `<pin>/links/tcx_{ingress,egress}_<ifindex>` and `fastpath_links` values 1 (tcx)
/// and 2 (clsact) predate the program sets; the prefix and role 0 keep them what they are.
/// The clsact priority sits mid-range, leaving room for filters that must run before
/// (the policy) or after.
pub(crate) static FAMILY: Family = Family {
    programs: &HOOKS,
    roles: &[(ROLE, &[0, 1])],
    links_map: maps::LINKS,
    link_prefix: "tcx",
    nl_priority: 0x2000,
    nl_handle: 0x7563_0001,
    tcx_first: false,
};

impl FastPath {
    /// Attaches the programs to `ifindex` (the pod's host-side veth). Idempotent:
    /// attaching where they already are changes nothing.
    pub fn attach(&mut self, ifindex: u32) -> Result<Attachment> {
        self.set.attach(ifindex, ROLE)
    }

    /// Whether both programs are in the tcx chains of `ifindex` (false where the kernel has
    /// no tcx or they are attached with clsact).
    pub fn tcx_attached(&self, ifindex: u32) -> Result<bool> {
        self.set.tcx_attached(ifindex, ROLE)
    }

    /// Removes the programs from `ifindex`. Not an error when they are not attached or the
    /// interface is gone (the kernel drops attachments with the interface).
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        self.set.detach(ifindex)
    }

    /// Interfaces the programs are attached to, as recorded in the pinned `fastpath_links` map.
    pub fn attachments(&self) -> Result<Vec<(u32, Attachment)>> {
        self.set.interfaces()
    }
}
