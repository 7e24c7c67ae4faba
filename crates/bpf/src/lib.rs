//! unicni's eBPF programs and their loader.
//!
//! The programs are C under `bpf/` at the workspace root, compiled by clang in `build.rs`
//! and embedded here; aya loads them. Everything is pinned under a bpffs directory
//! (default [`DEFAULT_PIN_DIR`]) so traffic keeps flowing while the agent restarts, and a
//! restarted agent adopts what it finds ([`FastPath::load_or_adopt`]). [`remove_all`] takes
//! it all away again. When BPF cannot be used on the node, errors say so
//! ([`BpfError::is_unavailable`]) so the caller can fall back to the plain datapath.
//!
//! Programs: the flannel same-node fast path ([`FastPath`]) and the terway shared-ENI
//! fast path ([`TerwayFastPath`]); see `docs/ebpf.md`. [`policy`] is
//! NetworkPolicy enforcement (`bpf/policy.c`, docs/policy.md). [`services`] is the
//! socket-level ClusterIP load balancer (`bpf/services.c`, docs/services.md).

mod addr;
mod attach;
mod bpffs;
mod cleanup;
mod counters;
mod error;
mod fastpath;
mod iface;
mod layout;
mod maps;
mod objects;
pub mod policy;
mod progset;
pub mod services;
mod tc;
mod terway;

pub use bpffs::{is_bpffs, BPFFS_ROOT};
pub use cleanup::{remove_all, uninstall, ReconcileReport};
pub use error::{BpfError, Result};
pub use fastpath::{AttachMode, Attachment, Endpoint, FastPath, Stats, DEFAULT_PIN_DIR};
pub use layout::PROGRAM as FASTPATH_PROGRAM;
pub use policy::{PolicyDatapath, PolicyStats};
pub use terway::{
    TerwayFastPath, TerwayPod, TerwayStats, PROGRAM_ENI as TERWAY_ENI_PROGRAM,
    PROGRAM_POD as TERWAY_POD_PROGRAM,
};

/// For tests only: embedded objects and the raw loader.
#[doc(hidden)]
pub mod testing {
    pub use crate::fastpath::load_object;
    pub use crate::objects::{
        FASTPATH, FASTPATH_V3, POLICY, POLICY_V3, REJECT, SERVICES, SERVICES_V3, TERWAY, TERWAY_V3,
    };
}
