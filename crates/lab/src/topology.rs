//! The lab's names, addresses and places. Everything it creates carries the `ulab`
//! prefix (namespaces; links live inside them) or sits under its root directory, so
//! `unicni lab down` finds it all again after a crash.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const PREFIX: &str = "ulab";
pub const NETWORK: &str = "unicni-lab";
pub const CLUSTER_CIDR: &str = "10.250.0.0/16";
/// The IPv6 cluster networks of dual-stack flannel labs (a /64 per node).
pub const CLUSTER_CIDR6: &str = "fd00:10:250::/56";
pub const OTHER_CLUSTER_CIDR6: &str = "fd00:10:251::/56";
/// The VPC's IPv6 segment in dual-stack flannel labs: the router `::1`, nodes from `::b`.
pub const VPC6_PREFIX: &str = "fd00:250:";
/// The second cluster in the same VPC: one node (index [`OTHER`]), its own name, network
/// name, store, agent and (flannel) cluster CIDR.
pub const OTHER_CLUSTER: &str = "lab2";
pub const OTHER_NETWORK: &str = "unicni-lab2";
pub const OTHER_CLUSTER_CIDR: &str = "10.251.0.0/16";
/// The node index that means "the second cluster's node" (cluster nodes count from 1).
pub const OTHER: usize = 0;
/// Kubernetes namespace of the lab's pods (their manifests and CNI_ARGS).
pub const POD_NAMESPACE: &str = "lab";
/// The simulated VPC: `.1` is the VPC router / an outside host (and etcd), nodes from `.11`,
/// the second cluster's node is `.10`.
pub const VPC_PREFIX: &str = "192.168.250";
pub const VPC_LEN: u8 = 24;
/// The VPC host's subnet: the router is `.1` (in the VPC namespace), the host `.2`.
pub const HOST_PREFIX: &str = "192.168.251";
pub const HOST_LEN: u8 = 24;
pub const AGENT_LISTEN: &str = "127.0.0.1:9099";
pub const ETCD_PORT: u16 = 2379;
/// The lab's API server (`unicni kube-sim`, `--store kubernetes`) on the VPC router's address.
pub const KUBE_PORT: u16 = 6443;
/// flannel's `subnet_len`: each node's /24 of the cluster CIDR (with `--store kubernetes`
/// the lab's allocator assigns them as `spec.podCIDR`, as the controller manager would).
pub const NODE_SUBNET_LEN: u8 = 24;
/// flannel's `ipv6_subnet_len` (its default): each node's /64 of the IPv6 cluster CIDR.
pub const NODE_SUBNET_LEN6: u8 = 64;
/// The cloud emulator's API and metadata port on the VPC router's address (vpc-route).
pub const CLOUD_PORT: u16 = 8070;
/// The security group every lab ENI joins (the emulator knows only this one).
pub const SECURITY_GROUP: &str = "sg-lab";
/// The terway cluster's pod vSwitch, the second cluster's, and what an annotated pod asks for.
pub const NODE_VSWITCH: &str = "vsw-pod-a";
pub const OTHER_VSWITCH: &str = "vsw-pod-b";
pub const ANNOTATED_VSWITCH: &str = "vsw-pod-b";
/// The terway pool: idle addresses (shared) or ENIs (exclusive) kept ready.
pub const TERWAY_POOL_MIN: u32 = 2;
pub const TERWAY_POOL_MAX: u32 = 5;

/// A vSwitch of the emulated VPC that pods take addresses from (terway).
pub struct PodVSwitch {
    pub id: &'static str,
    pub zone: &'static str,
    pub cidr: &'static str,
    pub ipv6_cidr: &'static str,
    /// The VPC router owns its gateways (`.253`, `…::1`) on `br0`; the other-zone vSwitch
    /// is there to be refused (an ENI cannot cross zones), so nothing routes to it.
    pub routed: bool,
}

/// The nodes are all in `cn-hangzhou-a` (their vSwitch is `vsw-lab`).
pub const POD_VSWITCHES: [PodVSwitch; 3] = [
    PodVSwitch {
        id: "vsw-pod-a",
        zone: "cn-hangzhou-a",
        cidr: "192.168.252.0/24",
        ipv6_cidr: "fd00:252::/64",
        routed: true,
    },
    PodVSwitch {
        id: "vsw-pod-b",
        zone: "cn-hangzhou-a",
        cidr: "192.168.253.0/24",
        ipv6_cidr: "fd00:253::/64",
        routed: true,
    },
    PodVSwitch {
        id: "vsw-zone-b",
        zone: "cn-hangzhou-b",
        cidr: "192.168.254.0/24",
        ipv6_cidr: "fd00:254::/64",
        routed: false,
    },
];

#[derive(Debug, Clone)]
pub struct Lab {
    /// `ulab` for the default lab, `ulab<id>` for a named one (tests run their own).
    pub prefix: String,
    pub root: PathBuf,
    pub exe: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Flannel,
    Terway,
}

impl Backend {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Flannel => "flannel",
            Backend::Terway => "terway",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// flannel: overlay between nodes.
    Vxlan,
    /// flannel: routes between nodes over the shared L2 segment.
    HostGw,
    /// flannel: one emulated VPC route-table entry per node, mirrored as routes in the
    /// VPC namespace.
    VpcRoute,
    /// terway: pods get secondary IPs of ENIs shared by several pods (veth + policy routing).
    SharedEni,
    /// terway: each pod gets a whole ENI, moved into its namespace.
    ExclusiveEni,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Vxlan => "vxlan",
            Mode::HostGw => "host-gw",
            Mode::VpcRoute => "vpc-route",
            Mode::SharedEni => "shared-eni",
            Mode::ExclusiveEni => "exclusive-eni",
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Mode::Vxlan | Mode::HostGw | Mode::VpcRoute => Backend::Flannel,
            Mode::SharedEni | Mode::ExclusiveEni => Backend::Terway,
        }
    }

    /// Whether the lab runs the cloud emulator for this mode.
    pub fn needs_cloud(&self) -> bool {
        matches!(self, Mode::VpcRoute | Mode::SharedEni | Mode::ExclusiveEni)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IpStack {
    #[default]
    Ipv4,
    /// IPv4 and IPv6 (terway; flannel vxlan and host-gw).
    Dual,
}

impl IpStack {
    pub fn as_str(&self) -> &'static str {
        match self {
            IpStack::Ipv4 => "ipv4",
            IpStack::Dual => "dual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreChoice {
    File,
    Etcd,
    /// The Kubernetes API: `unicni kube-sim` in the VPC namespace, the lab writing Nodes,
    /// Pods and NetworkPolicies as the control plane and the kubelets would.
    Kubernetes,
}

impl StoreChoice {
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreChoice::File => "file",
            StoreChoice::Etcd => "etcd",
            StoreChoice::Kubernetes => "kubernetes",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub index: usize,
    pub name: String,
    pub netns: String,
    pub ip: String,
    pub subnet: String,
    pub agent_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    /// Also the pod's Kubernetes name (namespace [`POD_NAMESPACE`]).
    pub name: String,
    pub node: usize,
    pub netns: String,
    pub ip: String,
    /// The pod's IPv6 address (dual stack).
    #[serde(default)]
    pub ip6: Option<String>,
    pub container_id: String,
    /// Pod annotations written to its manifest (terway reads them).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Kind of the pod's owner in its manifest (`StatefulSet` pods keep their IP in terway).
    #[serde(default)]
    pub owner_kind: Option<String>,
}

/// How pods' traffic crosses a node: terway shared-eni's routing datapath or its eBPF
/// fast path (`terway.datapath`); for flannel, `ebpf` turns on the same-node fast path
/// (`flannel.fast_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    #[default]
    Routing,
    Ebpf,
}

impl Datapath {
    pub fn as_str(&self) -> &'static str {
        match self {
            Datapath::Routing => "routing",
            Datapath::Ebpf => "ebpf",
        }
    }
}

/// What `lab bench-add` changes from a plain `lab up` (the defaults when unset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuning {
    /// terway `pool.min` and `pool.max` ([`TERWAY_POOL_MIN`], [`TERWAY_POOL_MAX`] when unset).
    pub pool: Option<(u32, u32)>,
    /// The cloud emulator's ENI attach and detach delay in ms (100 when unset).
    pub attach_delay_ms: Option<u64>,
    /// The nodes' instance type (ecs.g7.large when unset; `lab bench-burst` needs room
    /// for more pods).
    #[serde(default)]
    pub instance_type: Option<String>,
    /// terway `ip_prefix`: the pool assigns /28 prefixes (`lab up --ip-prefix`, the
    /// prefix row of `lab bench-burst`).
    #[serde(default)]
    pub ip_prefix: bool,
}

/// What `lab up` built; `check`, `bench`, `down` and the agent commands read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    #[serde(default)]
    pub backend: Backend,
    #[serde(default)]
    pub ip_stack: IpStack,
    pub mode: Mode,
    pub store: StoreChoice,
    pub lease_ttl_seconds: u64,
    pub nodes: Vec<NodeState>,
    pub pods: Vec<PodState>,
    pub etcd_pid: Option<u32>,
    /// The API server (`--store kubernetes`), running in the VPC namespace.
    #[serde(default)]
    pub kube_pid: Option<u32>,
    /// The cloud emulator (vpc-route and terway), running in the VPC namespace.
    #[serde(default)]
    pub cloud_pid: Option<u32>,
    /// The second cluster in the same VPC (node [`OTHER`]) and its pods.
    #[serde(default)]
    pub other_nodes: Vec<NodeState>,
    #[serde(default)]
    pub other_pods: Vec<PodState>,
    #[serde(default)]
    pub tuning: Tuning,
    #[serde(default)]
    pub datapath: Datapath,
    /// NetworkPolicy on every node of the cluster (`lab up --policy`).
    #[serde(default)]
    pub policy: bool,
    /// The eBPF Service load balancer on every node of the cluster (`lab up --services`).
    #[serde(default)]
    pub services: bool,
    /// The Service backends' servers (`lab up --services`).
    #[serde(default)]
    pub service_pids: Vec<u32>,
}

impl LabState {
    /// A lab before anything runs in it: no nodes, pods or processes, default tuning, the
    /// routing datapath and no NetworkPolicy.
    pub fn new(mode: Mode, ip_stack: IpStack, store: StoreChoice, lease_ttl_seconds: u64) -> Self {
        LabState {
            backend: mode.backend(),
            ip_stack,
            mode,
            store,
            lease_ttl_seconds,
            nodes: Vec::new(),
            pods: Vec::new(),
            etcd_pid: None,
            kube_pid: None,
            cloud_pid: None,
            other_nodes: Vec::new(),
            other_pods: Vec::new(),
            tuning: Tuning::default(),
            datapath: Datapath::Routing,
            policy: false,
            services: false,
            service_pids: Vec::new(),
        }
    }
}

impl Lab {
    pub fn new(id: Option<&str>) -> Result<Lab> {
        let id = id.unwrap_or("");
        if id.len() > 6
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            bail!("lab --id {id:?}: use up to 6 lowercase letters or digits");
        }
        Ok(Lab {
            prefix: format!("{PREFIX}{id}"),
            root: PathBuf::from(if id.is_empty() {
                "/run/unicni-lab".to_string()
            } else {
                format!("/run/unicni-lab-{id}")
            }),
            exe: std::env::current_exe().context("locate the unicni binary")?,
        })
    }

    pub fn vpc_ns(&self) -> String {
        format!("{}-vpc", self.prefix)
    }
    /// `n<i>` for the cluster's nodes, `c2n1` for the second cluster's node ([`OTHER`]):
    /// the node's part of namespace, directory, link and instance names.
    pub fn node_tag(&self, i: usize) -> String {
        if i == OTHER {
            "c2n1".into()
        } else {
            format!("n{i}")
        }
    }
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-{}", self.prefix, self.node_tag(i))
    }
    pub fn node_name(&self, i: usize) -> String {
        if i == OTHER {
            format!("{}-c2-node-1", self.prefix)
        } else {
            format!("{}-node-{i}", self.prefix)
        }
    }
    pub fn pod_name(&self, node: usize, j: usize) -> String {
        format!("{}-p{j}", self.node_tag(node))
    }
    pub fn pod_ns(&self, node: usize, j: usize) -> String {
        format!("{}-{}", self.prefix, self.pod_name(node, j))
    }
    pub fn node_ip(&self, i: usize) -> String {
        format!("{VPC_PREFIX}.{}", 10 + i)
    }
    /// Where a terway node's agent reads pod manifests (one directory per cluster).
    pub fn pod_info_dir(&self, i: usize) -> PathBuf {
        if i == OTHER {
            self.node_dir(i).join("pods")
        } else {
            self.root.join("pods")
        }
    }
    pub fn outside_ip(&self) -> String {
        format!("{VPC_PREFIX}.1")
    }
    /// The VPC router's IPv6 address (dual-stack flannel labs).
    pub fn outside_ip6(&self) -> String {
        format!("{VPC6_PREFIX}:1")
    }
    /// Node `i`'s underlay IPv6 address (dual-stack flannel labs).
    pub fn node_ip6(&self, i: usize) -> String {
        format!("{VPC6_PREFIX}:{:x}", 10 + i)
    }
    pub fn host_ns(&self) -> String {
        format!("{}-host", self.prefix)
    }
    pub fn host_ip(&self) -> String {
        format!("{HOST_PREFIX}.2")
    }
    pub fn host_router_ip(&self) -> String {
        format!("{HOST_PREFIX}.1")
    }
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.root.join(self.node_tag(i))
    }
    pub fn node_config(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("unicni.toml")
    }
    pub fn conf_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("net.d")
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }
    pub fn plugin(&self) -> PathBuf {
        self.bin_dir().join("unicni")
    }
    /// A bpffs of the lab's own (`--datapath ebpf`, `--policy`): agents and plugins run under
    /// `ip netns exec`, which mounts a fresh sysfs over /sys and so hides /sys/fs/bpf.
    pub fn bpf_root(&self) -> PathBuf {
        self.root.join("bpf")
    }
    /// The cgroup v2 hierarchy mounted again where agents under `ip netns exec` see it
    /// (`--services`: the load balancer attaches to its root; the fresh sysfs hides
    /// /sys/fs/cgroup).
    pub fn cgroup2_root(&self) -> PathBuf {
        self.root.join("cgroup2")
    }
    /// Node `i`'s `bpf.pin_dir` (one per node: they share the kernel).
    pub fn pin_dir(&self, i: usize) -> PathBuf {
        self.bpf_root().join(self.node_tag(i))
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    pub fn load_state(&self) -> Result<LabState> {
        let p = self.state_file();
        let bytes = std::fs::read(&p).with_context(|| {
            format!(
                "no lab is up ({} missing); start one with `unicni lab up`",
                p.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("decode {}", p.display()))
    }

    pub fn save_state(&self, s: &LabState) -> Result<()> {
        Ok(unicni_fsutil::write_atomic(
            &self.state_file(),
            &serde_json::to_vec_pretty(s)?,
            0o644,
        )?)
    }
}

/// Runs a command; a failure names the command and carries its stderr.
pub fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip netns exec NS args...`
pub fn in_ns(ns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all)
}
