//! Where Services and EndpointSlices come from: a watched directory of manifests, or the
//! Kubernetes API (one [`unicni_store::kube::Cache`] per kind). Both hand the load balancer
//! whole [`Objects`] sets when something changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::Deserialize;
use unicni_store::kube::Cache;

/// Every Service and EndpointSlice the load balancer is to serve, in a stable order
/// (namespace, name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
}

impl Objects {
    fn sort(&mut self) {
        let key = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            (m.namespace.clone(), m.name.clone())
        };
        self.services.sort_by_key(|s| key(&s.metadata));
        self.slices.sort_by_key(|s| key(&s.metadata));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("read services.manifests_dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file}, document {document}: {what}; fix the manifest (the load balancer keeps \
         serving the last good set meanwhile)"
    )]
    Manifest {
        file: PathBuf,
        document: usize,
        what: String,
    },
    #[error("{object} is defined twice: in {first} and in {second}; keep one of them")]
    Duplicate {
        object: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("the Kubernetes watchers stopped: {0}")]
    Watch(String),
}

/// A source of [`Objects`].
pub enum Source {
    Manifests(ManifestSource),
    Kubernetes(KubeSource),
}

impl Source {
    /// Waits for the next set: the first one as soon as there is one (the Kubernetes
    /// source: once both kinds are listed), then one per change, bursts settled.
    pub async fn next(&mut self) -> Result<Objects, SourceError> {
        match self {
            Source::Manifests(m) => m.next().await,
            Source::Kubernetes(k) => k.next().await,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Manifests(m) => format!("manifests in {}", m.dir.display()),
            Source::Kubernetes(_) => "the Kubernetes API".into(),
        }
    }

    /// Why the first set has not come yet (the Kubernetes source), for `/readyz`.
    pub fn not_synced(&self) -> Option<String> {
        match self {
            Source::Manifests(_) => None,
            Source::Kubernetes(k) => {
                if !k.services.is_synced() {
                    Some(k.services.not_synced())
                } else if !k.slices.is_synced() {
                    Some(k.slices.not_synced())
                } else {
                    None
                }
            }
        }
    }
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// A directory of manifests, polled like the policy source's: names, sizes and
/// modification times compared every `poll`; a difference reloads the whole directory.
/// Polling also sees a ConfigMap mount swapping its `..data` symlink.
pub struct ManifestSource {
    dir: PathBuf,
    poll: Duration,
    last: Option<Fingerprint>,
}

impl ManifestSource {
    pub fn new(dir: impl Into<PathBuf>, poll: Duration) -> ManifestSource {
        ManifestSource {
            dir: dir.into(),
            poll,
            last: None,
        }
    }

    fn fingerprint(dir: &Path) -> Fingerprint {
        let Ok(files) = manifest_files(dir) else {
            return Vec::new();
        };
        files
            .into_iter()
            .map(|f| {
                let md = std::fs::metadata(&f).ok();
                let len = md.as_ref().map(|m| m.len()).unwrap_or(0);
                (f, len, md.and_then(|m| m.modified().ok()))
            })
            .collect()
    }

    async fn next(&mut self) -> Result<Objects, SourceError> {
        loop {
            let now = Self::fingerprint(&self.dir);
            if self.last.as_ref() != Some(&now) {
                let dir = self.dir.clone();
                let loaded = tokio::task::spawn_blocking(move || load_dir(&dir))
                    .await
                    .map_err(|e| SourceError::Watch(format!("manifest loader: {e}")))?;
                // Marked seen only now: a caller that drops this future while the
                // directory is read gets the change on its next call.
                self.last = Some(now);
                return loaded;
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// The manifest files of `dir` in the order they are read: `*.yaml`, `*.yml` and `*.json`
/// directly in it, hidden ones (a ConfigMap mount's `..data`) skipped.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    unicni_fsutil::manifest_files(dir).map_err(|source| SourceError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Every Service (`v1`) and EndpointSlice (`discovery.k8s.io/v1`) in the manifests of
/// `dir`; other kinds are skipped (the directory may be shared with other manifests).
pub fn load_dir(dir: &Path) -> Result<Objects, SourceError> {
    let mut loader = Loader::default();
    for file in manifest_files(dir)? {
        let text = std::fs::read_to_string(&file).map_err(|source| SourceError::Io {
            path: file.clone(),
            source,
        })?;
        loader.add(&file, &text)?;
    }
    loader.objects.sort();
    Ok(loader.objects)
}

/// The objects in `text` as if it were the only file, `file`, of a directory.
pub fn load_str(file: &Path, text: &str) -> Result<Objects, SourceError> {
    let mut loader = Loader::default();
    loader.add(file, text)?;
    loader.objects.sort();
    Ok(loader.objects)
}

#[derive(Default)]
struct Loader {
    objects: Objects,
    defined: HashMap<String, PathBuf>,
}

impl Loader {
    fn add(&mut self, file: &Path, text: &str) -> Result<(), SourceError> {
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let bad = |what: String| SourceError::Manifest {
                file: file.to_owned(),
                document: i + 1,
                what,
            };
            let value = serde_yaml::Value::deserialize(document).map_err(|e| bad(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            let api = value
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or("");
            let want = match kind {
                "Service" => "v1",
                "EndpointSlice" => "discovery.k8s.io/v1",
                "" => return Err(bad("the object has no kind".into())),
                _ => continue,
            };
            if api != want {
                return Err(bad(format!(
                    "{kind}: apiVersion {api:?} is not {want:?} (the version served)"
                )));
            }
            let meta = |k: &str| {
                value
                    .get("metadata")
                    .and_then(|m| m.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let Some(name) = meta("name") else {
                return Err(bad(format!("{kind}: metadata.name is missing")));
            };
            let namespace = meta("namespace").unwrap_or_else(|| "default".into());
            let object = format!("{kind} {namespace}/{name}");
            if let Some(first) = self.defined.get(&object) {
                return Err(SourceError::Duplicate {
                    object,
                    first: first.clone(),
                    second: file.to_owned(),
                });
            }
            let shape = |e: serde_yaml::Error| bad(format!("{object}: {e}"));
            match kind {
                "Service" => {
                    let mut s: Service = serde_yaml::from_value(value.clone()).map_err(shape)?;
                    s.metadata.namespace = Some(namespace);
                    self.objects.services.push(s);
                }
                _ => {
                    let mut s: EndpointSlice =
                        serde_yaml::from_value(value.clone()).map_err(shape)?;
                    s.metadata.namespace = Some(namespace);
                    self.objects.slices.push(s);
                }
            }
            self.defined.insert(object, file.to_owned());
        }
        Ok(())
    }
}

/// The Kubernetes API: every Service and EndpointSlice of the cluster, each kind watched
/// into a [`Cache`]; a change of either wakes the load balancer after `settle`.
pub struct KubeSource {
    services: Cache<Service>,
    slices: Cache<EndpointSlice>,
    /// Held across calls: a change while the last set was being applied still wakes the
    /// next call.
    services_changed: tokio::sync::watch::Receiver<u64>,
    slices_changed: tokio::sync::watch::Receiver<u64>,
    settle: Duration,
    first: bool,
}

/// What the load balancer never reads.
fn trim<K: kube::Resource>(o: &mut K) {
    let m = o.meta_mut();
    m.managed_fields = None;
    m.annotations = None;
}

impl KubeSource {
    /// Starts the watchers on the current tokio runtime; they retry with backoff while the
    /// API server is unreachable (or the RBAC refuses them: the reason is in `/readyz`).
    pub fn start(client: Client, settle: Duration) -> KubeSource {
        let services = Cache::start(
            Api::all(client.clone()),
            watcher::Config::default(),
            "Service",
            trim::<Service>,
        );
        let slices = Cache::start(
            Api::all(client),
            watcher::Config::default(),
            "EndpointSlice",
            trim::<EndpointSlice>,
        );
        KubeSource {
            services_changed: services.changes(),
            slices_changed: slices.changes(),
            services,
            slices,
            settle,
            first: true,
        }
    }

    async fn next(&mut self) -> Result<Objects, SourceError> {
        let (a, b) = (&mut self.services_changed, &mut self.slices_changed);
        if self.first {
            // Nothing is served from a half-listed cluster.
            loop {
                if self.services.is_synced() && self.slices.is_synced() {
                    break;
                }
                tokio::select! {
                    r = a.changed() => r.map_err(|_| SourceError::Watch("Service".into()))?,
                    r = b.changed() => r.map_err(|_| SourceError::Watch("EndpointSlice".into()))?,
                }
            }
            self.first = false;
        } else {
            tokio::select! {
                r = a.changed() => r.map_err(|_| SourceError::Watch("Service".into()))?,
                r = b.changed() => r.map_err(|_| SourceError::Watch("EndpointSlice".into()))?,
            }
            // A scale-up or a rollout changes many slices at once: one table for the burst.
            tokio::time::sleep(self.settle).await;
        }
        // Seen before the stores are read: what changes after wakes the next call.
        a.borrow_and_update();
        b.borrow_and_update();
        let mut o = Objects {
            services: self
                .services
                .state()
                .iter()
                .map(|s| (**s).clone())
                .collect(),
            slices: self.slices.state().iter().map(|s| (**s).clone()).collect(),
        };
        o.sort();
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
        spec:\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]\n";
    const SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
        metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}\n\
        addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\n\
        endpoints:\n- addresses: [10.244.1.5]\n  conditions: {ready: true}\n";

    #[test]
    fn reads_services_and_slices_across_documents_and_skips_other_kinds() {
        let text = format!(
            "{SVC}---\n# nothing\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\n---\n{SLICE}"
        );
        let o = load_str(Path::new("a.yaml"), &text).unwrap();
        assert_eq!(o.services.len(), 1);
        assert_eq!(o.slices.len(), 1);
        let s = &o.services[0];
        assert_eq!(s.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            s.spec.as_ref().unwrap().cluster_ip.as_deref(),
            Some("10.96.0.10")
        );
        let e = &o.slices[0];
        assert_eq!(e.address_type, "IPv4");
        assert_eq!(e.endpoints[0].addresses, ["10.244.1.5"]);
        assert_eq!(
            e.endpoints[0].conditions.as_ref().unwrap().ready,
            Some(true)
        );
    }

    #[test]
    fn json_files_and_the_default_namespace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.json"),
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"dns"},
               "spec":{"clusterIP":"10.96.0.53","ports":[{"port":53,"protocol":"UDP"}]}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("a.yaml"), SLICE).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let o = load_dir(dir.path()).unwrap();
        assert_eq!(o.services[0].metadata.namespace.as_deref(), Some("default"));
        assert_eq!(o.slices.len(), 1);
    }

    #[test]
    fn errors_name_the_file_the_document_and_the_object() {
        let e = load_str(Path::new("/m/x.yaml"), &format!("{SVC}---\n{SVC}")).unwrap_err();
        assert!(
            e.to_string().contains("Service shop/web is defined twice"),
            "{e}"
        );
        let bad = SVC.replace("port: 80,", "port: eighty,");
        let e = load_str(Path::new("/m/x.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/m/x.yaml, document 1") && e.contains("Service shop/web"),
            "{e}"
        );
        let e = load_str(
            Path::new("/m/x.yaml"),
            &SLICE.replace("discovery.k8s.io/v1", "v1"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("discovery.k8s.io/v1"), "{e}");
        let e = load_str(Path::new("/m/x.yaml"), "metadata: {name: x}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no kind"), "{e}");
        assert!(load_dir(Path::new("/nonexistent-unicni-dir"))
            .unwrap_err()
            .to_string()
            .contains("services.manifests_dir"));
    }

    #[tokio::test]
    async fn the_directory_source_gives_a_set_at_once_then_one_per_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = Source::Manifests(ManifestSource::new(dir.path(), Duration::from_millis(10)));
        assert_eq!(src.next().await.unwrap(), Objects::default());
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        let o = tokio::time::timeout(Duration::from_secs(5), src.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.services.len(), 1);
        std::fs::write(dir.path().join("svc.yaml"), format!("{SVC}---\n{SLICE}")).unwrap();
        let o = tokio::time::timeout(Duration::from_secs(5), src.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((o.services.len(), o.slices.len()), (1, 1));
        assert!(tokio::time::timeout(Duration::from_millis(100), src.next())
            .await
            .is_err());
    }
}
