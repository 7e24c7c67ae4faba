//! The ENI pool: addresses (shared mode) or whole ENIs (exclusive mode) kept ready for
//! pods, grown and shrunk through the cloud API, and the record of who holds what.
//!
//! One lock guards the pool. Cloud calls happen under it, so two ADDs never race for the
//! same address and the state file always matches what was handed out; growth is batched
//! so the lock is rarely held for long.

use crate::node::{EniView, Node};
use crate::podinfo::PodInfo;
use crate::proto::{eni_table, EniInfo, PodMode, PodNetwork};
use crate::state::{pod_key, Held, Hold, NodeState, StateFile};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
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

#[derive(Debug, Clone)]
pub struct PoolParams {
    pub instance_id: String,
    pub zone: String,
    pub cluster: String,
    pub limits: InstanceTypeLimits,
    pub exclusive: bool,
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
        self.view.as_ref().is_some_and(|v| v.ipv4s.contains(&ip))
    }

    fn visible6(&self, ip: Ipv6Addr) -> bool {
        self.view.as_ref().is_some_and(|v| v.ipv6s.contains(&ip))
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

struct Inner {
    enis: BTreeMap<String, Eni>,
    state: NodeState,
    /// vSwitches the cloud called exhausted: when, and the code it answered.
    exhausted: HashMap<String, (Instant, String)>,
    /// ENIs the cloud called full although the instance-type table left room.
    full: HashMap<String, Instant>,
}

/// Why adding addresses to one ENI failed, as far as `grow` cares.
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
}

pub struct Pool {
    p: PoolParams,
    cloud: Arc<dyn Cloud>,
    node: Arc<dyn Node>,
    file: StateFile,
    inner: Mutex<Inner>,
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
        p: PoolParams,
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
        let before = state.allocations.len() + state.holds.len();
        let on_eni = |eni: &str, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>| {
            enis.get(eni).is_some_and(|e: &Eni| {
                v4.is_none_or(|ip| e.nic.private_ips.contains(&ip))
                    && v6.is_none_or(|ip| e.nic.ipv6s.contains(&ip))
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
        file.save(&state)?;
        let pool = Pool {
            p,
            cloud,
            node,
            file,
            inner: Mutex::new(Inner {
                enis,
                state,
                exhausted: HashMap::new(),
                full: HashMap::new(),
            }),
        };
        {
            let mut inner = pool.inner.lock().await;
            let ids: Vec<String> = inner.enis.keys().cloned().collect();
            for id in ids {
                pool.refresh(&mut inner, &id).await?;
            }
        }
        Ok(pool)
    }

    pub fn params(&self) -> &PoolParams {
        &self.p
    }

    /// Pods this node can hold in its mode (the REFERENCE formulas).
    pub fn capacity(&self) -> u64 {
        self.p.limits.pods_in_mode(self.p.exclusive)
    }

    /// Re-reads the ENI's link and metadata view.
    async fn refresh(&self, inner: &mut Inner, id: &str) -> PResult<()> {
        let Some(eni) = inner.enis.get(id).cloned() else {
            return Ok(());
        };
        let view = self.node.metadata(&eni.nic.mac).await?;
        let mut e = eni;
        e.view = view;
        e.link = match e.info() {
            Some(info) => self.node.eni_link(&info, !self.p.exclusive).await?,
            None => None,
        };
        inner.enis.insert(id.to_string(), e);
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
            let v4 = eni
                .nic
                .private_ips
                .iter()
                .copied()
                .find(|ip| eni.visible4(*ip) && !inner.state.owns_v4(*ip));
            let Some(v4) = v4 else { continue };
            if !self.p.dual {
                return Some((eni.nic.id.clone(), v4, None));
            }
            let v6 = eni
                .nic
                .ipv6s
                .iter()
                .copied()
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
    /// its held address back.
    pub async fn allocate(
        &self,
        id: &AttachmentId,
        pod: &PodRef,
        netns: Option<String>,
        info: &PodInfo,
    ) -> PResult<PodNetwork> {
        let mut inner = self.inner.lock().await;
        let key = id.to_string();
        if let Some(h) = inner.state.allocations.get(&key).cloned() {
            if let Some(eni) = inner.enis.get(&h.eni_id) {
                return Ok(self.network(eni, h.ipv4, h.ipv6));
            }
        }
        let fixed = info.fixed_ip && pod_key(pod).is_some();
        let held = match pod_key(pod).and_then(|k| inner.state.holds.remove(&k)) {
            Some(hold) if inner.enis.contains_key(&hold.eni_id) => Some(Held {
                id: id.clone(),
                pod: pod.clone(),
                netns: netns.clone(),
                eni_id: hold.eni_id,
                ipv4: hold.ipv4,
                ipv6: hold.ipv6,
                fixed: true,
            }),
            _ => None,
        };
        let held = match held {
            Some(h) => {
                tracing::info!(pod = ?pod_key(pod), ip = ?h.ipv4, "fixed-IP pod gets its held address back");
                h
            }
            None => {
                let (vsw, sgs) = self.wanted(info);
                let (vsw, sgs) = (vsw.to_vec(), sgs.to_vec());
                let mut got = self.pick(&inner, &vsw, &sgs);
                if got.is_none() {
                    self.grow(&mut inner, &vsw, &sgs, 1).await?;
                    got = self.pick(&inner, &vsw, &sgs);
                }
                let mut h = got.ok_or_else(|| {
                    PoolError::Node(format!(
                        "the pool grew but no address became usable on vSwitches {vsw:?}; \
                         check that the ENI links appear on the node and in the metadata service"
                    ))
                })?;
                h.id = id.clone();
                h.pod = pod.clone();
                h.netns = netns;
                h.fixed = fixed;
                h
            }
        };
        let net = self.network(&inner.enis[&held.eni_id], held.ipv4, held.ipv6);
        inner.state.allocations.insert(key, held);
        self.file.save(&inner.state)?;
        Ok(net)
    }

    /// Gives back what `id` holds: a fixed-IP pod's addresses go on hold for its
    /// namespace/name, everything else back to the pool. Unknown IDs are fine.
    pub async fn release(&self, id: &AttachmentId) -> PResult<bool> {
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
            // The plugin moved the link back; see it again before handing the ENI out.
            let eni_id = h.eni_id.clone();
            let _ = self.refresh(&mut inner, &eni_id).await;
        }
        self.file.save(&inner.state)?;
        Ok(true)
    }

    /// Adds at least `need` usable addresses (or ENIs) on vSwitches `vsw` with groups
    /// `sgs`: more IPs on an ENI with room, else a new ENI while the instance type allows.
    async fn grow(
        &self,
        inner: &mut Inner,
        vsw: &[String],
        sgs: &[String],
        need: usize,
    ) -> PResult<()> {
        let batch = need.max(self.p.min).max(1);
        inner
            .exhausted
            .retain(|_, (at, _)| at.elapsed() < EXHAUSTED_FOR);
        inner.full.retain(|_, at| at.elapsed() < EXHAUSTED_FOR);
        if !self.p.exclusive {
            let per_eni = self.p.limits.ipv4_per_eni as usize;
            let mut rooms: Vec<(String, usize)> = inner
                .enis
                .values()
                .filter(|e| e.matches(vsw, sgs) && e.link.is_some())
                .filter(|e| !inner.full.contains_key(&e.nic.id))
                .map(|e| {
                    (
                        e.nic.id.clone(),
                        per_eni.saturating_sub(e.nic.private_ips.len()),
                    )
                })
                .filter(|(_, r)| *r > 0)
                .collect();
            rooms.sort_by_key(|(_, r)| std::cmp::Reverse(*r));
            for (eni_id, room) in rooms {
                // An earlier ENI of this pass may have found its vSwitch empty.
                if inner
                    .exhausted
                    .contains_key(&inner.enis[&eni_id].nic.vswitch_id)
                {
                    continue;
                }
                match self.assign_more(inner, &eni_id, batch.min(room)).await {
                    Ok(()) => return Ok(()),
                    Err(AssignError::Other(e)) => return Err(e),
                    // Noted in `inner`; the next ENI, or a new one elsewhere, may do.
                    Err(AssignError::VSwitchExhausted | AssignError::EniFull) => {}
                }
            }
        }
        let attached = inner.enis.len() as u64 + 1;
        if attached >= self.p.limits.enis {
            return Err(PoolError::Exhausted(format!(
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
            )));
        }
        let ips = if self.p.exclusive {
            1
        } else {
            batch.min(self.p.limits.ipv4_per_eni as usize)
        };
        self.create_eni(inner, vsw, sgs, ips).await
    }

    /// Records what the cloud said about an ENI or its vSwitch, so `grow` skips them.
    fn note_refusal(&self, inner: &mut Inner, eni_id: &str, e: &CloudError) -> Option<AssignError> {
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

    async fn assign_more(
        &self,
        inner: &mut Inner,
        eni_id: &str,
        n: usize,
    ) -> Result<(), AssignError> {
        let added = match self
            .cloud
            .assign_private_ip_addresses(eni_id, IpRequest::Count(n as u32))
            .await
        {
            Ok(a) => a,
            Err(e) => {
                return Err(self.note_refusal(inner, eni_id, &e).unwrap_or_else(|| {
                    AssignError::Other(cloud_err(&format!("assign {n} addresses to {eni_id}"), e))
                }))
            }
        };
        // Known before the IPv6 call, so a failure there does not lose them.
        if let Some(e) = inner.enis.get_mut(eni_id) {
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
                Err(e @ CloudError::VSwitchIpv6Off(_)) => {
                    return Err(AssignError::Other(PoolError::Invalid(format!(
                        "assign IPv6 addresses to {eni_id}: {e}; dual stack needs vSwitches with an IPv6 CIDR block"
                    ))))
                }
                Err(e) => {
                    return Err(self.note_refusal(inner, eni_id, &e).unwrap_or_else(|| {
                        AssignError::Other(cloud_err(
                            &format!("assign IPv6 addresses to {eni_id}"),
                            e,
                        ))
                    }))
                }
            };
        }
        if let Some(e) = inner.enis.get_mut(eni_id) {
            e.nic.ipv6s.extend(added6.iter().copied());
        }
        tracing::info!(eni = eni_id, added = added.len(), "assigned addresses");
        Ok(self.wait_visible(inner, eni_id, &added, &added6).await?)
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
    async fn wait_visible(
        &self,
        inner: &mut Inner,
        eni_id: &str,
        v4: &[Ipv4Addr],
        v6: &[Ipv6Addr],
    ) -> PResult<()> {
        let until = Instant::now() + self.p.visible_timeout;
        loop {
            self.refresh(inner, eni_id).await?;
            let e = &inner.enis[eni_id];
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
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Candidate vSwitches in the node's zone, most free addresses first, skipping ones
    /// that recently ran out.
    async fn vswitch_order(&self, inner: &mut Inner, vsw: &[String]) -> PResult<Vec<String>> {
        inner
            .exhausted
            .retain(|_, (at, _)| at.elapsed() < EXHAUSTED_FOR);
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
            return Err(PoolError::Exhausted(format!(
                "every vSwitch of {vsw:?} is out of IP addresses ({}); add a vSwitch to terway.vswitches or free addresses",
                why.join(", ")
            )));
        }
        Ok(usable.into_iter().map(|v| v.id).collect())
    }

    async fn create_eni(
        &self,
        inner: &mut Inner,
        vsw: &[String],
        sgs: &[String],
        ips: usize,
    ) -> PResult<()> {
        let order = self.vswitch_order(inner, vsw).await?;
        let mut last = None;
        for vswitch in order {
            let req = CreateEniRequest {
                vswitch_id: vswitch.clone(),
                security_group_ids: sgs.to_vec(),
                // The primary address serves a pod too.
                secondary_ip_count: ips.saturating_sub(1) as u32,
                ipv6_count: if self.p.dual { ips as u32 } else { 0 },
                description: Some(format!("unicni pod ENI of {}", self.p.instance_id)),
                tags: vec![
                    (TAG_NODE.to_string(), self.p.instance_id.clone()),
                    (TAG_CLUSTER.to_string(), self.p.cluster.clone()),
                ],
                client_token: None,
            };
            match self.cloud.create_network_interface(&req).await {
                Ok(nic) => return self.attach(inner, nic).await,
                Err(CloudError::VSwitchExhausted(f)) => {
                    tracing::warn!(vswitch, "vSwitch out of IPs, trying the next: {f}");
                    inner
                        .exhausted
                        .insert(vswitch.clone(), (Instant::now(), f.code.clone()));
                    last = Some(format!("{vswitch}: {}", f.code));
                }
                Err(e) => return Err(cloud_err(&format!("create an ENI in {vswitch}"), e)),
            }
        }
        Err(PoolError::Exhausted(format!(
            "no vSwitch of {vsw:?} has addresses left (last: {}); add a vSwitch to terway.vswitches",
            last.unwrap_or_default()
        )))
    }

    async fn attach(&self, inner: &mut Inner, nic: NetworkInterface) -> PResult<()> {
        let id = nic.id.clone();
        if let Err(e) = self
            .cloud
            .attach_network_interface(&id, &self.p.instance_id)
            .await
        {
            // Not attached: delete it now rather than leak it until the next start.
            let _ = self.cloud.delete_network_interface(&id).await;
            if let CloudError::EniQuotaExceeded(_) = e {
                return Err(PoolError::Exhausted(format!(
                    "attach {id} to {}: {e}; the instance-type table ({} ENIs for {}) disagrees with the cloud",
                    self.p.instance_id, self.p.limits.enis, self.p.limits.name
                )));
            }
            return Err(cloud_err(&format!("attach {id}"), e));
        }
        let nic = poll::wait_eni_status(self.cloud.as_ref(), &id, EniStatus::InUse, self.p.attach)
            .await
            .map_err(|e| cloud_err(&format!("wait for {id} to attach"), e))?;
        tracing::info!(eni = %id, vswitch = %nic.vswitch_id, ips = nic.private_ips.len(), "ENI attached");
        let (v4, v6) = (nic.private_ips.clone(), nic.ipv6s.clone());
        inner.enis.insert(
            id.clone(),
            Eni {
                nic,
                view: None,
                link: None,
            },
        );
        self.wait_visible(inner, &id, &v4, &v6).await
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
                .flat_map(|e| e.nic.private_ips.iter())
                .filter(|ip| !inner.state.owns_v4(**ip))
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
            for ip in &e.nic.private_ips {
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
    /// a DEL, look again for links that were missing, then grow to `min` idle and shrink
    /// to `max` idle.
    pub async fn maintain(&self) -> PResult<()> {
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
        let missing: Vec<String> = inner
            .enis
            .values()
            .filter(|e| e.link.is_none() || e.view.is_none())
            .filter(|e| !(self.p.exclusive && inner.state.owns_eni(&e.nic.id)))
            .map(|e| e.nic.id.clone())
            .collect();
        for id in missing {
            self.refresh(&mut inner, &id).await?;
        }
        let idle = self.idle_count(&inner);
        if idle < self.p.min {
            let (vsw, sgs) = (self.p.vswitches.clone(), self.p.security_groups.clone());
            match self.grow(&mut inner, &vsw, &sgs, self.p.min - idle).await {
                Ok(()) => {}
                Err(PoolError::Exhausted(why)) => {
                    tracing::debug!("pool below pool.min and cannot grow: {why}")
                }
                Err(e) => return Err(e),
            }
        } else if idle > self.p.max {
            self.shrink(&mut inner, idle - self.p.max).await?;
        }
        Ok(())
    }

    /// Gives `n` idle addresses (or ENIs) back to the cloud: secondary addresses first;
    /// an ENI nobody uses is detached and deleted.
    async fn shrink(&self, inner: &mut Inner, mut n: usize) -> PResult<()> {
        let ids: Vec<String> = inner.enis.keys().cloned().collect();
        for id in ids {
            if n == 0 {
                break;
            }
            let e = inner.enis[&id].clone();
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
                self.delete_eni(inner, &id).await?;
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
            self.cloud
                .unassign_private_ip_addresses(&id, &give)
                .await
                .map_err(|e| cloud_err(&format!("unassign idle addresses of {id}"), e))?;
            let mut give6 = Vec::new();
            if self.p.dual {
                // Keep IPv6 count in step with IPv4: drop as many idle IPv6 addresses.
                give6 = e
                    .nic
                    .ipv6s
                    .iter()
                    .copied()
                    .filter(|ip| !inner.state.owns_v6(*ip))
                    .take(give.len())
                    .collect();
                if !give6.is_empty() {
                    self.cloud
                        .unassign_ipv6_addresses(&id, &give6)
                        .await
                        .map_err(|e| cloud_err(&format!("unassign idle IPv6 of {id}"), e))?;
                }
            }
            if let Some(e) = inner.enis.get_mut(&id) {
                e.nic.private_ips.retain(|ip| !give.contains(ip));
                e.nic.ipv6s.retain(|ip| !give6.contains(ip));
            }
            tracing::info!(eni = %id, released = give.len(), "pool above pool.max; idle addresses returned");
            n -= give.len();
        }
        Ok(())
    }

    async fn delete_eni(&self, inner: &mut Inner, id: &str) -> PResult<()> {
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
        inner.enis.remove(id);
        tracing::info!(eni = %id, "idle ENI detached and deleted");
        Ok(())
    }
}
