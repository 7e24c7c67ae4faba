//! Address management for attachments.

use crate::{Attachment, AttachmentId, Result};
use async_trait::async_trait;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// An address handed to one attachment, with the gateway pods should use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAssignment {
    /// Address with the prefix length the pod interface gets.
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// One reservation as stored: which attachment holds which address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub address: IpAddr,
    pub id: AttachmentId,
}

#[async_trait]
pub trait Ipam: Send + Sync {
    /// Reserves addresses for `att`. Reserving again for the same id returns the same
    /// addresses, so a retried ADD does not leak. The whole attachment is given because
    /// an allocator may need the pod's identity (fixed IPs, per-pod vSwitch) and its
    /// namespace (to notice a pod that vanished without DEL).
    async fn allocate(&self, att: &Attachment) -> Result<Vec<IpAssignment>>;
    /// The addresses `id` holds now, without reserving anything; empty when none.
    async fn held(&self, id: &AttachmentId) -> Result<Vec<IpAssignment>>;
    /// Releases whatever `id` holds; releasing nothing is success.
    async fn release(&self, id: &AttachmentId) -> Result<()>;
    /// Every reservation currently held (one entry per address: a dual-stack attachment
    /// appears twice).
    async fn list(&self) -> Result<Vec<Allocation>>;
    /// Removes leftovers that belong to no reservation (half-written state of a crashed
    /// ADD). Called by GC after releasing stale reservations; returns how many it removed.
    async fn collect_garbage(&self) -> Result<usize> {
        Ok(0)
    }
}
