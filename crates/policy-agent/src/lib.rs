//! NetworkPolicy enforcement in the node agent, for both backends (`policy.enabled`).
//!
//! - [`source`]: where policies, pods and namespaces come from: a watched directory of
//!   manifests (the lab, a single node) or the Kubernetes API (kube-rs watchers);
//! - [`state`]: the compiled policies of this node's pods (`unicni-policy`) as the contents
//!   of the eBPF maps, and the incremental, ordered update between two contents;
//! - `kernel`: which of the node's links are pod veths and uplinks, and its addresses
//!   (read through unicni-net, with its change notifications);
//! - [`engine`]: the task tying them together: it loads or adopts the pinned policy
//!   datapath (`unicni_bpf::PolicyDatapath`), attaches the programs to every pod veth the
//!   kernel reports, and applies each new snapshot within milliseconds. It never flushes
//!   conntrack, and stopping it leaves everything enforcing as it was.
//!
//! - [`metrics`]: `unicni_policy_*` for the agent's registry.
//!
//! See docs/policy.md ("Enforcement").

pub mod engine;
mod kernel;
pub mod metrics;
pub mod source;
pub mod state;

pub use engine::{Engine, EngineConfig, Status};
pub use source::{KubeSource, ManifestSource, Source};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bpf(#[from] unicni_bpf::BpfError),
    #[error(transparent)]
    Policy(#[from] unicni_policy::Error),
    #[error("netlink: {0}")]
    Netlink(#[from] unicni_net::NetError),
    #[error("policy source: {0}")]
    Source(String),
}

impl Error {
    /// True when eBPF cannot be used on this node at all.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Bpf(e) if e.is_unavailable())
    }
}
