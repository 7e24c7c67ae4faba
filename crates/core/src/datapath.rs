//! Wiring an attachment into the kernel: node preparation and per-pod links.

use crate::{Attachment, AttachmentId, IpAssignment, NetworkResult, Result};
use async_trait::async_trait;

#[async_trait]
pub trait Datapath: Send + Sync {
    /// Makes the node ready for attachments (bridges, sysctls, masquerade). Idempotent,
    /// cheap when already done: it is called on the ADD path.
    async fn prepare_node(&self) -> Result<()>;
    /// Creates the pod's interface with `ips`. On error nothing it created is left.
    async fn setup(&self, att: &Attachment, ips: &[IpAssignment]) -> Result<NetworkResult>;
    /// Removes what `setup` created. Succeeds when it is already gone.
    async fn teardown(&self, att: &Attachment) -> Result<()>;
    /// Verifies that what `setup` created is still in place.
    async fn check(&self, att: &Attachment, ips: &[IpAssignment]) -> Result<()>;
    /// Removes host-side leftovers of every attachment not in `valid`.
    async fn collect_garbage(&self, valid: &[AttachmentId]) -> Result<usize>;
}
