//! Root-only: ClusterIP traffic through the socket-level Service load balancer
//! (`unicni-services`, docs/services.md) meets NetworkPolicy and the eBPF fast paths as
//! direct pod-to-pod traffic does, because the client's socket is connected to the backend
//! pod itself before any packet exists:
//!
//! - the policy judges the backend pod (and its port), at the client's veth, and never
//!   sees the ClusterIP (its "Service address" pass is not hit);
//! - flannel's fast path (bridge pods) and terway's (routed pods) redirect the Service
//!   flow pod to pod, both directions, and do not treat it as a flow that went through the
//!   host (there is no host DNAT to undo), with the policy still first on every veth;
//!   the same connections DNATed by the node as kube-proxy does are, for contrast, seen as
//!   Service traffic by the policy and left to the host by both fast paths.
//!
//! The cluster is tests/common's: web and client are flannel-shaped (bridge ports), db and
//! probe terway-shaped (routed veths). Every pod is registered with the load balancer.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use unicni_bpf::{FastPath, TerwayFastPath, TerwayPod};
use unicni_services::{Backend, BackendState, Frontend, Lb, Protocol, ServiceEntry, ServiceTable};

const TIMEOUT: Duration = Duration::from_millis(1500);
/// Each pod's name server: greets every connection with the pod's name and closes it.
const NAME_PORT: u16 = 7070;
const SERVICE_CIDRS: [&str; 2] = ["10.96.0.0/12", "fd00:10:96::/112"];

/// The node's Service load balancer, in a pin directory of the test's own; unloaded (its
/// programs detached from the root cgroup) on drop.
struct Services {
    lb: Lb,
    pin: PathBuf,
}

impl Services {
    /// Loads the load balancer and registers every pod of the cluster.
    fn load(c: &Cluster) -> Services {
        let pin = PathBuf::from(format!(
            "/sys/fs/bpf/{}",
            unicni_testkit::unique("unicni-test-pasvc")
        ));
        let mut lb = Lb::load(&pin).expect("load the Service load balancer");
        for p in &c.pods {
            lb.register_pod(&PathBuf::from(format!("/var/run/netns/{}", p.netns)))
                .expect("register the pod");
        }
        Services { lb, pin }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = Lb::unload(&self.pin);
        let _ = std::fs::remove_dir_all(&self.pin);
    }
}

/// Pin directories of programs loaded in the node namespace (the fast paths), removed
/// inside it on drop; declared after the [`Cluster`] so they go before its namespaces.
struct NodePins {
    node: String,
    pins: Vec<PathBuf>,
}

impl Drop for NodePins {
    fn drop(&mut self) {
        for pin in self.pins.clone() {
            if pin.exists() {
                let p = pin.clone();
                let _ = in_ns(&self.node, move || unicni_bpf::remove_all(&p));
                let _ = std::fs::remove_dir_all(&pin);
            }
        }
    }
}

fn pin_dir(what: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/bpf/{}",
        unicni_testkit::unique(&format!("unicni-test-pa{what}"))
    ))
}

/// `table`: `vip:port/proto` -> `backends` (address, port), all ready.
fn service(
    table: &mut ServiceTable,
    vip: &str,
    port: u16,
    protocol: Protocol,
    backends: &[(IpAddr, u16)],
) {
    table.insert(
        Frontend {
            ip: vip.parse().unwrap(),
            port,
            protocol,
        },
        ServiceEntry {
            service: format!("test/{vip}"),
            port_name: String::new(),
            backends: backends
                .iter()
                .map(|&(ip, port)| Backend {
                    ip,
                    port,
                    state: BackendState::Ready,
                })
                .collect(),
            affinity_timeout: None,
        },
    );
}

fn vip(s: &str) -> SocketAddr {
    SocketAddr::new(s.parse().unwrap(), 80)
}

fn name_server(ns: &str, name: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        let l = TcpListener::bind(("::", NAME_PORT)).expect("bind the name server");
        tx.send(()).unwrap();
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(format!("{name}\n").as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("name server up");
}

/// One TCP connection from namespace `ns` to `to`: the name of the pod that answered, or
/// why none did (a connection the policy drops times out).
fn who(ns: &str, to: SocketAddr) -> Result<String, String> {
    in_ns(ns, move || ask(to))
}

fn ask(to: SocketAddr) -> Result<String, String> {
    let mut c = TcpStream::connect_timeout(&to, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s)
        .map_err(|e| format!("connected, no name: {e}"))?;
    Ok(s.trim().to_string())
}

/// `n` connections at once from `ns` to `to`.
fn who_many(ns: &str, to: SocketAddr, n: usize) -> Vec<Result<String, String>> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let ns = ns.to_string();
            std::thread::spawn(move || {
                enter(&ns);
                ask(to)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn policy(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

fn apply(c: &Cluster, engine: &EngineRunner, file: &str, yaml: &str, policies: u64) {
    let before = engine.syncs();
    c.write(file, yaml);
    engine.wait_applied(before, policies);
}

fn probe(c: &Cluster, from: &str, to: &str, proto: Proto, port: u16, expect: bool) -> Probe {
    Probe {
        from: c.pod(from).netns.clone(),
        bind: None,
        to: to.parse().unwrap(),
        proto,
        port,
        expect,
        label: format!("{from} -> {to}:{port}"),
    }
}

fn engine_with_services(c: &Cluster) -> EngineRunner {
    c.start_engine_with_services(SERVICE_CIDRS.iter().map(|s| s.parse().unwrap()).collect())
}

/// Web (app=web, shop) admits only app=client from lab.
const WEB_FROM_CLIENT: &str = "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: lab}}, podSelector: {matchLabels: {app: client}}}]\n";

#[test]
fn clusterip_connections_are_judged_against_the_backend_pod() {
    if !require_root() {
        return;
    }
    let c = Cluster::new("svp");
    for p in ["web", "db", "client", "probe"] {
        name_server(&c.pod(p).netns.clone(), p);
    }
    let engine = engine_with_services(&c);
    let mut svc = Services::load(&c);
    let (web, db, probe_pod) = (c.pod("web"), c.pod("db"), c.pod("probe"));
    let mut t = ServiceTable::new();
    service(
        &mut t,
        "10.96.50.1",
        80,
        Protocol::Tcp,
        &[(web.v4, NAME_PORT)],
    );
    service(
        &mut t,
        "10.96.50.2",
        80,
        Protocol::Tcp,
        &[(probe_pod.v4, NAME_PORT)],
    );
    service(
        &mut t,
        "10.96.50.3",
        80,
        Protocol::Tcp,
        &[(db.v4, NAME_PORT)],
    );
    service(
        &mut t,
        "10.96.50.4",
        80,
        Protocol::Tcp,
        &[(web.v4, NAME_PORT), (probe_pod.v4, NAME_PORT)],
    );
    // Served by tests/common: UDP echo on 9000, TCP "hello" on 8080.
    service(&mut t, "10.96.50.1", 9000, Protocol::Udp, &[(web.v4, 9000)]);
    service(
        &mut t,
        "fd00:10:96::50:1",
        80,
        Protocol::Tcp,
        &[(web.v6, 8080)],
    );
    svc.lb.apply(&t).unwrap();
    let (svc_web, svc_probe, svc_db, svc_two) = (
        vip("10.96.50.1"),
        vip("10.96.50.2"),
        vip("10.96.50.3"),
        vip("10.96.50.4"),
    );
    let client_ns = c.pod("client").netns.clone();
    let probe_ns = probe_pod.netns.clone();
    let db_ns = db.netns.clone();

    // No policy: every ClusterIP answers, from its backend.
    assert_eq!(who(&client_ns, svc_web).as_deref(), Ok("web"));
    assert_eq!(who(&probe_ns, svc_web).as_deref(), Ok("web"));
    assert_eq!(who(&client_ns, svc_probe).as_deref(), Ok("probe"));
    assert_eq!(who(&client_ns, svc_db).as_deref(), Ok("db"));

    // Ingress on the backend: web admits app=client only.
    apply(
        &c,
        &engine,
        "web.yaml",
        &policy("web-from-client", "shop", WEB_FROM_CLIENT),
        1,
    );
    let s0 = c.stats();
    assert_eq!(
        who(&client_ns, svc_web).as_deref(),
        Ok("web"),
        "the labelled client reaches web through its ClusterIP"
    );
    let denied = who(&probe_ns, svc_web);
    assert!(
        denied.as_ref().is_err_and(|e| e.contains("timed out")),
        "an unlabelled pod through the ClusterIP is dropped: {denied:?}"
    );
    let direct = who(&probe_ns, SocketAddr::new(web.v4, NAME_PORT));
    assert!(direct.is_err(), "and directly, the same: {direct:?}");
    let wrong = check(
        &[
            probe(&c, "client", "10.96.50.1", Proto::Udp, 9000, true),
            probe(&c, "probe", "10.96.50.1", Proto::Udp, 9000, false),
            probe(&c, "client", "fd00:10:96::50:1", Proto::Tcp, 80, true),
            probe(&c, "probe", "fd00:10:96::50:1", Proto::Tcp, 80, false),
        ],
        TIMEOUT,
    );
    assert!(wrong.is_empty(), "UDP and IPv6 ClusterIPs: {wrong:#?}");

    // Two backends, one of them closed to this client: db gets probe or nothing, never
    // web; the labelled client gets both.
    let from_db = who_many(&db_ns, svc_two, 16);
    assert!(
        from_db
            .iter()
            .all(|r| r.as_deref().map_or(true, |n| n == "probe")),
        "db through the two-backend ClusterIP: {from_db:?}"
    );
    assert!(
        from_db.iter().any(|r| r.is_ok()) && from_db.iter().any(|r| r.is_err()),
        "16 random choices reach the allowed backend and are dropped at the other: {from_db:?}"
    );
    let from_client = who_many(&client_ns, svc_two, 16);
    let mut names: Vec<String> = from_client
        .iter()
        .map(|r| r.clone().expect("the client reaches both backends"))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names, ["probe", "web"]);

    let s1 = c.stats();
    assert!(
        s1.dropped_ingress > s0.dropped_ingress,
        "web's ingress rule dropped them: {s0:?} -> {s1:?}"
    );
    assert_eq!(
        s1.service, s0.service,
        "no packet was addressed to a Service address"
    );

    // Egress on the client: only web, on its own port (the backend's, not the Service's
    // 80). The ClusterIP of web works; those of probe and db are dropped.
    apply(
        &c,
        &engine,
        "client.yaml",
        &policy(
            "client-to-web",
            "lab",
            "  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {team: shop}}, podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: 7070}]\n",
        ),
        2,
    );
    let s2 = c.stats();
    assert_eq!(who(&client_ns, svc_web).as_deref(), Ok("web"));
    for to in [svc_probe, svc_db] {
        let r = who(&client_ns, to);
        assert!(
            r.as_ref().is_err_and(|e| e.contains("timed out")),
            "client -> {to} (egress denied): {r:?}"
        );
    }
    let from_client = who_many(&client_ns, svc_two, 16);
    assert!(
        from_client
            .iter()
            .all(|r| r.as_deref().map_or(true, |n| n == "web"))
            && from_client.iter().any(|r| r.is_ok()),
        "client through the two-backend ClusterIP gets web or nothing: {from_client:?}"
    );
    let s3 = c.stats();
    assert!(
        s3.dropped_egress >= s2.dropped_egress + 2,
        "the client's egress rule dropped them: {s2:?} -> {s3:?}"
    );
    assert_eq!(s3.service, s0.service, "still no Service address seen");
    let st = svc.lb.status().unwrap();
    assert!(
        st.stats.connects >= 40,
        "the connects went through the load balancer: {st:?}"
    );
}

fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let s = sysfs_net(ns, dev, "address");
    let mut out = [0u8; 6];
    for (o, b) in out.iter_mut().zip(s.trim().split(':')) {
        *o = u8::from_str_radix(b, 16).unwrap();
    }
    out
}

fn fp_stats(c: &Cluster, pin: &std::path::Path) -> unicni_bpf::Stats {
    let pin = pin.to_path_buf();
    c.in_node(move || FastPath::open(&pin).unwrap().stats().unwrap())
}

fn tw_stats(c: &Cluster, pin: &std::path::Path) -> (unicni_bpf::TerwayStats, usize) {
    let pin = pin.to_path_buf();
    c.in_node(move || {
        let tw = TerwayFastPath::open(&pin).unwrap();
        (tw.stats_v4().unwrap(), tw.host_flows(None))
    })
}

fn tw_stats6(c: &Cluster, pin: &std::path::Path) -> unicni_bpf::TerwayStats {
    let pin = pin.to_path_buf();
    c.in_node(move || TerwayFastPath::open(&pin).unwrap().stats_v6().unwrap())
}

#[test]
fn clusterip_traffic_takes_the_fast_paths_and_policy_still_judges_it() {
    if !require_root() {
        return;
    }
    let c = Cluster::new("svf");
    let pins = NodePins {
        node: c.node.clone(),
        pins: vec![pin_dir("fp"), pin_dir("tw")],
    };
    let (fp_pin, tw_pin) = (pins.pins[0].clone(), pins.pins[1].clone());
    for p in ["web", "db", "client", "probe"] {
        name_server(&c.pod(p).netns.clone(), p);
    }
    // The fast paths first, as the CNI plugin leaves them; the policy engine attaches
    // after them and must still come first.
    let node = c.node.clone();
    let ifx = |p: &PodNs| unicni_testkit::probe::ifindex(&node, &p.veth);
    let flannel: Vec<_> = ["web", "client"]
        .iter()
        .map(|n| {
            let p = c.pod(n);
            (p.v4, ifx(p), mac(&p.netns, "eth0"))
        })
        .collect();
    let uplink = unicni_testkit::probe::ifindex(&node, "next0");
    let terway: Vec<_> = ["db", "probe"]
        .iter()
        .flat_map(|n| {
            let p = c.pod(n);
            [p.v4, p.v6].map(|ip| TerwayPod {
                ip,
                veth_ifindex: ifx(p),
                eni_ifindex: uplink,
                pod_mac: mac(&p.netns, "eth0"),
                veth_mac: mac(&node, &p.veth),
            })
        })
        .collect();
    {
        let (fp_pin, tw_pin) = (fp_pin.clone(), tw_pin.clone());
        c.in_node(move || {
            let mut fp = FastPath::load_or_adopt(&fp_pin).expect("flannel fast path");
            for &(ip, ifindex, mac) in &flannel {
                let IpAddr::V4(ip) = ip else { unreachable!() };
                fp.attach(ifindex).unwrap();
                fp.upsert_endpoint(ip, ifindex, mac).unwrap();
            }
            let mut tw = TerwayFastPath::load_or_adopt(&tw_pin).expect("terway fast path");
            tw.set_host_cidrs(&[
                ("10.96.0.0".parse().unwrap(), 12),
                ("fd00:10:96::".parse().unwrap(), 112),
            ])
            .unwrap();
            for pod in &terway {
                tw.attach_pod(pod.veth_ifindex).unwrap();
                tw.upsert_pod(pod).unwrap();
            }
        });
    }
    let engine = engine_with_services(&c);
    assert_eq!(engine.status.attached_veths.load(Ordering::Relaxed), 4);
    let mut svc = Services::load(&c);
    let (web, client, db, probe_pod) = (c.pod("web"), c.pod("client"), c.pod("db"), c.pod("probe"));
    let mut t = ServiceTable::new();
    service(
        &mut t,
        "10.96.51.1",
        80,
        Protocol::Tcp,
        &[(web.v4, NAME_PORT)],
    );
    service(
        &mut t,
        "10.96.51.3",
        80,
        Protocol::Tcp,
        &[(db.v4, NAME_PORT)],
    );
    service(&mut t, "10.96.51.1", 9000, Protocol::Udp, &[(web.v4, 9000)]);
    service(&mut t, "10.96.51.3", 9000, Protocol::Udp, &[(db.v4, 9000)]);
    service(
        &mut t,
        "fd00:10:96::51:3",
        80,
        Protocol::Tcp,
        &[(db.v6, NAME_PORT)],
    );
    svc.lb.apply(&t).unwrap();
    let (svc_web, svc_db) = (vip("10.96.51.1"), vip("10.96.51.3"));

    // flannel: web's port off the bridge, neighbours static: only the fast path can carry
    // client -> ClusterIP -> web.
    static_neigh(
        &client.netns,
        &web.v4.to_string(),
        &sysfs_net(&web.netns, "eth0", "address"),
        "eth0",
    );
    static_neigh(
        &web.netns,
        &client.v4.to_string(),
        &sysfs_net(&client.netns, "eth0", "address"),
        "eth0",
    );
    ip_n(&c.node, &format!("link set {} nomaster", web.veth));
    let f0 = fp_stats(&c, &fp_pin);
    for _ in 0..5 {
        assert_eq!(
            who(&client.netns, svc_web).as_deref(),
            Ok("web"),
            "client -> ClusterIP -> web with web's port off the bridge"
        );
    }
    let f1 = fp_stats(&c, &fp_pin);
    // A connection is at least SYN, ACK, FIN, ACK from the client and SYN-ACK, data,
    // FIN from web: 7 frames, each redirected.
    assert!(
        f1.redirected >= f0.redirected + 5 * 7,
        "the flannel fast path carried the Service flows: {f0:?} -> {f1:?}"
    );
    assert_eq!(
        f1.passed_host_flow, f0.passed_host_flow,
        "no Service flow is taken for one that went through the host: {f0:?} -> {f1:?}"
    );
    let wrong = check(
        &[probe(&c, "client", "10.96.51.1", Proto::Udp, 9000, true)],
        TIMEOUT,
    );
    assert!(
        wrong.is_empty(),
        "unconnected UDP through the ClusterIP with web's port off the bridge: {wrong:?}"
    );
    let f1u = fp_stats(&c, &fp_pin);
    assert!(
        f1u.redirected >= f1.redirected + 2 && f1u.passed_host_flow == f1.passed_host_flow,
        "the datagram and its answer were redirected: {f1:?} -> {f1u:?}"
    );
    ip_n(&c.node, &format!("link set {} master br0", web.veth));

    // terway: the node stops forwarding, so the routed path is gone: only the fast path can
    // carry probe -> ClusterIP -> db.
    ns_must(&c.node, "sysctl -qw net.ipv4.ip_forward=0");
    ns_must(&c.node, "sysctl -qw net.ipv6.conf.all.forwarding=0");
    let (w0, flows0) = tw_stats(&c, &tw_pin);
    let v0 = tw_stats6(&c, &tw_pin);
    let svc_db6 = vip("fd00:10:96::51:3");
    for _ in 0..5 {
        assert_eq!(
            who(&probe_pod.netns, svc_db).as_deref(),
            Ok("db"),
            "probe -> ClusterIP -> db with the node not forwarding"
        );
    }
    for _ in 0..3 {
        assert_eq!(
            who(&probe_pod.netns, svc_db6).as_deref(),
            Ok("db"),
            "probe -> IPv6 ClusterIP -> db with the node not forwarding"
        );
    }
    let wrong = check(
        &[probe(&c, "probe", "10.96.51.3", Proto::Udp, 9000, true)],
        TIMEOUT,
    );
    assert!(
        wrong.is_empty(),
        "unconnected UDP through the ClusterIP with the node not forwarding: {wrong:?}"
    );
    let (w1, flows1) = tw_stats(&c, &tw_pin);
    let v1 = tw_stats6(&c, &tw_pin);
    ns_must(&c.node, "sysctl -qw net.ipv4.ip_forward=1");
    ns_must(&c.node, "sysctl -qw net.ipv6.conf.all.forwarding=1");
    assert!(
        v1.out_local >= v0.out_local + 3 * 7
            && (v1.out_pass_host_dst, v1.out_pass_host_flow)
                == (v0.out_pass_host_dst, v0.out_pass_host_flow),
        "the terway fast path carried the IPv6 Service flows pod to pod: {v0:?} -> {v1:?}"
    );
    assert!(
        w1.out_local >= w0.out_local + 5 * 7 + 2,
        "the terway fast path carried the Service flows pod to pod: {w0:?} -> {w1:?}"
    );
    assert_eq!(
        (w1.out_pass_host_dst, w1.out_pass_host_flow),
        (w0.out_pass_host_dst, w0.out_pass_host_flow),
        "nothing went to the Service CIDR or took the host path: {w0:?} -> {w1:?}"
    );
    assert_eq!(
        (flows0, flows1),
        (0, 0),
        "no flow recorded as going through the host"
    );

    // The contrast: the same flows DNATed by the node, as kube-proxy does (no frontend for
    // these addresses, so the load balancer leaves the connects alone). Both fast paths
    // recognise them as flows that went through the host and leave them to it.
    let rules = [
        "nft add table ip ucsvckp".to_string(),
        "nft add chain ip ucsvckp pre { type nat hook prerouting priority -100 ; policy accept ; }"
            .to_string(),
        format!(
            "nft add rule ip ucsvckp pre ip daddr 10.96.60.1 tcp dport 80 dnat to {}:{NAME_PORT}",
            web.v4
        ),
        format!(
            "nft add rule ip ucsvckp pre ip daddr 10.96.60.3 tcp dport 80 dnat to {}:{NAME_PORT}",
            db.v4
        ),
    ];
    for r in &rules {
        ns_must(&c.node, r);
    }
    let (f4, (w4, _), q0) = (fp_stats(&c, &fp_pin), tw_stats(&c, &tw_pin), c.stats());
    let dnat_web = who(&client.netns, vip("10.96.60.1"));
    let dnat_db = who(&probe_pod.netns, vip("10.96.60.3"));
    let (f5, (w5, flows5), q1) = (fp_stats(&c, &fp_pin), tw_stats(&c, &tw_pin), c.stats());
    assert_eq!(dnat_web.as_deref(), Ok("web"), "host DNAT to web");
    assert_eq!(dnat_db.as_deref(), Ok("db"), "host DNAT to db");
    assert!(
        f5.passed_host_flow > f4.passed_host_flow,
        "flannel leaves web's replies to a host-DNATed flow to the bridge: {f4:?} -> {f5:?}"
    );
    assert!(
        w5.out_pass_host_dst > w4.out_pass_host_dst && flows5 > 0,
        "terway sends a Service address to the host and records the flow: {w4:?} -> {w5:?}, {flows5} flows"
    );
    assert!(
        q1.service > q0.service,
        "the policy saw these packets addressed to a Service address: {q0:?} -> {q1:?}"
    );
    ns_must(&c.node, "nft delete table ip ucsvckp");

    // The policy still judges the backend on the fast path: web admits app=client only,
    // db admits app=client only.
    apply(
        &c,
        &engine,
        "web.yaml",
        &policy("web-from-client", "shop", WEB_FROM_CLIENT),
        1,
    );
    apply(
        &c,
        &engine,
        "db.yaml",
        &policy(
            "db-from-client",
            "shop",
            "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: lab}}, podSelector: {matchLabels: {app: client}}}]\n",
        ),
        2,
    );
    let p0 = c.stats();
    let (f2, (w2, _)) = (fp_stats(&c, &fp_pin), tw_stats(&c, &tw_pin));
    assert_eq!(who(&client.netns, svc_web).as_deref(), Ok("web"));
    for (from, to) in [(&db.netns, svc_web), (&probe_pod.netns, svc_db)] {
        let r = who(from, to);
        assert!(
            r.as_ref().is_err_and(|e| e.contains("timed out")),
            "{from} -> {to}: dropped by the backend's ingress rule: {r:?}"
        );
    }
    let (f3, (w3, _)) = (fp_stats(&c, &fp_pin), tw_stats(&c, &tw_pin));
    let p1 = c.stats();
    assert!(
        p1.dropped_ingress >= p0.dropped_ingress + 2,
        "{p0:?} -> {p1:?}"
    );
    assert!(
        f3.redirected >= f2.redirected + 7,
        "the allowed flow still takes the fast path: {f2:?} -> {f3:?}"
    );
    assert_eq!(
        w3.out_local, w2.out_local,
        "the dropped probe -> db flow never reached the terway fast path: {w2:?} -> {w3:?}"
    );
    assert_eq!(p1.service, p0.service, "no Service address seen");
}
