//! Where things are pinned under the pin directory (default /sys/fs/bpf/unicni):
//!
//! ```text
//! <pin>/maps/endpoints, fastpath_stats, fastpath_links   maps (pinned by name by aya)
//! <pin>/progs/uc_fastpath                                the loaded program
//! <pin>/links/tcx_ingress_<ifindex>                      one tcx link per attached veth
//! ```
//!
//! Netlink (clsact) filters cannot be pinned; the kernel keeps them on the interface by
//! itself, and `fastpath_links` records where they are.

use std::path::{Path, PathBuf};

pub const PROGRAM: &str = "uc_fastpath";

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
    pub fn program(&self) -> PathBuf {
        self.progs().join(PROGRAM)
    }
    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }
    pub fn tcx_link(&self, ifindex: u32) -> PathBuf {
        self.links().join(format!("tcx_ingress_{ifindex}"))
    }
    /// The ifindex of a tcx link pin file name, if it is one.
    pub fn tcx_link_ifindex(file_name: &str) -> Option<u32> {
        file_name.strip_prefix("tcx_ingress_")?.parse().ok()
    }
}
