//! The pod datapaths of the terway backend (the plugin side) and the ENI links they
//! route through (the agent side).

use crate::proto::{EniInfo, PodNetwork};
use unicni_core::{Attachment, AttachmentId, Error, NetworkResult, Result};

/// An ENI's link on the node, found by its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniLink {
    pub name: String,
    pub ifindex: u32,
}

/// Wires the pod: a veth with policy routing (shared) or the whole ENI (exclusive).
pub async fn setup(_att: &Attachment, _net: &PodNetwork) -> Result<NetworkResult> {
    Err(Error::Kernel("terway datapath not built yet".into()))
}

/// Removes what `setup` made; idempotent, and works without `net` (agent down).
pub async fn teardown(_att: &Attachment, _net: Option<&PodNetwork>) -> Result<()> {
    Ok(())
}

pub async fn check(_att: &Attachment, _net: &PodNetwork) -> Result<()> {
    Ok(())
}

/// Removes host veths of attachments not in `valid`.
pub async fn collect_garbage(_valid: &[AttachmentId]) -> Result<usize> {
    Ok(0)
}

/// Node-wide settings: forwarding (IPv4, and IPv6 when `dual`).
pub async fn prepare_node(_dual: bool) -> Result<()> {
    Ok(())
}

/// The ENI's link, when present on the node (the current namespace).
pub async fn find_eni_link(_mac: &str) -> Result<Option<EniLink>> {
    Ok(None)
}

/// Brings the ENI's link up and gives it its routing table (shared mode).
pub async fn prepare_eni(_eni: &EniInfo, _shared: bool) -> Result<EniLink> {
    Err(Error::Kernel("terway datapath not built yet".into()))
}
