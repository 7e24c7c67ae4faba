//! `services.enabled = true`: the eBPF ClusterIP load balancer (`unicni-services`) beside
//! either backend's agent. Services and EndpointSlices come from `services.manifests_dir`
//! when set, else from the Kubernetes API (`store.kubeconfig` or the in-cluster config);
//! every change (bursts settled) becomes a whole table applied to the maps pinned under
//! `<bpf.pin_dir>/services/`, which the CNI plugin's ADD registers each pod's network
//! namespace with. The node is not ready until the first table is applied: a pod started
//! before that would see no Services.

pub mod source;

use crate::AgentError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use source::{KubeSource, ManifestSource, Objects, Source};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use unicni_config::Config;
use unicni_core::node::encode;

/// How often the manifest directory is looked at.
const MANIFEST_POLL: Duration = Duration::from_millis(200);
/// How long a burst of API changes settles before one table is built from it.
const SETTLE: Duration = Duration::from_millis(50);

/// What applies a whole set of objects to the datapath; returns the Services and the
/// backends it now serves. Blocking (map updates are syscalls): run off the async workers.
pub trait Apply: Send + 'static {
    fn apply(&mut self, objects: &Objects) -> Result<Counts, String>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub services: u64,
    pub backends: u64,
}

/// The load balancer's state as `/readyz` and `/metrics` show it.
#[derive(Debug, Default)]
pub struct Status {
    synced: AtomicBool,
    services: AtomicU64,
    backends: AtomicU64,
    /// Unix seconds of the last table applied.
    last_sync: AtomicU64,
    errors: AtomicU64,
    /// Tables applied (the lab waits on it after it changes a Service).
    applied: AtomicU64,
    /// Why the last set was not applied (or the source's reason for no set yet).
    why: Mutex<Option<String>>,
}

impl Status {
    /// `None` once the first table is applied; else why not.
    pub fn not_ready(&self) -> Option<String> {
        if self.synced.load(Ordering::Acquire) {
            return None;
        }
        let why = self
            .why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "waiting for the first Services and EndpointSlices".into());
        Some(format!("eBPF Service load balancer not synced: {why}"))
    }

    pub fn counts(&self) -> Counts {
        Counts {
            services: self.services.load(Ordering::Relaxed),
            backends: self.backends.load(Ordering::Relaxed),
        }
    }

    fn set_why(&self, why: Option<String>) {
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }
}

/// The running load balancer: its status; the task stops when this is dropped.
pub struct Services {
    status: Arc<Status>,
    task: tokio::task::AbortHandle,
}

impl Drop for Services {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Services {
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// `unicni_services_{synced,services,backends,last_sync_timestamp_seconds}` and
    /// `unicni_services_{syncs,sync_errors}_total`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Readout(self.status.clone())));
    }

    /// Follows `source`, applying every set through `apply`.
    pub fn spawn(mut source: Source, apply: Box<dyn Apply>) -> Services {
        let status = Arc::new(Status::default());
        let st = status.clone();
        let apply = Arc::new(Mutex::new(apply));
        let task = tokio::spawn(async move {
            loop {
                let objects = tokio::select! {
                    r = source.next() => r,
                    // The Kubernetes source says why it has not synced while it waits.
                    _ = tokio::time::sleep(Duration::from_secs(1)), if !st.synced.load(Ordering::Acquire) => {
                        if let Some(why) = source.not_synced() {
                            st.set_why(Some(why));
                        }
                        continue;
                    }
                };
                let objects = match objects {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!("Services from {}: {e}", source.describe());
                        st.errors.fetch_add(1, Ordering::Relaxed);
                        st.set_why(Some(e.to_string()));
                        if matches!(e, source::SourceError::Watch(_)) {
                            return;
                        }
                        continue;
                    }
                };
                let apply = apply.clone();
                let result = tokio::task::spawn_blocking(move || {
                    apply
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .apply(&objects)
                })
                .await
                .unwrap_or_else(|e| Err(format!("the apply task failed: {e}")));
                match result {
                    Ok(c) => {
                        st.services.store(c.services, Ordering::Relaxed);
                        st.backends.store(c.backends, Ordering::Relaxed);
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        st.last_sync.store(now, Ordering::Relaxed);
                        st.applied.fetch_add(1, Ordering::Relaxed);
                        st.set_why(None);
                        if !st.synced.swap(true, Ordering::AcqRel) {
                            tracing::info!(
                                services = c.services,
                                backends = c.backends,
                                source = %source.describe(),
                                "eBPF Service load balancer synced"
                            );
                        } else {
                            tracing::debug!(
                                services = c.services,
                                backends = c.backends,
                                "Service table applied"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!("apply the Service table: {e}");
                        st.errors.fetch_add(1, Ordering::Relaxed);
                        st.set_why(Some(format!("apply the Service table: {e}")));
                    }
                }
            }
        });
        Services {
            status,
            task: task.abort_handle(),
        }
    }
}

#[derive(Debug)]
struct Readout(Arc<Status>);

impl Collector for Readout {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        encode(
            &mut e,
            "synced",
            "1 once the first Service table is applied",
            ConstGauge::new(s.synced.load(Ordering::Acquire) as i64),
        )?;
        let c = s.counts();
        encode(
            &mut e,
            "services",
            "Service ports (ClusterIP, port, protocol) the eBPF load balancer serves",
            ConstGauge::new(c.services as i64),
        )?;
        encode(
            &mut e,
            "backends",
            "Backends (ready or terminating endpoints) behind them",
            ConstGauge::new(c.backends as i64),
        )?;
        encode(
            &mut e,
            "last_sync_timestamp_seconds",
            "When the last Service table was applied (Unix seconds; 0: never)",
            ConstGauge::new(s.last_sync.load(Ordering::Relaxed) as i64),
        )?;
        encode(
            &mut e,
            "syncs",
            "Service tables applied",
            ConstCounter::new(s.applied.load(Ordering::Relaxed)),
        )?;
        encode(
            &mut e,
            "sync_errors",
            "Sets of Services that could not be read or applied",
            ConstCounter::new(s.errors.load(Ordering::Relaxed)),
        )
    }
}

/// The source `config` names: the manifests directory, else the Kubernetes API.
pub async fn source(config: &Config) -> Result<Source, AgentError> {
    Ok(match &config.services.manifests_dir {
        Some(dir) => Source::Manifests(ManifestSource::new(dir, MANIFEST_POLL)),
        None if config.store.kubeconfig.is_some()
            || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
        {
            let kc = config.store.kubeconfig.as_deref().map(Path::new);
            let client = unicni_store::kube::client(kc)
                .await
                .map_err(AgentError::ServicesApi)?;
            Source::Kubernetes(KubeSource::start(client, SETTLE))
        }
        None => return Err(AgentError::NoServicesSource),
    })
}

/// Starts the load balancer when `services.enabled`; `None` otherwise, or when eBPF
/// cannot be used on the node and `bpf.fallback` allows running without it. Fails (and
/// with it the agent) otherwise.
pub async fn start(config: &Config, node: &str) -> Result<Option<Services>, AgentError> {
    if !config.services.enabled {
        return Ok(None);
    }
    let source = source(config).await?;
    let pin = Path::new(&config.bpf.pin_dir).to_path_buf();
    let name = node.to_string();
    let cgroup_root = config
        .services
        .cgroup_root
        .clone()
        .map(std::path::PathBuf::from);
    let loaded = tokio::task::spawn_blocking(move || lb::load(&pin, cgroup_root.as_deref(), &name))
        .await
        .map_err(|e| AgentError::ServicesLb(format!("the loader task failed: {e}")))?;
    let balancer = match loaded {
        Ok(b) => b,
        // As the fast paths: with bpf.fallback the node runs without it (kube-proxy keeps
        // serving Services) and says so; the plugin registers nothing while nothing is
        // pinned.
        Err(e) if e.is_unavailable() && config.bpf.fallback => {
            tracing::warn!(
                "services.enabled = true but eBPF cannot be used on this node ({e}); \
                 Services are left to kube-proxy (bpf.fallback = true)"
            );
            return Ok(None);
        }
        Err(e) => return Err(AgentError::ServicesLb(e.to_string())),
    };
    tracing::info!(source = %source.describe(), pin_dir = %config.bpf.pin_dir, "eBPF Service load balancer loaded");
    Ok(Some(Services::spawn(source, Box::new(balancer))))
}

mod lb {
    //! The datapath half: `unicni-services`' load balancer, fed a whole table per set.
    use super::{Apply, Counts, Objects};
    use std::collections::BTreeSet;
    use std::path::Path;
    use unicni_services::{Lb, ServiceTable};

    /// The load balancer and the skipped Services last logged (each is said once, not on
    /// every change).
    pub struct Balancer {
        lb: Lb,
        /// This node's name: `internalTrafficPolicy: Local` keeps its endpoints only.
        node: String,
        skipped: BTreeSet<(String, String)>,
    }

    /// Loads (or adopts, after a restart) the programs and maps pinned under `pin_dir`.
    pub fn load(
        pin_dir: &Path,
        cgroup_root: Option<&Path>,
        node: &str,
    ) -> Result<Balancer, unicni_services::Error> {
        Ok(Balancer {
            lb: Lb::load_at(pin_dir, cgroup_root)?,
            node: node.to_string(),
            skipped: BTreeSet::new(),
        })
    }

    impl Apply for Balancer {
        fn apply(&mut self, o: &Objects) -> Result<Counts, String> {
            let table = ServiceTable::from_objects_on_node(&o.services, &o.slices, &self.node);
            let skipped: BTreeSet<(String, String)> = table
                .skipped()
                .iter()
                .map(|s| (s.service.clone(), s.reason.clone()))
                .collect();
            for (service, reason) in skipped.difference(&self.skipped) {
                tracing::info!(service = %service, "not load balanced in eBPF: {reason}");
            }
            self.skipped = skipped;
            let report = self.lb.apply(&table).map_err(|e| e.to_string())?;
            if !report.is_empty() {
                tracing::debug!(?report, "Service table applied");
            }
            Ok(Counts {
                services: table.len() as u64,
                backends: table.iter().map(|(_, e)| e.backends.len() as u64).sum(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Record(Arc<Mutex<Vec<Objects>>>, bool);

    impl Apply for Record {
        fn apply(&mut self, o: &Objects) -> Result<Counts, String> {
            self.0.lock().unwrap().push(o.clone());
            if self.1 {
                return Err("map full".into());
            }
            Ok(Counts {
                services: o.services.len() as u64,
                backends: o.slices.iter().map(|s| s.endpoints.len() as u64).sum(),
            })
        }
    }

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n";

    #[tokio::test]
    async fn every_change_is_applied_and_shown_in_readiness_and_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let src = Source::Manifests(ManifestSource::new(dir.path(), Duration::from_millis(10)));
        let s = Services::spawn(src, Box::new(Record(seen.clone(), false)));
        let wait = |n: usize| {
            let seen = seen.clone();
            async move {
                for _ in 0..500 {
                    if seen.lock().unwrap().len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("not applied {n} times");
            }
        };
        wait(1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.status().not_ready(), None);
        std::fs::write(dir.path().join("s.yaml"), SVC).unwrap();
        wait(2).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.status().counts().services, 1);
        let mut r = Registry::default();
        s.register_metrics(r.sub_registry_with_prefix("unicni_services"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(text.contains("unicni_services_services 1\n"), "{text}");
        assert!(text.contains("unicni_services_synced 1\n"), "{text}");
        assert!(
            text.contains("unicni_services_sync_errors_total 0\n"),
            "{text}"
        );
        assert!(text.contains("unicni_services_syncs_total 2\n"), "{text}");
    }

    #[tokio::test]
    async fn not_ready_with_the_reason_while_nothing_was_applied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.yaml"), "kind: [").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let src = Source::Manifests(ManifestSource::new(dir.path(), Duration::from_millis(10)));
        let s = Services::spawn(src, Box::new(Record(seen.clone(), true)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let why = s.status().not_ready().unwrap();
        assert!(why.contains("s.yaml, document 1"), "{why}");
        std::fs::write(dir.path().join("s.yaml"), SVC).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let why = s.status().not_ready().unwrap();
        assert!(why.contains("map full"), "{why}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
