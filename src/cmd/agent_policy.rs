//! `policy.enabled = true`: the NetworkPolicy engine (`unicni-policy-agent`) beside either
//! backend's agent. Policies, pods and namespaces come from `policy.manifests_dir` when set,
//! else from the Kubernetes API (`store.kubeconfig` or the in-cluster config). The engine
//! attaches the policy programs itself to every pod veth the kernel reports (a netlink
//! notification, then a periodic pass): the CNI plugin does nothing for policy.

use super::common;
use anyhow::{bail, Context, Result};
use std::time::Duration;
use unicni_config::{BackendKind, Config};
use unicni_policy_agent::{Engine, EngineConfig, KubeSource, ManifestSource, Source};

/// How often the manifest directory is looked at.
const MANIFEST_POLL: Duration = Duration::from_millis(200);
/// How long the agent waits for the first policy snapshot before it goes on (pods created
/// before it lands are enforced from the moment it does).
const FIRST_SYNC: Duration = Duration::from_secs(30);

/// flannel's host veths: `uc` + 11 lowercase hex digits (backends/flannel/src/names.rs).
fn flannel_pod_veth(name: &str) -> bool {
    let prefix = unicni_flannel::names::VETH_PREFIX;
    name.len() == prefix.len() + 11
        && name.starts_with(prefix)
        && name[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Starts the engine when `policy.enabled`; `None` otherwise. Fails (and with it the agent)
/// when eBPF cannot be used: there is no other way to enforce the policies.
pub async fn start(config: &Config) -> Result<Option<Engine>> {
    if !config.policy.enabled {
        return Ok(None);
    }
    let source = match &config.policy.manifests_dir {
        Some(dir) => Source::Manifests(ManifestSource::new(dir, MANIFEST_POLL)),
        None if config.store.kubeconfig.is_some()
            || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
        {
            let kc = config.store.kubeconfig.as_deref().map(std::path::Path::new);
            let client = unicni_store::kube::client(kc)
                .await
                .context("policy.enabled = true: connect to the Kubernetes API")?;
            Source::Kubernetes(KubeSource::start(client, Duration::from_millis(50)))
        }
        None => bail!(
            "policy.enabled = true needs a source of policies: set policy.manifests_dir, or \
             store.kubeconfig / run in-cluster for the Kubernetes API"
        ),
    };
    let mut cfg = EngineConfig::new(common::node_name(config), &config.bpf.pin_dir);
    cfg.is_pod_veth = match config.backend.kind {
        BackendKind::Flannel => flannel_pod_veth,
        BackendKind::Terway => unicni_terway::datapath::names::is_host_veth,
    };
    cfg.rescan = Duration::from_secs(config.agent.reconcile_seconds.max(1));
    cfg.service_cidrs = config
        .cluster
        .service_cidr
        .split(',')
        .map(|c| c.trim().parse().map(|n: ipnet::IpNet| n.trunc()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cluster.service_cidr = {:?}", config.cluster.service_cidr))?;
    cfg.status_file = Some(std::path::Path::new(&config.node.run_dir).join("policy.json"));
    let engine = Engine::start(cfg, source).await.map_err(|e| {
        anyhow::anyhow!(
            "policy.enabled = true but NetworkPolicy cannot be enforced on this node: {e}"
        )
    })?;
    if !engine.wait_synced(FIRST_SYNC).await {
        tracing::warn!(
            "no NetworkPolicy snapshot after {FIRST_SYNC:?} ({}); going on, the engine keeps trying",
            engine.status().last_error()
        );
    }
    eprintln!(
        "agent: NetworkPolicy enforced ({} policies, {} local pod addresses, {} pod veths)",
        engine
            .status()
            .policies
            .load(std::sync::atomic::Ordering::Relaxed),
        engine
            .status()
            .local_pods
            .load(std::sync::atomic::Ordering::Relaxed),
        engine
            .status()
            .attached_veths
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    Ok(Some(engine))
}

#[cfg(test)]
mod tests {
    #[test]
    fn flannel_veth_names_are_recognised() {
        let id = unicni_core::AttachmentId::new("c1", "eth0");
        assert!(super::flannel_pod_veth(&unicni_flannel::names::host_veth(
            "net", &id
        )));
        for other in [
            "uc",
            "ucXYZ0000000000",
            "cni0",
            "flannel.1",
            "tw0123456789a",
        ] {
            assert!(!super::flannel_pod_veth(other), "{other}");
        }
    }
}
