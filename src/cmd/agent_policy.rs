//! `policy.enabled = true`: the NetworkPolicy engine (`unicni-policy-agent`) beside either
//! backend's agent. Policies, pods and namespaces come from `policy.manifests_dir` when set,
//! else from the Kubernetes API (`store.kubeconfig` or the in-cluster config). The engine
//! attaches the policy programs itself to every pod veth the kernel reports (a netlink
//! notification, then a periodic pass): the CNI plugin does nothing for policy.

use super::common;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use unicni_bpf::{PolicyDatapath, PolicyStats};
use unicni_config::{BackendKind, Config};
use unicni_policy_agent::{Engine, EngineConfig, KubeSource, ManifestSource, Source, Status};

/// How often the manifest directory is looked at.
const MANIFEST_POLL: Duration = Duration::from_millis(200);
/// How long the agent waits for the first policy snapshot before it goes on (pods created
/// before it lands are enforced from the moment it does).
const FIRST_SYNC: Duration = Duration::from_secs(30);

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
        BackendKind::Flannel => unicni_flannel::names::is_host_veth,
        BackendKind::Terway => unicni_terway::datapath::names::is_host_veth,
    };
    cfg.rescan = Duration::from_secs(config.agent.reconcile_seconds.max(1));
    cfg.service_cidrs = config.cluster.service_cidrs();
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

/// The engine's part of the agent's `/metrics` (`unicni_policy_*`): empty until
/// [`Metrics::follow`] hands it a running engine. Cheap to clone: every clone shows the same
/// engine, so the HTTP server can hold one before the engine starts.
#[derive(Clone, Default)]
pub struct Metrics(Arc<OnceLock<Shown>>);

struct Shown {
    status: Arc<Status>,
    pin_dir: PathBuf,
    /// The pinned maps, opened at the first scrape (read only: counters and entry counts).
    maps: Mutex<Option<PolicyDatapath>>,
}

impl Metrics {
    /// Shows `engine`'s status and the kernel counters under `config.bpf.pin_dir`.
    pub fn follow(&self, engine: &Engine, config: &Config) {
        let _ = self.0.set(Shown {
            status: engine.status().clone(),
            pin_dir: PathBuf::from(&config.bpf.pin_dir),
            maps: Mutex::new(None),
        });
    }

    /// Prometheus text lines (no `# EOF`); empty while no engine runs.
    pub fn render(&self) -> String {
        let Some(shown) = self.0.get() else {
            return String::new();
        };
        let mut maps = shown.maps.lock().unwrap_or_else(|p| p.into_inner());
        if maps.is_none() {
            match PolicyDatapath::open(&shown.pin_dir) {
                Ok(dp) => *maps = Some(dp),
                Err(e) => tracing::warn!("/metrics: open the pinned policy maps: {e}"),
            }
        }
        let kernel = maps.as_ref().map(|dp| (dp.stats(), dp.conntrack_entries()));
        let (stats, conntrack) = match kernel {
            Some((Ok(s), ct)) => (Some(s), ct.ok()),
            Some((Err(e), _)) => {
                tracing::warn!("/metrics: read the policy counters: {e}");
                *maps = None;
                (None, None)
            }
            None => (None, None),
        };
        render(&shown.status, stats.as_ref(), conntrack)
    }
}

/// The kernel's verdict counters as `(verdict, reason, value)`.
fn packet_counters(s: &PolicyStats) -> [(&'static str, &'static str, u64); 9] {
    [
        ("pass", "not_ip", s.not_ip),
        ("pass", "no_pod", s.no_pod),
        ("pass", "established", s.established),
        ("pass", "new", s.new_flows),
        ("pass", "node", s.node),
        ("pass", "control", s.control),
        ("pass", "service", s.service),
        ("drop", "egress", s.dropped_egress),
        ("drop", "ingress", s.dropped_ingress),
    ]
}

/// One metric family: `# HELP`, `# TYPE` and a sample per `(labels, value)`.
fn family_into<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(&str, V)],
) {
    let _ = writeln!(out, "# HELP unicni_policy_{name} {help}");
    let _ = writeln!(out, "# TYPE unicni_policy_{name} {kind}");
    let suffix = if kind == "counter" { "_total" } else { "" };
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "unicni_policy_{name}{suffix} {v}");
        } else {
            let _ = writeln!(out, "unicni_policy_{name}{suffix}{{{labels}}} {v}");
        }
    }
}

fn render(s: &Status, stats: Option<&PolicyStats>, conntrack: Option<usize>) -> String {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    family_into(
        &mut out,
        "synced",
        "gauge",
        "1 once a NetworkPolicy snapshot has been applied since the agent started",
        &[("", s.synced.load(Ordering::Relaxed) as u64)],
    );
    family_into(
        &mut out,
        "policies",
        "gauge",
        "NetworkPolicies in the last applied snapshot (the whole cluster's)",
        &[("", load(&s.policies))],
    );
    family_into(
        &mut out,
        "pod_addresses",
        "gauge",
        "This node's pod addresses in the policy maps",
        &[("", load(&s.local_pods))],
    );
    family_into(
        &mut out,
        "isolated_pod_addresses",
        "gauge",
        "This node's pod addresses a NetworkPolicy selects, by direction",
        &[
            ("direction=\"ingress\"", load(&s.isolated_ingress)),
            ("direction=\"egress\"", load(&s.isolated_egress)),
        ],
    );
    family_into(
        &mut out,
        "attached_veths",
        "gauge",
        "Pod veths carrying the policy programs",
        &[("", load(&s.attached_veths))],
    );
    family_into(
        &mut out,
        "attached_uplinks",
        "gauge",
        "Other links (underlay, vxlan, ENIs) carrying the policy programs",
        &[("", load(&s.attached_uplinks))],
    );
    family_into(
        &mut out,
        "attach_errors",
        "counter",
        "Failed attachments of the policy programs to a link",
        &[("", load(&s.attach_errors))],
    );
    family_into(
        &mut out,
        "applies",
        "counter",
        "Snapshots applied to the policy maps",
        &[("", load(&s.syncs))],
    );
    family_into(
        &mut out,
        "apply_errors",
        "counter",
        "Snapshots that could not be read or applied (the rules in place stay)",
        &[("", load(&s.sync_errors))],
    );
    family_into(
        &mut out,
        "last_apply_seconds",
        "gauge",
        "Time the last applied snapshot took (compile and map writes)",
        &[("", load(&s.last_sync_us) as f64 / 1e6)],
    );
    family_into(
        &mut out,
        "last_apply_success_timestamp_seconds",
        "gauge",
        "When the last snapshot was applied without error (Unix time; 0 before the first)",
        &[("", load(&s.last_sync_unix))],
    );
    let mut entries = vec![
        ("map=\"pods\"", load(&s.local_pods)),
        ("map=\"rules\"", load(&s.rules)),
        ("map=\"port_sets\"", load(&s.port_sets)),
        ("map=\"node\"", load(&s.node_addresses)),
    ];
    if let Some(ct) = conntrack {
        entries.push(("map=\"conntrack\"", ct as u64));
    }
    family_into(
        &mut out,
        "map_entries",
        "gauge",
        "Entries in the policy maps: pod addresses, allow rules, port sets, node addresses, conntrack",
        &entries,
    );
    if let Some(stats) = stats {
        let labels: Vec<(String, u64)> = packet_counters(stats)
            .iter()
            .map(|(verdict, reason, v)| (format!("verdict=\"{verdict}\",reason=\"{reason}\""), *v))
            .collect();
        let samples: Vec<(&str, u64)> = labels.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        family_into(
        &mut out,
            "packets",
            "counter",
            "Packets the policy programs judged, by verdict and reason (kernel counters summed over CPUs, since the maps were created)",
            &samples,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_text() {
        let s = super::Status::default();
        s.policies.store(3, std::sync::atomic::Ordering::Relaxed);
        s.last_sync_us
            .store(1500, std::sync::atomic::Ordering::Relaxed);
        let stats = unicni_bpf::PolicyStats {
            dropped_egress: 7,
            ..Default::default()
        };
        let text = super::render(&s, Some(&stats), Some(4));
        for line in [
            "# TYPE unicni_policy_packets counter",
            "unicni_policy_packets_total{verdict=\"drop\",reason=\"egress\"} 7",
            "unicni_policy_packets_total{verdict=\"drop\",reason=\"ingress\"} 0",
            "unicni_policy_policies 3",
            "unicni_policy_last_apply_seconds 0.0015",
            "unicni_policy_map_entries{map=\"conntrack\"} 4",
            "unicni_policy_isolated_pod_addresses{direction=\"egress\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(!super::render(&s, None, None).contains("packets"));
    }
}
