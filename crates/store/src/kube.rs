//! The Kubernetes store, for clusters where the API server is the source of truth.
//!
//! Key-value records (the cluster lock) are ConfigMaps in one namespace: create-only is a
//! POST, which the API server refuses with 409 when the name exists; a record is never
//! updated in place. Node subnets are not stored here at all: they are the nodes'
//! `spec.podCIDR` (assigned by the controller manager), and per-node backend data (the
//! underlay address, the VTEP MAC) lives in node annotations, see [`KubeNodes`].

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::BTreeMap;
use std::path::Path;
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

    fn parse(n: &Node) -> NodeLease {
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
