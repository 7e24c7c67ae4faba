//! The config schema. Defaults are what a single node needs; `config/*.toml` show them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub cluster: ClusterConfig,
    pub backend: BackendConfig,
    pub flannel: FlannelConfig,
    pub terway: TerwayConfig,
    pub cloud: CloudConfig,
    pub store: StoreConfig,
    pub node: NodeConfig,
    pub cni: CniConfig,
    pub agent: AgentConfig,
    pub policy: PolicyConfig,
    pub services: ServicesConfig,
    pub bpf: BpfConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Names the cluster in the lock record and in the CNI network name.
    pub name: String,
    /// Kubernetes service CIDR, or two separated by a comma on a dual-stack cluster (one
    /// IPv4, one IPv6, as the API server's `--service-cluster-ip-range` takes them); must
    /// not overlap the pod network.
    pub service_cidr: String,
    pub ip_stack: IpStack,
    /// The VPC CIDR the nodes live in, when known (used to detect overlaps).
    pub vpc_cidr: Option<String>,
}

impl ClusterConfig {
    /// The service ranges of `service_cidr`, host bits cleared; entries that do not parse
    /// are left out (`validate` reports them).
    pub fn service_cidrs(&self) -> Vec<ipnet::IpNet> {
        self.service_cidr
            .split(',')
            .filter_map(|n| n.trim().parse::<ipnet::IpNet>().ok())
            .map(|n| n.trunc())
            .collect()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: "unicni".into(),
            service_cidr: "10.96.0.0/12".into(),
            ip_stack: IpStack::Ipv4,
            vpc_cidr: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpStack {
    Ipv4,
    Ipv6,
    Dual,
}

impl IpStack {
    pub fn as_str(&self) -> &'static str {
        match self {
            IpStack::Ipv4 => "ipv4",
            IpStack::Ipv6 => "ipv6",
            IpStack::Dual => "dual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Flannel,
    Terway,
}

impl BackendKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendKind::Flannel => "flannel",
            BackendKind::Terway => "terway",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    pub kind: BackendKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FlannelMode {
    #[default]
    Vxlan,
    HostGw,
    VpcRoute,
}

impl FlannelMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            FlannelMode::Vxlan => "vxlan",
            FlannelMode::HostGw => "host-gw",
            FlannelMode::VpcRoute => "vpc-route",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlannelConfig {
    /// The cluster network every node subnet is carved from.
    pub network: String,
    /// Prefix length of each node's subnet (24..=28 for IPv4 in the anchor; we allow 16..=30).
    pub subnet_len: u8,
    /// The IPv6 cluster network beside `network` (upstream flannel's `IPv6Network`):
    /// required with `cluster.ip_stack = "dual"`, refused otherwise.
    pub ipv6_network: Option<String>,
    /// Prefix length of each node's IPv6 subnet (upstream's `IPv6SubnetLen`, /64 by
    /// default). The network must hold at least as many of them as `network` holds node
    /// subnets, so IPv6 never limits the node count.
    pub ipv6_subnet_len: u8,
    pub mode: FlannelMode,
    /// Pin this node's subnet instead of leasing one (single node, tests).
    pub node_subnet: Option<String>,
    /// Pod MTU; by default the underlay MTU minus the encapsulation overhead.
    pub mtu: Option<u32>,
    /// Name of the node bridge pods attach to.
    pub bridge: String,
    /// Masquerade traffic from the cluster network to anything outside it.
    pub masquerade: bool,
    pub vni: u32,
    pub port: u16,
    /// Underlay interface; by default the one holding the default route.
    pub interface: Option<String>,
    /// The eBPF same-node fast path: pod-to-pod frames of one node go straight from veth
    /// to veth instead of through the bridge (docs/ebpf.md). Needs eBPF on the node; see
    /// `bpf.fallback` for what happens without it.
    pub fast_path: bool,
}

impl Default for FlannelConfig {
    fn default() -> Self {
        Self {
            network: "10.244.0.0/16".into(),
            subnet_len: 24,
            ipv6_network: None,
            ipv6_subnet_len: 64,
            mode: FlannelMode::Vxlan,
            node_subnet: None,
            mtu: None,
            bridge: "cni0".into(),
            masquerade: true,
            vni: 1,
            port: 8472,
            interface: None,
            fast_path: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TerwayMode {
    #[default]
    SharedEni,
    ExclusiveEni,
}

impl TerwayMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            TerwayMode::SharedEni => "shared-eni",
            TerwayMode::ExclusiveEni => "exclusive-eni",
        }
    }
}

/// How shared-ENI pods' traffic crosses the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TerwayDatapath {
    /// Host routing: policy rules 512/2048 and the ENI's table; netfilter sees everything.
    #[default]
    Routing,
    /// The routing datapath plus the eBPF fast path: pod traffic to and from the VPC is
    /// redirected between the pod's veth and its ENI, skipping the host stack; service and
    /// node traffic still take the host path (docs/ebpf.md). shared-eni mode only; see
    /// `bpf.fallback` for nodes that cannot run eBPF.
    Ebpf,
}

impl TerwayDatapath {
    pub fn as_str(&self) -> &'static str {
        match self {
            TerwayDatapath::Routing => "routing",
            TerwayDatapath::Ebpf => "ebpf",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerwayConfig {
    pub mode: TerwayMode,
    pub datapath: TerwayDatapath,
    /// vSwitch IDs pods take addresses from. Append-only after bootstrap.
    pub vswitches: Vec<String>,
    pub security_groups: Vec<String>,
    pub pool: PoolConfig,
    /// Seconds a fixed-IP pod's address is held after the pod is deleted.
    pub fixed_ip_hold_seconds: u64,
    /// Instance types the cluster's nodes use (for `plan`); empty means "ask the cloud".
    pub instance_types: Vec<String>,
    /// A directory of Pod and Namespace manifests the agent reads pod annotations from
    /// (single-node setups and the lab); unset means "ask the Kubernetes API".
    pub pod_info_dir: Option<String>,
    /// Seconds the plugin waits for the agent's answer (a new ENI can take a while).
    pub agent_timeout_seconds: u64,
    /// Prefix mode (shared-eni only): the pool assigns /28 IPv4 prefixes (and one IPv6 /80
    /// per ENI on dual stack) instead of single addresses, and pods take addresses from
    /// them without a cloud call. Locked at first install.
    pub ip_prefix: bool,
}

impl Default for TerwayConfig {
    fn default() -> Self {
        Self {
            mode: TerwayMode::SharedEni,
            datapath: TerwayDatapath::Routing,
            vswitches: Vec::new(),
            security_groups: Vec::new(),
            pool: PoolConfig::default(),
            fixed_ip_hold_seconds: 300,
            instance_types: Vec::new(),
            pod_info_dir: None,
            agent_timeout_seconds: 60,
            ip_prefix: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Idle addresses (shared) or ENIs (exclusive) kept ready.
    pub min: u32,
    /// Idle addresses (or ENIs) beyond which the pool gives them back.
    pub max: u32,
    /// Milliseconds the pool collects ADDs that need the cloud before it plans the calls
    /// for them (one call per ENI for all of them).
    pub coalesce_ms: u64,
    /// Idle addresses (or ENIs) the pool asks for as soon as the agent starts; 0 means
    /// `min`. At most `max`.
    pub warm_up: u32,
    /// When pods hold this percentage (1–100) of the addresses the pool has, it asks the
    /// cloud for more before any pod waits: it keeps at least
    /// in-use × (100 − percent) / percent idle (within `max`). 100 turns this off.
    pub high_watermark_percent: u32,
    /// Idle addresses (or ENIs) beyond `min` that stayed idle this many seconds go back
    /// to the cloud; 0 keeps them (up to `max`).
    pub idle_reclaim_seconds: u64,
    /// The most idle addresses (or ENIs) one reclaim pass gives back (1–10: one
    /// UnassignPrivateIpAddresses call).
    pub reclaim_batch: u32,
    /// Each pass draws its idle time within ± this percentage (0–100) of
    /// `idle_reclaim_seconds`, so nodes do not reclaim in lockstep.
    pub reclaim_jitter_percent: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min: 0,
            max: 5,
            coalesce_ms: 100,
            warm_up: 0,
            high_watermark_percent: 80,
            idle_reclaim_seconds: 600,
            reclaim_batch: 10,
            reclaim_jitter_percent: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CloudKind {
    /// The built-in emulator (`unicni cloud-sim`), for the lab and tests.
    #[default]
    Emulator,
    /// Alibaba Cloud OpenAPI.
    Alibaba,
}

/// How API requests are signed: the vendor's current SDKs use V3 (`ACS3-HMAC-SHA256`)
/// and call V2 (HMAC-SHA1 over the query) legacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignatureVersion {
    #[default]
    V3,
    V2,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CloudConfig {
    pub kind: CloudKind,
    pub region: Option<String>,
    /// API endpoint override (the emulator's address in the lab).
    pub endpoint: Option<String>,
    /// Metadata service override.
    pub metadata_endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    /// File holding `access_key_id` / `access_key_secret` (and optionally a token).
    pub credentials_file: Option<String>,
    /// Route-table entry quota assumed by `plan` for vpc-route mode.
    pub route_table_quota: Option<u64>,
    /// `v3` (default) or `v2` (legacy), see `SignatureVersion`.
    pub signature_version: SignatureVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    File,
    Etcd,
    Kubernetes,
}

impl StoreKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreKind::File => "file",
            StoreKind::Etcd => "etcd",
            StoreKind::Kubernetes => "kubernetes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Directory of the file store.
    pub path: String,
    /// etcd endpoints (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// Key prefix in etcd.
    pub prefix: String,
    /// Path to a kubeconfig for the Kubernetes store; in-cluster config when unset.
    pub kubeconfig: Option<String>,
    /// Lease time-to-live in seconds (etcd).
    pub lease_ttl_seconds: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::File,
            path: "/var/lib/unicni/store".into(),
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/unicni".into(),
            kubeconfig: None,
            lease_ttl_seconds: 86400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Node name; the host name when unset.
    pub name: Option<String>,
    /// Persistent node state (IPAM reservations).
    pub state_dir: String,
    /// Runtime state (agent socket, readiness).
    pub run_dir: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: None,
            state_dir: "/var/lib/unicni".into(),
            run_dir: "/run/unicni".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// File name of the conflist `install` writes.
    pub conf_name: String,
    /// The CNI network name in the conflist.
    pub network_name: String,
    /// Reference plugins chained after unicni (e.g. `portmap`, `bandwidth`).
    pub chain: Vec<String>,
    /// cniVersion of the conflist. 1.0.0 by default: the libcni in containerd 1.6 and
    /// podman 4.3 rejects 1.1.0 results. `install` lowers it further if a chained plugin
    /// does not support it.
    pub version: String,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            conf_name: "10-unicni.conflist".into(),
            network_name: "unicni".into(),
            chain: Vec::new(),
            version: "1.0.0".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Address of the health and metrics endpoint.
    pub listen: String,
    /// Seconds between reconcile passes.
    pub reconcile_seconds: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9099".into(),
            reconcile_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub enabled: bool,
    /// Directory of NetworkPolicy manifests watched when there is no Kubernetes API.
    pub manifests_dir: Option<String>,
}

/// ClusterIP Service load balancing in eBPF (docs/services.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    pub enabled: bool,
    /// Directory of Service and EndpointSlice manifests watched when there is no
    /// Kubernetes API (single-node setups and the lab).
    pub manifests_dir: Option<String>,
    /// A mount of the host's cgroup v2 hierarchy whose root cgroup the programs attach
    /// to. Unset: the cgroup2 mount of the agent's own mount namespace whose root it sees
    /// (right on a host; a container in a private cgroup namespace sees only its own
    /// subtree there, so the generated DaemonSet mounts the host's at
    /// /host/sys/fs/cgroup and sets this through UNICNI_SERVICES__CGROUP_ROOT).
    pub cgroup_root: Option<String>,
}

/// eBPF on the node (the fast paths `terway.datapath = "ebpf"` and `flannel.fast_path`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BpfConfig {
    /// The bpffs directory this node's programs, maps and links are pinned under (they
    /// survive agent restarts; `unicni uninstall` removes it). An absolute path; one per
    /// node when several nodes share a kernel (the lab).
    pub pin_dir: String,
    /// What the agent does when eBPF cannot be used on the node (no bpffs, missing
    /// privileges, the verifier refuses the programs): `true` runs the datapath without the
    /// fast path and says so in its log and /readyz; `false` refuses to become ready.
    pub fallback: bool,
}

impl Default for BpfConfig {
    fn default() -> Self {
        Self {
            pin_dir: "/sys/fs/bpf/unicni".into(),
            fallback: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Secrets never reach logs: Debug shows whether a secret is set, never its value.
impl std::fmt::Debug for CloudConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudConfig")
            .field("kind", &self.kind)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("metadata_endpoint", &self.metadata_endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "access_key_secret",
                &self.access_key_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("credentials_file", &self.credentials_file)
            .field("route_table_quota", &self.route_table_quota)
            .field("signature_version", &self.signature_version)
            .finish()
    }
}

impl Config {
    /// A copy safe to print: secrets replaced by a marker.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if c.cloud.access_key_secret.is_some() {
            c.cloud.access_key_secret = Some("<redacted>".into());
        }
        c
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secrets_do_not_leak_through_debug_or_redacted() {
        let mut c = Config::default();
        c.cloud.access_key_secret = Some("s3cr3t-value".into());
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        let shown = serde_json::to_string(&c.redacted()).unwrap();
        assert!(!shown.contains("s3cr3t-value"));
    }
}
