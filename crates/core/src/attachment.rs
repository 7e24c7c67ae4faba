//! What a pod network attachment is: the (container, interface) pair the runtime names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The key of an attachment, as CNI defines it: container ID plus interface name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentId {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentId {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Self {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

impl fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// The Kubernetes identity of the pod, when the runtime passed it in `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
}

/// One attachment request: the key, the network namespace (absent on some DELs) and the pod.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: AttachmentId,
    pub netns: Option<PathBuf>,
    pub pod: PodRef,
}
