//! The node agent's loop: hold a subnet lease, publish it to the CNI plugin, program the
//! datapath for every peer, and keep all of it true (lease renewals, drift repair).

use crate::hostgw::HostGw;
use crate::lease::{Ipv6Plan, Lease};
use crate::lease_store::{acquire, LeaseStore};
use crate::masq;
use crate::netconf::SubnetFile;
use crate::peers::{self, stable_vtep_mac};
use crate::reconcile::Pass;
use crate::vpcroute::VpcRoutes;
use crate::vxlan::{Vxlan, OVERHEAD_V4};
use ipnet::{IpNet, Ipv4Net};
use prometheus_client::registry::Registry;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use unicni_bpf::FastPath;
use unicni_config::Config;
use unicni_core::{Error, NodeAgent, NodeCapacity, NodeContext, Readiness, Readout, Result};
use unicni_net::Netlink;

/// The flannel mode (`flannel.mode`).
pub use unicni_config::FlannelMode as Mode;

#[derive(Debug, Clone)]
pub struct AgentParams {
    pub node: String,
    pub network: IpNet,
    pub subnet_len: u8,
    /// Dual stack (`cluster.ip_stack = "dual"`): the IPv6 cluster network and subnet size.
    pub ipv6: Option<Ipv6Plan>,
    pub mode: Mode,
    pub vni: u32,
    pub port: u16,
    /// Underlay interface; the default route's when `None`.
    pub interface: Option<String>,
    /// Pod MTU override; else underlay MTU minus the mode's overhead.
    pub mtu: Option<u32>,
    pub lease_ttl: Duration,
    pub reconcile_every: Duration,
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    /// nftables table for masquerade/forward rules; `None` when masquerade is off.
    pub masq_table: Option<String>,
    /// `flannel.fast_path`: the eBPF same-node fast path, pinned here (`bpf.pin_dir`).
    pub fast_path: Option<PathBuf>,
    /// `bpf.fallback`: without eBPF, run the bridge alone (true) or refuse to start.
    pub bpf_fallback: bool,
}

impl AgentParams {
    /// The agent's parameters for node `node` from the cluster's config.
    pub fn from_config(c: &Config, node: String) -> Result<AgentParams> {
        let network = c.flannel.network.parse().map_err(|_| {
            Error::InvalidConfig(format!(
                "flannel.network = {:?} is not a CIDR",
                c.flannel.network
            ))
        })?;
        let ipv6 = match (&c.cluster.ip_stack, &c.flannel.ipv6_network) {
            (unicni_config::IpStack::Dual, Some(n)) => Some(Ipv6Plan {
                network: n.parse().map_err(|_| {
                    Error::InvalidConfig(format!(
                        "flannel.ipv6_network = {n:?} is not an IPv6 CIDR"
                    ))
                })?,
                subnet_len: c.flannel.ipv6_subnet_len,
            }),
            (unicni_config::IpStack::Dual, None) => {
                return Err(Error::InvalidConfig(
                    "cluster.ip_stack = \"dual\" needs flannel.ipv6_network".into(),
                ))
            }
            _ => None,
        };
        Ok(AgentParams {
            node,
            network,
            subnet_len: c.flannel.subnet_len,
            ipv6,
            mode: c.flannel.mode,
            vni: c.flannel.vni,
            port: c.flannel.port,
            interface: c.flannel.interface.clone(),
            mtu: c.flannel.mtu,
            lease_ttl: Duration::from_secs(c.store.lease_ttl_seconds.max(1)),
            reconcile_every: Duration::from_secs(c.agent.reconcile_seconds),
            run_dir: c.node.run_dir.clone().into(),
            state_dir: c.node.state_dir.clone().into(),
            masq_table: c
                .flannel
                .masquerade
                .then(|| masq::table_name(&c.cni.network_name)),
            fast_path: c.flannel.fast_path.then(|| PathBuf::from(&c.bpf.pin_dir)),
            bpf_fallback: c.bpf.fallback,
        })
    }

    pub fn device_name(&self) -> String {
        format!("flannel.{}", self.vni)
    }
    pub fn subnet_file(&self) -> PathBuf {
        self.run_dir.join("flannel").join("subnet.json")
    }
    fn previous_file(&self) -> PathBuf {
        self.state_dir.join("flannel").join("lease.json")
    }
}

/// Live numbers for health and metrics; written by the loop, read by the HTTP server.
#[derive(Debug, Default)]
pub struct Status {
    pub lease_held: AtomicBool,
    pub ready: AtomicBool,
    pub peers: AtomicU64,
    pub routes: AtomicU64,
    pub neighbours: AtomicU64,
    pub fdb: AtomicU64,
    pub refused_peers: AtomicU64,
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub repairs: AtomicU64,
    pub removals: AtomicU64,
    pub lease_renewals: AtomicU64,
    pub lease_losses: AtomicU64,
    pub last_reconcile_ms: AtomicU64,
    pub subnet: Mutex<String>,
    pub last_error: Mutex<String>,
    /// vpc-route: the node's route entry was refused for the route-table quota.
    pub route_quota_exceeded: AtomicBool,
    /// vpc-route: entries of the cluster network in the VPC route table.
    pub vpc_route_entries: AtomicU64,
    /// The eBPF same-node fast path is loaded and offered to pods.
    pub fast_path: AtomicBool,
}

/// The underlay: where encapsulated (vxlan) or routed (host-gw) traffic leaves.
#[derive(Debug, Clone)]
pub struct Underlay {
    pub index: u32,
    pub name: String,
    pub ip: Ipv4Addr,
    /// Its IPv6 address: the first global one, else the link-local one (none when IPv6
    /// is disabled on it).
    pub ip6: Option<Ipv6Addr>,
    pub mtu: u32,
}

pub async fn find_underlay(nl: &Netlink, wanted: Option<&str>) -> Result<Underlay> {
    let link = match wanted {
        Some(name) => nl.link(name).await?.ok_or_else(|| {
            Error::InvalidConfig(format!(
                "flannel.interface = {name:?} does not exist on this node"
            ))
        })?,
        None => {
            let oif = nl
                .routes(
                    unicni_net::netlink::AddressFamily::Inet,
                    Some(unicni_net::TABLE_MAIN),
                )
                .await
                ?
                .into_iter()
                .find(|r| r.dst.prefix_len() == 0)
                .and_then(|r| r.oif)
                .ok_or_else(|| {
                    Error::InvalidConfig(
                        "no default route to pick the underlay interface from; set flannel.interface".into(),
                    )
                })?;
            nl.links()
                .await?
                .into_iter()
                .find(|l| l.index == oif)
                .ok_or_else(|| Error::kernel(format!("default route's interface {oif} vanished")))?
        }
    };
    let ip = nl
        .ipv4_addresses(link.index)
        .await
        ?
        .first()
        .map(|n| n.addr())
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "underlay interface {} has no IPv4 address; set flannel.interface to the node's VPC interface",
                link.name
            ))
        })?;
    let v6: Vec<Ipv6Addr> = nl
        .addresses(link.index)
        .await?
        .into_iter()
        .filter_map(|a| match a.addr() {
            std::net::IpAddr::V6(a) => Some(a),
            _ => None,
        })
        .collect();
    let link_local = |a: &Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
    let ip6 = v6
        .iter()
        .find(|a| !link_local(a))
        .or_else(|| v6.iter().find(|a| link_local(a)))
        .copied();
    Ok(Underlay {
        index: link.index,
        name: link.name,
        ip,
        ip6,
        mtu: link.mtu,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(unicni_fsutil::write_atomic(path, bytes, 0o644)?)
}

/// Tells the plugin the node is not ready (ADDs answer "try again later").
pub fn withdraw(params: &AgentParams) {
    let _ = std::fs::remove_file(params.subnet_file());
}

enum Datapath {
    Vxlan(Vxlan),
    HostGw(HostGw),
    VpcRoute(VpcRoutes),
}

pub struct Agent {
    params: AgentParams,
    store: Arc<dyn LeaseStore>,
    status: Arc<Status>,
    nl: Netlink,
    underlay: Underlay,
    me: Lease,
    token: i64,
    mtu: u32,
    datapath: Datapath,
    /// The fast path's pin directory when it is loaded.
    fast_path: Option<PathBuf>,
}

/// Loads the same-node fast path when configured. `Ok(None)`: not configured, or eBPF is
/// unusable and `fallback` allows running without it (said in the log); `Err`: unusable
/// and no fallback allowed, the agent does not start.
pub fn load_fast_path(
    pin: Option<&Path>,
    fallback: bool,
    load: impl FnOnce(&Path) -> std::result::Result<FastPath, unicni_bpf::BpfError>,
) -> Result<Option<PathBuf>> {
    let Some(pin) = pin else {
        return Ok(None);
    };
    match load(pin) {
        Ok(_) => {
            tracing::info!(pin_dir = %pin.display(), "eBPF same-node fast path loaded");
            Ok(Some(pin.to_path_buf()))
        }
        Err(e) => {
            let why = e.load_failure();
            if fallback {
                tracing::warn!(
                    "flannel.fast_path = true: {why}; pods use the bridge alone \
                     (bpf.fallback = true)"
                );
                Ok(None)
            } else {
                Err(Error::Unavailable(format!(
                    "flannel.fast_path = true and bpf.fallback = false: {why}"
                )))
            }
        }
    }
}

impl Agent {
    /// Finds the underlay, takes the lease and publishes it. Fails clearly when the
    /// cluster network is exhausted or the config does not fit this node. `vpc` is the
    /// route table to program in vpc-route mode (see [`vpcroute::connect`]).
    pub async fn start(
        params: AgentParams,
        store: Arc<dyn LeaseStore>,
        status: Arc<Status>,
        vpc: Option<VpcRoutes>,
    ) -> Result<Agent> {
        let nl = Netlink::current()?;
        // Before taking a lease: a node that must not run without eBPF takes none.
        let fast_path = load_fast_path(
            params.fast_path.as_deref(),
            params.bpf_fallback,
            FastPath::load_or_adopt,
        )?;
        status
            .fast_path
            .store(fast_path.is_some(), Ordering::Relaxed);
        let underlay = find_underlay(&nl, params.interface.as_deref()).await?;
        let mtu = params.mtu.unwrap_or(match params.mode {
            Mode::Vxlan => underlay.mtu.saturating_sub(OVERHEAD_V4),
            Mode::HostGw | Mode::VpcRoute => underlay.mtu,
        });
        let vtep_mac = stable_vtep_mac(&params.node, params.vni);
        if params.ipv6.is_some() && params.mode == Mode::HostGw && underlay.ip6.is_none() {
            return Err(Error::InvalidConfig(format!(
                "cluster.ip_stack = \"dual\" with host-gw: underlay interface {} has no IPv6 \
                 address, not even a link-local one, so peers have no IPv6 next hop for this \
                 node's pods; enable IPv6 on it (sysctl net.ipv6.conf.{}.disable_ipv6=0)",
                underlay.name, underlay.name
            )));
        }
        let template = Lease {
            node: params.node.clone(),
            public_ip: Some(underlay.ip.to_string()),
            public_ipv6: params.ipv6.and(underlay.ip6).map(|a| a.to_string()),
            vtep_mac: (params.mode == Mode::Vxlan)
                .then(|| unicni_net::netlink::format_mac(&vtep_mac)),
            mode: Some(params.mode.as_str().to_string()),
            ..Lease::default()
        };
        let previous: Option<IpNet> = std::fs::read(params.previous_file())
            .ok()
            .and_then(|b| serde_json::from_slice::<Lease>(&b).ok())
            .and_then(|l| l.subnet.parse().ok());
        let (me, token) = acquire(
            store.as_ref(),
            params.network,
            params.subnet_len,
            params.ipv6,
            &template,
            previous,
            params.lease_ttl,
        )
        .await?;
        let subnet: Ipv4Net = me.subnet.parse().map_err(|_| {
            Error::InvalidConfig(format!("leased subnet {} is not IPv4", me.subnet))
        })?;
        let subnet6: Option<ipnet::Ipv6Net> = match &me.ipv6_subnet {
            Some(s) => Some(s.parse().map_err(|_| {
                Error::InvalidConfig(format!("leased IPv6 subnet {s} is not IPv6"))
            })?),
            None => None,
        };
        tracing::info!(node = %params.node, subnet = %me.subnet, ipv6_subnet = ?me.ipv6_subnet, underlay = %underlay.name, ip = %underlay.ip, mtu, "lease held");
        write_atomic(
            &params.previous_file(),
            &serde_json::to_vec(&me).expect("lease serializes"),
        )?;
        let datapath = match params.mode {
            Mode::Vxlan => Datapath::Vxlan(Vxlan {
                name: params.device_name(),
                vni: params.vni,
                port: params.port,
                mac: vtep_mac,
                local: underlay.ip,
                underlay: underlay.index,
                mtu,
                subnet,
                subnet6,
            }),
            Mode::HostGw => Datapath::HostGw(HostGw {
                underlay: underlay.index,
                underlay_name: underlay.name.clone(),
                dual: params.ipv6.is_some(),
            }),
            Mode::VpcRoute => {
                let v = vpc.ok_or_else(|| {
                    Error::InvalidConfig(
                        "flannel.mode = \"vpc-route\" needs the cloud's route table".into(),
                    )
                })?;
                tracing::info!(route_table = %v.route_table, instance = %v.instance, "vpc-route: the VPC router carries pod traffic");
                Datapath::VpcRoute(v)
            }
        };
        unicni_net::sysctl::ensure("net.ipv4.ip_forward", "1")?;
        if params.ipv6.is_some() {
            unicni_net::sysctl::ensure("net.ipv6.conf.all.forwarding", "1")?;
        }
        let agent = Agent {
            params,
            store,
            status,
            nl,
            underlay,
            me,
            token,
            mtu,
            datapath,
            fast_path,
        };
        agent.status.lease_held.store(true, Ordering::Relaxed);
        *agent.status.subnet.lock().unwrap() = match &agent.me.ipv6_subnet {
            Some(v6) => format!("{}, {v6}", agent.me.subnet),
            None => agent.me.subnet.clone(),
        };
        Ok(agent)
    }

    pub fn lease(&self) -> &Lease {
        &self.me
    }

    pub fn underlay(&self) -> &Underlay {
        &self.underlay
    }

    fn publish(&self) -> Result<()> {
        let f = SubnetFile {
            subnet: self.me.subnet.clone(),
            ipv6_subnet: self.me.ipv6_subnet.clone(),
            mtu: Some(self.mtu),
            fast_path: self.fast_path.as_ref().map(|p| p.display().to_string()),
        };
        write_atomic(
            &self.params.subnet_file(),
            &serde_json::to_vec(&f).expect("serializes"),
        )?;
        self.status.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// One reconcile pass: masquerade rules, then the peers' datapath entries.
    pub async fn reconcile(&self) -> Result<Pass> {
        let started = Instant::now();
        if let Some(table) = &self.params.masq_table {
            if !unicni_net::nft::table_exists("ip", table) {
                masq::install(table, self.params.network)?;
                tracing::info!(table, "masquerade rules installed");
            }
            if let Some(v6) = self.params.ipv6 {
                if !unicni_net::nft::table_exists("ip6", table) {
                    masq::install(table, IpNet::V6(v6.network))?;
                    tracing::info!(table, "IPv6 masquerade rules installed");
                }
            }
        }
        if let Some(pin) = &self.fast_path {
            // Pods deleted without a DEL leave endpoints of veths that are gone.
            match FastPath::open(pin).and_then(|mut fp| fp.reconcile()) {
                Ok(r) => r.log(),
                Err(e) => tracing::warn!("eBPF fast path reconcile: {e}"),
            }
        }
        let leases = self.store.list().await?;
        let (peers, skipped) = peers::from_leases(
            &leases,
            &self.params.node,
            self.params.network,
            self.params.ipv6.map(|p| p.network),
        );
        let mut pass = match &self.datapath {
            Datapath::Vxlan(v) => v.reconcile(&self.nl, &peers).await?,
            Datapath::HostGw(h) => h.reconcile(&self.nl, &peers).await?,
            Datapath::VpcRoute(v) => self.reconcile_vpc(v, &leases).await?,
        };
        pass.refused.extend(skipped);
        let s = &self.status;
        s.peers.store(pass.peers as u64, Ordering::Relaxed);
        s.routes.store(pass.routes as u64, Ordering::Relaxed);
        s.neighbours
            .store(pass.neighbours as u64, Ordering::Relaxed);
        s.fdb.store(pass.fdb as u64, Ordering::Relaxed);
        s.refused_peers
            .store(pass.refused.len() as u64, Ordering::Relaxed);
        s.repairs.fetch_add(pass.repaired as u64, Ordering::Relaxed);
        s.removals.fetch_add(pass.removed as u64, Ordering::Relaxed);
        s.reconciles.fetch_add(1, Ordering::Relaxed);
        s.reconcile_errors
            .fetch_add(pass.errors.len() as u64, Ordering::Relaxed);
        s.last_reconcile_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        Ok(pass)
    }

    async fn reconcile_vpc(&self, v: &VpcRoutes, leases: &[Lease]) -> Result<Pass> {
        match v.reconcile(&self.me, leases).await {
            Ok(r) => {
                self.status
                    .route_quota_exceeded
                    .store(false, Ordering::Relaxed);
                self.status
                    .vpc_route_entries
                    .store(r.entries as u64, Ordering::Relaxed);
                Ok(r.pass)
            }
            Err(e) => {
                if matches!(e, Error::Exhausted(_)) {
                    self.status
                        .route_quota_exceeded
                        .store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    async fn renew(&mut self) -> Result<()> {
        if self
            .store
            .renew(&self.me, self.token, self.params.lease_ttl)
            .await?
        {
            self.status.lease_renewals.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        // Lost (expired while we could not reach the store, or taken over): stop new
        // pods until a lease is held again, then take one (the same subnet if still free).
        tracing::error!(subnet = %self.me.subnet, "subnet lease lost; taking a new one");
        self.status.lease_losses.fetch_add(1, Ordering::Relaxed);
        self.status.lease_held.store(false, Ordering::Relaxed);
        self.status.ready.store(false, Ordering::Relaxed);
        withdraw(&self.params);
        let mut template = self.me.clone();
        template.expires_at = None;
        let previous = self.me.subnet.parse().ok();
        let (me, token) = acquire(
            self.store.as_ref(),
            self.params.network,
            self.params.subnet_len,
            self.params.ipv6,
            &template,
            previous,
            self.params.lease_ttl,
        )
        .await?;
        if me.subnet != self.me.subnet {
            return Err(Error::Unavailable(format!(
                "the node's subnet {} was taken by another node while its lease was lost; it now \
                 holds {}: restart the agent after draining the node's pods",
                self.me.subnet, me.subnet
            )));
        }
        self.token = token;
        self.status.lease_held.store(true, Ordering::Relaxed);
        self.publish()
    }

    /// Runs until `shutdown` turns true. The lease is kept on shutdown (a restarted agent
    /// takes it back); only readiness is withdrawn.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        // Ready only after a whole pass: in vpc-route mode that means the node's route
        // entry is Available. A failing first pass keeps the node not ready (the reason on
        // /readyz) and is retried, instead of ending the agent.
        let mut published = false;
        match self.reconcile().await {
            Ok(first) => {
                log_pass(&first);
                self.publish()?;
                published = true;
                tracing::info!(file = %self.params.subnet_file().display(), "node ready for pods");
            }
            Err(e) => self.not_ready(e),
        }
        let renew_every = (self.params.lease_ttl / 3).max(Duration::from_secs(1));
        let mut last_renew = Instant::now();
        // Deleted kernel state wakes a pass at once; the periodic pass stays the fallback.
        let mut deletions =
            match unicni_net::events::Changes::subscribe(unicni_net::events::DELETIONS) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(
                        "no kernel change events ({e}); repairing every {:?}",
                        self.params.reconcile_every
                    );
                    None
                }
            };
        loop {
            let deleted = async {
                match deletions.as_mut() {
                    Some(d) => d.next(Duration::from_millis(100)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = self.store.wait_change(self.params.reconcile_every) => {}
                alive = deleted => {
                    if !alive {
                        deletions = None;
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
            if last_renew.elapsed() >= renew_every {
                match self.renew().await {
                    Ok(()) => last_renew = Instant::now(),
                    Err(e @ Error::Unavailable(_)) => {
                        withdraw(&self.params);
                        return Err(e);
                    }
                    Err(e) => self.record_error(format!("renew lease: {e}")),
                }
            }
            match self.reconcile().await {
                Ok(p) => {
                    log_pass(&p);
                    if !published {
                        self.publish()?;
                        published = true;
                        self.status.last_error.lock().unwrap().clear();
                        tracing::info!(file = %self.params.subnet_file().display(), "node ready for pods");
                    }
                }
                Err(e) if !published => self.not_ready(e),
                Err(e) => self.record_error(format!("reconcile: {e}")),
            }
        }
        withdraw(&self.params);
        self.status.ready.store(false, Ordering::Relaxed);
        tracing::info!("agent stopped; lease kept for the next start");
        Ok(())
    }

    fn not_ready(&self, e: Error) {
        let e = format!("node not ready: {e}");
        let mut last = self.status.last_error.lock().unwrap();
        // Every pass retries: say it at error level once, not once per second.
        // The cloud's request ID differs on every call; the reason does not.
        let reason = |s: &str| {
            s.split(" [RequestId")
                .next()
                .unwrap_or_default()
                .to_string()
        };
        if reason(&last) != reason(&e) {
            tracing::error!("{e}");
        } else {
            tracing::debug!("{e}");
        }
        self.status.reconcile_errors.fetch_add(1, Ordering::Relaxed);
        *last = e;
    }

    fn record_error(&self, e: String) {
        tracing::warn!("{e}");
        self.status.reconcile_errors.fetch_add(1, Ordering::Relaxed);
        *self.status.last_error.lock().unwrap() = e;
    }
}

fn log_pass(p: &Pass) {
    if p.repaired > 0 || p.removed > 0 {
        tracing::info!(
            peers = p.peers,
            written = p.repaired,
            removed = p.removed,
            "datapath reconciled"
        );
    }
    for r in &p.refused {
        tracing::error!("peer refused: {r}");
    }
    for e in &p.errors {
        tracing::warn!("reconcile error: {e}");
    }
}

/// The flannel node agent as the agent runtime runs it ([`unicni_core::NodeAgent`]).
pub struct FlannelNode {
    params: AgentParams,
    leases: Arc<dyn LeaseStore>,
    /// vpc-route: the route table, connected before the store is touched; taken by `run`.
    vpc: Mutex<Option<VpcRoutes>>,
    status: Arc<Status>,
}

impl FlannelNode {
    /// Connects what the agent needs, the cloud first (vpc-route: a node that cannot
    /// reach it must not touch the cluster's store), then the lease view of the store.
    /// Changes nothing on the node: the caller checks the cluster lock after this, and a
    /// refused config must leave a running agent's node as it is.
    pub async fn new(c: &Config, node: String) -> Result<FlannelNode> {
        let params = AgentParams::from_config(c, node)?;
        let vpc = match params.mode {
            Mode::VpcRoute => Some(
                crate::vpcroute::connect(&c.cloud, params.network)
                    .await
                    .map_err(|e| {
                        Error::Unavailable(format!(
                            "flannel.mode = \"vpc-route\": {e}; check the [cloud] section \
                             (endpoint, metadata_endpoint, region, credentials)"
                        ))
                    })?,
            ),
            _ => None,
        };
        let leases = crate::lease_store::open(&c.store).await?;
        Ok(FlannelNode {
            params,
            leases,
            vpc: Mutex::new(vpc),
            status: Arc::new(Status::default()),
        })
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn flag(a: &AtomicBool) -> i64 {
    a.load(Ordering::Relaxed) as i64
}

/// A metric family read from the agent's [`Status`] at scrape time: name, help, reading.
type Metric<V> = (&'static str, &'static str, fn(&Status) -> V);

#[rustfmt::skip]
const GAUGES: [Metric<i64>; 10] = [
    ("lease_held", "1 while the node holds its subnet lease", |s| flag(&s.lease_held)),
    ("peers", "Peers whose datapath entries are all in place", |s| load(&s.peers) as i64),
    ("refused_peers", "Peers that cannot be programmed (bad lease, not L2-adjacent in host-gw)", |s| load(&s.refused_peers) as i64),
    ("programmed_routes", "Peer routes programmed", |s| load(&s.routes) as i64),
    ("programmed_neighbours", "Permanent neighbour entries programmed (vxlan)", |s| load(&s.neighbours) as i64),
    ("programmed_fdb", "FDB entries programmed (vxlan)", |s| load(&s.fdb) as i64),
    ("last_reconcile_milliseconds", "Duration of the last reconcile pass", |s| load(&s.last_reconcile_ms) as i64),
    ("vpc_route_quota_exceeded", "1 while this node's VPC route entry is refused for the route-table quota (vpc-route)", |s| flag(&s.route_quota_exceeded)),
    ("vpc_route_entries", "Available VPC route entries of the cluster network seen by the last pass (vpc-route)", |s| load(&s.vpc_route_entries) as i64),
    ("fast_path", "1 while the eBPF same-node fast path is loaded (flannel.fast_path)", |s| flag(&s.fast_path)),
];

/// Counters get `_total` on the wire.
#[rustfmt::skip]
const COUNTERS: [Metric<u64>; 6] = [
    ("reconciles", "Reconcile passes", |s| load(&s.reconciles)),
    ("reconcile_errors", "Failed kernel or store operations during reconcile", |s| load(&s.reconcile_errors)),
    ("repairs", "Entries or devices found missing or wrong and rewritten", |s| load(&s.repairs)),
    ("removals", "Entries of departed peers removed", |s| load(&s.removals)),
    ("lease_renewals", "Subnet lease renewals", |s| load(&s.lease_renewals)),
    ("lease_losses", "Times the subnet lease was found lost", |s| load(&s.lease_losses)),
];

#[async_trait::async_trait]
impl NodeAgent for FlannelNode {
    fn describe(&self) -> String {
        format!("flannel {}", self.params.mode.as_str())
    }

    fn is_pod_link(&self) -> fn(&str) -> bool {
        crate::names::is_host_veth
    }

    fn register_metrics(&self, r: &mut Registry) {
        let m = GAUGES
            .into_iter()
            .fold(Readout::new(self.status.clone()), |m, (name, help, f)| {
                m.gauge(name, help, f)
            });
        let m = COUNTERS
            .into_iter()
            .fold(m, |m, (name, help, f)| m.counter(name, help, f));
        r.register_collector(Box::new(m));
    }

    async fn run(&self, ctx: NodeContext) -> Result<()> {
        // Until a lease is held the plugin must answer "try again later" (a subnet file
        // left by an agent that crashed is not a lease).
        withdraw(&self.params);
        let vpc = self.vpc.lock().unwrap_or_else(|p| p.into_inner()).take();
        let agent = Agent::start(
            self.params.clone(),
            self.leases.clone(),
            self.status.clone(),
            vpc,
        )
        .await?;
        tracing::info!(
            node = %self.params.node,
            subnet = %agent.lease().subnet,
            underlay = %agent.underlay().name,
            ip = %agent.underlay().ip,
            mode = self.params.mode.as_str(),
            "flannel agent started"
        );
        agent.run(ctx.shutdown).await
    }

    fn readiness(&self) -> Readiness {
        let s = &self.status;
        if s.ready.load(Ordering::Relaxed) {
            return Readiness::Ready(format!(
                "subnet {}",
                s.subnet.lock().unwrap_or_else(|p| p.into_inner())
            ));
        }
        if let Err(why) = self.leases.synced() {
            return Readiness::NotReady(why);
        }
        let err = s
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Readiness::NotReady(if err.is_empty() {
            "no subnet lease published yet".into()
        } else {
            err
        })
    }

    fn capacity(&self) -> Option<NodeCapacity> {
        let len = self.params.subnet_len;
        Some(NodeCapacity {
            pods: unicni_capacity::flannel::pods_per_node(len),
            limited_by: format!(
                "node subnet /{len} ({} addresses, less network, gateway and broadcast)",
                unicni_capacity::flannel::addresses_per_node(len)
            ),
        })
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    /// A pin directory off bpffs: the real loader says "eBPF cannot be used" (no root
    /// needed), which is the failure the fallback exists for.
    #[test]
    fn unusable_ebpf_falls_back_to_the_bridge_or_stops_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("unicni");
        assert_eq!(
            load_fast_path(Some(&pin), true, FastPath::load_or_adopt).unwrap(),
            None
        );
        let err = load_fast_path(Some(&pin), false, FastPath::load_or_adopt).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bpf.fallback = false"), "{msg}");
        assert!(msg.contains("eBPF cannot be used on this node"), "{msg}");
        assert!(msg.contains(&pin.display().to_string()), "{msg}");
        assert!(matches!(err, Error::Unavailable(_)));
        // Not configured: nothing is loaded at all.
        let never = |_: &Path| -> std::result::Result<FastPath, unicni_bpf::BpfError> {
            panic!("must not load")
        };
        assert_eq!(load_fast_path(None, false, never).unwrap(), None);
    }
}
