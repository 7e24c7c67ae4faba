//! The terway side of `unicni agent`: learns the instance from the metadata service and
//! the cloud, refuses an instance type that cannot host the configured mode, starts the
//! pool, serves the plugin's socket and keeps the pool between `pool.min` and `pool.max`.

use crate::node::{FastPathNode, HostNode, Node};
use crate::pool::{Exhausted, Pool, PoolParams, PoolStats};
use crate::server::{self, PodLookup, Readiness, Server};
use crate::state::StateFile;
use ipnet::IpNet;
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use unicni_bpf::{BpfError, TerwayFastPath};
use unicni_capacity::{InstanceTypeLimits, InstanceTypeTable};
use unicni_cloud::{Cloud, MetadataClient, PollPolicy};
use unicni_config::{Config, IpStack, TerwayDatapath, TerwayMode};
use unicni_core::node::Readiness as NodeReadiness;
use unicni_core::{Error, NodeAgent, NodeCapacity, NodeContext, Readout, Result};

const STARTING: &str = "the ENI pool is starting";

/// What `/readyz` and `/metrics` show.
#[derive(Debug, Default, Clone)]
pub struct AgentReport {
    pub ready: bool,
    pub reason: String,
    pub instance_type: String,
    pub capacity: u64,
    /// What limits `capacity`: the instance type's ENIs and addresses per ENI.
    pub limited_by: String,
    pub stats: PoolStats,
    pub maintain_errors: u64,
    /// The datapath pods get: "routing", "ebpf", or "routing (eBPF unavailable: why)".
    pub datapath: String,
}

pub struct TerwayAgent {
    pub readiness: Readiness,
    pub report: Arc<Mutex<AgentReport>>,
    socket: PathBuf,
}

fn md(e: unicni_cloud::CloudError) -> Error {
    Error::Unavailable(format!(
        "instance metadata: {e}; check cloud.metadata_endpoint"
    ))
}

/// Whether `limits` can host pods in the configured mode and stack; the reason if not.
pub fn admit(
    limits: &InstanceTypeLimits,
    mode: TerwayMode,
    stack: IpStack,
) -> std::result::Result<(), String> {
    let exclusive = mode == TerwayMode::ExclusiveEni;
    if !exclusive && !limits.shared_admitted() {
        return Err(format!(
            "instance type {} can host {} pods in shared-eni mode ({} ENIs, {} IPv4 per ENI); \
             a node needs more than 11: use a larger instance type",
            limits.name,
            limits.shared_pods(),
            limits.enis,
            limits.ipv4_per_eni
        ));
    }
    if exclusive && limits.exclusive_pods() == 0 {
        return Err(format!(
            "instance type {} has a single ENI and cannot host exclusive-ENI pods",
            limits.name
        ));
    }
    if stack == IpStack::Dual && !limits.shared_dual_stack() {
        return Err(format!(
            "cluster.ip_stack = \"dual\" needs as many IPv6 as IPv4 addresses per ENI; \
             instance type {} has {} IPv4 and {} IPv6 per ENI",
            limits.name, limits.ipv4_per_eni, limits.ipv6_per_eni
        ));
    }
    Ok(())
}

/// The instance type's limits: from the cloud, else the built-in table.
pub async fn limits_of(cloud: &dyn Cloud, instance_type: &str) -> Result<InstanceTypeLimits> {
    match cloud
        .describe_instance_types(&[instance_type.to_string()])
        .await
    {
        Ok(list) => {
            if let Some(l) = list.into_iter().find(|l| l.instance_type == instance_type) {
                return Ok(InstanceTypeLimits {
                    name: l.instance_type,
                    enis: l.eni_quantity as u64,
                    ipv4_per_eni: l.ipv4_per_eni as u64,
                    ipv6_per_eni: l.ipv6_per_eni as u64,
                });
            }
        }
        Err(e) => tracing::warn!("DescribeInstanceTypes failed, using the built-in table: {e}"),
    }
    InstanceTypeTable::builtin()
        .get(instance_type)
        .cloned()
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "instance type {instance_type} is unknown to the cloud API and to the built-in table"
            ))
        })
}

/// The datapath the agent hands to pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatapathChoice {
    /// `terway.datapath = "routing"` (or exclusive mode).
    Routing,
    /// The eBPF fast path is loaded and pinned here.
    Ebpf(PathBuf),
    /// `terway.datapath = "ebpf"`, but eBPF cannot be used on this node and
    /// `bpf.fallback = true`: routing, and why.
    Fallback(String),
}

impl DatapathChoice {
    pub fn pin_dir(&self) -> Option<&std::path::Path> {
        match self {
            DatapathChoice::Ebpf(p) => Some(p),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            DatapathChoice::Routing => "routing".into(),
            DatapathChoice::Ebpf(_) => "ebpf".into(),
            DatapathChoice::Fallback(why) => format!("routing (eBPF unavailable: {why})"),
        }
    }
}

/// Loads the fast path when the config asks for it (`load` is
/// [`TerwayFastPath::load_or_adopt`] outside tests) and fills the host-path CIDRs (Service
/// CIDRs, node addresses). When that fails: routing if `bpf.fallback`, else `Err` with the
/// reason the agent refuses readiness for.
pub fn choose_datapath(
    c: &Config,
    host_cidrs: &[IpNet],
    load: impl FnOnce(&std::path::Path) -> std::result::Result<TerwayFastPath, BpfError>,
) -> std::result::Result<DatapathChoice, String> {
    if c.terway.datapath != TerwayDatapath::Ebpf || c.terway.mode != TerwayMode::SharedEni {
        return Ok(DatapathChoice::Routing);
    }
    let pin = PathBuf::from(&c.bpf.pin_dir);
    let cidrs: Vec<(std::net::IpAddr, u8)> = host_cidrs
        .iter()
        .map(|n| (n.network(), n.prefix_len()))
        .collect();
    let loaded = load(&pin).and_then(|mut fp| fp.set_host_cidrs(&cidrs));
    match loaded {
        Ok(()) => {
            tracing::info!(pin_dir = %pin.display(), "terway datapath: routing + eBPF fast path");
            Ok(DatapathChoice::Ebpf(pin))
        }
        Err(e) => {
            let why = e.load_failure();
            if c.bpf.fallback {
                tracing::warn!(
                    "terway.datapath = \"ebpf\": {why}; pods get the routing datapath \
                     (bpf.fallback = true)"
                );
                Ok(DatapathChoice::Fallback(why))
            } else {
                Err(format!(
                    "terway.datapath = \"ebpf\" and bpf.fallback = false: {why}"
                ))
            }
        }
    }
}

/// Forgets fast-path state of pods whose veth is gone.
fn reconcile_fast_path(pin: &std::path::Path) {
    match TerwayFastPath::open(pin).and_then(|mut fp| fp.reconcile()) {
        Ok(r) => r.log(),
        Err(e) => tracing::warn!("eBPF fast path reconcile: {e}"),
    }
}

/// NetworkPolicy on the ENI of every running exclusive-ENI pod (see
/// `datapath::ensure_exclusive_policy`), off the runtime's threads. True when the pass
/// had no errors.
async fn ensure_exclusive_policy(pool: &Pool, pin: &std::path::Path) -> bool {
    let pods = pool.pods_with_netns().await;
    let pin = pin.to_path_buf();
    let done = tokio::task::spawn_blocking(move || {
        let results = match crate::datapath::ensure_exclusive_policy(&pin, &pods) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("NetworkPolicy on exclusive-ENI pods: {e}");
                return false;
            }
        };
        let mut clean = true;
        for (id, r) in results {
            match r {
                Ok(true) => {
                    tracing::info!(attachment = %id, "NetworkPolicy attached to the pod's ENI")
                }
                Ok(false) => {}
                Err(e) => {
                    clean = false;
                    tracing::warn!(attachment = %id, "NetworkPolicy on the pod's ENI: {e}")
                }
            }
        }
        clean
    })
    .await;
    done.unwrap_or_else(|e| {
        tracing::warn!("NetworkPolicy pass over exclusive-ENI pods: {e}");
        false
    })
}

impl TerwayAgent {
    /// Binds the socket and starts the pool in the background; the agent is not ready
    /// (the plugin is told to retry) until the pool has been rebuilt.
    /// `policy`: the NetworkPolicy engine's pin directory when it runs (exclusive-ENI
    /// pods get its programs on their ENI); `report` is where the agent reports.
    pub async fn start(
        config: &Config,
        cloud: Arc<dyn Cloud>,
        metadata: Arc<MetadataClient>,
        pods: Arc<dyn PodLookup>,
        policy: Option<PathBuf>,
        report: Arc<Mutex<AgentReport>>,
    ) -> Result<TerwayAgent> {
        let run_dir = PathBuf::from(&config.node.run_dir);
        let socket = server::socket_path(&run_dir);
        let listener = server::bind(&socket)?;
        let readiness = Readiness::new(STARTING);
        let srv = Arc::new(Server {
            ready: readiness.clone(),
            pods,
        });
        tokio::spawn(srv.serve(listener));
        let agent = TerwayAgent {
            readiness,
            report,
            socket,
        };
        let params = agent
            .params(config, cloud.as_ref(), &metadata, policy)
            .await;
        let mut params = match params {
            Ok(p) => p,
            Err(e) => {
                agent.not_ready(e.to_string());
                return Ok(agent);
            }
        };
        crate::datapath::prepare_node(params.dual).await?;
        let mut host_cidrs = params.service_cidrs.clone();
        host_cidrs.extend(params.node_ips.iter().copied());
        let fast = match choose_datapath(config, &host_cidrs, |pin| {
            TerwayFastPath::load_or_adopt(pin)
        }) {
            Ok(d) => d,
            Err(why) => {
                agent
                    .report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .datapath = "none".into();
                agent.not_ready(why);
                return Ok(agent);
            }
        };
        agent
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .datapath = fast.describe();
        params.fast_path = fast.pin_dir().map(|p| p.display().to_string());
        let host: Arc<dyn Node> = Arc::new(HostNode {
            metadata: metadata.clone(),
        });
        let node: Arc<dyn Node> = match fast.pin_dir() {
            Some(pin) => Arc::new(FastPathNode {
                inner: host,
                pin: pin.to_path_buf(),
            }),
            None => host,
        };
        let reconcile_pin = fast.pin_dir().map(|p| p.to_path_buf());
        // Exclusive ENI with NetworkPolicy: the plugin attaches the programs to each new
        // pod's ENI; one pass once the pool is ready (repeated until it has no errors)
        // covers pods that started before policy was turned on, which only an agent
        // restart does.
        let policy_pin = params.policy.clone().map(PathBuf::from);
        let state = StateFile::new(std::path::Path::new(&config.node.state_dir));
        let readiness = agent.readiness.clone();
        let report = agent.report.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            let pool = loop {
                match Pool::start(params.clone(), cloud.clone(), node.clone(), state.clone()).await
                {
                    Ok(p) => break Arc::new(p),
                    Err(e) => {
                        let why = format!("rebuilding the ENI pool failed: {e}; retrying");
                        tracing::warn!("{why}");
                        readiness.set_not_ready(why.clone());
                        report.lock().unwrap_or_else(|e| e.into_inner()).reason = why;
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            };
            let stats = pool.stats().await;
            {
                let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                r.ready = true;
                r.reason.clear();
                r.stats = stats;
                if pool.prefix_mode() {
                    // The node's recorded mode: its capacity counts /28 prefixes.
                    r.capacity = pool.capacity();
                    r.limited_by
                        .push_str(", prefix mode: /28 prefixes of 16 addresses");
                }
            }
            readiness.set_ready(pool.clone());
            tracing::info!(
                capacity = pool.capacity(),
                "ENI pool ready; serving the plugin"
            );
            let mut pass: u64 = 0;
            let mut policy_pin = policy_pin;
            loop {
                pass += 1;
                // Pods deleted without a DEL (agent down, node crash) leave entries and
                // tcx pins of veths that are gone.
                if let (Some(pin), true) = (&reconcile_pin, pass.is_multiple_of(15)) {
                    reconcile_fast_path(pin);
                }
                if let (Some(pin), 1) = (&policy_pin, pass % 5) {
                    if ensure_exclusive_policy(&pool, pin).await {
                        policy_pin = None;
                    }
                }
                if let Err(e) = pool.maintain().await {
                    tracing::warn!("pool maintenance: {e}");
                    report
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .maintain_errors += 1;
                }
                let stats = pool.stats().await;
                report.lock().unwrap_or_else(|e| e.into_inner()).stats = stats;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        Ok(agent)
    }

    fn not_ready(&self, why: String) {
        tracing::error!("node not ready: {why}");
        self.readiness.set_not_ready(why.clone());
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        r.ready = false;
        r.reason = why;
    }

    async fn params(
        &self,
        c: &Config,
        cloud: &dyn Cloud,
        metadata: &MetadataClient,
        policy: Option<PathBuf>,
    ) -> Result<PoolParams> {
        let instance_id = metadata.instance_id().await.map_err(md)?;
        let zone = metadata.zone_id().await.map_err(md)?;
        let instance_type = metadata.instance_type().await.map_err(md)?;
        let node_ip = metadata.get("meta-data/private-ipv4").await.map_err(md)?;
        let limits = limits_of(cloud, &instance_type).await?;
        {
            let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
            r.instance_type = instance_type.clone();
            r.capacity = limits.pods_in_mode(c.terway.mode == TerwayMode::ExclusiveEni);
            r.limited_by = format!(
                "instance type {}: {} ENIs, {} IPv4 per ENI ({})",
                limits.name,
                limits.enis,
                limits.ipv4_per_eni,
                c.terway.mode.as_str()
            );
        }
        admit(&limits, c.terway.mode, c.cluster.ip_stack).map_err(Error::Unavailable)?;
        let node_ips: Vec<IpNet> = node_ip
            .trim()
            .parse::<std::net::IpAddr>()
            .map(|ip| vec![IpNet::from(ip)])
            .unwrap_or_default();
        let service_cidrs = c.cluster.service_cidrs();
        let exclusive = c.terway.mode == TerwayMode::ExclusiveEni;
        Ok(PoolParams {
            instance_id,
            zone,
            cluster: c.cluster.name.clone(),
            limits,
            exclusive,
            ip_prefix: c.terway.ip_prefix && !exclusive,
            dual: c.cluster.ip_stack == IpStack::Dual,
            vswitches: c.terway.vswitches.clone(),
            security_groups: c.terway.security_groups.clone(),
            min: c.terway.pool.min as usize,
            max: c.terway.pool.max as usize,
            hold: Duration::from_secs(c.terway.fixed_ip_hold_seconds),
            mtu: 1500,
            node_ips,
            service_cidrs,
            fast_path: None,
            policy: policy
                .filter(|_| exclusive)
                .map(|p| p.display().to_string()),
            attach: PollPolicy {
                interval: Duration::from_millis(100),
                timeout: Duration::from_secs(60),
            },
            visible_timeout: Duration::from_secs(20),
            coalesce: Duration::from_millis(c.terway.pool.coalesce_ms),
            warm_up: c.terway.pool.warm_up as usize,
            high_watermark_percent: c.terway.pool.high_watermark_percent,
            idle_reclaim: (c.terway.pool.idle_reclaim_seconds > 0)
                .then(|| Duration::from_secs(c.terway.pool.idle_reclaim_seconds)),
            reclaim_batch: c.terway.pool.reclaim_batch as usize,
            reclaim_jitter_percent: c.terway.pool.reclaim_jitter_percent,
        })
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    pub fn report(&self) -> AgentReport {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The terway node agent as the agent runtime runs it ([`unicni_core::NodeAgent`]).
pub struct TerwayNode {
    config: Config,
    cloud: Arc<dyn Cloud>,
    metadata: Arc<MetadataClient>,
    pods: Arc<dyn PodLookup>,
    report: Arc<Mutex<AgentReport>>,
    mode: TerwayMode,
    /// The Kubernetes client and this node's name (`store.kind = "kubernetes"`): the pool's
    /// exhaustion becomes a Node condition and Events ([`crate::ip_condition`]).
    kube: Option<(kube::Client, String)>,
}

impl TerwayNode {
    /// The clients the agent needs: instance metadata, the cloud API, pod annotations.
    pub async fn new(c: &Config, node: &str) -> Result<TerwayNode> {
        let metadata = Arc::new(
            MetadataClient::new(c.cloud.metadata_endpoint.as_deref()).map_err(|e| {
                Error::InvalidConfig(format!("the [cloud] section's metadata_endpoint: {e}"))
            })?,
        );
        let cloud: Arc<dyn Cloud> =
            Arc::new(unicni_cloud::from_config(&c.cloud).await.map_err(|e| {
                Error::Unavailable(format!(
                    "backend.kind = \"terway\" needs the [cloud] section (endpoint, region, \
                     credentials): {e}"
                ))
            })?);
        let pods = crate::podinfo::from_config(c, node).await?;
        let kube = match c.store.kind {
            unicni_config::StoreKind::Kubernetes => {
                let kc = c.store.kubeconfig.as_deref().map(std::path::Path::new);
                Some((unicni_store::kube::client(kc).await?, node.to_string()))
            }
            _ => None,
        };
        Ok(TerwayNode {
            kube,
            config: c.clone(),
            cloud,
            metadata,
            pods,
            report: Arc::new(Mutex::new(AgentReport {
                reason: STARTING.into(),
                ..Default::default()
            })),
            mode: c.terway.mode,
        })
    }

    pub fn report(&self) -> AgentReport {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn report_of(r: &Mutex<AgentReport>) -> std::sync::MutexGuard<'_, AgentReport> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// A gauge read from the agent's report at scrape time: name, help, reading.
type Gauge = (&'static str, &'static str, fn(&AgentReport) -> i64);

#[rustfmt::skip]
const GAUGES: [Gauge; 8] = [
    ("enis", "Secondary ENIs attached for pods", |r| r.stats.enis as i64),
    ("pool_idle", "Idle addresses (shared) or ENIs (exclusive) ready for pods", |r| r.stats.idle as i64),
    ("pool_in_use", "Attachments holding addresses", |r| r.stats.in_use as i64),
    ("fixed_ip_holds", "Fixed addresses held for deleted pods", |r| r.stats.held as i64),
    ("pool_maintain_errors", "Failed pool maintenance passes", |r| r.maintain_errors as i64),
    ("pool_vswitches_exhausted", "1 while every vSwitch pods may use is out of addresses (add a vSwitch to terway.vswitches)", |r| (r.stats.exhausted == Some(Exhausted::Vswitch)) as i64),
    ("pool_eni_quota_exhausted", "1 while the instance type's ENIs are all attached and full (fewer pods or a larger instance type)", |r| (r.stats.exhausted == Some(Exhausted::EniQuota)) as i64),
    ("fast_path", "1 while pods get the eBPF fast path (terway.datapath = \"ebpf\" and eBPF usable)", |r| (r.datapath == "ebpf") as i64),
];

#[async_trait::async_trait]
impl NodeAgent for TerwayNode {
    fn describe(&self) -> String {
        format!("terway {}", self.mode.as_str())
    }

    fn is_pod_link(&self) -> fn(&str) -> bool {
        crate::datapath::names::is_host_veth
    }

    fn register_metrics(&self, r: &mut Registry) {
        let m = GAUGES
            .into_iter()
            .fold(Readout::new(self.report.clone()), |m, (name, help, f)| {
                m.gauge(name, help, move |r| f(&report_of(r)))
            });
        r.register_collector(Box::new(m));
    }

    async fn run(&self, ctx: NodeContext) -> Result<()> {
        let agent = TerwayAgent::start(
            &self.config,
            self.cloud.clone(),
            self.metadata.clone(),
            self.pods.clone(),
            ctx.policy.as_ref().map(|p| p.pin_dir().to_path_buf()),
            self.report.clone(),
        )
        .await?;
        tracing::info!(
            mode = self.mode.as_str(),
            socket = %agent.socket().display(),
            "terway agent serving the plugin"
        );
        let mut shutdown = ctx.shutdown;
        if let Some((client, node)) = &self.kube {
            let condition = unicni_store::node_condition::NodeCondition::new(
                client.clone(),
                node,
                crate::ip_condition::CONDITION,
                crate::ip_condition::COMPONENT,
            );
            tokio::spawn(crate::ip_condition::watch(
                self.report.clone(),
                condition,
                shutdown.clone(),
                Duration::from_secs(2),
            ));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        // Pods keep their addresses: the pool and the state file stay for the next start.
        let _ = std::fs::remove_file(agent.socket());
        Ok(())
    }

    fn readiness(&self) -> NodeReadiness {
        if let Err(why) = self.pods.synced() {
            return NodeReadiness::NotReady(why);
        }
        let r = report_of(&self.report);
        if r.ready {
            // Pods already here keep running: ready, and the reason says what ran out.
            let exhausted = r
                .stats
                .exhausted_reason
                .as_ref()
                .map(|why| format!("; ENI pool exhausted, new pods fail: {why}"))
                .unwrap_or_default();
            NodeReadiness::Ready(format!(
                "{} pods on {} ({} idle, {} in use), datapath {}{exhausted}",
                r.capacity, r.instance_type, r.stats.idle, r.stats.in_use, r.datapath
            ))
        } else {
            NodeReadiness::NotReady(r.reason.clone())
        }
    }

    fn capacity(&self) -> Option<NodeCapacity> {
        let r = report_of(&self.report);
        (!r.instance_type.is_empty()).then(|| NodeCapacity {
            pods: r.capacity,
            limited_by: r.limited_by.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ebpf_config(pin: &std::path::Path, fallback: bool) -> Config {
        let mut c = Config::default();
        c.backend.kind = unicni_config::BackendKind::Terway;
        c.terway.datapath = TerwayDatapath::Ebpf;
        c.bpf.pin_dir = pin.display().to_string();
        c.bpf.fallback = fallback;
        c
    }

    fn cidrs() -> Vec<IpNet> {
        vec![
            "10.96.0.0/12".parse().unwrap(),
            "fd00::/108".parse().unwrap(),
        ]
    }

    /// A pin directory off bpffs (a plain temporary directory): the real loader fails with
    /// the "eBPF cannot be used" error, no root or mocking needed.
    #[test]
    fn unusable_ebpf_falls_back_to_routing_or_refuses_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("unicni");
        let c = ebpf_config(&pin, true);
        let got = choose_datapath(&c, &cidrs(), TerwayFastPath::load_or_adopt).unwrap();
        let DatapathChoice::Fallback(why) = &got else {
            panic!("{got:?}");
        };
        assert!(why.contains("eBPF cannot be used on this node"), "{why}");
        assert!(why.contains(&pin.display().to_string()), "{why}");
        assert!(got.describe().starts_with("routing (eBPF unavailable"));
        assert_eq!(got.pin_dir(), None);

        let c = ebpf_config(&pin, false);
        let err = choose_datapath(&c, &cidrs(), TerwayFastPath::load_or_adopt).unwrap_err();
        assert!(err.contains("bpf.fallback = false"), "{err}");
        assert!(err.contains("eBPF cannot be used"), "{err}");
        assert!(!pin.exists(), "nothing created off bpffs");
    }

    #[test]
    fn every_load_failure_is_handled_alike() {
        let dir = tempfile::tempdir().unwrap();
        let c = ebpf_config(dir.path(), true);
        let got = choose_datapath(&c, &cidrs(), |_| {
            Err(BpfError::Verifier {
                program: "uc_tw_pod".into(),
                log: "R1 invalid mem access".into(),
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            })
        })
        .unwrap();
        assert!(
            matches!(&got, DatapathChoice::Fallback(w) if w.contains("uc_tw_pod")),
            "{got:?}"
        );
        let c = ebpf_config(dir.path(), false);
        let err = choose_datapath(&c, &cidrs(), |_| {
            Err(BpfError::Kernel {
                op: "attach".into(),
                detail: "EBUSY".into(),
            })
        })
        .unwrap_err();
        assert!(err.contains("loading the eBPF fast path failed"), "{err}");
    }

    #[test]
    fn routing_and_exclusive_mode_never_touch_bpf() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ebpf_config(dir.path(), false);
        c.terway.datapath = TerwayDatapath::Routing;
        let load = |_: &std::path::Path| -> std::result::Result<TerwayFastPath, BpfError> {
            panic!("must not load")
        };
        assert_eq!(
            choose_datapath(&c, &cidrs(), load).unwrap(),
            DatapathChoice::Routing
        );
        c.terway.datapath = TerwayDatapath::Ebpf;
        c.terway.mode = TerwayMode::ExclusiveEni;
        assert_eq!(
            choose_datapath(&c, &cidrs(), load).unwrap(),
            DatapathChoice::Routing
        );
    }
}
