//! The lab's checks, with real TCP connections between lab namespaces. The listener
//! reports the source address it saw, which is how masquerade (flannel pod to outside: the
//! node's address) and its absence (pod to pod; terway pod to the VPC: the pod's own
//! address) are checked.
//!
//! Some checks tell the two designs apart: the expected outcome is what the lab's
//! backend promises, so a flannel lab passes "VPC host to pod, direct" when the VPC host
//! can NOT reach the pod, and a terway lab when it can, unmasqueraded. Every result's
//! `observed` says what happened, with the owner of each address seen.

use super::topology::{
    Backend, Datapath, IpStack, Lab, LabState, Mode, PodState, ANNOTATED_VSWITCH, NODE_VSWITCH,
    POD_VSWITCHES,
};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use unicni_net::NetNs;

/// The pod annotation that picks the pod's vSwitches (terway).
pub const ANN_VSWITCHES: &str = "unicni.io/vswitches";

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub from: String,
    pub to: String,
    /// What the backend's design says must happen.
    pub expected: String,
    /// What happened: the source address seen (and whose it is), the address given, or the
    /// error.
    pub observed: String,
    pub passed: bool,
}

fn netns(name: &str) -> Result<NetNs> {
    Ok(NetNs::open(Path::new(&format!("/var/run/netns/{name}")))?)
}

/// Why a probe saw no source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The harness could not set the probe up (a namespace, the listener): this says
    /// nothing about the network, so no check may pass or fail on it.
    Harness(String),
    /// The connection did not arrive: what the check is about.
    Network(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Harness(e) => write!(f, "harness error (not a network outcome): {e}"),
            ProbeError::Network(e) => f.write_str(e),
        }
    }
}

/// A listener on a port the kernel picks among those free in the calling thread's
/// namespace. A port the lab picked itself could be taken there: by a client socket of an
/// earlier probe from the same pod (an ephemeral port, in TIME_WAIT for a minute after
/// the probe, bound without SO_REUSEADDR so no later bind may share it), which is what
/// made `listen ...: Address already in use` under load.
pub fn listen_ephemeral(any: IpAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind((any, 0))
}

/// Connects from namespace `src` to `ip` where a listener in namespace `dst` waits;
/// returns the source address the listener saw.
pub fn probe(src: &str, dst: &str, ip: &str) -> Result<String, ProbeError> {
    let harness = ProbeError::Harness;
    let target: IpAddr = ip.parse().map_err(|e| harness(format!("{ip}: {e}")))?;
    let any: IpAddr = if target.is_ipv6() {
        "::".parse().expect("address")
    } else {
        "0.0.0.0".parse().expect("address")
    };
    let dst_ns = netns(dst).map_err(|e| harness(format!("{e:#}")))?;
    let listener = dst_ns
        .run(|| listen_ephemeral(any))
        .map_err(|e| harness(e.to_string()))?
        .map_err(|e| harness(format!("listen in {dst}: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| harness(format!("listener address in {dst}: {e}")))?
        .port();
    listener
        .set_nonblocking(true)
        .map_err(|e| harness(e.to_string()))?;
    let addr = SocketAddr::new(target, port);
    let src_ns = netns(src).map_err(|e| harness(format!("{e:#}")))?;
    let conn = src_ns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .map_err(|e| harness(e.to_string()))?
        .map_err(|e| ProbeError::Network(format!("connect {addr}: {e}")))?;
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match listener.accept() {
            Ok((_, peer)) => {
                drop(conn);
                return Ok(peer.ip().to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(ProbeError::Network(
                    "connected, but the listener saw no connection in 2s".into(),
                ))
            }
            Err(e) => return Err(harness(format!("accept: {e}"))),
        }
    }
}

/// Whose each address of the lab is, to say what a source address means.
struct Owners(BTreeMap<String, String>);

impl Owners {
    fn new(lab: &Lab, st: &LabState) -> Self {
        let mut m = BTreeMap::new();
        m.insert(lab.host_ip(), "the VPC host".to_string());
        m.insert(lab.outside_ip(), "the VPC router".to_string());
        for n in &st.nodes {
            m.insert(n.ip.clone(), format!("node-{}", n.index));
            // flannel vxlan: the node's VTEP has the network address of its subnet.
            if let Ok(net) = n.subnet.parse::<ipnet::Ipv4Net>() {
                m.insert(
                    net.network().to_string(),
                    format!("node-{}'s VTEP", n.index),
                );
            }
        }
        for n in &st.other_nodes {
            m.insert(n.ip.clone(), "the second cluster's node".to_string());
        }
        for p in &st.pods {
            for ip in std::iter::once(&p.ip).chain(p.ip6.iter()) {
                m.insert(ip.clone(), format!("pod {}", p.name));
            }
        }
        for p in &st.other_pods {
            for ip in std::iter::once(&p.ip).chain(p.ip6.iter()) {
                m.insert(ip.clone(), format!("the second cluster's pod {}", p.name));
            }
        }
        Owners(m)
    }

    /// `ip (owner)`, or just `ip`.
    fn describe(&self, ip: &str) -> String {
        match self.0.get(ip) {
            Some(o) => format!("{ip} ({o})"),
            None => ip.to_string(),
        }
    }
}

/// What a connection must do.
enum Expect {
    /// Arrive, with this source address.
    Source(String),
    /// Arrive, from whatever address.
    Connect,
    /// Not arrive.
    Unreachable,
}

struct Ctx<'a> {
    owners: Owners,
    lab: &'a Lab,
    st: &'a LabState,
}

impl Ctx<'_> {
    fn connect(
        &self,
        name: &str,
        from: (&str, &str),
        to: (&str, &str, &str),
        expect: Expect,
    ) -> CheckResult {
        let r = probe(from.1, to.1, to.2);
        let (expected, passed) = match &expect {
            Expect::Source(want) => (
                format!("source {}", self.owners.describe(want)),
                r.as_deref() == Ok(want.as_str()),
            ),
            Expect::Connect => ("connected".to_string(), r.is_ok()),
            Expect::Unreachable => (
                "unreachable".to_string(),
                matches!(r, Err(ProbeError::Network(_))),
            ),
        };
        let observed = match (&r, &expect) {
            (Ok(seen), Expect::Unreachable) => {
                format!("reached, source {}", self.owners.describe(seen))
            }
            (Ok(seen), _) => self.owners.describe(seen),
            (Err(ProbeError::Network(e)), Expect::Unreachable) => {
                format!("unreachable: {}", short_error(e))
            }
            (Err(e), _) => e.to_string(),
        };
        CheckResult {
            name: name.into(),
            from: from.0.into(),
            to: to.0.into(),
            expected,
            observed,
            passed,
        }
    }

    fn node_ip(&self, node: usize) -> String {
        self.lab.node_ip(node)
    }
}

/// `connect 10.250.0.4:30892: Network is unreachable (os error 101)` → `Network is
/// unreachable`: what an unreachable destination looked like, without the noise.
fn short_error(e: &str) -> String {
    let e = e.strip_prefix("connect ").unwrap_or(e);
    let e = match e.split_once(": ") {
        Some((addr, rest)) if addr.parse::<SocketAddr>().is_ok() => rest,
        _ => e,
    };
    match e.rfind(" (os error") {
        Some(i) => e[..i].to_string(),
        None => e.to_string(),
    }
}

fn label(p: &PodState) -> String {
    format!("{} ({})", p.name, p.ip)
}

fn label6(p: &PodState) -> String {
    format!("{} ({})", p.name, p.ip6.as_deref().unwrap_or("no IPv6"))
}

fn in_net(ip: &str, net: &str) -> bool {
    match (ip.parse::<IpAddr>(), net.parse::<ipnet::IpNet>()) {
        (Ok(ip), Ok(net)) => net.contains(&ip),
        _ => false,
    }
}

/// The vSwitch a terway pod's address must come from.
fn pod_vswitch(p: &PodState) -> &'static str {
    match p.annotations.get(ANN_VSWITCHES).map(String::as_str) {
        Some(ANNOTATED_VSWITCH) => ANNOTATED_VSWITCH,
        _ => NODE_VSWITCH,
    }
}

fn addresses(p: &PodState) -> String {
    match &p.ip6 {
        Some(v6) => format!("{}, {v6}", p.ip),
        None => p.ip.clone(),
    }
}

/// Runs every check. The first pod of node 1 is re-created (CNI DEL, new sandbox, CNI
/// ADD), so `st` is updated; the caller saves it.
pub fn run(lab: &Lab, st: &mut LabState) -> Vec<CheckResult> {
    let mut out = Vec::new();
    if let Some(r) = recreate_check(lab, st) {
        out.push(r);
    }
    let ctx = Ctx {
        owners: Owners::new(lab, st),
        lab,
        st,
    };
    out.extend(address_checks(&ctx));
    out.extend(pod_to_pod(&ctx));
    out.extend(node_and_outside(&ctx));
    out.extend(design_checks(&ctx));
    if lab.on_kube() {
        out.push(lab.api_check(ctx.st));
    }
    // Last: the counters then include the traffic of every check above.
    out.extend(fast_path_checks(&ctx));
    out
}

/// `--datapath ebpf`: the fast path's own counters on each node show that the traffic of
/// the checks above went through it (terway: out of and into pods; flannel: between pods
/// of one node, so only nodes with two pods or more).
fn fast_path_checks(ctx: &Ctx) -> Vec<CheckResult> {
    let (lab, st) = (ctx.lab, ctx.st);
    if st.datapath != Datapath::Ebpf {
        return Vec::new();
    }
    let mut out = Vec::new();
    for node in st.nodes.iter().chain(&st.other_nodes) {
        let pods = st
            .pods
            .iter()
            .chain(&st.other_pods)
            .filter(|p| p.node == node.index)
            .count();
        let pin = lab.pin_dir(node.index);
        let (expected, read) = match st.backend {
            Backend::Terway if pods > 0 => (
                "pod packets redirected out of and into pods, past the host stack",
                unicni_bpf::TerwayFastPath::open(&pin)
                    .and_then(|fp| fp.stats())
                    .map(|s| {
                        let out = s.out_redirect + s.out_redirect_neigh + s.out_local;
                        (
                            out > 0 && s.in_redirect > 0,
                            format!(
                                "out {out} (to the ENI {}, by neighbour lookup {}, pod to pod \
                                 {}), in {}; host path: Service/node {}, NAT flows {}",
                                s.out_redirect,
                                s.out_redirect_neigh,
                                s.out_local,
                                s.in_redirect,
                                s.out_pass_host_dst,
                                s.out_pass_host_flow + s.in_pass_host_flow
                            ),
                        )
                    }),
            ),
            Backend::Flannel if pods > 1 => (
                "same-node pod packets redirected past the bridge",
                unicni_bpf::FastPath::open(&pin)
                    .and_then(|fp| fp.stats())
                    .map(|s| {
                        (
                            s.redirected > 0,
                            format!("redirected {}, to the bridge {}", s.redirected, s.passed()),
                        )
                    }),
            ),
            _ => continue,
        };
        let (passed, observed) = match read {
            Ok(r) => r,
            Err(e) => (false, format!("{} ({e})", pin.display())),
        };
        out.push(CheckResult {
            name: "eBPF fast path carried pod traffic".into(),
            from: node
                .name
                .trim_start_matches(&format!("{}-", lab.prefix))
                .into(),
            to: format!("its {pods} pod(s)"),
            expected: expected.into(),
            observed,
            passed,
        });
        // The checks send IPv6 between the first cluster's pods only.
        let first_cluster = st.nodes.iter().any(|n| std::ptr::eq(n, node));
        let pods6 = st
            .pods
            .iter()
            .filter(|p| p.node == node.index && p.ip6.is_some())
            .count();
        if st.backend == Backend::Terway && first_cluster && pods6 > 0 {
            let (passed, observed) =
                match unicni_bpf::TerwayFastPath::open(&pin).and_then(|fp| fp.stats_v6()) {
                    Ok(s) => {
                        let out = s.out_redirect + s.out_redirect_neigh + s.out_local;
                        (
                            out > 0 && s.in_redirect > 0,
                            format!(
                            "out {out} (to the ENI {}, by neighbour lookup {}, pod to pod {}), \
                             in {}; host path: NDP/link-local/other {}, Service/node {}",
                            s.out_redirect,
                            s.out_redirect_neigh,
                            s.out_local,
                            s.in_redirect,
                            s.out_pass_other + s.in_pass_other,
                            s.out_pass_host_dst
                        ),
                        )
                    }
                    Err(e) => (false, format!("{} ({e})", pin.display())),
                };
            out.push(CheckResult {
                name: "eBPF fast path carried pod IPv6 traffic".into(),
                from: node
                    .name
                    .trim_start_matches(&format!("{}-", lab.prefix))
                    .into(),
                to: format!("its {pods6} dual-stack pod(s)"),
                expected: "pod IPv6 packets redirected out of and into pods, past the host stack"
                    .into(),
                observed,
                passed,
            });
        }
    }
    out
}

/// Fixed IP: terway keeps a StatefulSet pod's address across re-creation; flannel has no
/// such thing (any address of the node's subnet will do).
fn recreate_check(lab: &Lab, st: &mut LabState) -> Option<CheckResult> {
    let backend = st.backend;
    let st_dual = st.ip_stack == IpStack::Dual;
    let subnet = st
        .nodes
        .iter()
        .find(|n| Some(n.index) == st.pods.first().map(|p| p.node))
        .map(|n| n.subnet.clone())
        .unwrap_or_default();
    let pod = st.pods.first_mut()?;
    let (old, old6) = (pod.ip.clone(), pod.ip6.clone());
    let name = "pod re-created: its address";
    let from = format!(
        "{} ({})",
        pod.name,
        pod.owner_kind.as_deref().unwrap_or("no owner")
    );
    let r = lab.recreate_pod(backend, pod).and_then(|()| {
        // A new sandbox's links (an exclusive ENI moved in) start with tentative IPv6.
        if st_dual {
            lab.wait_ipv6_settled(
                &[pod.netns.clone(), lab.node_ns(pod.node)],
                Duration::from_secs(10),
            )
        } else {
            Ok(())
        }
    });
    let fixed = backend == Backend::Terway && pod.owner_kind.as_deref() == Some("StatefulSet");
    let expected = if fixed {
        format!("the same address {}", addresses_of(&old, &old6))
    } else {
        format!("an address of the node's subnet {subnet} (no fixed IP)")
    };
    let (observed, passed) = match r {
        Err(e) => (format!("{e:#}"), false),
        Ok(()) => {
            let same = pod.ip == old && pod.ip6 == old6;
            let observed = if same {
                format!("the same address {}", addresses(pod))
            } else {
                format!(
                    "a new address {} (was {})",
                    addresses(pod),
                    addresses_of(&old, &old6)
                )
            };
            let passed = if fixed {
                same
            } else {
                in_net(&pod.ip, &subnet)
            };
            (observed, passed)
        }
    };
    Some(CheckResult {
        name: name.into(),
        from,
        to: "new sandbox, new container ID".into(),
        expected,
        observed,
        passed,
    })
}

fn addresses_of(ip: &str, ip6: &Option<String>) -> String {
    match ip6 {
        Some(v6) => format!("{ip}, {v6}"),
        None => ip.to_string(),
    }
}

/// Where pod addresses come from: terway, the vSwitch (the node's, or the annotated
/// one); flannel, the node's leased subnet of the cluster CIDR.
fn address_checks(c: &Ctx) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for p in &c.st.pods {
        let (name, expected, passed) = match c.st.backend {
            Backend::Terway => {
                let id = pod_vswitch(p);
                let v = POD_VSWITCHES
                    .iter()
                    .find(|v| v.id == id)
                    .expect("a lab vSwitch");
                let dual = c.st.ip_stack == IpStack::Dual;
                let ok = in_net(&p.ip, v.cidr)
                    && (!dual || p.ip6.as_deref().is_some_and(|a| in_net(a, v.ipv6_cidr)));
                let name = if id == NODE_VSWITCH {
                    "pod address"
                } else {
                    "pod address, vSwitch by annotation"
                };
                let want = if dual {
                    format!("from {id} ({}, {})", v.cidr, v.ipv6_cidr)
                } else {
                    format!("from {id} ({})", v.cidr)
                };
                (name, want, ok)
            }
            Backend::Flannel => {
                let subnet =
                    c.st.nodes
                        .iter()
                        .find(|n| n.index == p.node)
                        .map(|n| n.subnet.clone())
                        .unwrap_or_default();
                (
                    "pod address",
                    format!("from the node's subnet {subnet} of the cluster CIDR"),
                    in_net(&p.ip, &subnet),
                )
            }
        };
        out.push(CheckResult {
            name: name.into(),
            from: format!("node-{}", p.node),
            to: p.name.clone(),
            expected,
            observed: format!("{} ({})", addresses(p), address_source(c, p)),
            passed,
        });
    }
    out
}

/// Where the pod's IPv4 address is from, as far as the lab can tell.
fn address_source(c: &Ctx, p: &PodState) -> String {
    if let Some(v) = POD_VSWITCHES.iter().find(|v| in_net(&p.ip, v.cidr)) {
        return format!("vSwitch {}", v.id);
    }
    if let Some(n) =
        c.st.nodes
            .iter()
            .find(|n| !n.subnet.is_empty() && in_net(&p.ip, &n.subnet))
    {
        return format!("node-{}'s subnet {}", n.index, n.subnet);
    }
    "not a lab network".into()
}

fn pod_to_pod(c: &Ctx) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let pods = &c.st.pods;
    let all_pairs = pods.len() <= 16;
    let dual = c.st.ip_stack == IpStack::Dual;
    for a in pods {
        for b in pods.iter().filter(|b| b.name != a.name) {
            let same = a.node == b.node;
            // Large labs: every pod to the first pod of each node, not the full square.
            if !same && !all_pairs && !b.name.ends_with("-p1") {
                continue;
            }
            let name = if same {
                "pod to pod, same node"
            } else {
                "pod to pod, across nodes"
            };
            out.push(c.connect(
                name,
                (&label(a), &a.netns),
                (&label(b), &b.netns, &b.ip),
                Expect::Source(a.ip.clone()),
            ));
            if dual {
                let name = if same {
                    "pod to pod over IPv6, same node"
                } else {
                    "pod to pod over IPv6, across nodes"
                };
                match (&a.ip6, &b.ip6) {
                    (Some(a6), Some(b6)) => out.push(c.connect(
                        name,
                        (&label6(a), &a.netns),
                        (&label6(b), &b.netns, b6),
                        Expect::Source(a6.clone()),
                    )),
                    _ => out.push(CheckResult {
                        name: name.into(),
                        from: label6(a),
                        to: label6(b),
                        expected: "both pods have an IPv6 address".into(),
                        observed: "missing".into(),
                        passed: false,
                    }),
                }
            }
        }
    }
    out
}

fn node_and_outside(c: &Ctx) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let pods = &c.st.pods;
    let vpc = c.lab.vpc_ns();
    let outside = c.lab.outside_ip();
    if c.st.backend == Backend::Flannel {
        for a in pods {
            out.push(c.connect(
                "pod to outside (masquerade)",
                (&label(a), &a.netns),
                (&format!("outside ({outside})"), &vpc, &outside),
                Expect::Source(c.node_ip(a.node)),
            ));
        }
        // Dual stack: the VPC segment has IPv6, and pods leave with the node's address.
        if c.st.ip_stack == IpStack::Dual {
            let outside6 = c.lab.outside_ip6();
            for a in pods {
                let name = "pod to outside over IPv6 (masquerade)";
                if a.ip6.is_none() {
                    out.push(CheckResult {
                        name: name.into(),
                        from: label6(a),
                        to: format!("outside ({outside6})"),
                        expected: "the pod has an IPv6 address".into(),
                        observed: "missing".into(),
                        passed: false,
                    });
                    continue;
                }
                out.push(c.connect(
                    name,
                    (&label6(a), &a.netns),
                    (&format!("outside ({outside6})"), &vpc, &outside6),
                    Expect::Source(c.lab.node_ip6(a.node)),
                ));
            }
        }
    }
    for n in &c.st.nodes {
        for p in pods
            .iter()
            .filter(|p| p.node != n.index && p.name.ends_with("-p1"))
        {
            // flannel: the source is the node's VTEP address (vxlan) or underlay address
            // (host-gw); terway: the node's address, routed by the VPC to the pod's ENI.
            out.push(c.connect(
                "node host to pod on another node",
                (&format!("node-{} ({})", n.index, n.ip), &n.netns),
                (&label(p), &p.netns, &p.ip),
                Expect::Connect,
            ));
        }
    }
    if c.st.backend == Backend::Flannel {
        // Flannel pod addresses are not part of the VPC: an outside host cannot reach them
        // directly (services reach pods through a node: NodePort). In vpc-route mode the
        // VPC route table makes them routable: the outside host reaches the pod,
        // unmasqueraded.
        if let Some(p) = pods.first() {
            let (name, expect) = if c.st.mode == Mode::VpcRoute {
                (
                    "outside to pod, via the VPC route table",
                    Expect::Source(outside.clone()),
                )
            } else {
                ("outside to pod, direct", Expect::Unreachable)
            };
            out.push(c.connect(
                name,
                (&format!("outside ({outside})"), &vpc),
                (&label(p), &p.netns, &p.ip),
                expect,
            ));
        }
    }
    out
}

/// The checks that tell the designs apart, from the VPC host (another machine of the VPC
/// on its own subnet: a load balancer, another ECS instance) and from the second cluster.
fn design_checks(c: &Ctx) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let st = c.st;
    let host = c.lab.host_ns();
    let host_ip = c.lab.host_ip();
    let host_label = format!("VPC host ({host_ip})");
    let terway = st.backend == Backend::Terway;
    let routable = terway || st.mode == Mode::VpcRoute;
    // Targets: the first pod of each node, and any pod on another vSwitch.
    let targets: Vec<&PodState> = st
        .pods
        .iter()
        .filter(|p| p.name.ends_with("-p1") || (terway && pod_vswitch(p) != NODE_VSWITCH))
        .collect();
    // (a) A load balancer sends straight to the pod: terway pods are VPC addresses; flannel
    // pods are not (a service needs a NodePort), unless vpc-route routes them.
    for p in &targets {
        out.push(c.connect(
            "VPC host to pod, direct",
            (&host_label, &host),
            (&label(p), &p.netns, &p.ip),
            if routable {
                Expect::Source(host_ip.clone())
            } else {
                Expect::Unreachable
            },
        ));
    }
    // (b) What the rest of the VPC sees of a pod's connection: terway, the pod's own
    // address; flannel, the node's (masquerade).
    for p in &st.pods {
        out.push(c.connect(
            "pod to VPC host: source seen",
            (&label(p), &p.netns),
            (&host_label, &host, &host_ip),
            Expect::Source(if terway {
                p.ip.clone()
            } else {
                c.node_ip(p.node)
            }),
        ));
    }
    // (c) Two clusters in one VPC: terway pods talk directly; flannel pods of different
    // clusters do not (vpc-route: through the route table, masqueraded by the node).
    for o in &st.other_pods {
        for p in &targets {
            out.push(c.connect(
                "second cluster's pod to pod",
                (&format!("2nd cluster {}", label(o)), &o.netns),
                (&label(p), &p.netns, &p.ip),
                match (terway, st.mode) {
                    (true, _) => Expect::Source(o.ip.clone()),
                    (false, Mode::VpcRoute) => Expect::Source(c.node_ip(o.node)),
                    (false, _) => Expect::Unreachable,
                },
            ));
        }
    }
    out
}

/// Prints the results; returns how many failed.
pub fn print(results: &[CheckResult], output: &str) -> usize {
    let failed = results.iter().filter(|r| !r.passed).count();
    if output == "json" {
        println!(
            "{}",
            serde_json::json!({"checks": results, "passed": results.len() - failed, "failed": failed})
        );
    } else {
        println!(
            "{:<36} {:<32} {:<32} {:<6} OBSERVED",
            "CHECK", "FROM", "TO", "RESULT"
        );
        for r in results {
            println!(
                "{:<36} {:<32} {:<32} {:<6} {}",
                r.name,
                r.from,
                r.to,
                if r.passed { "pass" } else { "FAIL" },
                r.observed,
            );
        }
        println!("{} passed, {} failed", results.len() - failed, failed);
    }
    failed
}

/// One backend's column of a comparison row: all results of one check name.
#[derive(Debug, Serialize)]
pub struct Cell {
    pub passed: usize,
    pub total: usize,
    pub expected: String,
    /// The first failure's observation, or the first result's when all passed.
    pub observed: String,
}

fn cell(results: &[&CheckResult]) -> Option<Cell> {
    let first = results.first()?;
    let shown = results.iter().find(|r| !r.passed).unwrap_or(first);
    Some(Cell {
        passed: results.iter().filter(|r| r.passed).count(),
        total: results.len(),
        expected: shown.expected.clone(),
        observed: shown.observed.clone(),
    })
}

fn cell_text(c: &Option<Cell>, width: usize) -> String {
    let Some(c) = c else {
        return "— (not checked for this backend)".into();
    };
    let verdict = if c.passed == c.total { "pass" } else { "FAIL" };
    let count = if c.total > 1 {
        format!(" {}/{}", c.passed, c.total)
    } else {
        String::new()
    };
    let mut t = format!("{verdict}{count}: {}", c.observed);
    if t.chars().count() > width {
        t = t.chars().take(width - 1).collect::<String>() + "…";
    }
    t
}

/// Prints one row per check name: the flannel lab's and the terway lab's outcome side by
/// side; returns how many checks failed in either lab.
pub fn print_compare(labs: &[(Backend, Vec<CheckResult>)], output: &str) -> usize {
    let mut names: Vec<&str> = Vec::new();
    for (_, rs) in labs {
        for r in rs {
            if !names.contains(&r.name.as_str()) {
                names.push(&r.name);
            }
        }
    }
    let column = |b: Backend, name: &str| -> Option<Cell> {
        let rs: Vec<&CheckResult> = labs
            .iter()
            .filter(|(lb, _)| *lb == b)
            .flat_map(|(_, rs)| rs.iter().filter(|r| r.name == name))
            .collect();
        cell(&rs)
    };
    let failed: usize = labs
        .iter()
        .map(|(_, rs)| rs.iter().filter(|r| !r.passed).count())
        .sum();
    if output == "json" {
        let rows: Vec<serde_json::Value> = names
            .iter()
            .map(|n| {
                serde_json::json!({
                    "check": n,
                    "flannel": column(Backend::Flannel, n),
                    "terway": column(Backend::Terway, n),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"rows": rows, "failed": failed, "labs": labs.iter().map(|(b, rs)| serde_json::json!({"backend": b, "checks": rs})).collect::<Vec<_>>()})
        );
    } else {
        const W: usize = 58;
        println!(
            "{:<36} {:<W$} TERWAY (shared-eni)",
            "CHECK", "FLANNEL (vxlan)"
        );
        for n in &names {
            println!(
                "{:<36} {:<W$} {}",
                n,
                cell_text(&column(Backend::Flannel, n), W),
                cell_text(&column(Backend::Terway, n), W + 20)
            );
        }
        println!(
            "(pass = the observed behaviour is what that backend's design says; the text is what was observed)"
        );
        println!("{failed} checks failed");
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_errors_are_shortened() {
        assert_eq!(
            short_error("connect 10.250.0.4:30892: Network is unreachable (os error 101)"),
            "Network is unreachable"
        );
        assert_eq!(
            short_error("connect [fd00:252::4]:29467: connection timed out"),
            "connection timed out"
        );
        assert_eq!(short_error("listen in x: boom"), "listen in x: boom");
    }

    /// The old scheme picked a port itself; one taken by a client socket (no
    /// SO_REUSEADDR, as every probe's client is) refuses the listener's bind. The
    /// kernel-picked port of `listen_ephemeral` cannot be taken.
    #[test]
    fn listener_port_is_never_one_already_taken() {
        let any: IpAddr = "127.0.0.1".parse().unwrap();
        let server = listen_ephemeral(any).unwrap();
        let client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let taken = client.local_addr().unwrap().port();
        let refused = TcpListener::bind(("0.0.0.0", taken)).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::AddrInUse, "{refused}");
        let mut held = Vec::new();
        for _ in 0..200 {
            let l = listen_ephemeral("0.0.0.0".parse().unwrap()).unwrap();
            let port = l.local_addr().unwrap().port();
            assert_ne!(port, taken);
            assert_ne!(port, 0);
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            assert_eq!(l.accept().unwrap().1, c.local_addr().unwrap());
            held.push((l, c));
        }
    }

    #[test]
    fn a_harness_error_is_no_network_outcome() {
        let e = ProbeError::Harness("listen in ulab-n2-p1: Address already in use".into());
        assert!(e.to_string().starts_with("harness error"), "{e}");
        assert_eq!(ProbeError::Network("x".into()).to_string(), "x");
    }

    fn result(name: &str, passed: bool, observed: &str) -> CheckResult {
        CheckResult {
            name: name.into(),
            from: "a".into(),
            to: "b".into(),
            expected: "e".into(),
            observed: observed.into(),
            passed,
        }
    }

    #[test]
    fn compare_cells_count_and_show_the_first_failure() {
        let rs = [
            result("x", true, "fine"),
            result("x", false, "broken"),
            result("x", true, "fine too"),
        ];
        let refs: Vec<&CheckResult> = rs.iter().collect();
        let c = cell(&refs);
        assert_eq!(cell_text(&c, 40), "FAIL 2/3: broken");
        let ok = cell(&refs[..1]);
        assert_eq!(cell_text(&ok, 40), "pass: fine");
        assert_eq!(cell_text(&None, 40), "— (not checked for this backend)");
        let long = cell(&[&result("x", true, &"y".repeat(100))]);
        assert_eq!(cell_text(&long, 20).chars().count(), 20);
    }
}
