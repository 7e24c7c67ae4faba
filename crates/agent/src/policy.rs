//! `policy.enabled = true`: the NetworkPolicy engine (`unicni-policy-agent`) beside either
//! backend's agent. Policies, pods and namespaces come from `policy.manifests_dir` when set,
//! else from the Kubernetes API (`store.kubeconfig` or the in-cluster config). The engine
//! attaches the policy programs itself to every pod link the kernel reports (which links
//! are pods' is the backend's answer, [`unicni_core::NodeAgent::is_pod_link`]).

use crate::AgentError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use unicni_config::Config;
use unicni_core::Policy;
use unicni_policy_agent::{Engine, EngineConfig, KubeSource, ManifestSource, Source};

/// How often the manifest directory is looked at.
const MANIFEST_POLL: Duration = Duration::from_millis(200);
/// How long the agent waits for the first policy snapshot before it goes on (pods created
/// before it lands are enforced from the moment it does).
const FIRST_SYNC: Duration = Duration::from_secs(30);

/// Starts the engine when `policy.enabled`; `None` otherwise. Fails (and with it the agent)
/// when eBPF cannot be used: there is no other way to enforce the policies.
pub async fn start(
    config: &Config,
    node: &str,
    is_pod_link: fn(&str) -> bool,
) -> Result<Option<Arc<Engine>>, AgentError> {
    if !config.policy.enabled {
        return Ok(None);
    }
    let source = match &config.policy.manifests_dir {
        Some(dir) => Source::Manifests(ManifestSource::new(dir, MANIFEST_POLL)),
        None if config.store.kubeconfig.is_some()
            || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
        {
            let kc = config.store.kubeconfig.as_deref().map(Path::new);
            let client = unicni_store::kube::client(kc)
                .await
                .map_err(AgentError::PolicyApi)?;
            Source::Kubernetes(KubeSource::start(client, Duration::from_millis(50)))
        }
        None => return Err(AgentError::NoPolicySource),
    };
    let mut cfg = EngineConfig::new(node, &config.bpf.pin_dir);
    cfg.is_pod_veth = is_pod_link;
    cfg.rescan = Duration::from_secs(config.agent.reconcile_seconds.max(1));
    cfg.service_cidrs = config.cluster.service_cidrs();
    cfg.status_file = Some(Path::new(&config.node.run_dir).join("policy.json"));
    let engine = Engine::start(cfg, source)
        .await
        .map_err(AgentError::PolicyEngine)?;
    if !engine.wait_synced(FIRST_SYNC).await {
        tracing::warn!(
            "no NetworkPolicy snapshot after {FIRST_SYNC:?} ({}); going on, the engine keeps trying",
            engine.status().last_error()
        );
    }
    let s = Policy::status(&engine);
    tracing::info!(
        policies = s.policies,
        local_pod_addresses = s.endpoints,
        pod_links = s.attached_links,
        "NetworkPolicy enforced"
    );
    Ok(Some(Arc::new(engine)))
}
