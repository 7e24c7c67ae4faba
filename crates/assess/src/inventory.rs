//! The inventory: a cluster as `assess` needs to see it. Schema version 1, documented in
//! docs/plan-assess.md. Unknown fields are refused so that a typo is an error, not a
//! silently ignored setting.

use crate::AssessError;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use unicni_capacity::VSwitch;

/// The schema version this build reads and writes.
pub const VERSION: u32 = 1;
/// The value of `kind`, so that other YAML handed in by mistake is recognised.
pub const KIND: &str = "UnicniInventory";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub kind: String,
    pub version: u32,
    /// When and how it was made (free text; `assess export` writes the time and source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
    pub cluster: Cluster,
    #[serde(default)]
    pub cloud: Cloud,
    /// The unicni config the cluster should move to; `--config` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<unicni_config::Config>,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub pods: Vec<Pod>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub network_policies: Vec<NetworkPolicy>,
    /// What the source could not tell (e.g. the cloud section of a kubectl List); the
    /// report repeats it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_derived: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    pub network: CurrentNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_cidr: Option<IpNet>,
    #[serde(default)]
    pub ip_stack: IpStack,
    /// Pod and service CIDRs of other clusters in the same VPC.
    #[serde(default)]
    pub other_cluster_cidrs: Vec<IpNet>,
    /// The cluster's node quota, when it differs from the platform default (5,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpStack {
    #[default]
    Ipv4,
    Ipv6,
    Dual,
}

/// The network the cluster runs now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrentNetwork {
    /// `flannel`, `terway`, or another plugin's name (`calico`, `cilium`, `unknown`).
    pub backend: String,
    /// `vxlan`, `host-gw`, `vpc-route`, `shared-eni`, `exclusive-eni`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Flannel: the cluster network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_cidr: Option<IpNet>,
    /// Flannel: prefix length of node subnets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_subnet_len: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    #[serde(default)]
    pub vswitches: Vec<VSwitch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table: Option<RouteTable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// Custom route entries the table may hold.
    pub quota: u64,
    /// Entries already used by something other than this cluster's nodes.
    #[serde(default)]
    pub entries_used: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Node pool (the migration moves pools one at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_ip: Option<IpAddr>,
    #[serde(default = "yes")]
    pub ready: bool,
}

fn yes() -> bool {
    true
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum PodPhase {
    #[default]
    Running,
    Pending,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    /// Whether a pod in this phase holds (or is about to hold) a pod address.
    pub fn holds_address(&self) -> bool {
        matches!(
            self,
            PodPhase::Running | PodPhase::Pending | PodPhase::Unknown
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// The node it is scheduled on; absent while unscheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default)]
    pub phase: PodPhase,
    /// Why it is not running (the status reason or the waiting container's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The controlling owner, `Kind/name` (e.g. `StatefulSet/web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub host_network: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    /// The pod keeps its IP across re-creation (terway fixed IP).
    #[serde(default, skip_serializing_if = "is_false")]
    pub fixed_ip: bool,
    /// Pod-level vSwitch / security group selection (terway PodNetworking name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_networking: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Pod {
    /// Whether the pod takes an address from the pod network now.
    pub fn uses_pod_network(&self) -> bool {
        !self.host_network && self.phase.holds_address()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type", default)]
    pub service_type: ServiceType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_ports: Vec<u16>,
    /// `Cluster` or `Local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    /// The load balancer targets pod addresses directly (terway ENI backend).
    #[serde(default, skip_serializing_if = "is_false")]
    pub lb_to_pod: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
}

fn check_head(
    name: &str,
    kind: Option<&str>,
    version: Option<&serde_json::Value>,
) -> Result<(), AssessError> {
    if kind != Some(KIND) {
        return Err(AssessError::Invalid {
            path: name.into(),
            field: "kind".into(),
            value: format!("{:?}", kind.unwrap_or_default()),
            expected: format!("{KIND:?} (is this an inventory file?)"),
        });
    }
    if version != Some(&serde_json::Value::from(VERSION)) {
        return Err(AssessError::Invalid {
            path: name.into(),
            field: "version".into(),
            value: version.map(|v| v.to_string()).unwrap_or("missing".into()),
            expected: format!("{VERSION}, the inventory version this unicni reads"),
        });
    }
    Ok(())
}

/// How the text is encoded: by extension, else by its first character.
fn is_json(path: &Path, bytes: &[u8]) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => true,
        Some("yaml") | Some("yml") => false,
        _ => bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{'),
    }
}

impl Inventory {
    /// An empty inventory of the current schema version.
    pub fn new(cluster: Cluster) -> Self {
        Self {
            kind: KIND.into(),
            version: VERSION,
            generated: None,
            cluster,
            cloud: Cloud::default(),
            target: None,
            nodes: Vec::new(),
            pods: Vec::new(),
            services: Vec::new(),
            network_policies: Vec::new(),
            not_derived: Vec::new(),
        }
    }

    /// Sets the pods read from a cluster (the nodes first): a pod bound to a node that is
    /// gone is shown unscheduled, and a pod holding both families makes the cluster dual
    /// stack.
    pub fn set_pods(&mut self, pods: impl IntoIterator<Item = Pod>) {
        let known: HashSet<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut dual = false;
        let pods: Vec<Pod> = pods
            .into_iter()
            .map(|mut p| {
                if p.node.as_deref().is_some_and(|n| !known.contains(n)) {
                    p.node = None;
                }
                dual |= p.ips.iter().any(|ip| ip.is_ipv6()) && p.ips.iter().any(|ip| ip.is_ipv4());
                p
            })
            .collect();
        self.pods = pods;
        if dual {
            self.cluster.ip_stack = IpStack::Dual;
        }
    }

    pub fn load(path: &Path) -> Result<Self, AssessError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| AssessError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&bytes, &name, is_json(path, &bytes))
    }

    /// Reads an inventory, or a Kubernetes List as kubectl prints it (see
    /// [`crate::kubectl`]), from JSON or YAML text.
    pub fn parse(bytes: &[u8], name: &str, json: bool) -> Result<Self, AssessError> {
        let parse_err = |message: String| AssessError::Parse {
            path: name.to_string(),
            message,
        };
        let full: Result<Inventory, String> = if json {
            // serde_json alone says where (line, column) but not which field; the path
            // (`pods[3].phase`) is what a reader of a large dump needs.
            let mut de = serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                }
            })
        } else {
            serde_yaml::from_slice(bytes).map_err(|e| e.to_string())
        };
        let inv = match full {
            Ok(inv) => inv,
            Err(message) => {
                // A file of another kind or version gets that said, rather than an error
                // about some field the other version names differently.
                #[derive(Deserialize)]
                struct Head {
                    kind: Option<String>,
                    version: Option<serde_json::Value>,
                    items: Option<serde::de::IgnoredAny>,
                }
                let head: Option<Head> = if json {
                    serde_json::from_slice(bytes).ok()
                } else {
                    serde_yaml::from_slice(bytes).ok()
                };
                if let Some(head) = head {
                    let list = head.kind.as_deref().is_some_and(|k| k.ends_with("List"))
                        && head.items.is_some();
                    if list {
                        return Self::from_kubectl(bytes, name, json);
                    }
                    check_head(name, head.kind.as_deref(), head.version.as_ref())?;
                }
                return Err(parse_err(message));
            }
        };
        check_head(
            name,
            Some(&inv.kind),
            Some(&serde_json::Value::from(inv.version)),
        )?;
        inv.validate(name)?;
        Ok(inv)
    }

    /// A kubectl List; the cluster is named after the file.
    fn from_kubectl(bytes: &[u8], name: &str, json: bool) -> Result<Self, AssessError> {
        let doc: serde_json::Value = if json {
            serde_json::from_slice(bytes).map_err(|e| e.to_string())
        } else {
            serde_yaml::from_slice(bytes).map_err(|e| e.to_string())
        }
        .map_err(|message| AssessError::Parse {
            path: name.to_string(),
            message,
        })?;
        let cluster = Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("cluster");
        let inv = crate::kubectl::from_list(&doc, name, cluster)?;
        inv.validate(name)?;
        Ok(inv)
    }

    /// Checks what the schema cannot: unique node names, pods on known nodes.
    fn validate(&self, name: &str) -> Result<(), AssessError> {
        let invalid = |field: String, value: &str, expected: &str| AssessError::Invalid {
            path: name.into(),
            field,
            value: format!("{value:?}"),
            expected: expected.into(),
        };
        let mut names: HashSet<&str> = HashSet::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(invalid(format!("nodes[{i}].name"), "", "a node name"));
            }
            if !names.insert(&n.name) {
                return Err(invalid(
                    format!("nodes[{i}].name"),
                    &n.name,
                    "a name no other node has",
                ));
            }
        }
        for (i, p) in self.pods.iter().enumerate() {
            if let Some(node) = &p.node {
                if !names.contains(node.as_str()) {
                    return Err(invalid(
                        format!("pods[{i}].node"),
                        node,
                        "the name of a node listed under `nodes`",
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an inventory always serializes")
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("an inventory always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "kind: UnicniInventory\nversion: 1\ncluster:\n  name: c\n  network: {backend: flannel}\n";

    #[test]
    fn minimal_yaml_parses_with_defaults() {
        let inv = Inventory::parse(MINIMAL.as_bytes(), "m.yaml", false).unwrap();
        assert_eq!(inv.cluster.ip_stack, IpStack::Ipv4);
        assert!(inv.nodes.is_empty() && inv.target.is_none());
    }

    #[test]
    fn malformed_yaml_names_field_and_line() {
        let text = format!("{MINIMAL}nodes:\n  - name: n1\n    ready: maybe\n");
        let e = Inventory::parse(text.as_bytes(), "bad.yaml", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.yaml") && e.contains("ready") && e.contains("line 8"),
            "{e}"
        );
    }

    #[test]
    fn malformed_json_names_field_and_line() {
        let text = "{\"kind\": \"UnicniInventory\", \"version\": 1,\n\"cluster\": {\"name\": \"c\", \"network\": {\"backend\": \"flannel\"}},\n\"pods\": [{\"namespace\": \"a\", \"name\": \"p\", \"phase\": \"Runing\"}]}";
        let e = Inventory::parse(text.as_bytes(), "bad.json", true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Runing") && e.contains("line 3") && e.contains("pods[0].phase"),
            "{e}"
        );
    }

    #[test]
    fn a_kubectl_list_in_yaml_is_read() {
        let text = "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems:\n\
            - apiVersion: v1\n  kind: Node\n  metadata:\n    name: n1\n    labels: {topology.kubernetes.io/zone: z1}\n  spec: {podCIDR: 10.244.0.0/24}\n\
            - apiVersion: v1\n  kind: Pod\n  metadata: {namespace: a, name: p}\n  spec: {nodeName: n1, containers: []}\n  status: {phase: Running, podIP: 10.244.0.7}\n";
        let inv = Inventory::parse(text.as_bytes(), "dump.yaml", false).unwrap();
        assert_eq!(inv.cluster.name, "dump");
        assert_eq!(inv.nodes[0].zone.as_deref(), Some("z1"));
        assert_eq!(inv.pods[0].ips[0].to_string(), "10.244.0.7");
        assert!(inv.not_derived.iter().any(|n| n.starts_with("cloud")));
    }

    #[test]
    fn unknown_field_is_refused() {
        let text = format!("{MINIMAL}nodez: []\n");
        let e = Inventory::parse(text.as_bytes(), "t.yaml", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nodez") && e.contains("line 6"), "{e}");
    }

    #[test]
    fn wrong_version_and_kind_are_named() {
        let e = Inventory::parse(
            MINIMAL.replace("version: 1", "version: 2").as_bytes(),
            "v.yaml",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`version` = 2"), "{e}");
        let e = Inventory::parse(b"kind: ConfigMap\nversion: 1\n", "k.yaml", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`kind`"), "{e}");
    }

    #[test]
    fn pods_on_unknown_nodes_and_duplicate_nodes_are_refused() {
        let text = format!("{MINIMAL}nodes: [{{name: a}}, {{name: a}}]\n");
        let e = Inventory::parse(text.as_bytes(), "d.yaml", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nodes[1].name"), "{e}");
        let text =
            format!("{MINIMAL}nodes: [{{name: a}}]\npods: [{{namespace: x, name: p, node: b}}]\n");
        let e = Inventory::parse(text.as_bytes(), "p.yaml", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pods[0].node") && e.contains("\"b\""), "{e}");
    }

    #[test]
    fn round_trips_through_json_and_yaml() {
        let text = format!(
            "{MINIMAL}nodes: [{{name: a, zone: z}}]\npods: [{{namespace: x, name: p, node: a, host_ports: [80], ips: [10.0.0.2]}}]\n"
        );
        let inv = Inventory::parse(text.as_bytes(), "r.yaml", false).unwrap();
        let again = Inventory::parse(inv.to_json().as_bytes(), "r.json", true).unwrap();
        assert_eq!(inv, again);
        let again = Inventory::parse(inv.to_yaml().as_bytes(), "r.yaml", false).unwrap();
        assert_eq!(inv, again);
    }
}
