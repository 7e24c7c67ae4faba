//! The Service table: frontends (ClusterIP, port, protocol) and their backends, built
//! from Kubernetes Services and EndpointSlices the way kube-proxy reads them.

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// sessionAffinity ClientIP's timeout when the Service does not set one (Kubernetes'
/// default, 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// From a Service or EndpointSlice port's `protocol` (default TCP); SCTP and others are
    /// not load balanced here.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// IPPROTO_TCP / IPPROTO_UDP.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => unicni_bpf::services::PROTO_TCP,
            Protocol::Udp => unicni_bpf::services::PROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// What a client addresses: one ClusterIP (IPv4 or IPv6), port and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}/{}", self.port, self.protocol),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}/{}", self.port, self.protocol),
        }
    }
}

/// An endpoint's state for the load balancer (from the EndpointSlice conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendState {
    /// Takes new connections.
    Ready,
    /// Being deleted: no new connections (unless the frontend has no ready backend at all
    /// and this one is still `serving`, as kube-proxy does), established flows finish.
    Terminating { serving: bool },
}

/// One backend of a frontend: a pod address and the port the Service's targetPort
/// resolved to in the EndpointSlice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    pub ip: IpAddr,
    pub port: u16,
    pub state: BackendState,
}

/// A frontend's backends and session affinity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceEntry {
    /// `namespace/name` of the Service (for logs and errors).
    pub service: String,
    /// The Service port's name ("" for an unnamed single port).
    pub port_name: String,
    /// Sorted by address and port, one per address and port.
    pub backends: Vec<Backend>,
    /// sessionAffinity ClientIP: its timeout in seconds; `None` without affinity.
    pub affinity_timeout: Option<u32>,
}

impl ServiceEntry {
    /// The backends new connections choose from: the ready ones, or, when none is ready,
    /// the terminating ones still serving (kube-proxy's fallback, so a Service whose pods
    /// are all being replaced keeps answering until the new ones are ready).
    pub fn choosable(&self) -> Vec<Backend> {
        let ready: Vec<Backend> = self
            .backends
            .iter()
            .filter(|b| b.state == BackendState::Ready)
            .copied()
            .collect();
        if !ready.is_empty() {
            return ready;
        }
        self.backends
            .iter()
            .filter(|b| b.state == BackendState::Terminating { serving: true })
            .copied()
            .collect()
    }
}

/// A Service (or one of its ports or addresses) that is not load balanced, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `namespace/name`.
    pub service: String,
    pub reason: String,
}

/// Every frontend the node's load balancer should serve.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceTable {
    entries: BTreeMap<Frontend, ServiceEntry>,
    skipped: Vec<Skipped>,
}

fn ns_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

impl ServiceTable {
    pub fn new() -> ServiceTable {
        ServiceTable::default()
    }

    /// The table for a set of Services and EndpointSlices (all namespaces), as kube-proxy
    /// reads them:
    /// - every address of `spec.clusterIPs` (dual stack; `spec.clusterIP` when the list is
    ///   empty) and every port with protocol TCP or UDP is a frontend;
    /// - headless (`clusterIP: None`), ExternalName and address-less Services are skipped,
    ///   and so are SCTP ports ([`ServiceTable::skipped`] says which and why);
    /// - backends come from the EndpointSlices labelled `kubernetes.io/service-name` with
    ///   the Service's name in its namespace, of the frontend's address family, through the
    ///   slice port with the Service port's name and protocol (the EndpointSlice
    ///   controller has resolved the targetPort, named or numeric, into that port);
    /// - an endpoint is [`BackendState::Ready`] when `ready` (unset means ready),
    ///   [`BackendState::Terminating`] when `terminating`, and left out otherwise (not
    ///   ready yet: nothing must reach it);
    /// - `sessionAffinity: ClientIP` with `timeoutSeconds` (default
    ///   [`DEFAULT_AFFINITY_TIMEOUT`]).
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> ServiceTable {
        Self::build(services, slices, None)
    }

    /// [`ServiceTable::from_objects`] for the load balancer of node `node_name`, which
    /// also honours `internalTrafficPolicy: Local`: such a Service's backends are only the
    /// endpoints whose `nodeName` is this node (none there: the Service has no backend on
    /// this node and connections to it are refused, as Kubernetes specifies).
    pub fn from_objects_on_node<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node_name: &str,
    ) -> ServiceTable {
        Self::build(services, slices, Some(node_name))
    }

    fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node_name: Option<&str>,
    ) -> ServiceTable {
        let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let ns = slice
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            by_service.entry((ns, svc.clone())).or_default().push(slice);
        }
        let mut table = ServiceTable::new();
        for svc in services {
            let key = ns_name(&svc.metadata);
            let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            table.add_service(svc, &format!("{}/{}", key.0, key.1), slices, node_name);
        }
        table
    }

    fn skip(&mut self, service: &str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            service: service.to_string(),
            reason: reason.into(),
        });
    }

    fn add_service(
        &mut self,
        svc: &Service,
        name: &str,
        slices: &[&EndpointSlice],
        node_name: Option<&str>,
    ) {
        let Some(spec) = &svc.spec else {
            return self.skip(name, "no spec");
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            return self.skip(name, "type ExternalName (a DNS alias, no ClusterIP)");
        }
        let listed: Vec<&String> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().collect(),
            _ => spec.cluster_ip.iter().collect(),
        };
        if listed.iter().any(|ip| ip.as_str() == "None") {
            return self.skip(name, "headless (clusterIP: None)");
        }
        let mut ips = Vec::new();
        for ip in listed {
            match ip.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) if ip.is_empty() => {}
                Err(_) => self.skip(name, format!("clusterIP {ip:?} is not an IP address")),
            }
        }
        if ips.is_empty() {
            return self.skip(name, "no ClusterIP allocated");
        }
        let affinity_timeout = match spec.session_affinity.as_deref() {
            Some("ClientIP") => Some(
                spec.session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .and_then(|t| u32::try_from(t).ok())
                    .filter(|t| *t > 0)
                    .unwrap_or(DEFAULT_AFFINITY_TIMEOUT),
            ),
            _ => None,
        };
        // Only known on a node's own table; elsewhere every endpoint counts.
        let local_only = match node_name {
            Some(n) if spec.internal_traffic_policy.as_deref() == Some("Local") => Some(n),
            _ => None,
        };
        for port in spec.ports.iter().flatten() {
            let port_name = port.name.clone().unwrap_or_default();
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
                self.skip(
                    name,
                    format!(
                        "port {} protocol {} (only TCP and UDP are load balanced)",
                        port.port,
                        port.protocol.as_deref().unwrap_or("")
                    ),
                );
                continue;
            };
            let Ok(number) = u16::try_from(port.port) else {
                self.skip(name, format!("port {} out of range", port.port));
                continue;
            };
            for ip in &ips {
                let backends = backends_for(*ip, port, protocol, slices, local_only);
                self.entries.insert(
                    Frontend {
                        ip: *ip,
                        port: number,
                        protocol,
                    },
                    ServiceEntry {
                        service: name.to_string(),
                        port_name: port_name.clone(),
                        backends,
                        affinity_timeout,
                    },
                );
            }
        }
    }

    /// Adds or replaces one frontend; backends are sorted and made unique (a ready entry
    /// wins over a terminating one of the same address and port).
    pub fn insert(&mut self, frontend: Frontend, mut entry: ServiceEntry) {
        entry.backends = normalize(entry.backends);
        self.entries.insert(frontend, entry);
    }

    pub fn remove(&mut self, frontend: &Frontend) -> Option<ServiceEntry> {
        self.entries.remove(frontend)
    }

    pub fn get(&self, frontend: &Frontend) -> Option<&ServiceEntry> {
        self.entries.get(frontend)
    }

    /// Frontends in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Frontend, &ServiceEntry)> {
        self.entries.iter()
    }

    /// Number of frontends.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Services, ports or addresses [`ServiceTable::from_objects`] left out, and why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }
}

fn backends_for(
    ip: IpAddr,
    port: &ServicePort,
    protocol: Protocol,
    slices: &[&EndpointSlice],
    local_only: Option<&str>,
) -> Vec<Backend> {
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let want_name = port.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        if slice.address_type != family {
            continue;
        }
        let target = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == want_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(target) = target
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            if local_only.is_some() && ep.node_name.as_deref() != local_only {
                continue;
            }
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let state = if terminating {
                BackendState::Terminating { serving }
            } else if ready {
                BackendState::Ready
            } else {
                continue;
            };
            for addr in &ep.addresses {
                if let Ok(a) = addr.parse::<IpAddr>() {
                    if a.is_ipv4() == ip.is_ipv4() {
                        out.push(Backend {
                            ip: a,
                            port: target,
                            state,
                        });
                    }
                }
            }
        }
    }
    normalize(out)
}

/// Sorted by (address, port) with one entry each; Ready sorts before Terminating, so the
/// first of a run is the one kept.
fn normalize(mut v: Vec<Backend>) -> Vec<Backend> {
    v.sort();
    v.dedup_by(|b, a| a.ip == b.ip && a.port == b.port);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn web() -> Service {
        service(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http-alt"},
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
                ],
            }
        }))
    }

    fn web_slice_v4() -> EndpointSlice {
        slice(json!({
            "metadata": {"name": "web-abc", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.0.1.2"], "conditions": {"ready": true, "serving": true, "terminating": false}},
                {"addresses": ["10.0.2.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.3.4"], "conditions": {"ready": false, "serving": false, "terminating": false}},
                {"addresses": ["10.0.4.5"]},
            ]
        }))
    }

    fn web_slice_v6() -> EndpointSlice {
        slice(json!({
            "metadata": {"name": "web-def", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv6",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["fd00:1::2"], "conditions": {"ready": true}}]
        }))
    }

    fn fe(ip: &str, port: u16, protocol: Protocol) -> Frontend {
        Frontend {
            ip: ip.parse().unwrap(),
            port,
            protocol,
        }
    }

    fn be(ip: &str, port: u16, state: BackendState) -> Backend {
        Backend {
            ip: ip.parse().unwrap(),
            port,
            state,
        }
    }

    #[test]
    fn dual_stack_ports_and_conditions() {
        let t = ServiceTable::from_objects(&[web()], &[web_slice_v4(), web_slice_v6()]);
        assert_eq!(t.len(), 4, "{t:#?}");
        let http4 = t.get(&fe("10.96.0.10", 80, Protocol::Tcp)).unwrap();
        assert_eq!(http4.service, "shop/web");
        assert_eq!(http4.port_name, "http");
        assert_eq!(
            http4.backends,
            vec![
                be("10.0.1.2", 8080, BackendState::Ready),
                be(
                    "10.0.2.3",
                    8080,
                    BackendState::Terminating { serving: true }
                ),
                // No conditions at all: ready.
                be("10.0.4.5", 8080, BackendState::Ready),
            ],
            "the not-ready, not-terminating endpoint is left out"
        );
        assert_eq!(
            http4.choosable(),
            vec![
                be("10.0.1.2", 8080, BackendState::Ready),
                be("10.0.4.5", 8080, BackendState::Ready)
            ]
        );
        let dns4 = t.get(&fe("10.96.0.10", 53, Protocol::Udp)).unwrap();
        assert_eq!(dns4.backends.len(), 3);
        assert!(dns4.backends.iter().all(|b| b.port == 5353));
        let http6 = t.get(&fe("fd00:96::10", 80, Protocol::Tcp)).unwrap();
        assert_eq!(
            http6.backends,
            vec![be("fd00:1::2", 8080, BackendState::Ready)]
        );
        // The IPv6 slice has no dns port: the IPv6 frontend exists, without backends.
        let dns6 = t.get(&fe("fd00:96::10", 53, Protocol::Udp)).unwrap();
        assert!(dns6.backends.is_empty());
        assert!(t.skipped().is_empty(), "{:?}", t.skipped());
    }

    #[test]
    fn slices_of_other_services_and_namespaces_do_not_count() {
        let mut other_ns = web_slice_v4();
        other_ns.metadata.namespace = Some("other".into());
        let mut other_svc = web_slice_v4();
        other_svc
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(SERVICE_NAME_LABEL.into(), "api".into());
        let t = ServiceTable::from_objects(&[web()], &[other_ns, other_svc]);
        assert!(t.iter().all(|(_, e)| e.backends.is_empty()));
    }

    #[test]
    fn a_port_matches_by_name_and_protocol() {
        // Same name, other protocol: no backends through it.
        let mut s = web_slice_v4();
        s.ports = Some(vec![serde_json::from_value(
            json!({"name": "http", "port": 8080, "protocol": "UDP"}),
        )
        .unwrap()]);
        let t = ServiceTable::from_objects(&[web()], &[s]);
        assert!(t
            .get(&fe("10.96.0.10", 80, Protocol::Tcp))
            .unwrap()
            .backends
            .is_empty());
        // An unnamed single port matches the slice's unnamed port.
        let svc = service(json!({
            "metadata": {"name": "one", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 443, "targetPort": 8443}]}
        }));
        let sl = slice(json!({
            "metadata": {"name": "one-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "one"}},
            "addressType": "IPv4",
            "ports": [{"port": 8443}],
            "endpoints": [{"addresses": ["10.0.9.9"], "conditions": {"ready": true}}]
        }));
        let t = ServiceTable::from_objects(&[svc], &[sl]);
        assert_eq!(
            t.get(&fe("10.96.0.11", 443, Protocol::Tcp))
                .unwrap()
                .backends,
            vec![be("10.0.9.9", 8443, BackendState::Ready)]
        );
    }

    #[test]
    fn headless_external_name_sctp_and_unallocated_are_skipped() {
        let svcs = [
            service(json!({"metadata": {"name": "h", "namespace": "a"},
                "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})),
            service(json!({"metadata": {"name": "x", "namespace": "a"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}})),
            service(json!({"metadata": {"name": "s", "namespace": "a"},
                "spec": {"clusterIP": "10.96.0.12", "ports": [{"port": 80, "protocol": "SCTP"}, {"port": 81}]}})),
            service(json!({"metadata": {"name": "p", "namespace": "a"},
                "spec": {"ports": [{"port": 80}]}})),
        ];
        let t = ServiceTable::from_objects(&svcs, &[]);
        assert_eq!(t.len(), 1, "only s:81 is a frontend: {t:#?}");
        assert!(t.get(&fe("10.96.0.12", 81, Protocol::Tcp)).is_some());
        let reasons: Vec<(&str, &str)> = t
            .skipped()
            .iter()
            .map(|s| (s.service.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].0 == "a/h" && reasons[0].1.contains("headless"));
        assert!(reasons[1].0 == "a/x" && reasons[1].1.contains("ExternalName"));
        assert!(reasons[2].0 == "a/s" && reasons[2].1.contains("SCTP"));
        assert!(reasons[3].0 == "a/p" && reasons[3].1.contains("no ClusterIP"));
    }

    #[test]
    fn session_affinity_and_its_timeout() {
        let mut svc = web();
        let spec = svc.spec.as_mut().unwrap();
        spec.session_affinity = Some("ClientIP".into());
        let t = ServiceTable::from_objects(&[svc.clone()], &[]);
        assert_eq!(
            t.get(&fe("10.96.0.10", 80, Protocol::Tcp))
                .unwrap()
                .affinity_timeout,
            Some(DEFAULT_AFFINITY_TIMEOUT)
        );
        svc.spec.as_mut().unwrap().session_affinity_config =
            Some(serde_json::from_value(json!({"clientIP": {"timeoutSeconds": 60}})).unwrap());
        let t = ServiceTable::from_objects(&[svc], &[]);
        assert_eq!(
            t.get(&fe("10.96.0.10", 80, Protocol::Tcp))
                .unwrap()
                .affinity_timeout,
            Some(60)
        );
        let t = ServiceTable::from_objects(&[web()], &[]);
        assert_eq!(
            t.get(&fe("10.96.0.10", 80, Protocol::Tcp))
                .unwrap()
                .affinity_timeout,
            None
        );
    }

    #[test]
    fn internal_traffic_policy_local_keeps_this_nodes_endpoints() {
        let mut svc = web();
        svc.spec.as_mut().unwrap().internal_traffic_policy = Some("Local".into());
        let mut sl = web_slice_v4();
        sl.endpoints[0].node_name = Some("node-a".into());
        sl.endpoints[3].node_name = Some("node-b".into());
        let http = fe("10.96.0.10", 80, Protocol::Tcp);
        let t = ServiceTable::from_objects_on_node(&[svc.clone()], &[sl.clone()], "node-a");
        assert_eq!(
            t.get(&http).unwrap().backends,
            vec![be("10.0.1.2", 8080, BackendState::Ready)]
        );
        let t = ServiceTable::from_objects_on_node(&[svc.clone()], &[sl.clone()], "node-c");
        assert!(t.get(&http).unwrap().backends.is_empty());
        // Without a node, and for a Cluster policy, every endpoint counts.
        assert_eq!(
            ServiceTable::from_objects(&[svc], &[sl.clone()])
                .get(&http)
                .unwrap()
                .backends
                .len(),
            3
        );
        assert_eq!(
            ServiceTable::from_objects_on_node(&[web()], &[sl], "node-a")
                .get(&http)
                .unwrap()
                .backends
                .len(),
            3
        );
    }

    #[test]
    fn only_terminating_serving_backends_are_the_fallback() {
        let e = ServiceEntry {
            backends: vec![
                be("10.0.0.1", 80, BackendState::Terminating { serving: true }),
                be("10.0.0.2", 80, BackendState::Terminating { serving: false }),
            ],
            ..Default::default()
        };
        assert_eq!(
            e.choosable(),
            vec![be(
                "10.0.0.1",
                80,
                BackendState::Terminating { serving: true }
            )]
        );
    }

    #[test]
    fn insert_dedups_with_ready_first() {
        let mut t = ServiceTable::new();
        t.insert(
            fe("10.96.0.1", 80, Protocol::Tcp),
            ServiceEntry {
                backends: vec![
                    be("10.0.0.2", 80, BackendState::Terminating { serving: true }),
                    be("10.0.0.2", 80, BackendState::Ready),
                    be("10.0.0.1", 80, BackendState::Ready),
                ],
                ..Default::default()
            },
        );
        assert_eq!(
            t.get(&fe("10.96.0.1", 80, Protocol::Tcp)).unwrap().backends,
            vec![
                be("10.0.0.1", 80, BackendState::Ready),
                be("10.0.0.2", 80, BackendState::Ready)
            ]
        );
    }
}
