//! The policy model: pods, namespaces and NetworkPolicies as the evaluator and the compiler
//! read them, already validated and with the API's defaults applied. `from_k8s` converts
//! the `k8s-openapi` objects (from a manifest directory or, later, the API server).

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::error::{Error, Result};
use crate::selector::{Labels, Selector};

/// The label the API server puts on every namespace (Kubernetes ≥ 1.21); selectors may use it
/// to pick a namespace by name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// An IP protocol. Policies name TCP, UDP or SCTP; a flow may carry any protocol (ICMP is
/// `Other(1)`). Equality, hashing and order go by the protocol number, so `Other(6) == Tcp`.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Other(u8),
}

impl Protocol {
    pub fn from_number(n: u8) -> Self {
        match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            n => Protocol::Other(n),
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Other(n) => n,
        }
    }

    /// The protocol as the API spells it; only TCP, UDP and SCTP are valid there.
    pub fn from_k8s(name: &str) -> Option<Self> {
        match name {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl PartialEq for Protocol {
    fn eq(&self, other: &Self) -> bool {
        self.number() == other.number()
    }
}
impl Eq for Protocol {}
impl Hash for Protocol {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.number().hash(state)
    }
}
impl PartialOrd for Protocol {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Protocol {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.number().cmp(&other.number())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("TCP"),
            Protocol::Udp => f.write_str("UDP"),
            Protocol::Sctp => f.write_str("SCTP"),
            Protocol::Other(n) => write!(f, "proto-{n}"),
        }
    }
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Every port, 0 included (flows of protocols without ports carry port 0).
    pub const ALL: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic into the selected pod.
    Ingress,
    /// Traffic out of the selected pod.
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// A named container port, the target of a named port in a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `status.podIPs`: one per family at most. Unique among the snapshot's pod-network pods.
    pub ips: Vec<IpAddr>,
    /// Container ports that have a name.
    pub ports: Vec<NamedPort>,
    /// `spec.nodeName`, to compile only a node's own pods.
    pub node: Option<String>,
    /// A host-network pod is not on the pod network: policies do not select it, and its
    /// address is the node's, so as a peer it counts as a plain IP (ipBlock), not as a pod.
    pub host_network: bool,
}

impl Pod {
    /// The number of the container port `name` with `protocol`, if the pod has one.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    /// Which pods of `namespace` the policy applies to.
    pub pod_selector: Selector,
    /// `None` when the policy's types leave ingress alone; `Some(rules)` isolates the
    /// selected pods for ingress and allows what the rules match (`Some([])` allows nothing).
    pub ingress: Option<Vec<Rule>>,
    /// As `ingress`, for egress.
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// Whether the policy applies to `pod` (in either direction).
    pub fn selects(&self, pod: &Pod) -> bool {
        !pod.host_network
            && pod.namespace == self.namespace
            && self.pod_selector.matches(&pod.labels)
    }
}

/// One ingress or egress rule: traffic matches when it matches one of the peers (any peer
/// when `peers` is empty) and one of the ports (any port when `ports` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PortSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Pods matching `pods` in the namespaces matching `namespaces`, or in the policy's own
    /// namespace when `namespaces` is `None`. A `namespaceSelector` alone is `pods` =
    /// everything.
    Pods {
        namespaces: Option<Selector>,
        pods: Selector,
    },
    IpBlock(IpBlock),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    pub cidr: IpNet,
    /// Strictly inside `cidr`.
    pub except: Vec<IpNet>,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// No port given: every port of the protocol.
    All,
    /// `port`, or `port`..=`endPort`.
    Range(PortRange),
    /// A container port name, resolved on the destination pod.
    Named(String),
}

/// Everything policy decisions depend on.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<Policy>,
}

impl Snapshot {
    /// A namespace's labels, with the `kubernetes.io/metadata.name` label the API server
    /// adds. A namespace that pods use but the snapshot does not declare has only that label.
    pub fn namespace_labels(&self, namespace: &str) -> Labels {
        let mut labels = self
            .namespaces
            .get(namespace)
            .map(|ns| ns.labels.clone())
            .unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned());
        labels
    }

    /// Pods on the pod network (not host-network).
    pub fn network_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| !p.host_network)
    }

    /// The pod-network pod that has `ip`.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Pod> {
        self.network_pods().find(|p| p.ips.contains(&ip))
    }

    /// The rules of every policy that selects `pod` for `direction`; none means the pod is not
    /// isolated in that direction.
    pub fn rules_for<'a>(
        &'a self,
        pod: &'a Pod,
        direction: Direction,
    ) -> impl Iterator<Item = (&'a Policy, &'a [Rule])> + 'a {
        self.policies
            .iter()
            .filter(move |p| p.selects(pod))
            .filter_map(move |p| p.rules(direction).map(|rules| (p, rules)))
    }
}

fn object_name(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String, String) {
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let name = meta.name.clone().unwrap_or_default();
    let object = format!("{kind} {namespace}/{name}");
    (namespace, name, object)
}

fn port_number(value: i32, object: &str, field: &str) -> Result<u16> {
    match u16::try_from(value) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Error::invalid(
            object,
            field,
            format!("{value} is not a port (1-65535)"),
        )),
    }
}

fn protocol(value: Option<&str>, object: &str, field: &str) -> Result<Protocol> {
    match value {
        None => Ok(Protocol::Tcp),
        Some(name) => Protocol::from_k8s(name).ok_or_else(|| {
            Error::invalid(
                object,
                field,
                format!("{name:?} is not one of TCP, UDP, SCTP"),
            )
        }),
    }
}

fn cidr(value: &str, object: &str, field: &str) -> Result<IpNet> {
    IpNet::from_str(value)
        .map(|n| n.trunc())
        .map_err(|_| Error::invalid(object, field, format!("{value:?} is not a CIDR")))
}

impl Namespace {
    pub fn from_k8s(ns: &core::Namespace) -> Result<Self> {
        let name = ns.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(Error::invalid("Namespace", "metadata.name", "is missing"));
        }
        Ok(Self {
            name,
            labels: ns.metadata.labels.clone().unwrap_or_default(),
        })
    }
}

impl Pod {
    /// Reads labels, `spec.hostNetwork`, `spec.nodeName`, named ports of `spec.containers`
    /// and the addresses in `status.podIPs` (or `status.podIP`). A pod that has finished
    /// (phase Succeeded or Failed) no longer owns its addresses.
    pub fn from_k8s(pod: &core::Pod) -> Result<Self> {
        let (namespace, name, object) = object_name("Pod", &pod.metadata);
        if name.is_empty() {
            return Err(Error::invalid(object, "metadata.name", "is missing"));
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let mut ports = Vec::new();
        for (i, container) in spec.containers.iter().enumerate() {
            for (j, port) in container.ports.iter().flatten().enumerate() {
                let Some(port_name) = &port.name else {
                    continue;
                };
                let at = format!("spec.containers[{i}].ports[{j}]");
                ports.push(NamedPort {
                    name: port_name.clone(),
                    protocol: protocol(
                        port.protocol.as_deref(),
                        &object,
                        &format!("{at}.protocol"),
                    )?,
                    port: port_number(
                        port.container_port,
                        &object,
                        &format!("{at}.containerPort"),
                    )?,
                });
            }
        }
        let mut ips = Vec::new();
        if let Some(status) = &pod.status {
            let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
            let listed: Vec<(String, &str)> = match &status.pod_ips {
                Some(list) if !list.is_empty() => list
                    .iter()
                    .enumerate()
                    .map(|(i, ip)| (format!("status.podIPs[{i}].ip"), ip.ip.as_str()))
                    .collect(),
                _ => status
                    .pod_ip
                    .iter()
                    .map(|ip| ("status.podIP".to_owned(), ip.as_str()))
                    .collect(),
            };
            for (field, text) in listed {
                let ip = IpAddr::from_str(text).map_err(|_| {
                    Error::invalid(&object, field, format!("{text:?} is not an IP address"))
                })?;
                if !finished && !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        Ok(Self {
            namespace,
            name,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ips,
            ports,
            node: spec.node_name.clone(),
            host_network: spec.host_network.unwrap_or(false),
        })
    }
}

impl Policy {
    /// Validates the policy and applies the API's defaults: an absent `podSelector` selects
    /// every pod of the namespace; without `policyTypes` the policy is of type Ingress, and
    /// also Egress when it has egress rules; a port without protocol is TCP.
    pub fn from_k8s(policy: &net::NetworkPolicy) -> Result<Self> {
        let (namespace, name, object) = object_name("NetworkPolicy", &policy.metadata);
        if name.is_empty() {
            return Err(Error::invalid(object, "metadata.name", "is missing"));
        }
        let Some(spec) = &policy.spec else {
            return Err(Error::invalid(object, "spec", "is missing"));
        };
        let pod_selector = match &spec.pod_selector {
            Some(s) => Selector::from_k8s(s, &object, "spec.podSelector")?,
            None => Selector::everything(),
        };

        let ingress = spec.ingress.iter().flatten();
        let ingress = ingress.map(|r| (r.from.as_deref(), r.ports.as_deref()));
        let ingress = Rule::list(ingress, "spec.ingress", "from", &object)?;
        let egress = spec.egress.iter().flatten();
        let egress = egress.map(|r| (r.to.as_deref(), r.ports.as_deref()));
        let egress = Rule::list(egress, "spec.egress", "to", &object)?;

        let (mut is_ingress, mut is_egress) = (false, false);
        match spec.policy_types.as_deref() {
            None | Some([]) => {
                is_ingress = true;
                is_egress = !egress.is_empty();
            }
            Some(types) => {
                for (i, t) in types.iter().enumerate() {
                    match t.as_str() {
                        "Ingress" => is_ingress = true,
                        "Egress" => is_egress = true,
                        other => {
                            return Err(Error::invalid(
                                object,
                                format!("spec.policyTypes[{i}]"),
                                format!("{other:?} is not one of Ingress, Egress"),
                            ))
                        }
                    }
                }
            }
        }

        Ok(Self {
            namespace,
            name,
            pod_selector,
            ingress: is_ingress.then_some(ingress),
            egress: is_egress.then_some(egress),
        })
    }
}

impl Rule {
    /// The rules of one direction, each given as its peers and ports; `field` is where the
    /// list is in the object (`spec.ingress`), `peers_key` the name of its peers (`from`).
    fn list<'a>(
        rules: impl Iterator<
            Item = (
                Option<&'a [net::NetworkPolicyPeer]>,
                Option<&'a [net::NetworkPolicyPort]>,
            ),
        >,
        field: &str,
        peers_key: &str,
        object: &str,
    ) -> Result<Vec<Self>> {
        rules
            .enumerate()
            .map(|(i, (peers, ports))| {
                Rule::from_k8s(peers, peers_key, ports, object, &format!("{field}[{i}]"))
            })
            .collect()
    }

    fn from_k8s(
        peers: Option<&[net::NetworkPolicyPeer]>,
        peers_key: &str,
        ports: Option<&[net::NetworkPolicyPort]>,
        object: &str,
        at: &str,
    ) -> Result<Self> {
        let peers = each(peers, at, peers_key, |p, at| Peer::from_k8s(p, object, at))?;
        let ports = each(ports, at, "ports", |p, at| {
            PortSpec::from_k8s(p, object, at)
        })?;
        Ok(Self { peers, ports })
    }
}

/// Converts each item of the optional list at `{at}.{key}`; `f` gets the item's own path
/// (`{at}.{key}[i]`) for its errors.
fn each<T, U>(
    items: Option<&[T]>,
    at: &str,
    key: &str,
    f: impl Fn(&T, &str) -> Result<U>,
) -> Result<Vec<U>> {
    items
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, item)| f(item, &format!("{at}.{key}[{i}]")))
        .collect()
}

impl Peer {
    fn from_k8s(peer: &net::NetworkPolicyPeer, object: &str, at: &str) -> Result<Self> {
        let selector = |s: Option<&LabelSelector>, key: &str| {
            s.map(|s| Selector::from_k8s(s, object, &format!("{at}.{key}")))
                .transpose()
        };
        let namespaces = selector(peer.namespace_selector.as_ref(), "namespaceSelector")?;
        let pods = selector(peer.pod_selector.as_ref(), "podSelector")?;
        match (&peer.ip_block, namespaces, pods) {
            (Some(block), None, None) => {
                let at = format!("{at}.ipBlock");
                let net = cidr(&block.cidr, object, &format!("{at}.cidr"))?;
                let mut except = Vec::new();
                for (k, text) in block.except.iter().flatten().enumerate() {
                    let field = format!("{at}.except[{k}]");
                    let e = cidr(text, object, &field)?;
                    if !net.contains(&e) || e.prefix_len() <= net.prefix_len() {
                        return Err(Error::invalid(
                            object,
                            field,
                            format!("{e} is not strictly inside cidr {net}"),
                        ));
                    }
                    except.push(e);
                }
                Ok(Peer::IpBlock(IpBlock { cidr: net, except }))
            }
            (Some(_), _, _) => Err(Error::invalid(
                object,
                at,
                "ipBlock cannot be combined with podSelector or namespaceSelector",
            )),
            (None, None, None) => Err(Error::invalid(
                object,
                at,
                "needs podSelector, namespaceSelector or ipBlock",
            )),
            (None, namespaces, pods) => Ok(Peer::Pods {
                namespaces,
                pods: pods.unwrap_or_default(),
            }),
        }
    }
}

impl PortSpec {
    fn from_k8s(port: &net::NetworkPolicyPort, object: &str, at: &str) -> Result<Self> {
        let protocol = protocol(port.protocol.as_deref(), object, &format!("{at}.protocol"))?;
        let end_field = format!("{at}.endPort");
        let port = match (&port.port, port.end_port) {
            (None, None) => PortMatch::All,
            (None, Some(_)) => {
                return Err(Error::invalid(object, end_field, "needs a numeric port"))
            }
            (Some(IntOrString::Int(n)), end) => {
                let first = port_number(*n, object, &format!("{at}.port"))?;
                let last = match end {
                    None => first,
                    Some(e) => {
                        let last = port_number(e, object, &end_field)?;
                        if last < first {
                            return Err(Error::invalid(
                                object,
                                end_field,
                                format!("{last} is below port {first}"),
                            ));
                        }
                        last
                    }
                };
                PortMatch::Range(PortRange { first, last })
            }
            (Some(IntOrString::String(name)), end) => {
                if end.is_some() {
                    return Err(Error::invalid(
                        object,
                        end_field,
                        "needs a numeric port, not a named one",
                    ));
                }
                let valid = !name.is_empty()
                    && name.len() <= 15
                    && name.chars().any(|c| c.is_ascii_alphabetic())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !valid {
                    return Err(Error::invalid(
                        object,
                        format!("{at}.port"),
                        format!("{name:?} is not a port name (1-15 letters, digits, '-', one letter at least)"),
                    ));
                }
                PortMatch::Named(name.clone())
            }
        };
        Ok(Self { protocol, port })
    }
}
