//! Leases that expire: what the node agent holds while it runs.
//!
//! A [`LeaseStore`] binds each lease key to a time-to-live. etcd does that natively
//! ([`EtcdLeases`]); [`ExpiringStore`] does it over any plain [`Store`] by writing the
//! expiry time into the lease (the file store of a single machine); Kubernetes nodes
//! carry the subnet themselves ([`KubeLeases`]). A node that stops renewing loses its lease after the TTL: peers drop its
//! routes and the subnet can be leased again.

use crate::lease::{ipv6_subnet_of, key, Ipv6Plan, Lease, PREFIX};
use async_trait::async_trait;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use unicni_config::StoreConfig;
use unicni_core::{CreateOutcome, Error, Result, Store};
use unicni_store::{Cache, EtcdStore, KubeNodes, LeasedCreate, NodeLease, Opened};

/// The outcome of trying to take a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Held now; `token` is what renewals need (the etcd lease id; 0 for other stores).
    Taken { token: i64 },
    /// A live lease of someone (maybe this very node, before a restart) holds the key.
    Held { lease: Lease, token: i64 },
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    fn describe(&self) -> String;
    /// Every live lease.
    async fn list(&self) -> Result<Vec<Lease>>;
    /// Takes `lease.subnet` for `ttl` if nobody holds it.
    async fn claim(&self, lease: &Lease, ttl: Duration) -> Result<Claim>;
    /// Extends the lease for another `ttl`, rewriting its body. False when it was lost
    /// (expired, or taken over by someone else).
    async fn renew(&self, lease: &Lease, token: i64, ttl: Duration) -> Result<bool>;
    /// Gives the subnet back now.
    async fn release(&self, lease: &Lease, token: i64) -> Result<()>;
    /// The subnet an outside authority assigned to `node` (Kubernetes: `spec.podCIDR`);
    /// `None` when subnets are leased from the network by the nodes themselves.
    async fn assigned(&self, _node: &str) -> Result<Option<IpNet>> {
        Ok(None)
    }
    /// The IPv6 subnet an outside authority assigned to `node` (Kubernetes: the IPv6
    /// entry of `spec.podCIDRs`); `None` when the node's IPv6 subnet follows its IPv4 one.
    async fn assigned_ipv6(&self, _node: &str) -> Result<Option<IpNet>> {
        Ok(None)
    }
    /// Returns when the leases may have changed, or after `max`.
    async fn wait_change(&self, max: Duration) {
        tokio::time::sleep(max).await
    }
    /// Err(why) while a local view of the store is not ready to read (a watch that has
    /// not listed yet).
    fn synced(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn subnet_key(lease: &Lease) -> Result<String> {
    let s: IpNet = lease.subnet.parse().map_err(|_| {
        Error::InvalidConfig(format!("lease subnet {:?} is not a CIDR", lease.subnet))
    })?;
    Ok(key(&s))
}

/// Every record under the lease prefix that reads as a lease (live or not).
async fn stored_leases(store: &dyn Store) -> Result<Vec<Lease>> {
    Ok(store
        .list(PREFIX)
        .await?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

/// TTL leases over a store without TTLs: the lease carries `expires_at`.
pub struct ExpiringStore {
    store: Arc<dyn Store>,
}

impl ExpiringStore {
    pub fn new(store: Arc<dyn Store>) -> ExpiringStore {
        ExpiringStore { store }
    }

    fn live(l: &Lease) -> bool {
        l.expires_at.is_none_or(|t| t > now())
    }
}

#[async_trait]
impl LeaseStore for ExpiringStore {
    fn describe(&self) -> String {
        self.store.describe()
    }

    async fn list(&self) -> Result<Vec<Lease>> {
        let mut leases = stored_leases(self.store.as_ref()).await?;
        leases.retain(Self::live);
        Ok(leases)
    }

    async fn claim(&self, lease: &Lease, ttl: Duration) -> Result<Claim> {
        let k = subnet_key(lease)?;
        let mut body = lease.clone();
        body.expires_at = Some(now() + ttl.as_secs());
        let bytes = serde_json::to_vec(&body).expect("lease serializes");
        match self.store.create(&k, &bytes).await? {
            CreateOutcome::Created => Ok(Claim::Taken { token: 0 }),
            CreateOutcome::Exists(v) => {
                let existing = serde_json::from_slice::<Lease>(&v).ok();
                match existing {
                    Some(l) if Self::live(&l) => Ok(Claim::Held { lease: l, token: 0 }),
                    // Expired or unreadable: remove it and try once more. Two nodes racing
                    // here both delete, and only one create wins.
                    _ => {
                        self.store.delete(&k).await?;
                        match self.store.create(&k, &bytes).await? {
                            CreateOutcome::Created => Ok(Claim::Taken { token: 0 }),
                            CreateOutcome::Exists(v) => Ok(Claim::Held {
                                lease: serde_json::from_slice(&v).unwrap_or_default(),
                                token: 0,
                            }),
                        }
                    }
                }
            }
        }
    }

    async fn renew(&self, lease: &Lease, _token: i64, ttl: Duration) -> Result<bool> {
        let k = subnet_key(lease)?;
        let current = match self.store.get(&k).await? {
            Some(v) => serde_json::from_slice::<Lease>(&v).ok(),
            None => None,
        };
        match current {
            Some(c) if c.node == lease.node && Self::live(&c) => {
                let mut body = lease.clone();
                body.expires_at = Some(now() + ttl.as_secs());
                self.store
                    .put(&k, &serde_json::to_vec(&body).expect("lease serializes"))
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, lease: &Lease, _token: i64) -> Result<()> {
        let k = subnet_key(lease)?;
        if let Some(v) = self.store.get(&k).await? {
            if serde_json::from_slice::<Lease>(&v).is_ok_and(|c| c.node == lease.node) {
                self.store.delete(&k).await?;
            }
        }
        Ok(())
    }
}

/// `me` holding `subnet`, with the IPv6 subnet that goes with it on a dual-stack cluster.
fn holding(me: &Lease, network: IpNet, subnet: IpNet, ipv6: Option<Ipv6Plan>) -> Result<Lease> {
    let mut lease = me.clone();
    lease.subnet = subnet.to_string();
    lease.ipv6_subnet = match ipv6 {
        None => None,
        Some(plan) => Some(
            ipv6_subnet_of(network, subnet, plan)
                .ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "flannel.ipv6_network {} holds no /{} for the node subnet {subnet} of \
                         {network}: it needs as many IPv6 node subnets as IPv4 ones",
                        plan.network, plan.subnet_len
                    ))
                })?
                .to_string(),
        ),
    };
    Ok(lease)
}

/// Takes a subnet for `me` (node name, underlay address, VTEP MAC, mode filled in):
/// the one it holds already, else `previous` (what it held before a restart) if free,
/// else the first free one; with `ipv6`, the IPv6 subnet at the same index goes with it.
/// Returns the lease as written and the renewal token.
pub async fn acquire(
    store: &dyn LeaseStore,
    network: IpNet,
    subnet_len: u8,
    ipv6: Option<Ipv6Plan>,
    me: &Lease,
    previous: Option<IpNet>,
    ttl: Duration,
) -> Result<(Lease, i64)> {
    if let Some(subnet) = store.assigned(&me.node).await? {
        if !network.contains(&subnet) || subnet.prefix_len() != subnet_len {
            return Err(Error::InvalidConfig(format!(
                "node {:?} was assigned {subnet}, which is not a /{subnet_len} of flannel.network {network}: \
                 make the controller manager's --cluster-cidr and --node-cidr-mask-size match the config",
                me.node
            )));
        }
        let mut lease = me.clone();
        lease.subnet = subnet.to_string();
        if let Some(plan) = ipv6 {
            let v6 = store.assigned_ipv6(&me.node).await?.ok_or_else(|| {
                Error::TryAgain(format!(
                    "node {:?} has no IPv6 entry in spec.podCIDRs yet: run the controller \
                     manager with both cluster CIDRs (--cluster-cidr=IPv4,IPv6)",
                    me.node
                ))
            })?;
            if !IpNet::V6(plan.network).contains(&v6) || v6.prefix_len() != plan.subnet_len {
                return Err(Error::InvalidConfig(format!(
                    "node {:?} was assigned {v6}, which is not a /{} of flannel.ipv6_network {}: \
                     make the controller manager's --cluster-cidr and --node-cidr-mask-size-ipv6 \
                     match the config",
                    me.node, plan.subnet_len, plan.network
                )));
            }
            lease.ipv6_subnet = Some(v6.to_string());
        }
        return match store.claim(&lease, ttl).await? {
            Claim::Taken { token } => Ok((lease, token)),
            Claim::Held { lease: other, .. } => Err(Error::Store(format!(
                "subnet {subnet} assigned to node {:?} is held by node {:?} in {}",
                me.node,
                other.node,
                store.describe()
            ))),
        };
    }
    let live = store.list().await?;
    let mut candidates: Vec<IpNet> = Vec::new();
    if let Some(mine) = live.iter().find(|l| l.node == me.node) {
        if let Ok(s) = mine.subnet.parse() {
            candidates.push(s);
        }
    }
    if let Some(p) = previous {
        candidates.push(p);
    }
    let taken: HashSet<String> = live
        .iter()
        .filter(|l| l.node != me.node)
        .map(|l| l.subnet.clone())
        .collect();
    let all = network.subnets(subnet_len).map_err(|_| {
        Error::InvalidConfig(format!(
            "flannel.subnet_len /{subnet_len} does not fit flannel.network {network}"
        ))
    })?;
    let fresh = all.filter(|s| !taken.contains(&s.to_string()));
    for subnet in candidates.into_iter().chain(fresh) {
        if !network.contains(&subnet)
            || subnet.prefix_len() != subnet_len
            || taken.contains(&subnet.to_string())
        {
            continue;
        }
        let lease = holding(me, network, subnet, ipv6)?;
        match store.claim(&lease, ttl).await? {
            Claim::Taken { token } => return Ok((lease, token)),
            // Our own lease from before a restart: adopt it and rewrite our current data.
            Claim::Held { lease: held, token } if held.node == me.node => {
                if store.renew(&lease, token, ttl).await? {
                    return Ok((lease, token));
                }
            }
            Claim::Held { .. } => {}
        }
    }
    Err(Error::Exhausted(format!(
        "cluster network {network} has no free /{subnet_len} subnet for node {:?}: all {} are \
         leased in {}; remove nodes that left (their leases expire after the TTL) or use a \
         larger network",
        me.node,
        taken.len(),
        store.describe()
    )))
}

/// The lease view of the cluster's store (`store.kind`): [`ExpiringStore`] over the file
/// store, etcd keys bound to etcd leases, or Kubernetes node objects. The store is opened
/// by [`unicni_store::connect`], the one place that knows how to reach each kind.
pub async fn open(c: &StoreConfig) -> Result<Arc<dyn LeaseStore>> {
    Ok(match unicni_store::connect(c).await? {
        Opened::File(s) => Arc::new(ExpiringStore::new(Arc::new(s))),
        Opened::Etcd(s) => Arc::new(EtcdLeases::new(*s)),
        Opened::Kubernetes(k) => Arc::new(KubeLeases::new(k.client)),
    })
}

/// Kubernetes: the node's subnet is its `spec.podCIDR`; the agent publishes its underlay
/// address and VTEP MAC as node annotations. A node that is deleted is a peer that left.
///
/// Every read comes from a watched cache of the Node objects ([`unicni_store::Cache`]):
/// after its first list the agent makes no LIST and no GET, and a change to any Node wakes
/// its pass (when the lease view changed). It writes its node only when the annotations
/// differ from what the cache shows: once on first start, not once per pass or renewal.
pub struct KubeLeases {
    nodes: KubeNodes,
    cache: Cache<Node>,
    /// The view the agent's last pass listed: a Node change that leaves it the same (a
    /// kubelet status update, our own annotation) does not wake another pass.
    listed: std::sync::Mutex<Option<Vec<Lease>>>,
    changes: tokio::sync::Mutex<tokio::sync::watch::Receiver<u64>>,
}

/// How long a read waits for the first list of the Nodes before it fails (the agent
/// reports that as its reason for not being ready).
const SYNC_WAIT: Duration = Duration::from_secs(30);

impl KubeLeases {
    /// Starts the Node watch on the current tokio runtime.
    pub fn new(client: kube::Client) -> KubeLeases {
        let cache = unicni_store::kube::node_cache(client.clone());
        KubeLeases {
            nodes: KubeNodes::new(client),
            changes: tokio::sync::Mutex::new(cache.changes()),
            cache,
            listed: std::sync::Mutex::new(None),
        }
    }

    /// The Node cache (for readiness and tests).
    pub fn cache(&self) -> &Cache<Node> {
        &self.cache
    }

    fn view(&self) -> Vec<Lease> {
        let mut leases: Vec<Lease> = self
            .cache
            .state()
            .iter()
            .map(|n| KubeNodes::parse(n))
            // A Node no unicni agent has annotated yet (just joined, or not running unicni)
            // is not a peer: it has no VTEP to program, and refusing it every pass is noise.
            .filter(|n| n.mode.is_some())
            .filter_map(|n| {
                Some(Lease {
                    subnet: n.pod_cidr?,
                    ipv6_subnet: n.ipv6_pod_cidr,
                    public_ipv6: n.public_ipv6,
                    node: n.node,
                    public_ip: n.public_ip,
                    vtep_mac: n.vtep_mac,
                    mode: n.mode,
                    expires_at: None,
                })
            })
            .collect();
        // The store keeps no order; passes compare views.
        leases.sort_by(|a, b| a.node.cmp(&b.node));
        leases
    }

    /// This node's object from the cache. A node registers before its DaemonSet pods
    /// start, so a short wait covers a watch that has not delivered it yet.
    async fn node(&self, node: &str) -> Result<Arc<Node>> {
        self.cache.wait_synced(SYNC_WAIT).await?;
        self.cache
            .wait_for(Duration::from_secs(5), |c| c.get("", node))
            .await
            .ok_or_else(|| {
                Error::Store(format!(
                    "kubernetes: node {node:?} does not exist; set node.name to this node's Kubernetes name"
                ))
            })
    }

    /// Writes the annotations unless the node carries them already.
    async fn publish(&self, n: &Node, lease: &Lease) -> Result<()> {
        let ip = lease.public_ip.as_deref().unwrap_or_default();
        let mode = lease.mode.as_deref().unwrap_or_default();
        let vtep = lease.vtep_mac.as_deref();
        let v6_done = |n: &Node| {
            lease.public_ipv6.is_none() || KubeNodes::parse(n).public_ipv6 == lease.public_ipv6
        };
        let mut wrote = false;
        if !NodeLease::annotated(n, ip, vtep, mode) {
            self.nodes.annotate(&lease.node, ip, vtep, mode).await?;
            wrote = true;
        }
        if let (Some(v6), false) = (&lease.public_ipv6, v6_done(n)) {
            self.nodes.annotate_ipv6(&lease.node, v6).await?;
            wrote = true;
        }
        if wrote {
            // Until the watch delivers our own write the cache still shows the node as
            // it was, and the next pass would patch again: wait for it (bounded; a slow
            // watch costs one more patch, nothing else).
            self.cache
                .wait_for(Duration::from_secs(5), |c| {
                    c.get("", &lease.node)
                        .filter(|n| NodeLease::annotated(n, ip, vtep, mode) && v6_done(n))
                })
                .await;
        }
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for KubeLeases {
    fn describe(&self) -> String {
        "kubernetes nodes (spec.podCIDR + unicni.io annotations)".into()
    }

    async fn list(&self) -> Result<Vec<Lease>> {
        self.cache.wait_synced(SYNC_WAIT).await?;
        let view = self.view();
        *self.listed.lock().unwrap_or_else(|p| p.into_inner()) = Some(view.clone());
        Ok(view)
    }

    async fn assigned(&self, node: &str) -> Result<Option<IpNet>> {
        let n = KubeNodes::parse(&*self.node(node).await?);
        let cidr = n.pod_cidr.ok_or_else(|| {
            Error::TryAgain(format!(
                "node {node:?} has no spec.podCIDR yet: is the controller manager running with \
                 --allocate-node-cidrs?"
            ))
        })?;
        cidr.parse().map(Some).map_err(|_| {
            Error::InvalidConfig(format!(
                "node {node:?} has spec.podCIDR {cidr:?}, not a CIDR"
            ))
        })
    }

    async fn assigned_ipv6(&self, node: &str) -> Result<Option<IpNet>> {
        let n = KubeNodes::parse(&*self.node(node).await?);
        Ok(n.ipv6_pod_cidr.and_then(|c| c.parse().ok()))
    }

    async fn claim(&self, lease: &Lease, _ttl: Duration) -> Result<Claim> {
        let n = self.node(&lease.node).await?;
        self.publish(&n, lease).await?;
        Ok(Claim::Taken { token: 0 })
    }

    async fn renew(&self, lease: &Lease, _token: i64, _ttl: Duration) -> Result<bool> {
        // The lease is the node object itself: held while the node exists with this podCIDR.
        let n = self.node(&lease.node).await?;
        if KubeNodes::parse(&n).pod_cidr.as_deref() != Some(lease.subnet.as_str()) {
            return Ok(false);
        }
        // Someone removed or changed our annotations: put them back.
        self.publish(&n, lease).await?;
        Ok(true)
    }

    async fn release(&self, _lease: &Lease, _token: i64) -> Result<()> {
        Ok(())
    }

    fn synced(&self) -> std::result::Result<(), String> {
        match self.cache.is_synced() {
            true => Ok(()),
            false => Err(self.cache.not_synced()),
        }
    }

    async fn wait_change(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        let mut rx = self.changes.lock().await;
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {
                    // Let a burst of changes (a node joining writes twice) settle into one pass.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    rx.borrow_and_update();
                    let listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
                    if listed.as_ref() != Some(&self.view()) {
                        return;
                    }
                }
                // The watch task is gone (the runtime is stopping): the periodic pass stays.
                Ok(Err(_)) => return tokio::time::sleep_until(deadline).await,
                Err(_) => return,
            }
        }
    }
}

/// Leases as etcd keys bound to etcd leases: the server deletes a dead node's key.
pub struct EtcdLeases {
    store: EtcdStore,
    watch: tokio::sync::Mutex<Option<etcd_client::WatchStream>>,
}

impl EtcdLeases {
    pub fn new(store: EtcdStore) -> EtcdLeases {
        EtcdLeases {
            store,
            watch: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl LeaseStore for EtcdLeases {
    fn describe(&self) -> String {
        self.store.describe()
    }

    async fn list(&self) -> Result<Vec<Lease>> {
        stored_leases(&self.store).await
    }

    async fn claim(&self, lease: &Lease, ttl: Duration) -> Result<Claim> {
        let body = serde_json::to_vec(lease).expect("lease serializes");
        Ok(
            match self
                .store
                .create_with_ttl(&subnet_key(lease)?, &body, ttl)
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

    async fn renew(&self, lease: &Lease, token: i64, _ttl: Duration) -> Result<bool> {
        if token == 0 || self.store.keep_alive(token).await? <= 0 {
            return Ok(false);
        }
        let k = subnet_key(lease)?;
        let body = serde_json::to_vec(lease).expect("lease serializes");
        if self.store.get(&k).await?.as_deref() == Some(body.as_slice()) {
            return Ok(true);
        }
        self.store.put_with_lease(&k, &body, token).await
    }

    async fn release(&self, _lease: &Lease, token: i64) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::tests_support::Mem;

    fn me(node: &str) -> Lease {
        Lease {
            node: node.into(),
            public_ip: Some("192.168.1.10".into()),
            ..Lease::default()
        }
    }

    #[tokio::test]
    async fn same_node_gets_same_subnet_and_others_differ() {
        let s = ExpiringStore::new(Arc::new(Mem::default()));
        let net: IpNet = "10.1.0.0/22".parse().unwrap();
        let ttl = Duration::from_secs(60);
        let (a, _) = acquire(&s, net, 24, None, &me("a"), None, ttl)
            .await
            .unwrap();
        let (b, _) = acquire(&s, net, 24, None, &me("b"), None, ttl)
            .await
            .unwrap();
        assert_ne!(a.subnet, b.subnet);
        let (a2, _) = acquire(&s, net, 24, None, &me("a"), None, ttl)
            .await
            .unwrap();
        assert_eq!(a.subnet, a2.subnet);
        assert_eq!(s.list().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn expired_leases_are_not_listed_and_are_reusable() {
        let s = ExpiringStore::new(Arc::new(Mem::default()));
        let net: IpNet = "10.1.0.0/23".parse().unwrap();
        acquire(&s, net, 24, None, &me("a"), None, Duration::from_secs(0))
            .await
            .unwrap();
        acquire(&s, net, 24, None, &me("b"), None, Duration::from_secs(0))
            .await
            .unwrap();
        assert!(s.list().await.unwrap().is_empty());
        // Both subnets are free again: a third node gets one, then "a" its old one back.
        let (c, _) = acquire(&s, net, 24, None, &me("c"), None, Duration::from_secs(60))
            .await
            .unwrap();
        let prev: IpNet = "10.1.1.0/24".parse().unwrap();
        let want = if c.subnet == "10.1.1.0/24" {
            "10.1.0.0/24"
        } else {
            "10.1.1.0/24"
        };
        let (a, _) = acquire(
            &s,
            net,
            24,
            None,
            &me("a"),
            Some(prev),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(a.subnet, want);
    }

    #[tokio::test]
    async fn previous_subnet_is_preferred_when_free() {
        let s = ExpiringStore::new(Arc::new(Mem::default()));
        let net: IpNet = "10.1.0.0/22".parse().unwrap();
        let prev: IpNet = "10.1.2.0/24".parse().unwrap();
        let (a, _) = acquire(
            &s,
            net,
            24,
            None,
            &me("a"),
            Some(prev),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(a.subnet, "10.1.2.0/24");
    }

    #[tokio::test]
    async fn dual_stack_leases_carry_the_ipv6_subnet_at_the_same_index() {
        let s = ExpiringStore::new(Arc::new(Mem::default()));
        let net: IpNet = "10.1.0.0/22".parse().unwrap();
        let plan = Some(Ipv6Plan {
            network: "fd00:10:1::/60".parse().unwrap(),
            subnet_len: 64,
        });
        let ttl = Duration::from_secs(60);
        let prev: IpNet = "10.1.2.0/24".parse().unwrap();
        let (a, _) = acquire(&s, net, 24, plan, &me("a"), Some(prev), ttl)
            .await
            .unwrap();
        let (b, _) = acquire(&s, net, 24, plan, &me("b"), None, ttl)
            .await
            .unwrap();
        assert_eq!(a.subnet, "10.1.2.0/24");
        assert_eq!(a.ipv6_subnet.as_deref(), Some("fd00:10:1:2::/64"));
        assert_eq!(b.subnet, "10.1.0.0/24");
        assert_eq!(b.ipv6_subnet.as_deref(), Some("fd00:10:1::/64"));
        // What peers read back from the store.
        let listed = s.list().await.unwrap();
        let got: Vec<_> = listed
            .iter()
            .map(|l| (l.node.as_str(), l.ipv6_subnet.as_deref()))
            .collect();
        assert!(got.contains(&("a", Some("fd00:10:1:2::/64"))), "{got:?}");
        assert!(got.contains(&("b", Some("fd00:10:1::/64"))), "{got:?}");
        // A node restarting into its own lease keeps both.
        let (a2, _) = acquire(&s, net, 24, plan, &me("a"), None, ttl)
            .await
            .unwrap();
        assert_eq!(a2.ipv6_subnet, a.ipv6_subnet);
    }

    #[tokio::test]
    async fn renew_fails_once_someone_else_holds_it() {
        let s = ExpiringStore::new(Arc::new(Mem::default()));
        let net: IpNet = "10.1.0.0/24".parse().unwrap();
        let (a, t) = acquire(&s, net, 24, None, &me("a"), None, Duration::from_secs(0))
            .await
            .unwrap();
        let (b, _) = acquire(&s, net, 24, None, &me("b"), None, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(a.subnet, b.subnet);
        assert!(!s.renew(&a, t, Duration::from_secs(60)).await.unwrap());
        let e = acquire(&s, net, 24, None, &me("c"), None, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Exhausted(_)), "{e}");
        assert!(e.to_string().contains("\"c\""), "{e}");
    }
}
