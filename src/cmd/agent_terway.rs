//! `unicni agent` with `backend.kind = "terway"`: the ENI pool behind the plugin's socket,
//! plus `/healthz`, `/readyz` (with the reason when not ready) and `/metrics`.

use super::agent_http::Answer;
use super::common;
use anyhow::{Context, Result};
use std::sync::Arc;
use unicni_cloud::{Cloud, MetadataClient};
use unicni_config::Config;
use unicni_terway::agent::{AgentReport, TerwayAgent};
use unicni_terway::podinfo::{ManifestDir, PodInfo};
use unicni_terway::server::{NoPodInfo, PodLookup};

pub async fn serve(config: Config) -> Result<()> {
    let store = common::open_store_async(&config).await?;
    let (lock, created) = common::check_lock(store.as_ref(), &config).await?;
    tracing::info!(store = %store.describe(), created, backend = %lock.backend, mode = %lock.mode, "config matches the cluster lock");
    let metadata = Arc::new(
        MetadataClient::new(config.cloud.metadata_endpoint.as_deref())
            .context("the [cloud] section's metadata_endpoint")?,
    );
    let cloud: Arc<dyn Cloud> = Arc::new(unicni_cloud::from_config(&config.cloud).await.context(
        "backend.kind = \"terway\" needs the [cloud] section (endpoint, region, credentials)",
    )?);
    let pods: Arc<dyn PodLookup> = match &config.terway.pod_info_dir {
        Some(dir) => Arc::new(ManifestDir::new(dir)),
        None if config.store.kubeconfig.is_some()
            || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
        {
            let kc = config.store.kubeconfig.as_deref().map(std::path::Path::new);
            Arc::new(KubePods {
                client: unicni_store::kube::client(kc).await?,
            })
        }
        None => {
            tracing::warn!("terway.pod_info_dir is unset and no Kubernetes API is configured: pod annotations (vSwitch, security group, fixed IP) are not read");
            Arc::new(NoPodInfo)
        }
    };
    let listener = tokio::net::TcpListener::bind(&config.agent.listen)
        .await
        .with_context(|| {
            format!(
                "listen on agent.listen = {:?} (is another agent running?)",
                config.agent.listen
            )
        })?;
    // NetworkPolicy (policy.enabled): lives as long as the agent.
    let _policy = super::agent_policy::start(&config).await?;
    let policy_metrics = super::agent_policy::Metrics::default();
    if let Some(engine) = &_policy {
        policy_metrics.follow(engine, &config);
    }
    let agent = TerwayAgent::start(&config, cloud, metadata, pods)
        .await
        .context("start the terway agent")?;
    eprintln!(
        "agent: terway {} serving the plugin on {}",
        config.terway.mode.as_str(),
        agent.socket().display()
    );
    let report = agent.report.clone();
    tokio::spawn(super::agent_http::serve(listener, move |path| {
        let r = report.lock().unwrap_or_else(|e| e.into_inner()).clone();
        respond(path, &r, &policy_metrics)
    }));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Pods keep their addresses: the pool and the state file stay for the next start.
    let _ = std::fs::remove_file(agent.socket());
    Ok(())
}

/// Pod and namespace annotations from the Kubernetes API (GET per ADD: the pod exists
/// before its sandbox does, and a cache would miss a pod created a moment ago).
struct KubePods {
    client: kube::Client,
}

#[async_trait::async_trait]
impl PodLookup for KubePods {
    async fn lookup(&self, pod: &unicni_core::PodRef) -> std::result::Result<PodInfo, String> {
        use k8s_openapi::api::core::v1::{Namespace, Pod};
        let (Some(ns), Some(name)) = (pod.namespace.as_deref(), pod.name.as_deref()) else {
            return Ok(PodInfo::default());
        };
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), ns);
        let p = pods
            .get_opt(name)
            .await
            .map_err(|e| format!("GET pod {ns}/{name}: {e}"))?;
        let nss: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        let n = nss
            .get_opt(ns)
            .await
            .map_err(|e| format!("GET namespace {ns}: {e}"))?;
        let empty = std::collections::BTreeMap::new();
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
        Ok(unicni_terway::podinfo::resolve(pod_ann, ns_ann, &owners))
    }
}

fn metrics(r: &AgentReport) -> String {
    let mut out = String::new();
    let mut m = |name: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP unicni_agent_{name} {help}\n# TYPE unicni_agent_{name} gauge\nunicni_agent_{name} {v}\n"
        ));
    };
    m(
        "ready",
        "1 while the CNI plugin may add pods",
        r.ready as u64,
    );
    m(
        "pod_capacity",
        "Pods this node can host in its terway mode (instance-type limits)",
        r.capacity,
    );
    m(
        "enis",
        "Secondary ENIs attached for pods",
        r.stats.enis as u64,
    );
    m(
        "pool_idle",
        "Idle addresses (shared) or ENIs (exclusive) ready for pods",
        r.stats.idle as u64,
    );
    m(
        "pool_in_use",
        "Attachments holding addresses",
        r.stats.in_use as u64,
    );
    m(
        "fixed_ip_holds",
        "Fixed addresses held for deleted pods",
        r.stats.held as u64,
    );
    m(
        "pool_maintain_errors",
        "Failed pool maintenance passes",
        r.maintain_errors,
    );
    m(
        "fast_path",
        "1 while pods get the eBPF fast path (terway.datapath = \"ebpf\" and eBPF usable)",
        (r.datapath == "ebpf") as u64,
    );
    out.push_str("# EOF\n");
    out
}

fn respond(path: &str, r: &AgentReport, policy: &super::agent_policy::Metrics) -> Answer {
    match path {
        "/healthz" => (200, "ok\n".to_string()),
        "/readyz" if r.ready => (
            200,
            format!(
                "ready: {} pods on {} ({} idle, {} in use), datapath {}\n",
                r.capacity, r.instance_type, r.stats.idle, r.stats.in_use, r.datapath
            ),
        ),
        "/readyz" => (503, format!("not ready: {}\n", r.reason)),
        "/metrics" => (
            200,
            super::agent_http::with_families(metrics(r), &policy.render()),
        ),
        _ => super::agent_http::not_found(),
    }
}
