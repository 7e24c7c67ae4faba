//! Where the policies, pods and namespaces come from: a watched directory of manifests, or
//! the Kubernetes API (watchers on NetworkPolicy, Pod and Namespace). Both hand the engine
//! whole [`Snapshot`]s when something changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;
use unicni_policy::{ManifestDir, Namespace, Pod, Policy, Snapshot};
use unicni_store::Cache;

use crate::Error;

/// A source of snapshots.
pub enum Source {
    Manifests(ManifestSource),
    Kubernetes(KubeSource),
}

impl Source {
    /// Waits for the next snapshot: the first one at once, then one per change. A
    /// directory that cannot be read (or holds an invalid manifest) gives an error once per
    /// change; the caller keeps what it has.
    pub async fn next(&mut self) -> Result<Snapshot, Error> {
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
}

/// A directory of manifests, polled: every `poll` the names, sizes and modification times
/// of its files are compared with the last look, and a difference reloads the whole
/// directory. Polling works the same on every filesystem (ConfigMap mounts swap a symlink,
/// which inotify on the directory does not report as a file change).
pub struct ManifestSource {
    dir: PathBuf,
    poll: Duration,
    last: Option<Vec<(PathBuf, u64, Option<SystemTime>)>>,
}

impl ManifestSource {
    pub fn new(dir: impl Into<PathBuf>, poll: Duration) -> ManifestSource {
        ManifestSource {
            dir: dir.into(),
            poll,
            last: None,
        }
    }

    fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let Ok(files) = ManifestDir::new(dir).files() else {
            return Vec::new();
        };
        files
            .into_iter()
            .map(|f| {
                // The file's own metadata: a symlinked file that changes target changes here.
                let md = std::fs::metadata(&f).ok();
                let len = md.as_ref().map(|m| m.len()).unwrap_or(0);
                let mtime = md.and_then(|m| m.modified().ok());
                (f, len, mtime)
            })
            .collect()
    }

    async fn next(&mut self) -> Result<Snapshot, Error> {
        loop {
            let now = Self::fingerprint(&self.dir);
            if self.last.as_ref() != Some(&now) {
                self.last = Some(now);
                let dir = self.dir.clone();
                return tokio::task::spawn_blocking(move || ManifestDir::new(dir).load())
                    .await
                    .map_err(|e| Error::Source(format!("manifest loader: {e}")))?
                    .map_err(Error::Policy);
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// The Kubernetes API: one reflector cache per kind ([`unicni_store::Cache`], kube-rs
/// watchers with bookmarks, re-listing only after 410 Gone); any change wakes the engine,
/// which builds a snapshot from the three caches (bursts settle for `settle`).
pub struct KubeSource {
    policies: Cache<NetworkPolicy>,
    pods: Cache<core::Pod>,
    namespaces: Cache<core::Namespace>,
    changes: [watch::Receiver<u64>; 3],
    settle: Duration,
    first: bool,
}

/// Managed fields are dropped before caching: every Pod of the cluster is held here, and
/// the engine never reads them.
fn trim<K: kube::Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

impl KubeSource {
    /// Starts the watchers (tokio tasks); they retry with backoff while the API server is
    /// unreachable.
    pub fn start(client: Client, settle: Duration) -> KubeSource {
        let cfg = watcher::Config::default;
        let policies = Cache::start(
            Api::<NetworkPolicy>::all(client.clone()),
            cfg(),
            "NetworkPolicy",
            trim::<NetworkPolicy>,
        );
        let pods = Cache::start(
            Api::<core::Pod>::all(client.clone()),
            cfg(),
            "Pod",
            trim::<core::Pod>,
        );
        let namespaces = Cache::start(
            Api::<core::Namespace>::all(client),
            cfg(),
            "Namespace",
            trim::<core::Namespace>,
        );
        let changes = [policies.changes(), pods.changes(), namespaces.changes()];
        KubeSource {
            policies,
            pods,
            namespaces,
            changes,
            settle,
            first: true,
        }
    }

    async fn next(&mut self) -> Result<Snapshot, Error> {
        if self.first {
            // Nothing is enforced from a half-listed cluster: wait for every initial list
            // (saying why while it takes long; the watchers keep retrying).
            wait_listed(&self.policies).await;
            wait_listed(&self.pods).await;
            wait_listed(&self.namespaces).await;
            self.first = false;
        } else {
            // Every change wakes the engine, the end of a re-list included: objects deleted
            // while the watch was down only show there.
            let [a, b, c] = &mut self.changes;
            let woke = tokio::select! {
                r = a.changed() => r,
                r = b.changed() => r,
                r = c.changed() => r,
            };
            if woke.is_err() {
                return Err(Error::Source("a Kubernetes watcher stopped".into()));
            }
            tokio::time::sleep(self.settle).await;
            for rx in &mut self.changes {
                rx.borrow_and_update();
            }
        }
        Ok(self.snapshot())
    }

    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        for ns in self.namespaces.state() {
            match Namespace::from_k8s(&ns) {
                Ok(n) => {
                    snap.namespaces.insert(n.name.clone(), n);
                }
                Err(e) => tracing::warn!("skipping namespace: {e}"),
            }
        }
        for pod in self.pods.state() {
            match Pod::from_k8s(&pod) {
                Ok(p) => snap.pods.push(p),
                Err(e) => tracing::warn!("skipping pod: {e}"),
            }
        }
        for policy in self.policies.state() {
            match Policy::from_k8s(&policy) {
                Ok(p) => snap.policies.push(p),
                Err(e) => tracing::warn!("skipping NetworkPolicy: {e}"),
            }
        }
        // Stable order, whatever order the stores keep.
        snap.pods
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        snap.policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        snap
    }
}

async fn wait_listed<K>(cache: &Cache<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    while let Err(e) = cache.wait_synced(Duration::from_secs(30)).await {
        tracing::warn!("{e}");
    }
}
