//! The engine's metrics (`unicni_policy_*`): its status, and the kernel's per-CPU verdict
//! counters and conntrack size read from the pinned maps at scrape time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use unicni_bpf::{PolicyDatapath, PolicyStats};
use unicni_core::node::encode;

use crate::Status;

/// Register into a registry with the `unicni_policy` prefix.
pub struct PolicyMetrics {
    status: Arc<Status>,
    pin_dir: PathBuf,
    /// The pinned maps, opened at the first scrape (read only: counters and entry counts).
    maps: Mutex<Option<PolicyDatapath>>,
}

impl PolicyMetrics {
    pub fn new(status: Arc<Status>, pin_dir: PathBuf) -> PolicyMetrics {
        PolicyMetrics {
            status,
            pin_dir,
            maps: Mutex::new(None),
        }
    }

    /// The kernel's counters and conntrack entries; `None` when the maps cannot be read
    /// (said in the log, retried at the next scrape).
    fn kernel(&self) -> (Option<PolicyStats>, Option<usize>) {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if maps.is_none() {
            match PolicyDatapath::open(&self.pin_dir) {
                Ok(dp) => *maps = Some(dp),
                Err(e) => tracing::warn!("/metrics: open the pinned policy maps: {e}"),
            }
        }
        let kernel = maps.as_ref().map(|dp| (dp.stats(), dp.conntrack_entries()));
        match kernel {
            Some((Ok(s), ct)) => (Some(s), ct.ok()),
            Some((Err(e), _)) => {
                tracing::warn!("/metrics: read the policy counters: {e}");
                *maps = None;
                (None, None)
            }
            None => (None, None),
        }
    }
}

impl std::fmt::Debug for PolicyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyMetrics")
            .field("pin_dir", &self.pin_dir)
            .finish()
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

fn labelled(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: Vec<(Vec<(&'static str, &'static str)>, u64)>,
) -> std::fmt::Result {
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let family = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(family)?,
            _ => ConstGauge::new(v as i64).encode(family)?,
        }
    }
    Ok(())
}

fn write(
    encoder: &mut DescriptorEncoder,
    s: &Status,
    stats: Option<&PolicyStats>,
    conntrack: Option<usize>,
) -> std::fmt::Result {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let gauge = |v: u64| ConstGauge::new(v as i64);
    encode(
        encoder,
        "synced",
        "1 once a NetworkPolicy snapshot has been applied since the agent started",
        gauge(s.synced.load(Ordering::Relaxed) as u64),
    )?;
    encode(
        encoder,
        "policies",
        "NetworkPolicies in the last applied snapshot (the whole cluster's)",
        gauge(load(&s.policies)),
    )?;
    encode(
        encoder,
        "pod_addresses",
        "This node's pod addresses in the policy maps",
        gauge(load(&s.local_pods)),
    )?;
    labelled(
        encoder,
        "isolated_pod_addresses",
        "This node's pod addresses a NetworkPolicy selects, by direction",
        MetricType::Gauge,
        vec![
            (vec![("direction", "ingress")], load(&s.isolated_ingress)),
            (vec![("direction", "egress")], load(&s.isolated_egress)),
        ],
    )?;
    encode(
        encoder,
        "attached_veths",
        "Pod veths carrying the policy programs",
        gauge(load(&s.attached_veths)),
    )?;
    encode(
        encoder,
        "attached_uplinks",
        "Other links (underlay, vxlan, ENIs) carrying the policy programs",
        gauge(load(&s.attached_uplinks)),
    )?;
    encode(
        encoder,
        "attach_errors",
        "Failed attachments of the policy programs to a link",
        ConstCounter::new(load(&s.attach_errors)),
    )?;
    encode(
        encoder,
        "applies",
        "Snapshots applied to the policy maps",
        ConstCounter::new(load(&s.syncs)),
    )?;
    encode(
        encoder,
        "apply_errors",
        "Snapshots that could not be read or applied (the rules in place stay)",
        ConstCounter::new(load(&s.sync_errors)),
    )?;
    encode(
        encoder,
        "last_apply_seconds",
        "Time the last applied snapshot took (compile and map writes)",
        ConstGauge::new(load(&s.last_sync_us) as f64 / 1e6),
    )?;
    encode(
        encoder,
        "last_apply_success_timestamp_seconds",
        "When the last snapshot was applied without error (Unix time; 0 before the first)",
        gauge(load(&s.last_sync_unix)),
    )?;
    let mut entries = vec![
        (vec![("map", "pods")], load(&s.local_pods)),
        (vec![("map", "rules")], load(&s.rules)),
        (vec![("map", "port_sets")], load(&s.port_sets)),
        (vec![("map", "node")], load(&s.node_addresses)),
    ];
    if let Some(ct) = conntrack {
        entries.push((vec![("map", "conntrack")], ct as u64));
    }
    labelled(
        encoder,
        "map_entries",
        "Entries in the policy maps: pod addresses, allow rules, port sets, node addresses, conntrack",
        MetricType::Gauge,
        entries,
    )?;
    if let Some(stats) = stats {
        labelled(
            encoder,
            "packets",
            "Packets the policy programs judged, by verdict and reason (kernel counters summed over CPUs, since the maps were created)",
            MetricType::Counter,
            packet_counters(stats)
                .iter()
                .map(|(verdict, reason, v)| (vec![("verdict", *verdict), ("reason", *reason)], *v))
                .collect(),
        )?;
    }
    Ok(())
}

impl Collector for PolicyMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (stats, conntrack) = self.kernel();
        write(&mut encoder, &self.status, stats.as_ref(), conntrack)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;
    use prometheus_client::registry::Registry;
    use std::sync::atomic::Ordering;

    /// `write` with fixed kernel numbers, as a collector.
    #[derive(Debug)]
    struct Fixed(
        std::sync::Arc<super::Status>,
        Option<unicni_bpf::PolicyStats>,
    );

    impl Collector for Fixed {
        fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
            super::write(&mut e, &self.0, self.1.as_ref(), self.1.as_ref().map(|_| 4))
        }
    }

    fn text(stats: Option<unicni_bpf::PolicyStats>) -> String {
        let s = std::sync::Arc::new(super::Status::default());
        s.policies.store(3, Ordering::Relaxed);
        s.last_sync_us.store(1500, Ordering::Relaxed);
        let mut reg = Registry::default();
        reg.sub_registry_with_prefix("unicni_policy")
            .register_collector(Box::new(Fixed(s, stats)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        out
    }

    #[test]
    fn metrics_text() {
        let text = text(Some(unicni_bpf::PolicyStats {
            dropped_egress: 7,
            ..Default::default()
        }));
        for line in [
            "# TYPE unicni_policy_packets counter",
            "unicni_policy_packets_total{verdict=\"drop\",reason=\"egress\"} 7",
            "unicni_policy_packets_total{verdict=\"drop\",reason=\"ingress\"} 0",
            "unicni_policy_policies 3",
            "unicni_policy_last_apply_seconds 0.0015",
            "unicni_policy_map_entries{map=\"conntrack\"} 4",
            "unicni_policy_isolated_pod_addresses{direction=\"egress\"} 0",
            "unicni_policy_applies_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(!self::text(None).contains("packets"));
    }
}
