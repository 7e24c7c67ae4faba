//! The Kubernetes store, for clusters where the API server is the source of truth.
//!
//! Key-value records (the cluster lock) are ConfigMaps in one namespace: create-only is a
//! POST, which the API server refuses with 409 when the name exists; a record is never
//! updated in place. Node subnets are not stored here at all: they are the nodes'
//! `spec.podCIDR` (assigned by the controller manager), and per-node backend data (the
//! underlay address, the VTEP MAC) lives in node annotations, see [`KubeNodes`].
//!
//! What the agents read continuously (Nodes, the Pods of their node, Namespaces) they
//! read from a [`Cache`]: one watch per kind with bookmarks feeding a kube-rs reflector.
//! The watch resumes from the last version it saw (a bookmark keeps that version current
//! while nothing changes), so an agent lists a kind once at start and again only when the
//! API server answers 410 Gone (its history was compacted), which kube's watcher handles
//! itself. 5,000 agents polling 5,000 Nodes every few seconds would flatten an API server;
//! 5,000 idle watches cost it almost nothing.

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Config, Resource};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use unicni_core::{CreateOutcome, Error, Result, Store};

/// Annotation keys on Node objects.
pub const ANN_PUBLIC_IP: &str = "unicni.io/public-ip";
pub const ANN_VTEP_MAC: &str = "unicni.io/vtep-mac";
pub const ANN_MODE: &str = "unicni.io/backend-mode";
/// The node's underlay IPv6 address (dual-stack flannel host-gw: its IPv6 next hop).
pub const ANN_PUBLIC_IPV6: &str = "unicni.io/public-ipv6";

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(format!("kubernetes: {what}: {e}"))
}

/// A client from `kubeconfig`, or the in-cluster configuration when `None`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(p) => {
            let kc = Kubeconfig::read_from(p)
                .map_err(|e| err(&format!("read store.kubeconfig {}", p.display()), e))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| err(&format!("use store.kubeconfig {}", p.display()), e))?
        }
        None => Config::infer().await.map_err(|e| {
            err(
                "no in-cluster configuration (not running in a pod?); set store.kubeconfig",
                e,
            )
        })?,
    };
    Client::try_from(config).map_err(|e| err("create the client", e))
}

/// Records as ConfigMaps `unicni-<key with / as ->` in `namespace`, value under `data.value`.
#[derive(Clone)]
pub struct KubeStore {
    api: Api<ConfigMap>,
    namespace: String,
}

impl KubeStore {
    pub fn new(client: Client, namespace: &str) -> KubeStore {
        KubeStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
        }
    }

    fn name(key: &str) -> String {
        format!(
            "unicni-{}",
            key.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '.' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                })
                .collect::<String>()
        )
    }

    fn value(cm: &ConfigMap) -> Vec<u8> {
        cm.data
            .as_ref()
            .and_then(|d| d.get("value"))
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default()
    }

    fn object(key: &str, value: &[u8]) -> Result<ConfigMap> {
        let text =
            String::from_utf8(value.to_vec()).map_err(|_| err(key, "values must be UTF-8"))?;
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(Self::name(key));
        cm.metadata.labels = Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".into(),
            "unicni".into(),
        )]));
        cm.metadata.annotations = Some(BTreeMap::from([("unicni.io/key".into(), key.into())]));
        cm.data = Some(BTreeMap::from([("value".into(), text)]));
        // The lock must never change once written.
        cm.immutable = Some(true);
        Ok(cm)
    }
}

#[async_trait]
impl Store for KubeStore {
    fn describe(&self) -> String {
        format!("kubernetes ConfigMaps in namespace {}", self.namespace)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.api
            .get_opt(&Self::name(key))
            .await
            .map(|o| o.as_ref().map(Self::value))
            .map_err(|e| err(&format!("get ConfigMap {}", Self::name(key)), e))
    }

    async fn create(&self, key: &str, value: &[u8]) -> Result<CreateOutcome> {
        match self
            .api
            .create(&PostParams::default(), &Self::object(key, value)?)
            .await
        {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(CreateOutcome::Exists(
                self.get(key).await?.unwrap_or_default(),
            )),
            Err(e) => Err(err(&format!("create ConfigMap {}", Self::name(key)), e)),
        }
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        // Immutable objects are replaced, not edited.
        self.delete(key).await?;
        match self.create(key, value).await? {
            CreateOutcome::Created => Ok(()),
            CreateOutcome::Exists(_) => {
                Err(err(key, "replaced concurrently by another writer; retry"))
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.api.delete(&Self::name(key), &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(err(&format!("delete ConfigMap {}", Self::name(key)), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=unicni");
        let list = self
            .api
            .list(&lp)
            .await
            .map_err(|e| err("list ConfigMaps", e))?;
        let mut out: Vec<(String, Vec<u8>)> = list
            .items
            .iter()
            .filter_map(|cm| {
                let key = cm
                    .metadata
                    .annotations
                    .as_ref()?
                    .get("unicni.io/key")?
                    .clone();
                key.starts_with(prefix).then(|| (key, Self::value(cm)))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// One node as the flannel agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLease {
    pub node: String,
    pub pod_cidr: Option<String>,
    /// The IPv6 entry of `spec.podCIDRs` (dual-stack clusters).
    pub ipv6_pod_cidr: Option<String>,
    pub public_ip: Option<String>,
    pub public_ipv6: Option<String>,
    pub vtep_mac: Option<String>,
    pub mode: Option<String>,
}

/// The nodes' `spec.podCIDR` and unicni annotations.
pub struct KubeNodes {
    api: Api<Node>,
}

impl KubeNodes {
    pub fn new(client: Client) -> KubeNodes {
        KubeNodes {
            api: Api::all(client),
        }
    }

    /// The lease view of one Node object.
    pub fn parse(n: &Node) -> NodeLease {
        let ann = n.metadata.annotations.clone().unwrap_or_default();
        let internal_ip = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| {
                a.iter()
                    .find(|a| a.type_ == "InternalIP" && !a.address.contains(':'))
                    .map(|a| a.address.clone())
            });
        NodeLease {
            node: n.metadata.name.clone().unwrap_or_default(),
            pod_cidr: n.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
            ipv6_pod_cidr: n
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidrs.as_ref())
                .and_then(|c| c.iter().find(|c| c.contains(':')).cloned()),
            public_ip: ann.get(ANN_PUBLIC_IP).cloned().or(internal_ip),
            public_ipv6: ann.get(ANN_PUBLIC_IPV6).cloned(),
            vtep_mac: ann.get(ANN_VTEP_MAC).cloned(),
            mode: ann.get(ANN_MODE).cloned(),
        }
    }

    pub async fn list(&self) -> Result<Vec<NodeLease>> {
        let list = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| err("list nodes", e))?;
        Ok(list.items.iter().map(Self::parse).collect())
    }

    pub async fn get(&self, node: &str) -> Result<NodeLease> {
        match self.api.get_opt(node).await {
            Ok(Some(n)) => Ok(Self::parse(&n)),
            Ok(None) => Err(Error::Store(format!(
                "kubernetes: node {node:?} does not exist; set node.name to this node's Kubernetes name"
            ))),
            Err(e) => Err(err(&format!("get node {node}"), e)),
        }
    }

    /// Writes this node's backend data as annotations (a merge patch touches nothing else).
    pub async fn annotate(
        &self,
        node: &str,
        public_ip: &str,
        vtep_mac: Option<&str>,
        mode: &str,
    ) -> Result<()> {
        let patch = serde_json::json!({"metadata": {"annotations": {
            ANN_PUBLIC_IP: public_ip,
            ANN_VTEP_MAC: vtep_mac,
            ANN_MODE: mode,
        }}});
        self.api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| err(&format!("annotate node {node}"), e))
    }

    /// Writes this node's underlay IPv6 address (dual stack) beside the other annotations.
    pub async fn annotate_ipv6(&self, node: &str, public_ipv6: &str) -> Result<()> {
        let patch = serde_json::json!({"metadata": {"annotations": {
            ANN_PUBLIC_IPV6: public_ipv6,
        }}});
        self.api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| err(&format!("annotate node {node}"), e))
    }
}

impl NodeLease {
    /// Whether `n` carries exactly these unicni annotations (a missing VTEP MAC is an
    /// absent annotation): the agent writes its node only when this is false. The raw
    /// annotations are compared, not [`KubeNodes::parse`]'s view, which falls back to the
    /// InternalIP when the annotation is missing.
    pub fn annotated(n: &Node, public_ip: &str, vtep_mac: Option<&str>, mode: &str) -> bool {
        let ann = n.metadata.annotations.as_ref();
        let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
        get(ANN_PUBLIC_IP) == Some(public_ip)
            && get(ANN_VTEP_MAC) == vtep_mac
            && get(ANN_MODE) == Some(mode)
    }
}

/// Aborts the reflector's task when the last handle on its cache goes.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    what: String,
    synced: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// One kind watched into memory: a kube-rs watcher (bookmarks on, the default of
/// `watcher::Config`) feeding a reflector store, run by a tokio task that lives as long as
/// a handle does. Every change bumps a counter that [`Cache::changes`] receivers wake on.
/// Cheap to clone (every clone is the same cache).
pub struct Cache<K: Resource<DynamicType = ()> + 'static> {
    store: reflector::Store<K>,
    changes: watch::Receiver<u64>,
    shared: Arc<Shared>,
    _task: Arc<AbortOnDrop>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            store: self.store.clone(),
            changes: self.changes.clone(),
            shared: self.shared.clone(),
            _task: self._task.clone(),
        }
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// Starts watching `api` (selectors in `config`) on the current tokio runtime.
    /// `trim` runs on every object before it is stored: what the agent never reads need
    /// not sit in memory 5,000 times over. `what` names the cache in logs and errors.
    pub fn start(
        api: Api<K>,
        config: watcher::Config,
        what: impl Into<String>,
        trim: fn(&mut K),
    ) -> Cache<K> {
        let (store, writer) = reflector::store();
        let (tx, changes) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            what: what.into(),
            synced: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let stream = watcher(api, config)
            .default_backoff()
            .modify(trim)
            .reflect(writer);
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    // The end of a (re-)list: the store now holds exactly the listed
                    // objects, so objects deleted while the watch was down are gone too.
                    Ok(watcher::Event::InitDone) => {
                        state.synced.store(true, Ordering::Release);
                        *state.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        tx.send_modify(|n| *n += 1);
                    }
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                        tx.send_modify(|n| *n += 1)
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Err(e) => {
                        tracing::warn!("watch {}: {e}; retrying", state.what);
                        *state.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.to_string());
                    }
                }
            }
        });
        Cache {
            store,
            changes,
            shared,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        }
    }

    /// True once the first list has been read (and from then on: a re-list after 410
    /// swaps the store's contents in one step).
    pub fn is_synced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    /// Waits up to `max` for the first list; says why not (the watcher's last error).
    pub async fn wait_synced(&self, max: Duration) -> Result<()> {
        let mut rx = self.changes.clone();
        let deadline = tokio::time::Instant::now() + max;
        while !self.is_synced() {
            // Timed out, or the reflector's task is gone.
            if !matches!(
                tokio::time::timeout_at(deadline, rx.changed()).await,
                Ok(Ok(()))
            ) {
                return Err(Error::Unavailable(self.not_synced()));
            }
        }
        Ok(())
    }

    /// Why the cache is not synced yet, for readiness and errors.
    pub fn not_synced(&self) -> String {
        let last = self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        format!(
            "the {} cache has not synced with the Kubernetes API yet{}",
            self.shared.what,
            last.map(|e| format!(" (last error: {e}); check that the API server is reachable and the agent's RBAC allows list and watch"))
                .unwrap_or_default()
        )
    }

    /// Every cached object.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// One object by namespace (empty for cluster-scoped kinds) and name.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let key = ObjectRef::new(name);
        let key = if namespace.is_empty() {
            key
        } else {
            key.within(namespace)
        };
        self.store.get(&key)
    }

    /// A receiver that wakes on every change after this call.
    pub fn changes(&self) -> watch::Receiver<u64> {
        let mut rx = self.changes.clone();
        rx.borrow_and_update();
        rx
    }

    /// Waits up to `max` until `find` finds something in the cache, checking again on
    /// every change the watch delivers (no polling, no request).
    pub async fn wait_for<T>(&self, max: Duration, find: impl Fn(&Self) -> Option<T>) -> Option<T> {
        let mut rx = self.changes();
        let deadline = tokio::time::Instant::now() + max;
        loop {
            // Marked seen before looking: a change between the look and the wait wakes it.
            rx.borrow_and_update();
            if let Some(t) = find(self) {
                return Some(t);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // The reflector's task is gone: nothing will change any more.
                Ok(Err(_)) | Err(_) => return find(self),
            }
        }
    }
}

/// Drops what no agent reads: managed fields on every kind (often the larger half of an
/// object).
fn trim_meta<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// Every agent holds every Node, so the cache keeps only what the lease view reads
/// ([`KubeNodes::parse`], [`NodeLease::annotated`]): the name, `spec.podCIDR(s)`, the
/// addresses and the unicni annotations. Labels, conditions, capacity and the image list
/// (hundreds of entries on a busy node) are dropped; a reader of other Node fields must
/// keep them here first.
fn trim_node(n: &mut Node) {
    let m = &mut n.metadata;
    m.managed_fields = None;
    m.labels = None;
    m.owner_references = None;
    if let Some(a) = m.annotations.as_mut() {
        a.retain(|k, _| k.starts_with("unicni.io/"));
    }
    if let Some(spec) = n.spec.as_mut() {
        *spec = k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: spec.pod_cidr.take(),
            pod_cidrs: spec.pod_cidrs.take(),
            ..Default::default()
        };
    }
    if let Some(status) = n.status.as_mut() {
        *status = k8s_openapi::api::core::v1::NodeStatus {
            addresses: status.addresses.take(),
            ..Default::default()
        };
    }
}

/// Every Node: flannel's peers and leases.
pub fn node_cache(client: Client) -> Cache<Node> {
    Cache::start(
        Api::all(client),
        watcher::Config::default(),
        "Node",
        trim_node,
    )
}

/// The Pods scheduled to `node` (`fieldSelector=spec.nodeName=<node>`): an agent needs
/// its own pods only, and the API server filters the watch for it.
pub fn pods_of_node(client: Client, node: &str) -> Cache<Pod> {
    Cache::start(
        Api::all(client),
        watcher::Config::default().fields(&format!("spec.nodeName={node}")),
        format!("Pod (node {node})"),
        trim_meta::<Pod>,
    )
}

/// Every Namespace (their annotations are pods' defaults).
pub fn namespace_cache(client: Client) -> Cache<Namespace> {
    Cache::start(
        Api::all(client),
        watcher::Config::default(),
        "Namespace",
        trim_meta::<Namespace>,
    )
}
