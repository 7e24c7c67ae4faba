//! Errors of the Service load balancer. The agent tells "eBPF cannot be used here" (run
//! without it, leave Services to kube-proxy) from other failures with
//! [`Error::is_unavailable`].

use std::path::PathBuf;
use unicni_bpf::BpfError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading, attaching or opening the programs and maps under the pin directory.
    #[error("eBPF Service load balancer at {}: {source}", pin_dir.display())]
    Datapath {
        pin_dir: PathBuf,
        #[source]
        source: BpfError,
    },

    /// Writing the Service table into the maps.
    #[error(
        "apply the Service table to the eBPF maps under {}: {source}; the next apply \
         re-reads the maps and retries",
        pin_dir.display()
    )]
    Apply {
        pin_dir: PathBuf,
        #[source]
        source: BpfError,
    },

    /// Registering or unregistering a pod's network namespace.
    #[error("Service load balancing for the pod network namespace {}: {source}", netns.display())]
    Pod {
        netns: PathBuf,
        #[source]
        source: BpfError,
    },

    /// More frontends or backends than ids (2^32 - 1): never in practice, but said.
    #[error(
        "no free {what} id left in the Service load balancer; the maps hold at most \
         131072 frontends and 524288 backends, reduce the number of Services"
    )]
    OutOfIds { what: &'static str },
}

impl Error {
    /// True when the agent has not loaded the load balancer under this pin directory
    /// ([`crate::Lb::open`] found no maps): Services are not enabled on the node, so the
    /// CNI plugin has no pod to register.
    pub fn is_not_loaded(&self) -> bool {
        matches!(
            self,
            Error::Datapath {
                source: BpfError::NotLoaded { .. },
                ..
            }
        )
    }

    /// True when eBPF cannot be used on this node at all (no bpffs, no privilege, verifier
    /// refusal): the caller should leave Services to kube-proxy instead of retrying.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Datapath { source, .. }
            | Error::Apply { source, .. }
            | Error::Pod { source, .. } => source.is_unavailable(),
            Error::OutOfIds { .. } => false,
        }
    }
}
