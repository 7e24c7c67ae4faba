//! Where things are pinned under the pin directory (default /sys/fs/bpf/unicni):
//!
//! ```text
//! <pin>/maps/endpoints, fastpath_stats, fastpath_links   maps (pinned by name by aya)
//! <pin>/maps/host_flows
//! <pin>/progs/uc_fastpath, uc_fastpath_eg                the loaded programs
//! <pin>/links/tcx_ingress_<ifindex>, tcx_egress_<ifindex> tcx links of each attached veth
//! ```
//!
//! Netlink (clsact) filters cannot be pinned; the kernel keeps them on the interface by
//! itself, and `fastpath_links` records where they are.

use std::path::{Path, PathBuf};

use aya::programs::TcAttachType;

/// The fast path itself, at tc ingress of a pod's host veth (frames from the pod).
pub const PROGRAM: &str = "uc_fastpath";
/// Its companion at tc egress (frames into the pod that took the slow way).
pub const PROGRAM_EGRESS: &str = "uc_fastpath_eg";

/// Each program with the hook it belongs to.
pub const HOOKS: [(&str, TcAttachType); 2] = [
    (PROGRAM, TcAttachType::Ingress),
    (PROGRAM_EGRESS, TcAttachType::Egress),
];

/// The hook's word in tcx link pin names.
pub(crate) fn hook_dir(t: TcAttachType) -> &'static str {
    match t {
        TcAttachType::Egress => "egress",
        _ => "ingress",
    }
}

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }
    pub fn progs(&self) -> PathBuf {
        self.root.join("progs")
    }
    pub fn program(&self, name: &str) -> PathBuf {
        self.progs().join(name)
    }
    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }
}
