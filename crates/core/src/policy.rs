//! Network policy enforcement on a node's endpoints.

use crate::Result;
use async_trait::async_trait;

#[async_trait]
pub trait Policy: Send + Sync {
    /// Replaces the enforced policy set with `policies` (Kubernetes NetworkPolicy objects
    /// as JSON values, so the core does not pin a Kubernetes API version).
    async fn enforce(&self, policies: &[serde_json::Value]) -> Result<()>;
}
