//! The ENI pool: addresses (shared mode) or whole ENIs (exclusive mode) kept ready for
//! pods, grown and shrunk through the cloud API, and the record of who holds what.
//!
//! One lock guards the pool's books, and it is only ever held for bookkeeping: an ADD
//! that finds an idle address takes it, the state file is written, and the lock is gone,
//! whatever the cloud is doing meanwhile. An ADD that finds none joins a queue of
//! waiters; the waiters that arrive within `coalesce` of each other are planned
//! together: one AssignPrivateIpAddresses per ENI with room (at most [`MAX_PER_CALL`]
//! addresses), and new ENIs created and attached concurrently while the instance type
//! has ENIs left. The calls run in tasks of their own, outside the lock; each one, when
//! it completes, serves the queue in arrival order and plans again.
//!
//! Crash safety: a reservation is in the state file before its address is handed out.
//! In-flight calls are not recorded: what they did is reconciled against the cloud at
//! the next start (`start`: ENIs tagged for this node are adopted or deleted, addresses
//! the cloud assigned that no pod holds become idle).
//!
//! Prefix mode (`terway.ip_prefix`, fixed per node when it first joins): the unit the
//! pool asks the cloud for is a /28 prefix (16 addresses, one of the ENI's IPv4 slots;
//! at most [`MAX_PREFIXES_PER_CALL`] a call) and, dual stack, one /80 per ENI. Pods take
//! addresses inside the node's prefixes without a cloud call; the planning below still
//! counts addresses, rounded up to whole prefixes; a prefix goes back only when all 16
//! of its addresses are free.

use crate::node::{EniView, Node};
use crate::podinfo::PodInfo;
use crate::proto::{eni_table, EniInfo, PodMode, PodNetwork};
use crate::state::{pod_key, Held, Hold, NodeState, StateFile};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinSet;
use unicni_capacity::InstanceTypeLimits;
use unicni_cloud::{
    poll, Cloud, CloudError, CreateEniRequest, EniFilter, EniStatus, EniType, IpRequest,
    NetworkInterface, PollPolicy,
};
use unicni_core::{AttachmentId, PodRef};

pub const TAG_NODE: &str = "unicni.io/node";
pub const TAG_CLUSTER: &str = "unicni.io/cluster";

/// How long a vSwitch that answered "out of IPs", or an ENI that answered "full", is
/// skipped.
const EXHAUSTED_FOR: Duration = Duration::from_secs(60);

/// The vendor's limit of addresses per AssignPrivateIpAddresses call (ECS API reference,
/// AssignPrivateIpAddresses: SecondaryPrivateIpAddressCount 1–10); new ENIs are created
/// with at most as many, so that every call stays within what the vendor documents.
pub const MAX_PER_CALL: usize = 10;

/// The vendor's limit of /28 prefixes per AssignPrivateIpAddresses call (ECS API
/// reference, AssignPrivateIpAddresses: Ipv4PrefixCount 1–10).
pub const MAX_PREFIXES_PER_CALL: usize = 10;

/// Addresses in one IPv4 /28 prefix.
pub const PREFIX_SIZE: usize = 16;

#[derive(Debug, Clone)]
pub struct PoolParams {
    pub instance_id: String,
    pub zone: String,
    pub cluster: String,
    pub limits: InstanceTypeLimits,
    pub exclusive: bool,
    /// Prefix mode asked for by the config (`terway.ip_prefix`); the node's recorded
    /// mode wins once it has joined (see [`Pool::start`]).
    pub ip_prefix: bool,
    pub dual: bool,
    pub vswitches: Vec<String>,
    pub security_groups: Vec<String>,
    /// Idle addresses (shared) or ENIs (exclusive) kept ready.
    pub min: usize,
    pub max: usize,
    pub hold: Duration,
    pub mtu: u32,
    pub node_ips: Vec<IpNet>,
    pub service_cidrs: Vec<IpNet>,
    /// The eBPF fast path's pin directory when the agent loaded it (shared mode).
    pub fast_path: Option<String>,
    /// The agent's pin directory when it enforces NetworkPolicy in exclusive mode (the
    /// plugin attaches the policy programs to the ENI inside the pod); None otherwise.
    pub policy: Option<String>,
    /// How long to wait for an ENI to attach, and for its link and addresses to show.
    pub attach: PollPolicy,
    pub visible_timeout: Duration,
    /// How long the pool collects ADDs that need the cloud before it plans the calls for
    /// them, so that a burst becomes few calls.
    pub coalesce: Duration,
    /// Idle addresses (or ENIs) asked for at the first maintenance pass.
    pub warm_up: usize,
    /// Pods holding this percentage of the pool's addresses make it grow ahead of them.
    pub high_watermark_percent: u32,
    /// Idle addresses beyond what the pool keeps ready go back after this long.
    pub idle_reclaim: Option<Duration>,
    /// The most a reclaim pass gives back.
    pub reclaim_batch: usize,
    /// A reclaim pass's idle time is drawn within ± this percentage.
    pub reclaim_jitter_percent: u32,
}

/// Why an allocation failed; the server maps it to a protocol error kind.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Cloud(String),
    #[error("{0}")]
    Node(String),
}

impl PoolError {
    /// The same error again, for each of several waiters it ends.
    fn again(&self) -> PoolError {
        match self {
            PoolError::Exhausted(m) => PoolError::Exhausted(m.clone()),
            PoolError::Invalid(m) => PoolError::Invalid(m.clone()),
            PoolError::Cloud(m) => PoolError::Cloud(m.clone()),
            PoolError::Node(m) => PoolError::Node(m.clone()),
        }
    }
}

impl From<unicni_core::Error> for PoolError {
    fn from(e: unicni_core::Error) -> Self {
        PoolError::Node(e.to_string())
    }
}

type PResult<T> = std::result::Result<T, PoolError>;

/// One of this node's ENIs and what the node knows about it.
#[derive(Debug, Clone)]
struct Eni {
    nic: NetworkInterface,
    view: Option<EniView>,
    /// Present on the node (exclusive: in the node's namespace, i.e. not inside a pod).
    link: Option<crate::datapath::EniLink>,
}

impl Eni {
    fn info(&self) -> Option<EniInfo> {
        let view = self.view.as_ref()?;
        Some(EniInfo {
            id: self.nic.id.clone(),
            mac: self.nic.mac.to_ascii_lowercase(),
            vswitch_id: self.nic.vswitch_id.clone(),
            cidr: view.cidr,
            gateway: view.gateway,
            cidr_v6: view.cidr_v6,
            gateway_v6: view.gateway_v6,
            primary_ip: self.nic.primary_ip,
            table: self
                .link
                .as_ref()
                .map(|l| eni_table(l.ifindex))
                .unwrap_or(0),
        })
    }

    fn visible4(&self, ip: Ipv4Addr) -> bool {
        self.view.as_ref().is_some_and(|v| {
            v.ipv4s.contains(&ip) || v.ipv4_prefixes.iter().any(|n| n.contains(&ip))
        })
    }

    fn visible6(&self, ip: Ipv6Addr) -> bool {
        self.view.as_ref().is_some_and(|v| {
            v.ipv6s.contains(&ip) || v.ipv6_prefixes.iter().any(|n| n.contains(&ip))
        })
    }

    /// The IPv4 addresses pods may take on this ENI: every address of its prefixes in
    /// prefix mode (the primary and any single address stay unused), else its
    /// addresses.
    fn pod_v4(&self, prefix: bool) -> Vec<Ipv4Addr> {
        if prefix {
            self.nic
                .ipv4_prefixes
                .iter()
                .flat_map(|n| prefix_addresses(*n))
                .collect()
        } else {
            self.nic.private_ips.clone()
        }
    }

    /// The IPv6 addresses pods may take: in prefix mode, the first `span` of the ENI's
    /// /80 (`::1` on), `span` being the most IPv4 addresses the ENI's prefixes can hold,
    /// so a pod always finds one of each and an address never moves when prefixes come
    /// and go.
    fn pod_v6(&self, prefix: bool, span: usize) -> Vec<Ipv6Addr> {
        if !prefix {
            return self.nic.ipv6s.clone();
        }
        let Some(net) = self.nic.ipv6_prefixes.first() else {
            return Vec::new();
        };
        let base = u128::from(net.network());
        (1..=span as u128)
            .map(|i| Ipv6Addr::from(base + i))
            .collect()
    }

    /// IPv4 slots the ENI uses: each address and each prefix takes one.
    fn slots(&self) -> usize {
        self.nic.private_ips.len() + self.nic.ipv4_prefixes.len()
    }

    fn matches(&self, vswitches: &[String], sgs: &[String]) -> bool {
        vswitches.contains(&self.nic.vswitch_id)
            && (sgs.is_empty() || {
                let want: BTreeSet<&String> = sgs.iter().collect();
                let have: BTreeSet<&String> = self.nic.security_group_ids.iter().collect();
                want == have
            })
    }
}

/// An ADD waiting for the cloud.
struct Waiter {
    key: String,
    id: AttachmentId,
    pod: PodRef,
    netns: Option<String>,
    fixed: bool,
    vsw: Vec<String>,
    sgs: Vec<String>,
    tx: oneshot::Sender<PResult<PodNetwork>>,
}

/// An ENI being created and attached, until it is in `Inner::enis`.
struct Creating {
    token: u64,
    vsw: Vec<String>,
    sgs: Vec<String>,
    ips: usize,
}

/// One cloud call (or the create-attach sequence of one ENI), run outside the lock.
#[derive(Debug, Clone)]
enum Op {
    Assign {
        eni: String,
        n: usize,
    },
    Create {
        token: u64,
        vsw: Vec<String>,
        sgs: Vec<String>,
        ips: usize,
    },
    /// An idle ENI no waiter can use, detached and deleted to make room for one they can.
    Delete {
        eni: Box<Eni>,
    },
}

struct Inner {
    enis: BTreeMap<String, Eni>,
    state: NodeState,
    /// vSwitches the cloud called exhausted: when, and the code it answered.
    exhausted: HashMap<String, (Instant, String)>,
    /// ENIs the cloud called full although the instance-type table left room.
    full: HashMap<String, Instant>,
    /// ADDs waiting for addresses, in arrival order.
    waiters: VecDeque<Waiter>,
    /// ENIs with an AssignPrivateIpAddresses in flight, and how many it asks for.
    assigning: HashMap<String, usize>,
    creating: Vec<Creating>,
    /// ENIs attached (or attaching) whose addresses the node does not show yet.
    settling: BTreeSet<String>,
    /// ENIs being detached and deleted: they still count against the instance's ENIs.
    deleting: BTreeSet<String>,
    next_token: u64,
    /// A planning pass is scheduled (the coalescing window is open).
    coalescing: bool,
    /// The warm-up size was asked for once.
    warmed: bool,
    /// Since when each idle address (shared) or ENI (exclusive) is idle, as maintenance
    /// passes saw it.
    idle_since: HashMap<String, Instant>,
    /// What ran out the last time the pool could not grow (cleared when it grows).
    exhaustion: Option<(Exhausted, String)>,
}

/// What the pool ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exhausted {
    /// Every usable vSwitch is out of addresses.
    Vswitch,
    /// The instance type's ENIs are all attached and full.
    EniQuota,
}

/// Why adding addresses to one ENI failed, as far as planning cares.
enum AssignError {
    /// The ENI's vSwitch has no free address: another vSwitch may.
    VSwitchExhausted,
    /// The ENI holds all it may: another ENI may have room.
    EniFull,
    Other(PoolError),
}

impl From<PoolError> for AssignError {
    fn from(e: PoolError) -> Self {
        AssignError::Other(e)
    }
}

/// Counters for `/metrics` and the status endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    pub enis: usize,
    pub idle: usize,
    pub in_use: usize,
    pub held: usize,
    pub capacity: u64,
    /// ADDs waiting for the cloud.
    pub waiting: usize,
    /// What the pool ran out of the last time it could not grow, and the error ADDs got;
    /// None once it grew again.
    pub exhausted: Option<Exhausted>,
    pub exhausted_reason: Option<String>,
    /// Cloud calls (assignments, ENI creations) in flight.
    pub in_flight: usize,
}

/// The pool; clones share it (the cloud calls run in tasks that hold one).
#[derive(Clone)]
pub struct Pool {
    p: Arc<PoolParams>,
    cloud: Arc<dyn Cloud>,
    node: Arc<dyn Node>,
    file: StateFile,
    inner: Arc<Mutex<Inner>>,
}

/// The 16 addresses of a /28 (all routed to the ENI; none reserved).
fn prefix_addresses(n: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(n.network())..=u32::from(n.broadcast())).map(Ipv4Addr::from)
}

/// IPv6 addresses of an ENI's /80 pods may take (prefix mode): as many as its IPv4
/// prefixes can ever hold.
fn v6_span(p: &PoolParams) -> usize {
    (p.limits.ipv4_per_eni as usize).saturating_sub(1) * PREFIX_SIZE
}

/// Each ENI's prefixes, for the state file.
fn prefix_record(enis: &BTreeMap<String, Eni>) -> BTreeMap<String, Vec<IpNet>> {
    enis.values()
        .filter(|e| !e.nic.ipv4_prefixes.is_empty() || !e.nic.ipv6_prefixes.is_empty())
        .map(|e| {
            let nets = e
                .nic
                .ipv4_prefixes
                .iter()
                .map(|n| IpNet::V4(*n))
                .chain(e.nic.ipv6_prefixes.iter().map(|n| IpNet::V6(*n)))
                .collect();
            (e.nic.id.clone(), nets)
        })
        .collect()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn cloud_err(what: &str, e: CloudError) -> PoolError {
    PoolError::Cloud(format!("{what}: {e}"))
}

impl Pool {
    /// Rebuilds the pool from the cloud (this node's tagged ENIs) and the state file:
    /// addresses the cloud assigned but no pod holds (a crash mid-allocation) become idle;
    /// ENIs created but never attached are deleted; holdings whose address is gone are
    /// dropped.
    pub async fn start(
        mut p: PoolParams,
        cloud: Arc<dyn Cloud>,
        node: Arc<dyn Node>,
        file: StateFile,
    ) -> PResult<Pool> {
        let mut state = file.load()?;
        let mine = cloud
            .describe_network_interfaces(&EniFilter {
                tags: vec![(TAG_NODE.to_string(), p.instance_id.clone())],
                ..Default::default()
            })
            .await
            .map_err(|e| cloud_err("list this node's ENIs", e))?;
        let mut enis = BTreeMap::new();
        for nic in mine {
            if nic.eni_type != EniType::Secondary {
                continue;
            }
            match nic.status {
                EniStatus::Available => {
                    tracing::warn!(eni = %nic.id, "deleting an ENI created for this node but never attached (earlier crash)");
                    if let Err(e) = cloud.delete_network_interface(&nic.id).await {
                        tracing::warn!(eni = %nic.id, "could not delete leaked ENI: {e}");
                    }
                }
                EniStatus::Attaching | EniStatus::InUse
                    if nic.instance_id.as_deref() == Some(p.instance_id.as_str()) =>
                {
                    let nic = if nic.status == EniStatus::Attaching {
                        poll::wait_eni_status(cloud.as_ref(), &nic.id, EniStatus::InUse, p.attach)
                            .await
                            .map_err(|e| cloud_err("wait for an attaching ENI", e))?
                    } else {
                        nic
                    };
                    enis.insert(
                        nic.id.clone(),
                        Eni {
                            nic,
                            view: None,
                            link: None,
                        },
                    );
                }
                _ => {}
            }
        }
        p.ip_prefix = Self::join_mode(&p, &mut state, &enis);
        let before = state.allocations.len() + state.holds.len();
        let prefix = p.ip_prefix;
        let v6_span = v6_span(&p);
        let on_eni = |eni: &str, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>| {
            enis.get(eni).is_some_and(|e: &Eni| {
                v4.is_none_or(|ip| e.pod_v4(prefix).contains(&ip))
                    && v6.is_none_or(|ip| e.pod_v6(prefix, v6_span).contains(&ip))
            })
        };
        state
            .allocations
            .retain(|_, h| on_eni(&h.eni_id, h.ipv4, h.ipv6));
        state.holds.retain(|_, h| on_eni(&h.eni_id, h.ipv4, h.ipv6));
        let dropped = before - state.allocations.len() - state.holds.len();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "holdings whose address is no longer on this node's ENIs were dropped"
            );
        }
        // The cloud's view of the prefixes replaces the record.
        let seen = prefix_record(&enis);
        if prefix && state.prefixes != seen {
            tracing::info!(
                recorded = state.prefixes.values().map(Vec::len).sum::<usize>(),
                cloud = seen.values().map(Vec::len).sum::<usize>(),
                "prefixes as the cloud lists them replace the state file's record"
            );
        }
        state.prefixes = if prefix { seen } else { BTreeMap::new() };
        file.save(&state)?;
        let ids: Vec<String> = enis.keys().cloned().collect();
        let pool = Pool {
            p: Arc::new(p),
            cloud,
            node,
            file,
            inner: Arc::new(Mutex::new(Inner {
                enis,
                state,
                exhausted: HashMap::new(),
                full: HashMap::new(),
                waiters: VecDeque::new(),
                assigning: HashMap::new(),
                creating: Vec::new(),
                settling: BTreeSet::new(),
                deleting: BTreeSet::new(),
                next_token: 0,
                coalescing: false,
                warmed: false,
                idle_since: HashMap::new(),
                exhaustion: None,
            })),
        };
        for id in ids {
            pool.refresh(&id).await?;
        }
        Ok(pool)
    }

    /// The node's prefix mode, fixed when it first joins: recorded in the state file
    /// then, and kept. A node with no record (a fresh one, or a state file from before
    /// prefix mode) that holds nothing yet takes the config's; one that already holds
    /// ENIs or pods keeps what those show (single addresses unless its ENIs carry
    /// prefixes), whatever the config says now.
    fn join_mode(p: &PoolParams, state: &mut NodeState, enis: &BTreeMap<String, Eni>) -> bool {
        if p.exclusive {
            return false;
        }
        let mode = match state.prefix_mode {
            Some(m) => m,
            None if state.allocations.is_empty() && state.holds.is_empty() && enis.is_empty() => {
                p.ip_prefix
            }
            None => enis.values().any(|e| !e.nic.ipv4_prefixes.is_empty()),
        };
        if mode != p.ip_prefix {
            tracing::warn!(
                node_mode = if mode { "prefixes" } else { "single addresses" },
                "terway.ip_prefix = {} but this node joined with {}; it keeps that mode                  (prefix mode is fixed per node when it joins: drain and re-create the node to change it)",
                p.ip_prefix,
                if mode { "prefixes" } else { "single addresses" },
            );
        }
        state.prefix_mode = Some(mode);
        mode
    }

    pub fn params(&self) -> &PoolParams {
        &self.p
    }

    /// Whether this node hands out addresses from /28 prefixes (its recorded mode).
    pub fn prefix_mode(&self) -> bool {
        self.p.ip_prefix
    }

    /// Pods this node can hold in its mode (the REFERENCE formulas; prefix mode: every
    /// secondary ENI's slots but the primary address's, 16 addresses each).
    pub fn capacity(&self) -> u64 {
        if self.p.ip_prefix {
            self.p.limits.enis.saturating_sub(1)
                * self.p.limits.ipv4_per_eni.saturating_sub(1)
                * PREFIX_SIZE as u64
        } else {
            self.p.limits.pods_in_mode(self.p.exclusive)
        }
    }

    /// Records the ENIs' prefixes in the state file when they changed (prefix mode).
    fn record_prefixes(&self, inner: &mut Inner) {
        if !self.p.ip_prefix {
            return;
        }
        let seen = prefix_record(&inner.enis);
        if inner.state.prefixes != seen {
            inner.state.prefixes = seen;
            if let Err(e) = self.file.save(&inner.state) {
                // The cloud's view is the truth at the next start; the record can lag.
                tracing::warn!("recording the node's prefixes in the state file: {e}");
            }
        }
    }

    /// Re-reads the ENI's link and metadata view, without holding the lock meanwhile.
    async fn refresh(&self, id: &str) -> PResult<()> {
        let Some(mut e) = self.inner.lock().await.enis.get(id).cloned() else {
            return Ok(());
        };
        e.view = self.node.metadata(&e.nic.mac).await?;
        let link = match e.info() {
            Some(info) => self.node.eni_link(&info, !self.p.exclusive).await?,
            None => None,
        };
        let mut inner = self.inner.lock().await;
        if let Some(cur) = inner.enis.get_mut(id) {
            cur.view = e.view;
            cur.link = link;
        }
        Ok(())
    }

    fn network(&self, eni: &Eni, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> PodNetwork {
        PodNetwork {
            mode: if self.p.exclusive {
                PodMode::Exclusive
            } else {
                PodMode::Shared
            },
            ipv4: v4,
            ipv6: v6,
            eni: eni
                .info()
                .expect("only ENIs with a metadata view are handed out"),
            node_ips: self.p.node_ips.clone(),
            service_cidrs: self.p.service_cidrs.clone(),
            mtu: self.p.mtu,
            fast_path: if self.p.exclusive {
                None
            } else {
                self.p.fast_path.clone()
            },
            policy: self.p.policy.clone(),
        }
    }

    /// What `id` holds, if anything.
    pub async fn lookup(&self, id: &AttachmentId) -> Option<PodNetwork> {
        let inner = self.inner.lock().await;
        let h = inner.state.allocations.get(&id.to_string())?;
        let eni = inner.enis.get(&h.eni_id)?;
        eni.view.as_ref()?;
        Some(self.network(eni, h.ipv4, h.ipv6))
    }

    /// Every pod the pool knows the namespace of: for the agent's passes over running
    /// pods (NetworkPolicy on exclusive ENIs).
    pub async fn pods_with_netns(&self) -> Vec<(AttachmentId, String)> {
        let inner = self.inner.lock().await;
        inner
            .state
            .allocations
            .values()
            .filter_map(|h| Some((h.id.clone(), h.netns.clone()?)))
            .collect()
    }

    fn wanted<'a>(&'a self, info: &'a PodInfo) -> (&'a [String], &'a [String]) {
        let vsw = if info.vswitches.is_empty() {
            &self.p.vswitches[..]
        } else {
            &info.vswitches[..]
        };
        let sgs = if info.security_groups.is_empty() {
            &self.p.security_groups[..]
        } else {
            &info.security_groups[..]
        };
        (vsw, sgs)
    }

    /// An idle, visible address (and IPv6 when dual) on a matching ENI whose link is up.
    fn pick_shared(
        &self,
        inner: &Inner,
        vsw: &[String],
        sgs: &[String],
    ) -> Option<(String, Ipv4Addr, Option<Ipv6Addr>)> {
        for eni in inner.enis.values() {
            if !eni.matches(vsw, sgs) || eni.link.is_none() || eni.view.is_none() {
                continue;
            }
            let prefix = self.p.ip_prefix;
            let v4 = eni
                .pod_v4(prefix)
                .into_iter()
                .find(|ip| eni.visible4(*ip) && !inner.state.owns_v4(*ip));
            let Some(v4) = v4 else { continue };
            if !self.p.dual {
                return Some((eni.nic.id.clone(), v4, None));
            }
            let v6 = eni
                .pod_v6(prefix, v6_span(&self.p))
                .into_iter()
                .find(|ip| eni.visible6(*ip) && !inner.state.owns_v6(*ip));
            if let Some(v6) = v6 {
                return Some((eni.nic.id.clone(), v4, Some(v6)));
            }
        }
        None
    }

    fn pick_exclusive(&self, inner: &Inner, vsw: &[String], sgs: &[String]) -> Option<String> {
        inner
            .enis
            .values()
            .find(|e| {
                e.matches(vsw, sgs)
                    && e.link.is_some()
                    && e.view.is_some()
                    && !inner.state.owns_eni(&e.nic.id)
            })
            .map(|e| e.nic.id.clone())
    }

    fn pick(&self, inner: &Inner, vsw: &[String], sgs: &[String]) -> Option<Held> {
        let blank = |eni_id: String, ipv4, ipv6| Held {
            id: AttachmentId::new("", ""),
            pod: PodRef::default(),
            netns: None,
            eni_id,
            ipv4,
            ipv6,
            fixed: false,
        };
        if self.p.exclusive {
            let id = self.pick_exclusive(inner, vsw, sgs)?;
            let eni = &inner.enis[&id];
            let v6 = eni.nic.ipv6s.first().copied();
            Some(blank(id.clone(), Some(eni.nic.primary_ip), v6))
        } else {
            let (id, v4, v6) = self.pick_shared(inner, vsw, sgs)?;
            Some(blank(id, Some(v4), v6))
        }
    }

    /// Reserves addresses (or an ENI) for a pod. Asking again for the same attachment
    /// returns what it already holds; a fixed-IP pod re-created under the same name gets
    /// its held address back. An idle address is taken at once; otherwise the ADD waits
    /// for the cloud calls planned for it (and for the ADDs arriving with it).
    pub async fn allocate(
        &self,
        id: &AttachmentId,
        pod: &PodRef,
        netns: Option<String>,
        info: &PodInfo,
    ) -> PResult<PodNetwork> {
        let key = id.to_string();
        let (vsw, sgs) = self.wanted(info);
        let (vsw, sgs) = (vsw.to_vec(), sgs.to_vec());
        let rx = {
            let mut inner = self.inner.lock().await;
            if let Some(h) = inner.state.allocations.get(&key) {
                if let Some(eni) = inner.enis.get(&h.eni_id) {
                    return Ok(self.network(eni, h.ipv4, h.ipv6));
                }
            }
            let fixed = info.fixed_ip && pod_key(pod).is_some();
            let held = match pod_key(pod).and_then(|k| inner.state.holds.remove(&k)) {
                Some(hold) if inner.enis.contains_key(&hold.eni_id) => {
                    tracing::info!(pod = ?pod_key(pod), ip = ?hold.ipv4, "fixed-IP pod gets its held address back");
                    Some(Held {
                        id: id.clone(),
                        pod: pod.clone(),
                        netns: netns.clone(),
                        eni_id: hold.eni_id,
                        ipv4: hold.ipv4,
                        ipv6: hold.ipv6,
                        fixed: true,
                    })
                }
                _ => None,
            };
            let picked = held.or_else(|| {
                self.pick(&inner, &vsw, &sgs).map(|mut h| {
                    h.id = id.clone();
                    h.pod = pod.clone();
                    h.netns = netns.clone();
                    h.fixed = fixed;
                    h
                })
            });
            if let Some(h) = picked {
                let net = self.network(&inner.enis[&h.eni_id], h.ipv4, h.ipv6);
                inner.state.allocations.insert(key.clone(), h);
                if let Err(e) = self.file.save(&inner.state) {
                    inner.state.allocations.remove(&key);
                    return Err(e.into());
                }
                // Taking an address may leave the pool below what it keeps ready: ask
                // the cloud now, before the next pod has to wait.
                let ops = self.plan(&mut inner);
                drop(inner);
                self.launch(ops);
                return Ok(net);
            }
            let (tx, rx) = oneshot::channel();
            inner.waiters.push_back(Waiter {
                key,
                id: id.clone(),
                pod: pod.clone(),
                netns,
                fixed,
                vsw: vsw.clone(),
                sgs,
                tx,
            });
            if !inner.coalescing {
                inner.coalescing = true;
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(me.p.coalesce).await;
                    let ops = {
                        let mut inner = me.inner.lock().await;
                        inner.coalescing = false;
                        me.settle(&mut inner)
                    };
                    me.launch(ops);
                });
            }
            rx
        };
        let limit = self.p.attach.timeout + self.p.visible_timeout + self.p.coalesce;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(PoolError::Node(
                "the pool stopped while this ADD waited for an address; retry".into(),
            )),
            Err(_) => {
                // Our sender is closed now: forget the waiter.
                self.inner
                    .lock()
                    .await
                    .waiters
                    .retain(|w| !w.tx.is_closed());
                Err(PoolError::Node(format!(
                    "no address became usable on vSwitches {vsw:?} within {limit:?}; \
                     check that the ENI links appear on the node and in the metadata service"
                )))
            }
        }
    }

    /// Gives back what `id` holds: a fixed-IP pod's addresses go on hold for its
    /// namespace/name, everything else back to the pool. Unknown IDs are fine.
    pub async fn release(&self, id: &AttachmentId) -> PResult<bool> {
        let (eni_id, ops) = {
            let mut inner = self.inner.lock().await;
            let Some(h) = inner.state.allocations.remove(&id.to_string()) else {
                return Ok(false);
            };
            if h.fixed {
                if let Some(k) = pod_key(&h.pod) {
                    let until_unix = now_unix() + self.p.hold.as_secs();
                    inner.state.holds.insert(
                        k,
                        Hold {
                            eni_id: h.eni_id.clone(),
                            ipv4: h.ipv4,
                            ipv6: h.ipv6,
                            until_unix,
                        },
                    );
                }
            }
            if self.p.exclusive {
                // The plugin moved the link back: not handed out until seen again.
                if let Some(e) = inner.enis.get_mut(&h.eni_id) {
                    e.link = None;
                }
            }
            self.file.save(&inner.state)?;
            // A waiter may take what was just given back.
            let ops = if self.p.exclusive {
                Vec::new()
            } else {
                self.settle(&mut inner)
            };
            (h.eni_id, ops)
        };
        self.launch(ops);
        if self.p.exclusive {
            let _ = self.refresh(&eni_id).await;
            let ops = self.settle(&mut *self.inner.lock().await);
            self.launch(ops);
        }
        Ok(true)
    }

    /// Idle addresses (or ENIs) the pool keeps ready beyond the waiters' needs: `min`
    /// (the warm-up size until it was asked for once), and enough that pods hold at most
    /// the high-watermark share of what the pool has, within `max`.
    fn target_idle(&self, inner: &Inner) -> usize {
        let base = if inner.warmed {
            self.p.min
        } else {
            self.p.min.max(self.p.warm_up)
        };
        let wm = self.p.high_watermark_percent.clamp(1, 100) as usize;
        let in_use = inner.state.allocations.len() + inner.waiters.len();
        let ahead = (in_use * (100 - wm)).div_ceil(wm);
        base.max(ahead.min(self.p.max))
    }

    /// Serves the waiters that can be served now, then plans the calls for the rest and
    /// for keeping the pool ready; returns them, to be launched outside the lock.
    fn settle(&self, inner: &mut Inner) -> Vec<Op> {
        self.serve(inner);
        self.plan(inner)
    }

    /// Hands idle, visible addresses to waiters in arrival order (a waiter whose
    /// vSwitches have none does not hold up the ones behind it). The reservations are in
    /// the state file before any waiter hears of them.
    fn serve(&self, inner: &mut Inner) {
        let mut served: Vec<(Waiter, PodNetwork)> = Vec::new();
        let mut taken = Vec::new();
        let mut keep = VecDeque::new();
        while let Some(w) = inner.waiters.pop_front() {
            if w.tx.is_closed() {
                continue;
            }
            if let Some(h) = inner.state.allocations.get(&w.key) {
                if let Some(eni) = inner.enis.get(&h.eni_id) {
                    let net = self.network(eni, h.ipv4, h.ipv6);
                    served.push((w, net));
                    continue;
                }
            }
            match self.pick(inner, &w.vsw, &w.sgs) {
                Some(mut h) => {
                    h.id = w.id.clone();
                    h.pod = w.pod.clone();
                    h.netns = w.netns.clone();
                    h.fixed = w.fixed;
                    let net = self.network(&inner.enis[&h.eni_id], h.ipv4, h.ipv6);
                    inner.state.allocations.insert(w.key.clone(), h);
                    taken.push(w.key.clone());
                    served.push((w, net));
                }
                None => keep.push_back(w),
            }
        }
        inner.waiters = keep;
        let saved = if taken.is_empty() {
            Ok(())
        } else {
            self.file.save(&inner.state)
        };
        match saved {
            Ok(()) => {
                for (w, net) in served {
                    let _ = w.tx.send(Ok(net));
                }
            }
            Err(e) => {
                for k in &taken {
                    inner.state.allocations.remove(k);
                }
                let e = PoolError::from(e);
                for (w, net) in served {
                    let r = if taken.contains(&w.key) {
                        Err(e.again())
                    } else {
                        Ok(net)
                    };
                    let _ = w.tx.send(r);
                }
            }
        }
    }

    /// Addresses (shared) or ENIs (exclusive) on ENIs matching `vsw`/`sgs` no pod holds,
    /// usable yet or not.
    fn idle_on(&self, inner: &Inner, vsw: &[String], sgs: &[String]) -> usize {
        let matching = inner.enis.values().filter(|e| e.matches(vsw, sgs));
        if self.p.exclusive {
            matching
                .filter(|e| !inner.state.owns_eni(&e.nic.id))
                .count()
        } else {
            // Dual stack: a pod needs one of each.
            matching
                .map(|e| {
                    let v4 = e
                        .pod_v4(self.p.ip_prefix)
                        .iter()
                        .filter(|ip| !inner.state.owns_v4(**ip))
                        .count();
                    if !self.p.dual {
                        return v4;
                    }
                    let v6 = e
                        .pod_v6(self.p.ip_prefix, v6_span(&self.p))
                        .iter()
                        .filter(|ip| !inner.state.owns_v6(**ip))
                        .count();
                    v4.min(v6)
                })
                .sum()
        }
    }

    /// What the calls in flight will add for `vsw`/`sgs`.
    fn in_flight_for(&self, inner: &Inner, vsw: &[String], sgs: &[String]) -> usize {
        let creating: usize = inner
            .creating
            .iter()
            .filter(|c| c.vsw == vsw && c.sgs == sgs)
            .map(|c| if self.p.exclusive { 1 } else { c.ips })
            .sum();
        let assigning: usize = inner
            .assigning
            .iter()
            .filter(|(id, _)| inner.enis.get(*id).is_some_and(|e| e.matches(vsw, sgs)))
            .map(|(_, n)| *n)
            .sum();
        creating + assigning
    }

    /// Whether `eni` may be asked for more addresses (its vSwitch and itself have not
    /// said no lately).
    fn may_grow(&self, inner: &Inner, eni: &Eni) -> bool {
        !inner.full.contains_key(&eni.nic.id) && !inner.exhausted.contains_key(&eni.nic.vswitch_id)
    }

    /// The calls that cover the waiters and the ready reserve, per group of vSwitches and
    /// security groups: first one call per idle ENI with room; demand that ENIs busy with
    /// a call (or still attaching) can take waits for their next call; the rest gets new
    /// ENIs, created concurrently while the instance type has ENIs left. Waiters nothing
    /// can cover are told so.
    fn plan(&self, inner: &mut Inner) -> Vec<Op> {
        inner
            .exhausted
            .retain(|_, (at, _)| at.elapsed() < EXHAUSTED_FOR);
        inner.full.retain(|_, at| at.elapsed() < EXHAUSTED_FOR);
        let default = (self.p.vswitches.clone(), self.p.security_groups.clone());
        let mut groups = vec![default.clone()];
        for w in &inner.waiters {
            let g = (w.vsw.clone(), w.sgs.clone());
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let per_eni = self.p.limits.ipv4_per_eni as usize;
        // What one IPv4 slot of an ENI holds, the most one call adds, and what a new ENI
        // holds: prefix mode counts addresses still, in whole prefixes, and keeps the
        // new ENI's primary address out of the pods' way.
        let (unit, per_call, per_new) = if self.p.ip_prefix {
            (
                PREFIX_SIZE,
                MAX_PREFIXES_PER_CALL * PREFIX_SIZE,
                per_eni.saturating_sub(1) * PREFIX_SIZE,
            )
        } else {
            (1, MAX_PER_CALL, per_eni)
        };
        let mut ops = Vec::new();
        for g in groups {
            let (vsw, sgs) = (&g.0, &g.1);
            let waiting = inner
                .waiters
                .iter()
                .filter(|w| &w.vsw == vsw && &w.sgs == sgs)
                .count();
            // The ready reserve waits while pods of other groups wait.
            let others_wait = inner.waiters.iter().any(|w| (&w.vsw, &w.sgs) != (vsw, sgs));
            let target = if g == default && !others_wait {
                self.target_idle(inner)
            } else {
                0
            };
            let covered = self.idle_on(inner, vsw, sgs) + self.in_flight_for(inner, vsw, sgs);
            let mut d = (waiting + target).saturating_sub(covered);
            if d == 0 {
                continue;
            }
            let wanted = d;
            let mut later = 0;
            if !self.p.exclusive {
                let mut rooms: Vec<(String, usize)> = Vec::new();
                for e in inner.enis.values() {
                    if !e.matches(vsw, sgs) || !self.may_grow(inner, e) {
                        continue;
                    }
                    let busy = inner.assigning.get(&e.nic.id).copied();
                    let room = per_eni.saturating_sub(e.slots() + busy.unwrap_or(0) / unit) * unit;
                    if room == 0 {
                        continue;
                    }
                    if busy.is_some() || e.link.is_none() {
                        later += room;
                    } else {
                        rooms.push((e.nic.id.clone(), room));
                    }
                }
                rooms.sort_by_key(|(_, r)| std::cmp::Reverse(*r));
                for (eni, room) in rooms {
                    if d == 0 {
                        break;
                    }
                    let n = (d.min(room).min(per_call).div_ceil(unit) * unit).min(room);
                    inner.assigning.insert(eni.clone(), n);
                    ops.push(Op::Assign { eni, n });
                    d = d.saturating_sub(n);
                }
                later += inner
                    .creating
                    .iter()
                    .filter(|c| &c.vsw == vsw && &c.sgs == sgs)
                    .map(|c| per_new.saturating_sub(c.ips))
                    .sum::<usize>();
            }
            // New ENIs run in parallel with everything else: cheaper in time than waiting
            // for ENIs still attaching and then for a call on them.
            // The ready reserve alone gets one new ENI at a time: it must not take the
            // instance's last ENIs from pods pinned to other vSwitches.
            let mut reserve_ok = inner.creating.is_empty();
            while d > 0
                && inner.enis.len() + inner.creating.len() + inner.deleting.len() + 1
                    < self.p.limits.enis as usize
            {
                // Room that opens later on ENIs still attaching does not count here:
                // a new ENI in parallel is sooner than a call after the attach.
                let for_waiters = waiting.saturating_sub(covered + (wanted - d)) > 0;
                if !for_waiters && !reserve_ok {
                    break;
                }
                reserve_ok = false;
                let ips = if self.p.exclusive {
                    1
                } else {
                    (d.min(per_new).min(per_call).div_ceil(unit) * unit).min(per_new.max(1))
                };
                inner.next_token += 1;
                let token = inner.next_token;
                inner.creating.push(Creating {
                    token,
                    vsw: vsw.clone(),
                    sgs: sgs.clone(),
                    ips,
                });
                ops.push(Op::Create {
                    token,
                    vsw: vsw.clone(),
                    sgs: sgs.clone(),
                    ips,
                });
                d = d.saturating_sub(ips);
            }
            // The rest waits for the next call on ENIs busy or still attaching.
            let planned = wanted - d;
            // Waiters beyond everything idle, in flight, planned and to come on ENIs
            // already here: the instance type has no ENI left for them. (The ready
            // reserve is only wished for: it fails nobody.)
            let uncovered = waiting.saturating_sub(covered + planned + later);
            // Only another group's ENIs in flight can still give these pods a slot (this
            // group's are counted in `covered` already).
            let other = |id: &String| inner.enis.get(id).is_some_and(|e| !e.matches(vsw, sgs));
            let in_flight = !inner.deleting.is_empty()
                || inner
                    .creating
                    .iter()
                    .any(|c| (&c.vsw, &c.sgs) != (vsw, sgs))
                || inner.settling.iter().any(other)
                || inner.assigning.keys().any(other);
            if uncovered > 0 && in_flight {
                // A slot is being freed, or an ENI still being created or attached
                // (another group's, e.g. the ready reserve's) may land idle and give its
                // slot to these pods: the plan that runs when that call ends decides.
                // Failing now would refuse a pod the instance can host.
                continue;
            }
            if uncovered > 0 {
                // An idle ENI of other vSwitches or groups gives its slot to these pods.
                let victim = inner
                    .enis
                    .values()
                    .find(|e| {
                        !e.matches(vsw, sgs)
                            && !inner.state.owns_eni(&e.nic.id)
                            && !inner.assigning.contains_key(&e.nic.id)
                            && !inner.settling.contains(&e.nic.id)
                            && e.pod_v4(self.p.ip_prefix)
                                .iter()
                                .all(|ip| !inner.state.owns_v4(*ip))
                    })
                    .map(|e| e.nic.id.clone());
                if let Some(id) = victim {
                    if let Some(e) = inner.enis.remove(&id) {
                        tracing::info!(eni = %id, "deleting an idle ENI to make room for pods on vSwitches {vsw:?}");
                        inner.deleting.insert(id);
                        ops.push(Op::Delete { eni: Box::new(e) });
                        continue;
                    }
                }
            }
            if uncovered > 0 {
                let why = self.quota_error(inner, vsw);
                inner.exhaustion = Some((Exhausted::EniQuota, why.to_string()));
                self.fail_last(inner, uncovered, &why, |w| &w.vsw == vsw && &w.sgs == sgs);
            }
        }
        ops
    }

    /// Ends the last `n` waiters `which` selects with `e`.
    fn fail_last(
        &self,
        inner: &mut Inner,
        mut n: usize,
        e: &PoolError,
        which: impl Fn(&Waiter) -> bool,
    ) {
        let mut i = inner.waiters.len();
        while n > 0 && i > 0 {
            i -= 1;
            if which(&inner.waiters[i]) {
                if let Some(w) = inner.waiters.remove(i) {
                    let _ = w.tx.send(Err(e.again()));
                }
                n -= 1;
            }
        }
    }

    fn quota_error(&self, inner: &Inner, vsw: &[String]) -> PoolError {
        PoolError::Exhausted(format!(
            "instance type {} holds {} ENIs ({} pods in {} mode) and all are in use{}; \
             schedule fewer pods on this node or use a larger instance type",
            self.p.limits.name,
            self.p.limits.enis,
            self.capacity(),
            if self.p.exclusive {
                "exclusive-eni"
            } else {
                "shared-eni"
            },
            self.exhausted_note(inner, vsw),
        ))
    }

    /// Runs `ops` (and the calls planned when they complete) in a task of their own;
    /// the handle yields the first error.
    fn launch(&self, ops: Vec<Op>) -> Option<tokio::task::JoinHandle<Option<PoolError>>> {
        if ops.is_empty() {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut set = JoinSet::new();
            for op in ops {
                set.spawn(me.clone().run(op));
            }
            let mut first = None;
            while let Some(done) = set.join_next().await {
                match done {
                    Ok((r, more)) => {
                        if let Err(e) = r {
                            tracing::warn!("pool: {e}");
                            first.get_or_insert(e);
                        }
                        for op in more {
                            set.spawn(me.clone().run(op));
                        }
                    }
                    Err(e) => tracing::warn!("pool: a cloud call task ended: {e}"),
                }
            }
            first
        }))
    }

    /// One call, then under the lock: its marker removed, the waiters it cannot help
    /// anymore told why, the queue served and the next calls planned.
    async fn run(self, op: Op) -> (PResult<()>, Vec<Op>) {
        let r = match &op {
            Op::Assign { eni, n } => self.assign_more(eni, *n).await,
            Op::Create {
                token,
                vsw,
                sgs,
                ips,
            } => self
                .create_eni(*token, vsw, sgs, *ips)
                .await
                .map_err(AssignError::Other),
            Op::Delete { eni } => {
                let r = self.delete_eni(&eni.nic.id).await;
                let mut inner = self.inner.lock().await;
                inner.deleting.remove(&eni.nic.id);
                if r.is_err() {
                    inner.enis.insert(eni.nic.id.clone(), (**eni).clone());
                }
                r.map_err(AssignError::Other)
            }
        };
        let mut inner = self.inner.lock().await;
        self.record_prefixes(&mut inner);
        match &op {
            Op::Assign { eni, .. } => {
                inner.assigning.remove(eni);
            }
            Op::Create { token, .. } => inner.creating.retain(|c| c.token != *token),
            Op::Delete { .. } => {}
        }
        let r = match r {
            Ok(()) => {
                inner.exhaustion = None;
                Ok(())
            }
            Err(AssignError::VSwitchExhausted | AssignError::EniFull) => Ok(()),
            Err(AssignError::Other(e)) => {
                self.fail_uncovered(&mut inner, &op, &e);
                Err(e)
            }
        };
        let more = self.settle(&mut inner);
        (r, more)
    }

    /// After `op` failed with `e`: the waiters it was for that nothing else idle or in
    /// flight covers get `e` (the plugin reports it; the runtime retries the ADD).
    fn fail_uncovered(&self, inner: &mut Inner, op: &Op, e: &PoolError) {
        let mut groups: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for w in &inner.waiters {
            let for_op = match op {
                Op::Assign { eni, .. } => inner
                    .enis
                    .get(eni)
                    .is_some_and(|x| x.matches(&w.vsw, &w.sgs)),
                Op::Create { vsw, sgs, .. } => &w.vsw == vsw && &w.sgs == sgs,
                Op::Delete { .. } => true,
            };
            let g = (w.vsw.clone(), w.sgs.clone());
            if for_op && !groups.contains(&g) {
                groups.push(g);
            }
        }
        for (vsw, sgs) in groups {
            let waiting = inner
                .waiters
                .iter()
                .filter(|w| w.vsw == vsw && w.sgs == sgs)
                .count();
            let covered = self.idle_on(inner, &vsw, &sgs) + self.in_flight_for(inner, &vsw, &sgs);
            let n = waiting.saturating_sub(covered);
            self.fail_last(inner, n, e, |w| w.vsw == vsw && w.sgs == sgs);
        }
    }

    /// Records what the cloud said about an ENI or its vSwitch, so planning skips them.
    async fn note_refusal(&self, eni_id: &str, e: &CloudError) -> Option<AssignError> {
        let mut inner = self.inner.lock().await;
        let vswitch = inner.enis.get(eni_id)?.nic.vswitch_id.clone();
        let code = e.code().unwrap_or_default().to_string();
        match e {
            CloudError::VSwitchExhausted(_) => {
                tracing::warn!(
                    vswitch,
                    eni = eni_id,
                    code,
                    "vSwitch out of IPs, trying another"
                );
                inner.exhausted.insert(vswitch, (Instant::now(), code));
                Some(AssignError::VSwitchExhausted)
            }
            e if e.is_eni_full() => {
                tracing::warn!(
                    eni = eni_id,
                    code,
                    "the cloud says the ENI is full, trying another"
                );
                inner.full.insert(eni_id.to_string(), Instant::now());
                Some(AssignError::EniFull)
            }
            _ => None,
        }
    }

    /// What a failed assign call (`what`, e.g. "assign 3 addresses to eni-x") means to
    /// the waiter: a full vSwitch or ENI (noted, another is tried), a vSwitch without
    /// IPv6 (a config error), or the cloud's error.
    async fn assign_failed(&self, eni_id: &str, what: String, e: CloudError) -> AssignError {
        if let CloudError::VSwitchIpv6Off(_) = e {
            return AssignError::Other(PoolError::Invalid(format!(
                "{what}: {e}; dual stack needs vSwitches with an IPv6 CIDR block"
            )));
        }
        match self.note_refusal(eni_id, &e).await {
            Some(refused) => refused,
            None => AssignError::Other(cloud_err(&what, e)),
        }
    }

    /// One AssignPrivateIpAddresses (and AssignIpv6Addresses when dual) of `n` addresses
    /// to `eni_id`, then the wait until the node sees them.
    async fn assign_more(&self, eni_id: &str, n: usize) -> Result<(), AssignError> {
        if self.p.ip_prefix {
            return self.assign_prefixes(eni_id, n.div_ceil(PREFIX_SIZE)).await;
        }
        let added = match self
            .cloud
            .assign_private_ip_addresses(eni_id, IpRequest::Count(n as u32))
            .await
        {
            Ok(a) => a,
            Err(e) => {
                return Err(self
                    .assign_failed(eni_id, format!("assign {n} addresses to {eni_id}"), e)
                    .await)
            }
        };
        // Known before the IPv6 call, so a failure there does not lose them.
        if let Some(e) = self.inner.lock().await.enis.get_mut(eni_id) {
            e.nic.private_ips.extend(added.iter().copied());
        }
        let mut added6 = Vec::new();
        if self.p.dual {
            added6 = match self
                .cloud
                .assign_ipv6_addresses(eni_id, IpRequest::Count(added.len() as u32))
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    return Err(self
                        .assign_failed(eni_id, format!("assign IPv6 addresses to {eni_id}"), e)
                        .await)
                }
            };
        }
        if let Some(e) = self.inner.lock().await.enis.get_mut(eni_id) {
            e.nic.ipv6s.extend(added6.iter().copied());
        }
        tracing::info!(eni = eni_id, added = added.len(), "assigned addresses");
        Ok(self.wait_visible(eni_id, &added, &added6).await?)
    }

    /// Prefix mode: one AssignPrivateIpAddresses of `count` /28 prefixes (and, dual
    /// stack, the ENI's /80 when it has none yet), then the wait until the node sees
    /// them. The vSwitch running out of aligned /28 blocks is its exhaustion.
    async fn assign_prefixes(&self, eni_id: &str, count: usize) -> Result<(), AssignError> {
        let count = count.clamp(1, MAX_PREFIXES_PER_CALL);
        let mut r = self.cloud.assign_ipv4_prefixes(eni_id, count as u32).await;
        if count > 1 && matches!(r, Err(CloudError::VSwitchExhausted(_))) {
            // The vSwitch may still have fewer aligned /28 blocks than asked for (its
            // free-address count does not tell): take one rather than none.
            r = self.cloud.assign_ipv4_prefixes(eni_id, 1).await;
        }
        let added = match r {
            Ok(a) => a,
            Err(e) => {
                return Err(self
                    .assign_failed(
                        eni_id,
                        format!("assign {count} /28 prefixes to {eni_id}"),
                        e,
                    )
                    .await)
            }
        };
        let needs_v6 = {
            let mut inner = self.inner.lock().await;
            match inner.enis.get_mut(eni_id) {
                Some(e) => {
                    e.nic.ipv4_prefixes.extend(added.iter().copied());
                    self.p.dual && e.nic.ipv6_prefixes.is_empty()
                }
                None => false,
            }
        };
        let mut added6 = Vec::new();
        if needs_v6 {
            added6 = self.assign_v6_prefix(eni_id).await?;
        }
        tracing::info!(eni = eni_id, prefixes = ?added, "assigned prefixes");
        let v4: Vec<Ipv4Addr> = added.iter().flat_map(|n| prefix_addresses(*n)).collect();
        let v6: Vec<Ipv6Addr> = added6
            .iter()
            .map(|n| Ipv6Addr::from(u128::from(n.network()) + 1))
            .collect();
        Ok(self.wait_visible(eni_id, &v4, &v6).await?)
    }

    /// Dual-stack prefix mode: the ENI's one /80.
    async fn assign_v6_prefix(&self, eni_id: &str) -> Result<Vec<Ipv6Net>, AssignError> {
        let got = match self.cloud.assign_ipv6_prefixes(eni_id, 1).await {
            Ok(a) => a,
            Err(e) => {
                return Err(self
                    .assign_failed(eni_id, format!("assign an IPv6 /80 prefix to {eni_id}"), e)
                    .await)
            }
        };
        if let Some(e) = self.inner.lock().await.enis.get_mut(eni_id) {
            e.nic.ipv6_prefixes.extend(got.iter().copied());
        }
        Ok(got)
    }

    /// "; vSwitch X has no free addresses (code)" for each of `vsw` the cloud called
    /// exhausted, so the error reaching the ADD says which.
    fn exhausted_note(&self, inner: &Inner, vsw: &[String]) -> String {
        vsw.iter()
            .filter_map(|v| {
                let (_, code) = inner.exhausted.get(v)?;
                Some(format!(
                    "; vSwitch {v} has no free addresses (the cloud answered {code})"
                ))
            })
            .collect()
    }

    /// Polls the node until the ENI's link is there and the metadata lists `v4`/`v6`.
    async fn wait_visible(&self, eni_id: &str, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> PResult<()> {
        let until = Instant::now() + self.p.visible_timeout;
        // The link and the metadata usually show within tens of ms of the attach (the
        // checks are local): look again soon, then every 100 ms.
        let mut pause = Duration::from_millis(20);
        loop {
            self.refresh(eni_id).await?;
            let inner = self.inner.lock().await;
            let Some(e) = inner.enis.get(eni_id) else {
                return Ok(());
            };
            let ok = e.link.is_some()
                && v4.iter().all(|ip| e.visible4(*ip))
                && v6.iter().all(|ip| e.visible6(*ip));
            if ok {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(PoolError::Node(format!(
                    "ENI {eni_id} ({}): after {:?} its link is {} and the metadata service {} its new addresses; \
                     the addresses stay in the pool and are retried",
                    e.nic.mac,
                    self.p.visible_timeout,
                    if e.link.is_some() { "present" } else { "absent" },
                    if e.view.is_some() { "does not list all of" } else { "does not know" },
                )));
            }
            drop(inner);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Candidate vSwitches in the node's zone, most free addresses first, skipping ones
    /// that recently ran out.
    async fn vswitch_order(&self, vsw: &[String]) -> PResult<Vec<(String, usize)>> {
        let found = self
            .cloud
            .describe_vswitches(None, vsw)
            .await
            .map_err(|e| cloud_err("describe vSwitches", e))?;
        for id in vsw {
            match found.iter().find(|v| &v.id == id) {
                None => {
                    return Err(PoolError::Invalid(format!(
                        "vSwitch {id} does not exist in this region; check terway.vswitches or the pod's unicni.io/vswitches annotation"
                    )))
                }
                Some(v) if v.zone_id != self.p.zone => {
                    return Err(PoolError::Invalid(format!(
                        "vSwitch {id} is in zone {}, this node is in {}; pods can only use vSwitches of their node's zone",
                        v.zone_id, self.p.zone
                    )))
                }
                _ => {}
            }
        }
        let mut inner = self.inner.lock().await;
        inner
            .exhausted
            .retain(|_, (at, _)| at.elapsed() < EXHAUSTED_FOR);
        let mut usable: Vec<_> = found
            .into_iter()
            .filter(|v| !inner.exhausted.contains_key(&v.id) && v.available_ip_count > 0)
            .collect();
        usable.sort_by_key(|v| std::cmp::Reverse(v.available_ip_count));
        if usable.is_empty() {
            let why: Vec<String> = vsw
                .iter()
                .map(|v| match inner.exhausted.get(v) {
                    Some((_, code)) => format!("{v}: the cloud answered {code}"),
                    None => format!("{v}: no free address listed"),
                })
                .collect();
            let e = PoolError::Exhausted(format!(
                "every vSwitch of {vsw:?} is out of IP addresses ({}); add a vSwitch to terway.vswitches or free addresses",
                why.join(", ")
            ));
            inner.exhaustion = Some((Exhausted::Vswitch, e.to_string()));
            return Err(e);
        }
        Ok(usable
            .into_iter()
            .map(|v| (v.id, v.available_ip_count as usize))
            .collect())
    }

    async fn create_eni(
        &self,
        token: u64,
        vsw: &[String],
        sgs: &[String],
        ips: usize,
    ) -> PResult<()> {
        let order = self.vswitch_order(vsw).await?;
        let mut last = None;
        for (vswitch, free) in order {
            // A vSwitch with fewer free addresses than asked for still serves that many.
            let ips = ips.min(free).max(1);
            // Prefix mode: the prefixes come with the ENI (CreateNetworkInterface
            // Ipv4PrefixCount), so a new ENI needs no assign call after it.
            let prefixes = if self.p.ip_prefix {
                ips.div_ceil(PREFIX_SIZE).clamp(1, MAX_PREFIXES_PER_CALL) as u32
            } else {
                0
            };
            let req = CreateEniRequest {
                vswitch_id: vswitch.clone(),
                security_group_ids: sgs.to_vec(),
                // The primary address serves a pod too (not in prefix mode).
                secondary_ip_count: if prefixes > 0 {
                    0
                } else {
                    ips.saturating_sub(1) as u32
                },
                ipv6_count: if self.p.dual && prefixes == 0 {
                    ips as u32
                } else {
                    0
                },
                ipv4_prefix_count: prefixes,
                ipv6_prefix_count: u32::from(self.p.dual && prefixes > 0),
                description: Some(format!("unicni pod ENI of {}", self.p.instance_id)),
                tags: vec![
                    (TAG_NODE.to_string(), self.p.instance_id.clone()),
                    (TAG_CLUSTER.to_string(), self.p.cluster.clone()),
                ],
                client_token: None,
            };
            let mut r = self.cloud.create_network_interface(&req).await;
            if prefixes > 1 && matches!(r, Err(CloudError::VSwitchExhausted(_))) {
                // Fewer aligned /28 blocks than asked for may be left: one will do.
                r = self
                    .cloud
                    .create_network_interface(&CreateEniRequest {
                        ipv4_prefix_count: 1,
                        ..req.clone()
                    })
                    .await;
            }
            match r {
                Ok(nic) => return self.attach(token, nic).await,
                Err(CloudError::VSwitchExhausted(f)) => {
                    tracing::warn!(vswitch, "vSwitch out of IPs, trying the next: {f}");
                    self.inner
                        .lock()
                        .await
                        .exhausted
                        .insert(vswitch.clone(), (Instant::now(), f.code.clone()));
                    last = Some(format!("{vswitch}: {}", f.code));
                }
                Err(e) => return Err(cloud_err(&format!("create an ENI in {vswitch}"), e)),
            }
        }
        let e = PoolError::Exhausted(format!(
            "no vSwitch of {vsw:?} has addresses left (last: {}); add a vSwitch to terway.vswitches",
            last.unwrap_or_default()
        ));
        self.inner.lock().await.exhaustion = Some((Exhausted::Vswitch, e.to_string()));
        Err(e)
    }

    async fn attach(&self, token: u64, nic: NetworkInterface) -> PResult<()> {
        let id = nic.id.clone();
        if let Err(e) = self
            .cloud
            .attach_network_interface(&id, &self.p.instance_id)
            .await
        {
            // Not attached: delete it now rather than leak it until the next start.
            let _ = self.cloud.delete_network_interface(&id).await;
            if let CloudError::EniQuotaExceeded(_) = e {
                let e = PoolError::Exhausted(format!(
                    "attach {id} to {}: {e}; the instance-type table ({} ENIs for {}) disagrees with the cloud: \
                     schedule fewer pods on this node or use a larger instance type",
                    self.p.instance_id, self.p.limits.enis, self.p.limits.name
                ));
                self.inner.lock().await.exhaustion = Some((Exhausted::EniQuota, e.to_string()));
                return Err(e);
            }
            return Err(cloud_err(&format!("attach {id}"), e));
        }
        // Attaching: the pool's from now on (it counts against the instance's ENIs, and
        // maintenance finds its link should the wait below fail).
        {
            let mut inner = self.inner.lock().await;
            inner.creating.retain(|c| c.token != token);
            inner.settling.insert(id.clone());
            inner.enis.insert(
                id.clone(),
                Eni {
                    nic,
                    view: None,
                    link: None,
                },
            );
        }
        let r = self.settle_eni(&id).await;
        self.inner.lock().await.settling.remove(&id);
        r
    }

    /// Waits until an attaching ENI is `InUse` and its addresses show on the node.
    async fn settle_eni(&self, id: &str) -> PResult<()> {
        let nic = poll::wait_eni_status(self.cloud.as_ref(), id, EniStatus::InUse, self.p.attach)
            .await
            .map_err(|e| cloud_err(&format!("wait for {id} to attach"), e))?;
        tracing::info!(eni = %id, vswitch = %nic.vswitch_id, ips = nic.private_ips.len(), "ENI attached");
        let (v4, v6) = {
            let mut inner = self.inner.lock().await;
            match inner.enis.get_mut(id) {
                Some(e) => {
                    e.nic = nic;
                    let mut v4 = e.nic.private_ips.clone();
                    v4.extend(e.pod_v4(self.p.ip_prefix));
                    v4.dedup();
                    let mut v6 = e.nic.ipv6s.clone();
                    v6.extend(e.pod_v6(self.p.ip_prefix, v6_span(&self.p)).first());
                    (v4, v6)
                }
                None => (nic.private_ips.clone(), nic.ipv6s.clone()),
            }
        };
        self.wait_visible(id, &v4, &v6).await
    }

    fn idle_count(&self, inner: &Inner) -> usize {
        if self.p.exclusive {
            inner
                .enis
                .values()
                .filter(|e| !inner.state.owns_eni(&e.nic.id))
                .count()
        } else {
            inner
                .enis
                .values()
                .flat_map(|e| e.pod_v4(self.p.ip_prefix))
                .filter(|ip| !inner.state.owns_v4(*ip))
                .count()
        }
    }

    pub async fn stats(&self) -> PoolStats {
        let inner = self.inner.lock().await;
        PoolStats {
            enis: inner.enis.len(),
            idle: self.idle_count(&inner),
            in_use: inner.state.allocations.len(),
            held: inner.state.holds.len(),
            capacity: self.capacity(),
            waiting: inner.waiters.len(),
            in_flight: inner.assigning.len() + inner.creating.len() + inner.settling.len(),
            exhausted: inner.exhaustion.as_ref().map(|(what, _)| *what),
            exhausted_reason: inner.exhaustion.as_ref().map(|(_, why)| why.clone()),
        }
    }

    /// Every address held by an attachment (one entry per address): the plugin's CNI GC
    /// releases those of attachments the runtime no longer knows.
    pub async fn allocations(&self) -> Vec<unicni_core::Allocation> {
        let inner = self.inner.lock().await;
        inner
            .state
            .allocations
            .values()
            .flat_map(|h| {
                let v4 = h.ipv4.map(std::net::IpAddr::from);
                let v6 = h.ipv6.map(std::net::IpAddr::from);
                v4.into_iter()
                    .chain(v6)
                    .map(|address| unicni_core::Allocation {
                        address,
                        id: h.id.clone(),
                    })
            })
            .collect()
    }

    /// Every address (v4) the pool knows and who holds it: for tests and `status`.
    pub async fn addresses(&self) -> Vec<(Ipv4Addr, Option<String>)> {
        let inner = self.inner.lock().await;
        let mut out = Vec::new();
        for e in inner.enis.values() {
            for ip in &e.pod_v4(self.p.ip_prefix) {
                let holder = inner
                    .state
                    .allocations
                    .values()
                    .find(|h| h.ipv4 == Some(*ip))
                    .map(|h| h.id.to_string());
                out.push((*ip, holder));
            }
        }
        out
    }

    /// One maintenance pass: expire holds, release pods whose namespace vanished without
    /// a DEL, look again for links that were missing, then grow to `min` idle (waiting
    /// for the calls) and shrink to `max` idle.
    pub async fn maintain(&self) -> PResult<()> {
        let missing = {
            let mut inner = self.inner.lock().await;
            let now = now_unix();
            let before = inner.state.holds.len();
            inner.state.holds.retain(|k, h| {
                let keep = h.until_unix > now;
                if !keep {
                    tracing::info!(pod = %k, ip = ?h.ipv4, "fixed-IP hold expired; address back to the pool");
                }
                keep
            });
            let vanished: Vec<String> = inner
                .state
                .allocations
                .iter()
                .filter(|(_, h)| {
                    h.netns
                        .as_deref()
                        .is_some_and(|n| !self.node.netns_exists(n))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in &vanished {
                if let Some(h) = inner.state.allocations.remove(k) {
                    tracing::warn!(attachment = %k, ip = ?h.ipv4, "pod namespace is gone without a DEL; address released");
                }
            }
            if before != inner.state.holds.len() || !vanished.is_empty() {
                self.file.save(&inner.state)?;
            }
            inner
                .enis
                .values()
                .filter(|e| e.link.is_none() || e.view.is_none())
                .filter(|e| !(self.p.exclusive && inner.state.owns_eni(&e.nic.id)))
                .map(|e| e.nic.id.clone())
                .collect::<Vec<String>>()
        };
        for id in missing {
            self.refresh(&id).await?;
        }
        self.settled().await;
        let (grow, excess) = {
            let mut inner = self.inner.lock().await;
            let ops = self.settle(&mut inner);
            let idle = self.idle_count(&inner);
            let quiet =
                inner.waiters.is_empty() && inner.assigning.is_empty() && inner.creating.is_empty();
            let excess = if ops.is_empty() && quiet && idle > self.p.max {
                idle - self.p.max
            } else {
                0
            };
            (ops, excess)
        };
        if let Some(task) = self.launch(grow) {
            match task.await {
                Ok(None) => {}
                Ok(Some(PoolError::Exhausted(why))) => {
                    tracing::debug!("pool below pool.min and cannot grow: {why}")
                }
                Ok(Some(e)) => return Err(e),
                Err(e) => return Err(PoolError::Node(format!("pool growth task: {e}"))),
            }
        }
        self.inner.lock().await.warmed = true;
        if excess > 0 {
            if self.p.ip_prefix {
                // Whole prefixes only: a partly idle one stays.
                self.shrink_prefixes(excess / PREFIX_SIZE).await?;
            } else {
                self.shrink(excess).await?;
            }
        } else {
            let n = self.reclaimable().await;
            if n > 0 {
                tracing::info!(
                    n,
                    prefixes = self.p.ip_prefix,
                    "giving back addresses idle longer than terway.pool.idle_reclaim_seconds"
                );
                if self.p.ip_prefix {
                    self.shrink_prefixes(n).await?;
                } else {
                    self.shrink(n).await?;
                }
            }
        }
        Ok(())
    }

    /// How many idle addresses (or ENIs) have been idle longer than the (jittered)
    /// reclaim time, beyond what the pool keeps ready, at most one batch; records when
    /// each idle one was first seen idle.
    async fn reclaimable(&self) -> usize {
        let Some(after) = self.p.idle_reclaim else {
            return 0;
        };
        let mut inner = self.inner.lock().await;
        let idle: Vec<String> = if self.p.ip_prefix {
            // Prefix mode reclaims whole prefixes: one is idle when all 16 are.
            inner
                .enis
                .values()
                .flat_map(|e| self.free_prefixes(&inner, e))
                .map(|n| n.to_string())
                .collect()
        } else if self.p.exclusive {
            inner
                .enis
                .values()
                .filter(|e| !inner.state.owns_eni(&e.nic.id))
                .map(|e| e.nic.id.clone())
                .collect()
        } else {
            inner
                .enis
                .values()
                .flat_map(|e| e.nic.private_ips.iter())
                .filter(|ip| !inner.state.owns_v4(**ip))
                .map(|ip| ip.to_string())
                .collect()
        };
        let now = Instant::now();
        inner.idle_since.retain(|k, _| idle.contains(k));
        for k in &idle {
            inner.idle_since.entry(k.clone()).or_insert(now);
        }
        if !inner.waiters.is_empty() {
            return 0;
        }
        // Nodes started together would otherwise give back (and later ask again) in
        // lockstep; the clock's nanoseconds are random enough to spread them.
        let jitter = self.p.reclaim_jitter_percent.min(100) as f64 / 100.0;
        let r = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() % 1000)
            .unwrap_or(500) as f64
            / 1000.0;
        let threshold = after.mul_f64((1.0 + jitter * (2.0 * r - 1.0)).max(0.0));
        let long = inner
            .idle_since
            .values()
            .filter(|t| now.duration_since(**t) >= threshold)
            .count();
        let keep = self.target_idle(&inner);
        let spare = if self.p.ip_prefix {
            // Prefixes that can go with the idle addresses left still at the target.
            self.idle_count(&inner).saturating_sub(keep) / PREFIX_SIZE
        } else {
            idle.len().saturating_sub(keep)
        };
        long.min(spare).min(self.p.reclaim_batch.max(1))
    }

    /// The ENI's /28 prefixes none of whose 16 addresses a pod or hold owns.
    fn free_prefixes(&self, inner: &Inner, e: &Eni) -> Vec<Ipv4Net> {
        e.nic
            .ipv4_prefixes
            .iter()
            .copied()
            .filter(|n| prefix_addresses(*n).all(|ip| !inner.state.owns_v4(ip)))
            .collect()
    }

    /// Prefix mode: gives `n` wholly idle /28 prefixes back to the cloud, in batches of
    /// one UnassignPrivateIpAddresses per ENI; an ENI left with nothing in use is
    /// detached and deleted instead (its /80 goes with it). Like [`Self::shrink`], what
    /// goes leaves the books first and comes back if the call fails.
    async fn shrink_prefixes(&self, mut n: usize) -> PResult<()> {
        let ids: Vec<String> = self.inner.lock().await.enis.keys().cloned().collect();
        for id in ids {
            if n == 0 {
                break;
            }
            let mut inner = self.inner.lock().await;
            if inner.assigning.contains_key(&id) || !inner.waiters.is_empty() {
                continue;
            }
            let Some(e) = inner.enis.get(&id).cloned() else {
                continue;
            };
            let free = self.free_prefixes(&inner, &e);
            if free.is_empty() {
                continue;
            }
            let unused_eni = !inner.state.owns_eni(&id);
            if unused_eni && free.len() == e.nic.ipv4_prefixes.len() && free.len() <= n {
                inner.enis.remove(&id);
                drop(inner);
                if let Err(err) = self.delete_eni(&id).await {
                    self.inner.lock().await.enis.insert(id.clone(), e);
                    return Err(err);
                }
                n -= free.len();
                let mut inner = self.inner.lock().await;
                self.record_prefixes(&mut inner);
                continue;
            }
            let give: Vec<Ipv4Net> = free
                .into_iter()
                .take(n.min(MAX_PREFIXES_PER_CALL))
                .collect();
            if let Some(e) = inner.enis.get_mut(&id) {
                e.nic.ipv4_prefixes.retain(|p| !give.contains(p));
            }
            drop(inner);
            if let Err(err) = self.cloud.unassign_ipv4_prefixes(&id, &give).await {
                if let Some(e) = self.inner.lock().await.enis.get_mut(&id) {
                    e.nic.ipv4_prefixes.extend(give.iter().copied());
                }
                return Err(cloud_err(&format!("unassign idle prefixes of {id}"), err));
            }
            tracing::info!(eni = %id, prefixes = ?give, "idle prefixes returned");
            n -= give.len();
            let mut inner = self.inner.lock().await;
            self.record_prefixes(&mut inner);
        }
        Ok(())
    }

    /// Waits (a bounded time) until no cloud call is in flight, so that a maintenance
    /// pass counts what the cloud has.
    async fn settled(&self) {
        let until = Instant::now() + self.p.attach.timeout;
        while Instant::now() < until {
            {
                let inner = self.inner.lock().await;
                if inner.assigning.is_empty()
                    && inner.creating.is_empty()
                    && inner.settling.is_empty()
                    && !inner.coalescing
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Gives `n` idle addresses (or ENIs) back to the cloud: secondary addresses first;
    /// an ENI nobody uses is detached and deleted. What is being given back leaves the
    /// books first (under the lock), so no pod can take it while the call runs; it comes
    /// back if the call fails.
    async fn shrink(&self, mut n: usize) -> PResult<()> {
        let ids: Vec<String> = self.inner.lock().await.enis.keys().cloned().collect();
        for id in ids {
            if n == 0 {
                break;
            }
            let mut inner = self.inner.lock().await;
            if inner.assigning.contains_key(&id) || !inner.waiters.is_empty() {
                continue;
            }
            let Some(e) = inner.enis.get(&id).cloned() else {
                continue;
            };
            let unused_eni = !inner.state.owns_eni(&id);
            let primary_idle = !inner.state.owns_v4(e.nic.primary_ip);
            let idle_secondaries: Vec<Ipv4Addr> = e
                .nic
                .secondary_ips()
                .copied()
                .filter(|ip| !inner.state.owns_v4(*ip))
                .collect();
            if self.p.exclusive || (unused_eni && primary_idle && idle_secondaries.len() < n) {
                if !unused_eni {
                    continue;
                }
                inner.enis.remove(&id);
                drop(inner);
                if let Err(err) = self.delete_eni(&id).await {
                    self.inner.lock().await.enis.insert(id.clone(), e);
                    return Err(err);
                }
                n = n.saturating_sub(if self.p.exclusive {
                    1
                } else {
                    idle_secondaries.len() + 1
                });
                continue;
            }
            let give: Vec<Ipv4Addr> = idle_secondaries.into_iter().take(n).collect();
            if give.is_empty() {
                continue;
            }
            // Keep IPv6 count in step with IPv4: drop as many idle IPv6 addresses.
            let give6: Vec<Ipv6Addr> = if self.p.dual {
                e.nic
                    .ipv6s
                    .iter()
                    .copied()
                    .filter(|ip| !inner.state.owns_v6(*ip))
                    .take(give.len())
                    .collect()
            } else {
                Vec::new()
            };
            if let Some(e) = inner.enis.get_mut(&id) {
                e.nic.private_ips.retain(|ip| !give.contains(ip));
                e.nic.ipv6s.retain(|ip| !give6.contains(ip));
            }
            drop(inner);
            if let Err(err) = self.cloud.unassign_private_ip_addresses(&id, &give).await {
                if let Some(e) = self.inner.lock().await.enis.get_mut(&id) {
                    e.nic.private_ips.extend(give.iter().copied());
                    e.nic.ipv6s.extend(give6.iter().copied());
                }
                return Err(cloud_err(&format!("unassign idle addresses of {id}"), err));
            }
            if !give6.is_empty() {
                if let Err(err) = self.cloud.unassign_ipv6_addresses(&id, &give6).await {
                    if let Some(e) = self.inner.lock().await.enis.get_mut(&id) {
                        e.nic.ipv6s.extend(give6.iter().copied());
                    }
                    return Err(cloud_err(&format!("unassign idle IPv6 of {id}"), err));
                }
            }
            tracing::info!(eni = %id, released = give.len(), "pool above pool.max; idle addresses returned");
            n -= give.len();
        }
        Ok(())
    }

    async fn delete_eni(&self, id: &str) -> PResult<()> {
        self.cloud
            .detach_network_interface(id, &self.p.instance_id)
            .await
            .map_err(|e| cloud_err(&format!("detach {id}"), e))?;
        poll::wait_eni_status(self.cloud.as_ref(), id, EniStatus::Available, self.p.attach)
            .await
            .map_err(|e| cloud_err(&format!("wait for {id} to detach"), e))?;
        self.cloud
            .delete_network_interface(id)
            .await
            .map_err(|e| cloud_err(&format!("delete {id}"), e))?;
        tracing::info!(eni = %id, "idle ENI detached and deleted");
        Ok(())
    }
}
