//! What the agent needs to know about a pod beyond its name: the annotations that pin it
//! to a vSwitch or security group, and whether it keeps its IP across re-creation.
//!
//! Pods and namespaces come from a directory of manifests (single nodes and the lab) or
//! from the Kubernetes API (watched caches, see [`KubePods`]); both end up as [`PodInfo`].

use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use unicni_config::Config;
use unicni_store::Cache;

use crate::server::{NoPodInfo, PodLookup};

pub const ANN_VSWITCHES: &str = "unicni.io/vswitches";
pub const ANN_SECURITY_GROUPS: &str = "unicni.io/security-groups";
pub const ANN_FIXED_IP: &str = "unicni.io/fixed-ip";

/// The pod's network wishes, pod annotations first, then its namespace's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// vSwitches to take the address from, in order of preference; empty = the node's.
    pub vswitches: Vec<String>,
    /// Security groups of the ENI; empty = the config's.
    pub security_groups: Vec<String>,
    /// Keep the address for this namespace/name across re-creation.
    pub fixed_ip: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PodInfoError {
    #[error("reading pod manifests in {dir}: {reason}; fix or remove the file")]
    Manifest { dir: PathBuf, reason: String },
}

#[derive(Debug, Deserialize)]
struct Object {
    kind: Option<String>,
    #[serde(default)]
    metadata: Meta,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, rename = "ownerReferences")]
    owner_references: Vec<Owner>,
}

#[derive(Debug, Deserialize)]
struct Owner {
    kind: String,
}

fn list(v: Option<&String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// Combines a pod's and its namespace's annotations (the pod's win) and its owners.
pub fn resolve(
    pod: &BTreeMap<String, String>,
    namespace: &BTreeMap<String, String>,
    owner_kinds: &[String],
) -> PodInfo {
    let pick = |key: &str| {
        let own = list(pod.get(key));
        if own.is_empty() {
            list(namespace.get(key))
        } else {
            own
        }
    };
    let fixed_ann = pod
        .get(ANN_FIXED_IP)
        .or_else(|| namespace.get(ANN_FIXED_IP))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    PodInfo {
        vswitches: pick(ANN_VSWITCHES),
        security_groups: pick(ANN_SECURITY_GROUPS),
        fixed_ip: fixed_ann || owner_kinds.iter().any(|k| k == "StatefulSet"),
    }
}

/// Pod information read from a directory of YAML/JSON manifests (Pod and Namespace
/// objects, several per file allowed). Read on every lookup: the directory is small and
/// a pod's manifest is written just before its sandbox starts.
#[derive(Debug, Clone)]
pub struct ManifestDir {
    pub dir: PathBuf,
}

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn objects(&self) -> Result<Vec<Object>, PodInfoError> {
        let err = |reason: String| PodInfoError::Manifest {
            dir: self.dir.clone(),
            reason,
        };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(e.to_string())),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "yaml" | "yml" | "json") {
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Written and removed concurrently: skip it this time.
                Err(_) => continue,
            };
            for doc in serde_yaml::Deserializer::from_str(&text) {
                match Object::deserialize(doc) {
                    Ok(o) => out.push(o),
                    Err(e) => return Err(err(format!("{}: {e}", display(&path)))),
                }
            }
        }
        Ok(out)
    }

    /// The pod's info; a pod without a manifest gets the defaults.
    pub fn lookup(&self, namespace: &str, name: &str) -> Result<PodInfo, PodInfoError> {
        let objects = self.objects()?;
        let empty = BTreeMap::new();
        let ns_ann = objects
            .iter()
            .find(|o| {
                o.kind.as_deref() == Some("Namespace")
                    && o.metadata.name.as_deref() == Some(namespace)
            })
            .map(|o| &o.metadata.annotations)
            .unwrap_or(&empty);
        let pod = objects.iter().find(|o| {
            o.kind.as_deref().unwrap_or("Pod") == "Pod"
                && o.metadata.name.as_deref() == Some(name)
                && o.metadata.namespace.as_deref().unwrap_or("default") == namespace
        });
        Ok(match pod {
            Some(p) => {
                let owners: Vec<String> = p
                    .metadata
                    .owner_references
                    .iter()
                    .map(|o| o.kind.clone())
                    .collect();
                resolve(&p.metadata.annotations, ns_ann, &owners)
            }
            None => resolve(&empty, ns_ann, &[]),
        })
    }
}

/// How long an ADD waits for the watch to deliver its Pod before asking the API once.
pub const POD_WAIT: Duration = Duration::from_secs(2);

/// Pod and namespace annotations from the Kubernetes API, read from watched caches: the
/// Pods of this node (`spec.nodeName`) and every Namespace. At steady state an ADD costs the
/// API server nothing; only a pod the watch has not delivered within [`POD_WAIT`] costs one
/// GET.
pub struct KubePods {
    client: kube::Client,
    pods: Cache<Pod>,
    namespaces: Cache<Namespace>,
    wait: Duration,
    gets: AtomicU64,
}

impl KubePods {
    /// Starts the watches for `node`'s pods and the namespaces (tokio tasks).
    pub fn new(client: kube::Client, node: &str) -> KubePods {
        KubePods {
            pods: unicni_store::kube::pods_of_node(client.clone(), node),
            namespaces: unicni_store::kube::namespace_cache(client.clone()),
            client,
            wait: POD_WAIT,
            gets: AtomicU64::new(0),
        }
    }

    /// Another bound for the wait on a pod the watch has not delivered yet.
    pub fn with_wait(mut self, wait: Duration) -> KubePods {
        self.wait = wait;
        self
    }

    /// GETs made because a pod or namespace was not in the cache.
    pub fn fallback_gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }

    async fn pod(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Option<Arc<Pod>>, String> {
        // The pod of this very sandbox, not an earlier one of the same name (a StatefulSet
        // pod re-created) that the cache may still hold.
        let this = |p: &Arc<Pod>| uid.is_none_or(|u| p.metadata.uid.as_deref() == Some(u));
        // A CNI ADD can arrive before the watch has delivered the Pod it is for: the
        // scheduler's binding and the kubelet's sandbox race through the API server. So wait
        // on the cache, woken by every update the reflector applies, for at most
        // `self.wait`, and only then fall back to one GET (the pod may also live where the
        // watch cannot see it, e.g. a node name that differs from node.name).
        if let Some(p) = self
            .pods
            .wait_for(self.wait, |c| c.get(ns, name).filter(this))
            .await
        {
            return Ok(Some(p));
        }
        self.gets.fetch_add(1, Ordering::Relaxed);
        let api: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map(|p| p.map(Arc::new))
            .map_err(|e| format!("GET pod {ns}/{name}: {e}"))
    }

    async fn namespace(&self, ns: &str) -> Result<Option<Arc<Namespace>>, String> {
        if let Some(n) = self.namespaces.get("", ns) {
            return Ok(Some(n));
        }
        // A pod's namespace exists before the pod; absent here only while the cache
        // has not synced or the watch lags, which the GET covers.
        self.gets.fetch_add(1, Ordering::Relaxed);
        let api: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        api.get_opt(ns)
            .await
            .map(|n| n.map(Arc::new))
            .map_err(|e| format!("GET namespace {ns}: {e}"))
    }
}

#[async_trait::async_trait]
impl PodLookup for KubePods {
    async fn lookup(&self, pod: &unicni_core::PodRef) -> Result<PodInfo, String> {
        let (Some(ns), Some(name)) = (pod.namespace.as_deref(), pod.name.as_deref()) else {
            return Ok(PodInfo::default());
        };
        let (p, n) = tokio::join!(self.pod(ns, name, pod.uid.as_deref()), self.namespace(ns));
        let (p, n) = (p?, n?);
        let empty = BTreeMap::new();
        let ns_ann = n
            .as_ref()
            .and_then(|n| n.metadata.annotations.as_ref())
            .unwrap_or(&empty);
        let pod_ann = p
            .as_ref()
            .and_then(|p| p.metadata.annotations.as_ref())
            .unwrap_or(&empty);
        let owners: Vec<String> = p
            .as_ref()
            .and_then(|p| p.metadata.owner_references.as_ref())
            .map(|o| o.iter().map(|r| r.kind.clone()).collect())
            .unwrap_or_default();
        Ok(resolve(pod_ann, ns_ann, &owners))
    }

    fn synced(&self) -> Result<(), String> {
        for (synced, why) in [
            (self.pods.is_synced(), self.pods.not_synced()),
            (self.namespaces.is_synced(), self.namespaces.not_synced()),
        ] {
            if !synced {
                return Err(why);
            }
        }
        Ok(())
    }
}

/// Where the agent reads pod annotations: `terway.pod_info_dir` when set, else the
/// Kubernetes API (`store.kubeconfig` or in-cluster), else nowhere (said in the log).
pub async fn from_config(c: &Config, node: &str) -> unicni_core::Result<Arc<dyn PodLookup>> {
    Ok(match &c.terway.pod_info_dir {
        Some(dir) => Arc::new(ManifestDir::new(dir)),
        None if c.store.kubeconfig.is_some()
            || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
        {
            let kc = c.store.kubeconfig.as_deref().map(Path::new);
            Arc::new(KubePods::new(unicni_store::kube::client(kc).await?, node))
        }
        None => {
            tracing::warn!(
                "terway.pod_info_dir is unset and no Kubernetes API is configured: pod \
                 annotations (vSwitch, security group, fixed IP) are not read"
            );
            Arc::new(NoPodInfo)
        }
    })
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_annotations_win_and_statefulsets_are_fixed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ns.yaml"),
            "kind: Namespace\nmetadata:\n  name: db\n  annotations:\n    unicni.io/vswitches: vsw-ns\n    unicni.io/security-groups: sg-ns\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pods.yaml"),
            "kind: Pod\nmetadata:\n  name: web-0\n  namespace: db\n  annotations:\n    unicni.io/vswitches: \"vsw-b, vsw-c\"\n  ownerReferences:\n  - kind: StatefulSet\n    name: web\n---\nkind: Pod\nmetadata:\n  name: plain\n  namespace: other\n",
        )
        .unwrap();
        let m = ManifestDir::new(dir.path());
        let p = m.lookup("db", "web-0").unwrap();
        assert_eq!(p.vswitches, ["vsw-b", "vsw-c"]);
        assert_eq!(p.security_groups, ["sg-ns"]);
        assert!(p.fixed_ip);
        assert_eq!(m.lookup("other", "plain").unwrap(), PodInfo::default());
        assert_eq!(m.lookup("db", "absent").unwrap().vswitches, ["vsw-ns"]);
    }

    #[test]
    fn a_broken_manifest_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: [\n").unwrap();
        let e = ManifestDir::new(dir.path()).lookup("a", "b").unwrap_err();
        assert!(e.to_string().contains("bad.yaml"), "{e}");
    }
}
