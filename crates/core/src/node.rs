//! The node half of the contract: the agent a backend runs on each node (the DaemonSet's
//! `unicni agent`). The agent runtime (`unicni-agent`) owns what every backend shares: the
//! HTTP endpoint, the one metrics registry, the shutdown signal and the NetworkPolicy
//! engine; a backend supplies a [`NodeAgent`].

use crate::{Policy, Result};
use async_trait::async_trait;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;

/// Whether the node takes pods now, with the detail `/readyz` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready; what it is ready with (the subnet, the pool).
    Ready(String),
    /// Not ready, and why: the plugin's ADDs are told to try again later.
    NotReady(String),
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready(_))
    }
}

/// Pods this node can host, and what limits that number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCapacity {
    pub pods: u64,
    /// E.g. "node subnet /24 (256 addresses, 3 reserved)" or "instance type ecs.g7.large:
    /// 3 ENIs x 10 IPv4 (shared-eni)".
    pub limited_by: String,
}

/// What the runtime hands the node agent when it starts it.
pub struct NodeContext {
    /// Turns true once when the agent must stop (SIGTERM, ctrl-c).
    pub shutdown: watch::Receiver<bool>,
    /// The NetworkPolicy engine when `policy.enabled`; already running.
    pub policy: Option<Arc<dyn Policy>>,
}

#[async_trait]
pub trait NodeAgent: Send + Sync {
    /// For logs: the backend and its mode.
    fn describe(&self) -> String;

    /// Which node-side link names are pods' (the policy engine attaches to those).
    fn is_pod_link(&self) -> fn(&str) -> bool;

    /// Registers the agent's metrics into the runtime's registry (a sub-registry with the
    /// `unicni_agent` prefix). Called once, before [`NodeAgent::run`].
    fn register_metrics(&self, registry: &mut Registry);

    /// Runs until `ctx.shutdown` turns true (Ok) or the agent cannot go on (Err).
    async fn run(&self, ctx: NodeContext) -> Result<()>;

    fn readiness(&self) -> Readiness;

    /// `None` until the agent knows it (terway: after the instance type is learned).
    fn capacity(&self) -> Option<NodeCapacity>;
}

type Read<T, V> = Box<dyn Fn(&T) -> V + Send + Sync>;

enum Family<T> {
    Gauge(Read<T, i64>),
    GaugeF64(Read<T, f64>),
    Counter(Read<T, u64>),
    /// One gauge per value of a label.
    Labelled(&'static str, Read<T, Vec<(String, i64)>>),
}

/// Metrics read from shared state at scrape time (atomics, a report under a lock), so the
/// numbers are never older than the state: register with
/// [`Registry::register_collector`]. Counters get the `_total` suffix on the wire.
pub struct Readout<T> {
    state: Arc<T>,
    families: Vec<(&'static str, &'static str, Family<T>)>,
}

impl<T: Send + Sync + 'static> Readout<T> {
    pub fn new(state: Arc<T>) -> Readout<T> {
        Readout {
            state,
            families: Vec::new(),
        }
    }

    pub fn gauge(
        mut self,
        name: &'static str,
        help: &'static str,
        f: impl Fn(&T) -> i64 + Send + Sync + 'static,
    ) -> Self {
        self.families.push((name, help, Family::Gauge(Box::new(f))));
        self
    }

    pub fn gauge_f64(
        mut self,
        name: &'static str,
        help: &'static str,
        f: impl Fn(&T) -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.families
            .push((name, help, Family::GaugeF64(Box::new(f))));
        self
    }

    pub fn counter(
        mut self,
        name: &'static str,
        help: &'static str,
        f: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.families
            .push((name, help, Family::Counter(Box::new(f))));
        self
    }

    pub fn labelled_gauge(
        mut self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        f: impl Fn(&T) -> Vec<(String, i64)> + Send + Sync + 'static,
    ) -> Self {
        self.families
            .push((name, help, Family::Labelled(label, Box::new(f))));
        self
    }
}

impl<T> std::fmt::Debug for Readout<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.families.iter().map(|(n, _, _)| *n).collect();
        f.debug_struct("Readout").field("families", &names).finish()
    }
}

impl<T: Send + Sync + 'static> Collector for Readout<T> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = self.state.as_ref();
        for (name, help, family) in &self.families {
            match family {
                Family::Gauge(f) => encode(&mut encoder, name, help, ConstGauge::new(f(s)))?,
                Family::GaugeF64(f) => encode(&mut encoder, name, help, ConstGauge::new(f(s)))?,
                Family::Counter(f) => encode(&mut encoder, name, help, ConstCounter::new(f(s)))?,
                Family::Labelled(label, f) => {
                    let g = ConstGauge::new(0i64);
                    let mut m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
                    for (value, v) in f(s) {
                        let labels = [(*label, value)];
                        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One family of one unlabelled metric.
pub fn encode(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> std::fmt::Result {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct S {
        n: AtomicU64,
    }

    #[test]
    fn readout_reads_at_scrape_time() {
        let s = Arc::new(S::default());
        let mut reg = Registry::default();
        reg.sub_registry_with_prefix("unicni_agent")
            .register_collector(Box::new(
                Readout::new(s.clone())
                    .gauge("peers", "Peers", |s| s.n.load(Ordering::Relaxed) as i64)
                    .counter("passes", "Passes", |s| s.n.load(Ordering::Relaxed))
                    .gauge_f64("seconds", "Seconds", |_| 0.0015)
                    .labelled_gauge("by", "By direction", "direction", |_| {
                        vec![("ingress".into(), 1), ("egress".into(), 2)]
                    }),
            ));
        s.n.store(7, Ordering::Relaxed);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        for line in [
            "# TYPE unicni_agent_peers gauge",
            "unicni_agent_peers 7",
            "# TYPE unicni_agent_passes counter",
            "unicni_agent_passes_total 7",
            "unicni_agent_seconds 0.0015",
            "unicni_agent_by{direction=\"ingress\"} 1",
            "unicni_agent_by{direction=\"egress\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
        assert_eq!(out.matches("# EOF").count(), 1, "{out}");
    }
}
