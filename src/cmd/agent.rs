//! `unicni agent`: the node agent (the DaemonSet's main container).
//!
//! Wires the config to the flannel agent loop: opens the store (file or etcd), checks the
//! cluster lock, takes the node's subnet lease, programs the peers' datapath, and serves
//! `/healthz`, `/readyz` and `/metrics` on `agent.listen`.

use super::agent_http::Answer;
use super::common;
use anyhow::{Context, Result};
use async_trait::async_trait;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use unicni_config::{BackendKind, Config, FlannelMode, StoreKind};
use unicni_core::Store;
use unicni_flannel::agent::{Agent, AgentParams, Mode, Status};
use unicni_flannel::lease::{key, Lease, PREFIX};
use unicni_flannel::lease_store::{Claim, ExpiringStore, LeaseStore};
use unicni_store::{EtcdStore, FileStore, KubeNodes, KubeStore, LeasedCreate};

#[derive(clap::Args)]
pub struct Args {
    /// The cluster's config file (TOML or YAML).
    #[arg(long, default_value = "/etc/unicni/unicni.toml")]
    pub config: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = common::load_config(&args.config)?;
    if config.backend.kind == BackendKind::Terway {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("start the async runtime")?;
        rt.block_on(super::agent_terway::serve(config))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mode = match config.flannel.mode {
        FlannelMode::Vxlan => Mode::Vxlan,
        FlannelMode::HostGw => Mode::HostGw,
        FlannelMode::VpcRoute => Mode::VpcRoute,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(serve(config, mode))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config, mode: Mode) -> Result<()> {
    // The cloud first: a node that cannot reach it must not touch the cluster's store.
    let vpc = match mode {
        Mode::VpcRoute => {
            let network = config.flannel.network.parse().context("flannel.network")?;
            Some(
                unicni_flannel::vpcroute::connect(&config.cloud, network)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "flannel.mode = \"vpc-route\": {e}; check the [cloud] section \
                             (endpoint, metadata_endpoint, region, credentials)"
                        )
                    })?,
            )
        }
        _ => None,
    };
    let (plain, leases) = open_stores(&config).await?;
    let (lock, created) = common::check_lock(plain.as_ref(), &config).await?;
    tracing::info!(store = %plain.describe(), created, backend = %lock.backend, mode = %lock.mode, "config matches the cluster lock");
    let network = config.flannel.network.parse().context("flannel.network")?;
    let params = AgentParams {
        node: common::node_name(&config),
        network,
        subnet_len: config.flannel.subnet_len,
        mode,
        vni: config.flannel.vni,
        port: config.flannel.port,
        interface: config.flannel.interface.clone(),
        mtu: config.flannel.mtu,
        lease_ttl: Duration::from_secs(config.store.lease_ttl_seconds.max(1)),
        reconcile_every: Duration::from_secs(config.agent.reconcile_seconds),
        run_dir: config.node.run_dir.clone().into(),
        state_dir: config.node.state_dir.clone().into(),
        masq_table: config
            .flannel
            .masquerade
            .then(|| unicni_flannel::masq::table_name(&config.cni.network_name)),
        fast_path: config
            .flannel
            .fast_path
            .then(|| PathBuf::from(&config.bpf.pin_dir)),
        bpf_fallback: config.bpf.fallback,
    };
    // Until a lease is held the plugin must answer "try again later".
    unicni_flannel::agent::withdraw(&params);
    let status = Arc::new(Status::default());
    let listener = tokio::net::TcpListener::bind(&config.agent.listen)
        .await
        .with_context(|| {
            format!(
                "listen on agent.listen = {:?} (is another agent running?)",
                config.agent.listen
            )
        })?;
    let metrics = std::sync::Mutex::new(Metrics::new());
    let shown = status.clone();
    let policy_metrics = super::agent_policy::Metrics::default();
    let policy_shown = policy_metrics.clone();
    tokio::spawn(super::agent_http::serve(listener, move |path| {
        respond(path, &shown, &metrics, &policy_shown)
    }));
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
    });
    // NetworkPolicy (policy.enabled): lives as long as the agent.
    let _policy = super::agent_policy::start(&config).await?;
    if let Some(engine) = &_policy {
        policy_metrics.follow(engine, &config);
    }
    let agent = Agent::start(params.clone(), leases, status, vpc)
        .await
        .map_err(|e| anyhow::anyhow!("node {}: {e}", params.node))?;
    eprintln!(
        "agent: node {} holds {} (underlay {} {}, mode {})",
        params.node,
        agent.lease().subnet,
        agent.underlay().name,
        agent.underlay().ip,
        mode.as_str()
    );
    agent.run(rx).await.map_err(|e| anyhow::anyhow!("{e}"))
}

/// The plain store (lock) and the lease view of the same store.
async fn open_stores(c: &Config) -> Result<(Arc<dyn Store>, Arc<dyn LeaseStore>)> {
    match c.store.kind {
        StoreKind::File => {
            let s: Arc<dyn Store> = Arc::new(FileStore::new(&c.store.path));
            Ok((s.clone(), Arc::new(ExpiringStore::new(s))))
        }
        StoreKind::Etcd => {
            let s = EtcdStore::connect(&c.store.endpoints, &c.store.prefix).await?;
            Ok((Arc::new(s.clone()), Arc::new(EtcdLeases::new(s))))
        }
        StoreKind::Kubernetes => {
            let client =
                unicni_store::kube::client(c.store.kubeconfig.as_deref().map(std::path::Path::new))
                    .await?;
            let lock: Arc<dyn Store> = Arc::new(KubeStore::new(client.clone(), KUBE_NAMESPACE));
            Ok((
                lock,
                Arc::new(KubeLeases {
                    nodes: KubeNodes::new(client),
                }),
            ))
        }
    }
}

/// Where the Kubernetes store keeps its records (the cluster lock).
pub const KUBE_NAMESPACE: &str = "kube-system";

/// Kubernetes: the node's subnet is its `spec.podCIDR`; the agent publishes its underlay
/// address and VTEP MAC as node annotations. A node that is deleted is a peer that left.
struct KubeLeases {
    nodes: KubeNodes,
}

#[async_trait]
impl LeaseStore for KubeLeases {
    fn describe(&self) -> String {
        "kubernetes nodes (spec.podCIDR + unicni.io annotations)".into()
    }

    async fn list(&self) -> unicni_core::Result<Vec<Lease>> {
        Ok(self
            .nodes
            .list()
            .await?
            .into_iter()
            .filter_map(|n| {
                Some(Lease {
                    subnet: n.pod_cidr?,
                    node: n.node,
                    public_ip: n.public_ip,
                    vtep_mac: n.vtep_mac,
                    mode: n.mode,
                    expires_at: None,
                })
            })
            .collect())
    }

    async fn assigned(&self, node: &str) -> unicni_core::Result<Option<ipnet::IpNet>> {
        let n = self.nodes.get(node).await?;
        let cidr = n.pod_cidr.ok_or_else(|| {
            unicni_core::Error::TryAgain(format!(
                "node {node:?} has no spec.podCIDR yet: is the controller manager running with \
                 --allocate-node-cidrs?"
            ))
        })?;
        cidr.parse().map(Some).map_err(|_| {
            unicni_core::Error::InvalidConfig(format!(
                "node {node:?} has spec.podCIDR {cidr:?}, not a CIDR"
            ))
        })
    }

    async fn claim(&self, lease: &Lease, _ttl: Duration) -> unicni_core::Result<Claim> {
        let ip = lease.public_ip.as_deref().unwrap_or_default();
        let mode = lease.mode.as_deref().unwrap_or_default();
        self.nodes
            .annotate(&lease.node, ip, lease.vtep_mac.as_deref(), mode)
            .await?;
        Ok(Claim::Taken { token: 0 })
    }

    async fn renew(&self, lease: &Lease, _token: i64, _ttl: Duration) -> unicni_core::Result<bool> {
        // The lease is the node object itself: held while the node exists with this podCIDR.
        let n = self.nodes.get(&lease.node).await?;
        if n.pod_cidr.as_deref() != Some(lease.subnet.as_str()) {
            return Ok(false);
        }
        if n.public_ip != lease.public_ip || n.vtep_mac != lease.vtep_mac {
            self.claim(lease, Duration::ZERO).await?;
        }
        Ok(true)
    }

    async fn release(&self, _lease: &Lease, _token: i64) -> unicni_core::Result<()> {
        Ok(())
    }
}

/// Leases as etcd keys bound to etcd leases: the server deletes a dead node's key.
struct EtcdLeases {
    store: EtcdStore,
    watch: tokio::sync::Mutex<Option<etcd_client::WatchStream>>,
}

impl EtcdLeases {
    fn new(store: EtcdStore) -> EtcdLeases {
        EtcdLeases {
            store,
            watch: tokio::sync::Mutex::new(None),
        }
    }
}

fn lease_key(l: &Lease) -> unicni_core::Result<String> {
    let s = l.subnet.parse().map_err(|_| {
        unicni_core::Error::InvalidConfig(format!("lease subnet {:?} is not a CIDR", l.subnet))
    })?;
    Ok(key(&s))
}

#[async_trait]
impl LeaseStore for EtcdLeases {
    fn describe(&self) -> String {
        self.store.describe()
    }

    async fn list(&self) -> unicni_core::Result<Vec<Lease>> {
        Ok(self
            .store
            .list(PREFIX)
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    async fn claim(&self, lease: &Lease, ttl: Duration) -> unicni_core::Result<Claim> {
        let body = serde_json::to_vec(lease).expect("lease serializes");
        Ok(
            match self
                .store
                .create_with_ttl(&lease_key(lease)?, &body, ttl)
                .await?
            {
                LeasedCreate::Created(id) => Claim::Taken { token: id },
                LeasedCreate::Exists(v, id) => Claim::Held {
                    lease: serde_json::from_slice(&v).unwrap_or_default(),
                    token: id,
                },
            },
        )
    }

    async fn renew(&self, lease: &Lease, token: i64, _ttl: Duration) -> unicni_core::Result<bool> {
        if token == 0 || self.store.keep_alive(token).await? <= 0 {
            return Ok(false);
        }
        let k = lease_key(lease)?;
        let body = serde_json::to_vec(lease).expect("lease serializes");
        if self.store.get(&k).await?.as_deref() == Some(body.as_slice()) {
            return Ok(true);
        }
        self.store.put_with_lease(&k, &body, token).await
    }

    async fn release(&self, _lease: &Lease, token: i64) -> unicni_core::Result<()> {
        self.store.revoke(token).await
    }

    async fn wait_change(&self, max: Duration) {
        let mut guard = self.watch.lock().await;
        if guard.is_none() {
            match self.store.watch_prefix(PREFIX).await {
                Ok(s) => *guard = Some(s),
                Err(e) => tracing::warn!("watch leases: {e}; polling instead"),
            }
        }
        let Some(stream) = guard.as_mut() else {
            return tokio::time::sleep(max).await;
        };
        tokio::select! {
            m = stream.message() => {
                if !matches!(m, Ok(Some(_))) {
                    *guard = None;
                }
                // Let a burst of changes (a node joining writes once) settle into one pass.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ = tokio::time::sleep(max) => {}
        }
    }
}

type GaugeOf = fn(&Status) -> i64;
type CounterOf = fn(&Status) -> u64;

struct Metrics {
    registry: Registry,
    gauges: Vec<(Gauge, GaugeOf)>,
    counters: Vec<(Counter, CounterOf)>,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("unicni_agent"),
            gauges: Vec::new(),
            counters: Vec::new(),
        };
        m.gauge(
            "lease_held",
            "1 while the node holds its subnet lease",
            |s| s.lease_held.load(Ordering::Relaxed) as i64,
        );
        m.gauge("ready", "1 while the CNI plugin may add pods", |s| {
            s.ready.load(Ordering::Relaxed) as i64
        });
        m.gauge(
            "peers",
            "Peers whose datapath entries are all in place",
            |s| load(&s.peers) as i64,
        );
        m.gauge(
            "refused_peers",
            "Peers that cannot be programmed (bad lease, not L2-adjacent in host-gw)",
            |s| load(&s.refused_peers) as i64,
        );
        m.gauge("programmed_routes", "Peer routes programmed", |s| {
            load(&s.routes) as i64
        });
        m.gauge(
            "programmed_neighbours",
            "Permanent neighbour entries programmed (vxlan)",
            |s| load(&s.neighbours) as i64,
        );
        m.gauge("programmed_fdb", "FDB entries programmed (vxlan)", |s| {
            load(&s.fdb) as i64
        });
        m.gauge(
            "last_reconcile_milliseconds",
            "Duration of the last reconcile pass",
            |s| load(&s.last_reconcile_ms) as i64,
        );
        m.gauge(
            "vpc_route_quota_exceeded",
            "1 while this node's VPC route entry is refused for the route-table quota (vpc-route)",
            |s| s.route_quota_exceeded.load(Ordering::Relaxed) as i64,
        );
        m.gauge(
            "vpc_route_entries",
            "Available VPC route entries of the cluster network seen by the last pass (vpc-route)",
            |s| load(&s.vpc_route_entries) as i64,
        );
        m.gauge(
            "fast_path",
            "1 while the eBPF same-node fast path is loaded (flannel.fast_path)",
            |s| s.fast_path.load(Ordering::Relaxed) as i64,
        );
        m.counter("reconciles", "Reconcile passes", |s| load(&s.reconciles));
        m.counter(
            "reconcile_errors",
            "Failed kernel or store operations during reconcile",
            |s| load(&s.reconcile_errors),
        );
        m.counter(
            "repairs",
            "Entries or devices found missing or wrong and rewritten",
            |s| load(&s.repairs),
        );
        m.counter("removals", "Entries of departed peers removed", |s| {
            load(&s.removals)
        });
        m.counter("lease_renewals", "Subnet lease renewals", |s| {
            load(&s.lease_renewals)
        });
        m.counter(
            "lease_losses",
            "Times the subnet lease was found lost",
            |s| load(&s.lease_losses),
        );
        m
    }

    fn gauge(&mut self, name: &str, help: &str, f: GaugeOf) {
        let g = Gauge::default();
        self.registry.register(name, help, g.clone());
        self.gauges.push((g, f));
    }

    fn counter(&mut self, name: &str, help: &str, f: CounterOf) {
        let c = Counter::default();
        self.registry.register(name, help, c.clone());
        self.counters.push((c, f));
    }

    fn render(&self, s: &Status) -> String {
        for (g, f) in &self.gauges {
            g.set(f(s));
        }
        for (c, f) in &self.counters {
            let now = f(s);
            let had = c.get();
            if now > had {
                c.inc_by(now - had);
            }
        }
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn respond(
    path: &str,
    s: &Status,
    metrics: &std::sync::Mutex<Metrics>,
    policy: &super::agent_policy::Metrics,
) -> Answer {
    match path {
        "/healthz" => (200, "ok\n".to_string()),
        "/readyz" => {
            if s.ready.load(Ordering::Relaxed) {
                (200, format!("ready: subnet {}\n", s.subnet.lock().unwrap()))
            } else {
                let err = s.last_error.lock().unwrap().clone();
                if err.is_empty() {
                    (
                        503,
                        "not ready: no subnet lease published yet\n".to_string(),
                    )
                } else {
                    (503, format!("not ready: {err}\n"))
                }
            }
        }
        "/metrics" => (
            200,
            super::agent_http::with_families(metrics.lock().unwrap().render(s), &policy.render()),
        ),
        _ => super::agent_http::not_found(),
    }
}
