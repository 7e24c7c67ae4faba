//! The install half of a backend, and the module that hands out both halves.
//!
//! `unicni install` asks a backend for its admission checks (can this node host the
//! configured mode at all), then, once the cluster lock is checked, for the entry it wants
//! in the conflist; `unicni uninstall` asks it to remove everything it put on the node.
//! A [`BackendModule`] is what the binary's one factory chooses by kind: from it come the
//! plugin half (from a conflist entry), the install half and the node half (from a
//! validated config).

use crate::{Backend, NodeAgent, Result, Store};
use async_trait::async_trait;
use std::sync::Arc;
use unicni_config::Config;

/// What a backend contributes to the conflist.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflistEntry {
    /// `plugins[0]`: the unicni plugin's configuration for this backend.
    pub plugin: serde_json::Value,
    /// One line for the operator: what the entry was made from (subnet, MTU, socket).
    pub summary: String,
}

/// What `uninstall` may do beyond the node itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UninstallOptions {
    /// Also delete the node's local IPAM / allocation state (pods must be gone).
    pub purge: bool,
    /// Also give the node's cloud resources (secondary ENIs and their addresses) back.
    pub release_cloud: bool,
}

/// One kind of Kubernetes API access a backend's node roles make (an RBAC rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAccess {
    /// The API group (`""` for the core group).
    pub group: &'static str,
    /// The resource (`"nodes"`, `"pods"`).
    pub resource: &'static str,
    /// Exactly the verbs the code calls.
    pub verbs: Vec<&'static str>,
    /// Which code makes the calls: the manifests' header says so for each rule.
    pub why: &'static str,
}

/// A host directory a backend's node agent needs in its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPathNeed {
    /// The volume's name in the pod spec.
    pub name: &'static str,
    /// The path on the host (also the mount path in the container).
    pub path: String,
    /// Mounts made on the host after the container started must show inside it (network
    /// namespaces the runtime creates for new pods).
    pub follow_host_mounts: bool,
    pub why: &'static str,
}

/// What a backend's node roles need when they run as a DaemonSet: the manifests
/// (`unicni manifests`) grant this and no more, on top of what every backend needs (the
/// store, the CNI directories, the node's state and run directories, policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployNeeds {
    pub api: Vec<ApiAccess>,
    pub host_paths: Vec<HostPathNeed>,
    /// The node roles call the cloud API (credentials: a Secret or the instance's RAM role).
    pub cloud: bool,
    /// The node roles load eBPF programs and pin them under `bpf.pin_dir`.
    pub ebpf: bool,
}

#[async_trait]
pub trait Install: Send + Sync {
    /// What this backend's node roles read and write in the cluster and on the host, for
    /// the DaemonSet's RBAC and volumes. Pure: computed from the config alone.
    fn deploy_needs(&self) -> DeployNeeds;
    /// Refuses a node that cannot host the configured mode or stack. Runs before the
    /// cluster lock, so that such a node never creates the cluster.
    async fn admit(&self) -> Result<()>;
    /// The conflist entry, once the lock is checked. `store` is the cluster store (a
    /// backend may take a lease there); `with_agent` says a node agent runs on this node
    /// and provides what the entry would otherwise carry (flannel's subnet).
    async fn entry(&self, store: &dyn Store, with_agent: bool) -> Result<ConflistEntry>;
    /// Removes everything this backend put on the node (links, routes, rules, tables,
    /// nftables, eBPF pins, sockets, state). Idempotent: a clean node is success. Returns
    /// one line per thing removed.
    async fn uninstall(&self, opts: UninstallOptions) -> Result<Vec<String>>;
}

/// One backend kind: the factory's unit of choice.
#[async_trait]
pub trait BackendModule: Send + Sync {
    /// The kind as configs and conflists spell it (`"flannel"`).
    fn kind(&self) -> &'static str;
    /// The plugin half for one CNI invocation, from the conflist entry (`plugins[i]`) of
    /// network `network_name`.
    fn plugin(&self, entry: &serde_json::Value, network_name: &str) -> Result<Box<dyn Backend>>;
    /// The install half for a validated config.
    fn installer(&self, config: &Config) -> Box<dyn Install>;
    /// The node half: the agent this backend runs on node `node`. Backends that talk to
    /// the cloud connect here, before the agent touches the cluster's store.
    async fn node(&self, config: &Config, node: &str) -> Result<Arc<dyn NodeAgent>>;
}
