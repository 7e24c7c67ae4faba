//! The engine: one task that owns the pinned policy datapath and keeps it in step with
//! the policy source (compile for this node's pods, update the maps incrementally), the
//! node's pod veths (attach the programs to every one, as soon as the kernel reports it)
//! and the node's addresses.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use unicni_bpf::PolicyDatapath;
use unicni_policy::{compile_where, Snapshot};

use crate::kernel::{Changes, Kernel};
use crate::source::Source;
use crate::state::{Applied, Desired};
use crate::Error;

/// How the engine runs on a node.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's name: pods with this `spec.nodeName` are the local ones.
    pub node: String,
    /// The agent's bpffs pin directory; the policy lives in its `policy/` subdirectory.
    pub pin_dir: PathBuf,
    /// Which veths are pods' host sides (the backend's naming).
    pub is_pod_veth: fn(&str) -> bool,
    /// The cluster's Service CIDRs: a local pod's traffic to them is judged after the
    /// host translated it to a backend (at the backend's veth, or at the uplink it
    /// leaves through).
    pub service_cidrs: Vec<ipnet::IpNet>,
    /// Period of the full pass (every pod veth re-checked, node addresses re-read, stale
    /// attachments forgotten) on top of the kernel's change notifications.
    pub rescan: Duration,
    /// Where to write a JSON summary after every update (the policies applied, counts,
    /// the last error): for operators and the lab, which waits for a policy to be
    /// applied on every node.
    pub status_file: Option<PathBuf>,
}

impl EngineConfig {
    pub fn new(node: impl Into<String>, pin_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            node: node.into(),
            pin_dir: pin_dir.into(),
            is_pod_veth: |_| false,
            service_cidrs: Vec::new(),
            rescan: Duration::from_secs(2),
            status_file: None,
        }
    }
}

/// What the engine has done, for /metrics, the status file and tests.
#[derive(Debug, Default)]
pub struct Status {
    /// A snapshot has been applied since start.
    pub synced: AtomicBool,
    pub syncs: AtomicU64,
    pub sync_errors: AtomicU64,
    pub policies: AtomicU64,
    /// Local pod addresses in the maps (every pod of this node, selected or not).
    pub local_pods: AtomicU64,
    /// Local pod addresses a policy isolates for ingress.
    pub isolated_ingress: AtomicU64,
    /// Local pod addresses a policy isolates for egress.
    pub isolated_egress: AtomicU64,
    pub rules: AtomicU64,
    pub port_sets: AtomicU64,
    pub attached_veths: AtomicU64,
    /// Uplinks (underlay, vxlan, ENI links) carrying the programs.
    pub attached_uplinks: AtomicU64,
    pub attach_errors: AtomicU64,
    pub node_addresses: AtomicU64,
    /// Time the last update of the maps took (compile + map writes), microseconds.
    pub last_sync_us: AtomicU64,
    /// Map operations of the last update.
    pub last_changes: AtomicU64,
    /// When the last snapshot was applied without error, seconds since the Unix epoch.
    pub last_sync_unix: AtomicU64,
    pub last_error: Mutex<String>,
}

impl Status {
    fn error(&self, e: impl std::fmt::Display) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A running engine. Dropping it stops the task and leaves the
/// datapath as it is: programs, rules and conntrack stay pinned and keep enforcing.
pub struct Engine {
    status: Arc<Status>,
    pin_dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

type Latest = Option<Result<Arc<Snapshot>, String>>;

impl Engine {
    /// Loads (or adopts) the policy datapath, attaches the programs to the pod veths present
    /// now, and starts following `source`. Fails when eBPF cannot be used (see
    /// `BpfError::is_unavailable`): enforcement cannot fall back to anything. Must be
    /// called inside a tokio runtime whose threads are in the node's network namespace.
    pub async fn start(config: EngineConfig, source: Source) -> Result<Engine, Error> {
        let mut dp = PolicyDatapath::load_or_adopt(&config.pin_dir)?;
        let pin_dir = config.pin_dir.clone();
        let services: Vec<(IpAddr, u8)> = config
            .service_cidrs
            .iter()
            .map(|n| (n.network(), n.prefix_len()))
            .collect();
        dp.set_services(&services)?;
        let applied = Applied::read(&dp)?;
        let kernel = Kernel::connect()?;
        let changes = match Changes::subscribe(unicni_net::events::LINKS_AND_ADDRESSES) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("{e}; new pod veths are found by the periodic pass only");
                None
            }
        };
        let status = Arc::new(Status::default());
        let mut core = Core {
            config,
            status: status.clone(),
            kernel,
            applied,
            attached: BTreeSet::new(),
            uplinks: BTreeSet::new(),
        };
        core.sync_node(&mut dp).await;
        core.sync_links(&mut dp, true).await;
        tracing::info!(
            node = %core.config.node,
            source = %source.describe(),
            pin_dir = %dp.dir().display(),
            veths = core.attached.len(),
            "NetworkPolicy engine started"
        );

        // The source runs on its own; the engine always takes the newest snapshot.
        let (tx, rx) = watch::channel::<Latest>(None);
        let mut source = source;
        let feeder = tokio::spawn(async move {
            loop {
                let next = source.next().await.map(Arc::new).map_err(|e| e.to_string());
                if tx.send(Some(next)).is_err() {
                    return;
                }
            }
        });
        let main = tokio::spawn(core.run(dp, rx, changes));
        Ok(Engine {
            status,
            pin_dir,
            tasks: vec![feeder, main],
        })
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Waits until the first snapshot has been applied, or `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.status.synced.load(Ordering::Relaxed) {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// The engine is the one implementation of the core's `Policy`: the runtime starts it and
/// hands it to the backend's node agent.
#[async_trait::async_trait]
impl unicni_core::Policy for Engine {
    fn pin_dir(&self) -> &std::path::Path {
        &self.pin_dir
    }

    fn status(&self) -> unicni_core::PolicyStatus {
        let s = &self.status;
        unicni_core::PolicyStatus {
            synced: s.synced.load(Ordering::Relaxed),
            policies: s.policies.load(Ordering::Relaxed),
            endpoints: s.local_pods.load(Ordering::Relaxed),
            attached_links: s.attached_veths.load(Ordering::Relaxed),
            last_error: s.last_error(),
        }
    }

    async fn wait_synced(&self, timeout: Duration) -> bool {
        Engine::wait_synced(self, timeout).await
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(crate::metrics::PolicyMetrics::new(
            self.status.clone(),
            self.pin_dir.clone(),
        )));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Core {
    config: EngineConfig,
    status: Arc<Status>,
    kernel: Kernel,
    applied: Applied,
    /// Veths the programs were attached to by this run.
    attached: BTreeSet<u32>,
    /// Uplinks the programs were attached to by this run.
    uplinks: BTreeSet<u32>,
}

impl Core {
    async fn run(
        mut self,
        mut dp: PolicyDatapath,
        mut snapshots: watch::Receiver<Latest>,
        mut changes: Option<Changes>,
    ) {
        let mut tick = tokio::time::interval(self.config.rescan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = snapshots.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let latest = snapshots.borrow_and_update().clone();
                    match latest {
                        Some(Ok(snap)) => self.apply(&mut dp, &snap),
                        Some(Err(e)) => {
                            tracing::error!("policy source: {e}; keeping the rules in place");
                            self.status.sync_errors.fetch_add(1, Ordering::Relaxed);
                            self.status.error(e);
                        }
                        None => {}
                    }
                }
                more = async {
                    match changes.as_mut() {
                        Some(c) => c.next(Duration::from_millis(20)).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if !more {
                        changes = None;
                    }
                    self.sync_links(&mut dp, false).await;
                    self.sync_node(&mut dp).await;
                }
                _ = tick.tick() => {
                    self.sync_links(&mut dp, true).await;
                    self.sync_node(&mut dp).await;
                    if let Err(e) = dp.reconcile() {
                        tracing::warn!("policy attachments: {e}");
                    }
                }
            }
        }
    }

    fn apply(&mut self, dp: &mut PolicyDatapath, snap: &Snapshot) {
        let started = Instant::now();
        let node = self.config.node.as_str();
        let compiled = compile_where(snap, |p| p.node.as_deref() == Some(node));
        let desired = Desired::from_compiled(&compiled);
        match self.applied.update(dp, &desired) {
            Ok(changes) => {
                let us = started.elapsed().as_micros() as u64;
                let s = &self.status;
                s.policies
                    .store(snap.policies.len() as u64, Ordering::Relaxed);
                s.local_pods
                    .store(desired.pods.len() as u64, Ordering::Relaxed);
                let isolated = |flag: u32| desired.pods.values().filter(|f| *f & flag != 0).count();
                s.isolated_ingress.store(
                    isolated(unicni_bpf::policy::ISOLATED_INGRESS) as u64,
                    Ordering::Relaxed,
                );
                s.isolated_egress.store(
                    isolated(unicni_bpf::policy::ISOLATED_EGRESS) as u64,
                    Ordering::Relaxed,
                );
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                s.last_sync_unix.store(now, Ordering::Relaxed);
                s.rules.store(desired.rules.len() as u64, Ordering::Relaxed);
                s.port_sets
                    .store(self.applied.sets.len() as u64, Ordering::Relaxed);
                s.last_sync_us.store(us, Ordering::Relaxed);
                s.last_changes
                    .store(changes.total() as u64, Ordering::Relaxed);
                s.syncs.fetch_add(1, Ordering::Relaxed);
                s.synced.store(true, Ordering::Relaxed);
                s.error("");
                self.write_status(snap, &desired, us);
                if changes.total() > 0 {
                    tracing::info!(
                        policies = snap.policies.len(),
                        local_pod_addresses = desired.pods.len(),
                        rules = desired.rules.len(),
                        port_sets = self.applied.sets.len(),
                        map_writes = changes.total(),
                        micros = us,
                        "NetworkPolicy applied"
                    );
                }
            }
            Err(e) => {
                tracing::error!("updating the policy maps: {e}");
                self.status.sync_errors.fetch_add(1, Ordering::Relaxed);
                self.status.error(&e);
                // Start the next update from what the maps really hold.
                match Applied::read(dp) {
                    Ok(a) => self.applied = a,
                    Err(e) => tracing::error!("reading the policy maps back: {e}"),
                }
            }
        }
    }

    fn write_status(&self, snap: &Snapshot, desired: &Desired, micros: u64) {
        let Some(path) = &self.config.status_file else {
            return;
        };
        let policies: Vec<String> = snap
            .policies
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        let body = serde_json::json!({
            "node": self.config.node,
            "syncs": self.status.syncs.load(Ordering::Relaxed),
            "policies": policies,
            "local_pod_addresses": desired.pods.len(),
            "isolated_pod_addresses": desired.pods.values().filter(|f| **f != 0).count(),
            "rules": desired.rules.len(),
            "port_sets": self.applied.sets.len(),
            "attached_veths": self.attached.len(),
            "attached_uplinks": self.uplinks.len(),
            "last_sync_micros": micros,
        });
        let text = format!("{body:#}\n");
        if let Err(e) = unicni_fsutil::write_atomic(path, text.as_bytes(), 0o644) {
            tracing::warn!("policy status: {e}");
        }
    }

    /// Attaches the programs to pod veths (and uplinks): the ones not seen yet, or
    /// (`all`) every one again (idempotent; repairs an attachment someone removed).
    async fn sync_links(&mut self, dp: &mut PolicyDatapath, all: bool) {
        let (veths, uplinks) = match self.kernel.links(self.config.is_pod_veth).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        self.attached.retain(|i| veths.contains_key(i));
        self.uplinks.retain(|i| uplinks.contains_key(i));
        for (set, links, what) in [
            (&mut self.attached, &veths, "pod veth"),
            (&mut self.uplinks, &uplinks, "uplink"),
        ] {
            for (ifindex, name) in links {
                if !all && set.contains(ifindex) {
                    continue;
                }
                match dp.attach(*ifindex) {
                    Ok(how) => {
                        if set.insert(*ifindex) {
                            tracing::debug!(link = %name, ?how, "policy attached to {what}");
                        }
                    }
                    // Gone between the listing and the attach: a pod deleted right away.
                    Err(unicni_bpf::BpfError::NoSuchInterface { .. }) => {}
                    Err(e) => {
                        self.status.attach_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(link = %name, "attaching the policy programs: {e}");
                        self.status.error(format!("attach to {name}: {e}"));
                    }
                }
            }
        }
        self.status
            .attached_veths
            .store(self.attached.len() as u64, Ordering::Relaxed);
        self.status
            .attached_uplinks
            .store(self.uplinks.len() as u64, Ordering::Relaxed);
    }

    async fn sync_node(&mut self, dp: &mut PolicyDatapath) {
        let want = match self.kernel.addresses().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        let have: BTreeSet<IpAddr> = match dp.node_addresses() {
            Ok(a) => a.into_iter().collect(),
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        for ip in want.difference(&have) {
            if let Err(e) = dp.add_node_address(*ip) {
                tracing::warn!("{e}");
            }
        }
        for ip in have.difference(&want) {
            if let Err(e) = dp.remove_node_address(*ip) {
                tracing::warn!("{e}");
            }
        }
        self.status
            .node_addresses
            .store(want.len() as u64, Ordering::Relaxed);
    }
}
