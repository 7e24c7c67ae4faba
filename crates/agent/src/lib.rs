//! The node agent's runtime, the same for every backend: the backend supplies a
//! [`NodeAgent`]; the runtime owns what they share.
//!
//! - one HTTP endpoint ([`http`]): `/healthz`, `/readyz` (the reason when not ready),
//!   `/metrics`;
//! - one prometheus-client registry every part registers into: the runtime's own
//!   `unicni_agent_ready` and `unicni_agent_pod_capacity`, the node agent's
//!   `unicni_agent_*`, the policy engine's `unicni_policy_*`; served as OpenMetrics;
//! - one shutdown path: SIGTERM or ctrl-c turns one watch channel true, which the node
//!   agent follows;
//! - the NetworkPolicy engine when `policy.enabled` ([`policy`]), started with the
//!   backend's pod-link naming and handed to the node agent as a [`unicni_core::Policy`];
//! - the eBPF Service load balancer when `services.enabled` ([`services`]): fed from the
//!   Kubernetes API or a manifests directory; the node is not ready before its first sync.

pub mod http;
pub mod policy;
pub mod services;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use unicni_config::Config;
use unicni_core::node::encode;
use unicni_core::{NodeAgent, NodeContext, Policy, Readiness};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("listen on agent.listen = {addr:?} (is another agent running?): {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("install the SIGTERM handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(
        "policy.enabled = true needs a source of policies: set policy.manifests_dir, or \
         store.kubeconfig / run in-cluster for the Kubernetes API"
    )]
    NoPolicySource,
    #[error("policy.enabled = true: connect to the Kubernetes API: {0}")]
    PolicyApi(#[source] unicni_core::Error),
    #[error("policy.enabled = true but NetworkPolicy cannot be enforced on this node: {0}")]
    PolicyEngine(#[source] unicni_policy_agent::Error),
    #[error(
        "services.enabled = true needs a source of Services: set services.manifests_dir, or \
         store.kubeconfig / run in-cluster for the Kubernetes API"
    )]
    NoServicesSource,
    #[error("services.enabled = true: connect to the Kubernetes API: {0}")]
    ServicesApi(#[source] unicni_core::Error),
    #[error(
        "services.enabled = true but the eBPF Service load balancer cannot run on this node: \
         {0} (turn services.enabled off to leave Services to kube-proxy)"
    )]
    ServicesLb(String),
    #[error("node {node} ({agent}): {source}")]
    Node {
        node: String,
        agent: String,
        #[source]
        source: unicni_core::Error,
    },
}

/// What the runtime itself reports of any node agent.
struct NodeReadout(Arc<dyn NodeAgent>);

impl std::fmt::Debug for NodeReadout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NodeReadout")
            .field(&self.0.describe())
            .finish()
    }
}

impl Collector for NodeReadout {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let ready = self.0.readiness().is_ready() as i64;
        encode(
            &mut e,
            "ready",
            "1 while the CNI plugin may add pods",
            ConstGauge::new(ready),
        )?;
        let pods = self.0.capacity().map(|c| c.pods as i64).unwrap_or(0);
        encode(
            &mut e,
            "pod_capacity",
            "Pods this node can host (0 until known; /readyz says what limits it)",
            ConstGauge::new(pods),
        )
    }
}

/// The node agent as the endpoint shows it: not ready while the Service load balancer has
/// not synced (pods started before would not reach Services), else the agent's own answer.
struct Gated {
    inner: Arc<dyn NodeAgent>,
    services: Option<Arc<services::Status>>,
}

#[async_trait::async_trait]
impl NodeAgent for Gated {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn is_pod_link(&self) -> fn(&str) -> bool {
        self.inner.is_pod_link()
    }
    fn register_metrics(&self, registry: &mut Registry) {
        self.inner.register_metrics(registry)
    }
    async fn run(&self, ctx: NodeContext) -> unicni_core::Result<()> {
        self.inner.run(ctx).await
    }
    fn readiness(&self) -> Readiness {
        match self.services.as_ref().and_then(|s| s.not_ready()) {
            Some(why) => match self.inner.readiness() {
                Readiness::NotReady(own) => Readiness::NotReady(format!("{own}; {why}")),
                Readiness::Ready(_) => Readiness::NotReady(why),
            },
            None => self.inner.readiness(),
        }
    }
    fn capacity(&self) -> Option<unicni_core::NodeCapacity> {
        self.inner.capacity()
    }
}

/// Registers the node agent's metrics and the runtime's own about it (`ready`,
/// `pod_capacity`) under the `unicni_agent` prefix.
pub fn register_node(registry: &mut Registry, agent: Arc<dyn NodeAgent>) {
    let sub = registry.sub_registry_with_prefix("unicni_agent");
    sub.register_collector(Box::new(NodeReadout(agent.clone())));
    agent.register_metrics(sub);
}

/// Turns true once, at SIGTERM or ctrl-c.
pub fn shutdown_signal() -> Result<watch::Receiver<bool>, AgentError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutdown signal received");
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Runs `agent` on node `node` until the shutdown signal (Ok) or until it fails. The
/// endpoint answers from the start: `/readyz` says why the node is not ready while the
/// policy engine and the agent start.
pub async fn run(config: &Config, node: &str, agent: Arc<dyn NodeAgent>) -> Result<(), AgentError> {
    // Before the endpoint: its readiness includes the load balancer's first sync.
    let services = services::start(config, node).await?;
    let shown: Arc<dyn NodeAgent> = Arc::new(Gated {
        inner: agent.clone(),
        services: services.as_ref().map(|s| s.status().clone()),
    });
    let mut registry = Registry::default();
    register_node(&mut registry, shown.clone());
    if let Some(s) = &services {
        s.register_metrics(registry.sub_registry_with_prefix("unicni_services"));
    }
    let registry = Arc::new(RwLock::new(registry));
    let listener = tokio::net::TcpListener::bind(&config.agent.listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: config.agent.listen.clone(),
            source,
        })?;
    tokio::spawn(http::serve(
        listener,
        http::Endpoint {
            node: shown,
            registry: registry.clone(),
        },
    ));
    let shutdown = shutdown_signal()?;
    // Held here for the agent's whole life: dropping the engine stops following policies.
    let policy: Option<Arc<dyn Policy>> =
        match policy::start(config, node, agent.is_pod_link()).await? {
            Some(engine) => {
                let mut r = registry.write().unwrap_or_else(|p| p.into_inner());
                engine.register_metrics(r.sub_registry_with_prefix("unicni_policy"));
                Some(engine)
            }
            None => None,
        };
    tracing::info!(node, agent = %agent.describe(), "starting the node agent");
    // Held for the agent's whole life: dropping it stops following Services.
    let _services = services;
    agent
        .run(NodeContext {
            shutdown,
            policy: policy.clone(),
        })
        .await
        .map_err(|source| AgentError::Node {
            node: node.to_string(),
            agent: agent.describe(),
            source,
        })
}
