//! NetworkPolicy enforcement on a node's endpoints: one eBPF engine
//! (`unicni-policy-agent`), started by the agent runtime and handed to the backend's node
//! agent ([`crate::node::NodeContext::policy`]).
//!
//! The engine follows its policy source (a manifest directory or the Kubernetes API) and
//! this node's pod links on its own; what a backend needs from it is where the programs
//! are (pods whose traffic never crosses a node-side link, such as terway's exclusive-ENI
//! pods, get them attached inside the pod) and whether it enforces yet.

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use std::path::Path;
use std::time::Duration;

/// What the engine has done, as numbers a backend or an operator can act on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyStatus {
    /// A policy snapshot has been applied since the engine started.
    pub synced: bool,
    /// NetworkPolicies in the last applied snapshot (the whole cluster's).
    pub policies: u64,
    /// This node's endpoint addresses in the policy maps.
    pub endpoints: u64,
    /// Node-side pod links carrying the programs.
    pub attached_links: u64,
    /// The last error of an update or an attachment; empty when the last update worked.
    pub last_error: String,
}

#[async_trait]
pub trait Policy: Send + Sync {
    /// The pin directory of the programs and maps: the pod-side programs for a pod's own
    /// interface are under its `policy/` subdirectory.
    fn pin_dir(&self) -> &Path;

    fn status(&self) -> PolicyStatus;

    /// Waits until the first snapshot is applied; false after `timeout`.
    async fn wait_synced(&self, timeout: Duration) -> bool;

    /// Registers the engine's metrics (its own numbers and the kernel's verdict counters,
    /// read at scrape time) into the agent's registry.
    fn register_metrics(&self, registry: &mut Registry);
}
