//! Root-only: the terway fast path's lifecycle (load, pins, attach with tcx and clsact,
//! pod entries of both families, host-path CIDRs, reconcile, upgrade in place,
//! remove_all), and IPv6 forwarding between two nodes' pods through a VPC router (real
//! namespaces). IPv4 forwarding is tested with the real terway datapath in
//! backends/terway/tests/fastpath.rs.

mod common;

use aya::programs::{SchedClassifier, TcAttachType};
use common::{in_netns, ip_n, mac_str, ns_must, ns_run, require_root, run, Netns};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use unicni_bpf::{AttachMode, Attachment, TerwayFastPath, TerwayPod};

/// A node namespace with two "pod veths" and one "ENI" (dummies: attaching needs no
/// traffic), and a pin directory of its own; both removed on drop.
struct Node {
    ns: String,
    pin: PathBuf,
    /// Deleted after `Drop for Node` has unpinned inside it.
    _netns: Netns,
}

impl Node {
    fn new(tag: &str) -> Node {
        let netns = Netns::with_prefix(&format!("uctw-{tag}-"));
        let n = Node {
            ns: netns.name.clone(),
            pin: PathBuf::from(format!(
                "/sys/fs/bpf/unicni-test-tw-{tag}-{}",
                std::process::id()
            )),
            _netns: netns,
        };
        // veth pairs (the kernel may have no dummy driver); the peers stay in the node.
        for (dev, mac) in [
            ("twa", "02:74:77:00:00:0a"),
            ("twb", "02:74:77:00:00:0b"),
            ("eni1", "02:e1:00:00:00:01"),
        ] {
            let peer = format!("{dev}p");
            ip_n(
                &n.ns,
                &format!("link add {dev} address {mac} type veth peer name {peer}"),
            );
            ip_n(&n.ns, &format!("link set {dev} up"));
            ip_n(&n.ns, &format!("link set {peer} up"));
        }
        n
    }

    fn ifindex(&self, dev: &str) -> u32 {
        ns_must(&self.ns, &format!("cat /sys/class/net/{dev}/ifindex"))
            .trim()
            .parse()
            .unwrap()
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce(PathBuf) -> T + Send + 'static) -> T {
        let pin = self.pin.clone();
        in_netns(&self.ns, move || f(pin))
    }

    /// The ENI's ingress filters, asserting that exactly one of them is the ENI program.
    fn eni_filter(&self, dev: &str) -> String {
        let filters = self.tc(dev, "ingress");
        let ours = filters.lines().filter(|l| l.contains("uc_tw_eni")).count();
        assert_eq!(ours, 1, "one uc_tw_eni filter on {dev}: {filters}");
        filters
    }

    fn tc(&self, dev: &str, dir: &str) -> String {
        String::from_utf8_lossy(
            &ns_run(&self.ns, &format!("tc filter show dev {dev} {dir}")).stdout,
        )
        .into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.pin.exists() {
            let _ = self.run(|pin| unicni_bpf::remove_all(&pin));
            let _ = std::fs::remove_dir_all(&self.pin);
        }
    }
}

fn pod(ip: &str, veth: u32, eni: u32, last: u8) -> TerwayPod {
    TerwayPod {
        ip: ip.parse().unwrap(),
        veth_ifindex: veth,
        eni_ifindex: eni,
        pod_mac: [0x02, 0x70, 0, 0, 0, last],
        veth_mac: [0x02, 0x74, 0x77, 0, 0, last],
    }
}

#[test]
fn terway_fast_path_loads_pins_attaches_and_is_removed_without_a_trace() {
    if !require_root() {
        return;
    }
    let n = Node::new("life");
    let (a, b, eni) = (n.ifindex("twa"), n.ifindex("twb"), n.ifindex("eni1"));
    let kinds = n.run(move |pin| {
        let mut fp = TerwayFastPath::load_or_adopt(&pin).expect("verifier accepts terway.c");
        let k = (
            fp.attach_pod(a).unwrap(),
            fp.attach_eni(eni).unwrap(),
            fp.attach_pod(a).unwrap(), // idempotent
        );
        assert!(fp.tcx_attached(a, false).unwrap());
        assert!(fp.tcx_attached(eni, true).unwrap());
        assert!(
            !fp.tcx_attached(eni, false).unwrap(),
            "no pod programs on the ENI"
        );
        fp.set_host_cidrs(&[
            ("10.96.0.0".parse().unwrap(), 12),
            ("172.31.0.10".parse().unwrap(), 32),
            // Host bits are cut.
            ("192.168.7.9".parse().unwrap(), 24),
            ("fd00:96::".parse().unwrap(), 108),
            ("fd00:1::5:1".parse().unwrap(), 64),
        ])
        .unwrap();
        assert_eq!(
            fp.host_cidrs().unwrap(),
            vec![
                (IpAddr::V4("10.96.0.0".parse::<Ipv4Addr>().unwrap()), 12),
                ("172.31.0.10".parse().unwrap(), 32),
                ("192.168.7.0".parse().unwrap(), 24),
                ("fd00:1::".parse().unwrap(), 64),
                ("fd00:96::".parse().unwrap(), 108),
            ]
        );
        // Replacing the set removes what is no longer wanted.
        fp.set_host_cidrs(&[("10.96.0.0".parse().unwrap(), 12)])
            .unwrap();
        assert_eq!(fp.host_cidrs().unwrap().len(), 1);

        // The pod entry's veth MAC must be the veth's for reconcile to keep it.
        let mut pa = pod("192.168.252.10", a, eni, 0x0a);
        pa.veth_mac = [0x02, 0x74, 0x77, 0, 0, 0x0a];
        fp.upsert_pod(&pa).unwrap();
        // An entry for an index that is now another interface (MAC differs): stale.
        fp.upsert_pod(&pod("192.168.252.11", b, eni, 0x33)).unwrap();
        // An entry for a veth that is gone.
        fp.upsert_pod(&pod("192.168.252.12", 999_999, eni, 0x0c))
            .unwrap();
        assert!(fp.upsert_pod(&pod("192.168.252.13", 0, eni, 1)).is_err());
        // The same pod's IPv6 address: an entry of its own, same interfaces.
        let mut pa6 = pod("fd00:252::10", a, eni, 0x0a);
        pa6.veth_mac = pa.veth_mac;
        fp.upsert_pod(&pa6).unwrap();
        fp.upsert_pod(&pod("fd00:252::11", 999_999, eni, 0x0c))
            .unwrap();
        assert_eq!(fp.pods().unwrap().len(), 5);
        let r = fp.reconcile().unwrap();
        assert_eq!(r.removed_endpoints, 3, "{r:?}");
        assert_eq!(fp.pods().unwrap(), vec![pa, pa6]);
        fp.remove_pod(pa.ip).unwrap();
        fp.remove_pod(pa.ip).unwrap(); // DEL repeats
        assert_eq!(fp.pods().unwrap(), vec![pa6]);
        fp.upsert_pod(&pa).unwrap();
        assert_eq!(fp.remove_pods_on(a).unwrap(), 2, "both families");
        fp.upsert_pod(&pa).unwrap();
        k
    });
    assert_eq!(
        kinds,
        (Attachment::Tcx, Attachment::Tcx, Attachment::Tcx),
        "kernel 6.6+ has tcx"
    );
    for f in [
        "progs/uc_tw_pod",
        "progs/uc_tw_pod_eg",
        "progs/uc_tw_eni",
        "maps/tw_pods",
        "maps/tw_host_cidrs",
        "maps/tw_host_flows",
        "maps/tw_stats",
        "maps/tw_pods6",
        "maps/tw_host_cidrs6",
        "maps/tw_host_flows6",
        "maps/tw_stats6",
        "maps/tw_links",
        &format!("links/tw_ingress_{a}"),
        &format!("links/tw_egress_{a}"),
        &format!("links/tw_ingress_{eni}"),
    ] {
        assert!(n.pin.join(f).exists(), "{f} pinned");
    }
    assert!(!n.pin.join(format!("links/tw_egress_{eni}")).exists());

    // A restarted agent adopts everything: same program, entries kept, nothing re-attached.
    let (tag0, tag1, pods, atts) = n.run(move |pin| {
        let before = TerwayFastPath::open(&pin).unwrap().program_tag().unwrap();
        let fp = TerwayFastPath::load_or_adopt(&pin).unwrap();
        (
            before,
            fp.program_tag().unwrap(),
            fp.pods().unwrap().len(),
            fp.attachments().unwrap(),
        )
    });
    assert_eq!(tag0, tag1);
    assert_eq!(pods, 1);
    assert_eq!(
        atts,
        vec![(a, Attachment::Tcx, false), (eni, Attachment::Tcx, true)]
    );

    // The veth goes away (pod deleted without DEL): the next start forgets it.
    ip_n(&n.ns, "link del twa");
    let (pods, atts) = n.run(move |pin| {
        let fp = TerwayFastPath::load_or_adopt(&pin).unwrap();
        (fp.pods().unwrap(), fp.attachments().unwrap())
    });
    assert!(pods.is_empty(), "{pods:?}");
    assert_eq!(atts, vec![(eni, Attachment::Tcx, true)]);
    assert!(!n.pin.join(format!("links/tw_ingress_{a}")).exists());

    n.run(|pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(!n.pin.exists(), "remove_all leaves nothing pinned");
    let left = n.run(|_| tcx_programs("eni1", TcAttachType::Ingress));
    assert!(left.is_empty(), "{left:?}");
}

/// (name, tag) of the programs in the tcx chain of `dev` (current namespace).
fn tcx_programs(dev: &str, hook: TcAttachType) -> Vec<(String, u64)> {
    let (_, progs) = SchedClassifier::query_tcx(dev, hook).unwrap();
    progs
        .iter()
        .map(|p| (p.name_as_str().unwrap_or("").to_string(), p.tag()))
        .collect()
}

#[test]
fn terway_clsact_fallback_attaches_filters_that_remove_all_takes_away() {
    if !require_root() {
        return;
    }
    let n = Node::new("nl");
    let (a, eni) = (n.ifindex("twa"), n.ifindex("eni1"));
    let kinds = n.run(move |pin| {
        let mut fp = TerwayFastPath::load_or_adopt_with(&pin, AttachMode::Netlink).unwrap();
        (
            fp.attach_pod(a).unwrap(),
            fp.attach_eni(eni).unwrap(),
            fp.attach_eni(eni).unwrap(), // replaced in place
        )
    });
    assert_eq!(
        kinds,
        (
            Attachment::Netlink,
            Attachment::Netlink,
            Attachment::Netlink
        )
    );
    assert!(n.tc("twa", "ingress").contains("uc_tw_pod"));
    assert!(n.tc("twa", "egress").contains("uc_tw_pod_eg"));
    n.eni_filter("eni1");
    // Auto mode keeps an interface on the mechanism it already uses.
    let again = n.run(move |pin| TerwayFastPath::open(&pin).unwrap().attach_pod(a).unwrap());
    assert_eq!(again, Attachment::Netlink);
    // Detaching one interface leaves the other.
    n.run(move |pin| TerwayFastPath::open(&pin).unwrap().detach(a).unwrap());
    assert!(!n.tc("twa", "ingress").contains("uc_tw"));
    assert!(n.tc("eni1", "ingress").contains("uc_tw_eni"));
    n.run(|pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(!n.tc("eni1", "ingress").contains("uc_tw"), "filter removed");
    assert!(!n.pin.exists());
}

#[test]
fn terway_upgrade_switches_tcx_and_clsact_attachments_in_place() {
    if !require_root() {
        return;
    }
    let n = Node::new("up");
    let (a, eni) = (n.ifindex("twa"), n.ifindex("eni1"));
    let old = n.run(move |pin| {
        let mut fp = TerwayFastPath::load_or_adopt_object(
            &pin,
            AttachMode::Auto,
            unicni_bpf::testing::TERWAY_V3,
        )
        .unwrap();
        fp.attach_pod(a).unwrap();
        let mut nl = TerwayFastPath::open_with(&pin, AttachMode::Netlink).unwrap();
        nl.attach_eni(eni).unwrap();
        fp.program_tag().unwrap()
    });
    let (new, atts) = n.run(move |pin| {
        let fp = TerwayFastPath::load_or_adopt(&pin).unwrap();
        (fp.program_tag().unwrap(), fp.attachments().unwrap())
    });
    assert_ne!(old, new, "a different build has a different tag");
    assert_eq!(
        atts,
        vec![
            (a, Attachment::Tcx, false),
            (eni, Attachment::Netlink, true)
        ]
    );
    // Both interfaces now run the new code.
    let (pod_in, pod_eg, eni_tcx) = n.run(move |_| {
        (
            tcx_programs("twa", TcAttachType::Ingress),
            tcx_programs("twa", TcAttachType::Egress),
            tcx_programs("eni1", TcAttachType::Ingress),
        )
    });
    assert_eq!(pod_in, vec![("uc_tw_pod".to_string(), new)]);
    assert_eq!(pod_eg.len(), 1);
    assert_eq!(pod_eg[0].0, "uc_tw_pod_eg");
    assert!(eni_tcx.is_empty(), "the ENI stays on clsact: {eni_tcx:?}");
    let eni_filters = n.eni_filter("eni1");
    let eni_tag = n.run(|pin| {
        SchedClassifier::from_pin(pin.join("progs/uc_tw_eni"))
            .unwrap()
            .info()
            .unwrap()
            .tag()
    });
    assert!(
        eni_filters.contains(&format!("tag {eni_tag:016x}")),
        "{eni_filters}"
    );
}

// ---------------------------------------------------------------------------------------
// IPv6 forwarding between two nodes
// ---------------------------------------------------------------------------------------

const GW6: &str = "fd00:10::1";
const POD6: [&str; 2] = ["fd00:10::a", "fd00:10::b"];
const ENI_MAC: [&str; 2] = ["02:e1:00:00:00:01", "02:e1:00:00:00:02"];
const POD_MAC: [[u8; 6]; 2] = [[0x02, 0x70, 0, 0, 0, 1], [0x02, 0x70, 0, 0, 0, 2]];
const VETH_MAC: [[u8; 6]; 2] = [[0x02, 0x74, 0x77, 0, 0, 1], [0x02, 0x74, 0x77, 0, 0, 2]];

/// Two nodes, each with one pod (veth `tw0` <-> the pod's `eth0`, the routing datapath's
/// routes and rules: /128 to the veth, rule 512 to the pod, rule 2048 from the pod to the
/// ENI's table) and one "ENI" (`eni`, a veth whose other end is in the VPC router's
/// namespace). The router answers NDP for the gateway and knows each pod's address at its
/// ENI's MAC (as the VPC does). Everything removed on drop.
struct TwoNodes {
    vpc: String,
    nodes: [String; 2],
    pods: [String; 2],
    pins: [PathBuf; 2],
    /// Deleted after `Drop for TwoNodes` has unpinned inside the nodes.
    _namespaces: [Netns; 5],
}

fn sysctls(ns: &str) {
    for kv in [
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.all.forwarding=1",
    ] {
        ns_must(ns, &format!("sysctl -qw {kv}"));
    }
}

impl TwoNodes {
    fn new(tag: &str) -> TwoNodes {
        let ns = |role: &str| Netns::with_prefix(&format!("uctw6-{tag}-{role}-"));
        let namespaces = [ns("v"), ns("n1"), ns("n2"), ns("p1"), ns("p2")];
        let t = TwoNodes {
            vpc: namespaces[0].name.clone(),
            nodes: [namespaces[1].name.clone(), namespaces[2].name.clone()],
            pods: [namespaces[3].name.clone(), namespaces[4].name.clone()],
            _namespaces: namespaces,
            pins: [1, 2].map(|i| {
                PathBuf::from(format!(
                    "/sys/fs/bpf/unicni-test-tw6-{tag}-{i}-{}",
                    std::process::id()
                ))
            }),
        };
        for ns in [&t.vpc].into_iter().chain(&t.nodes).chain(&t.pods) {
            ip_n(ns, "link set lo up");
            sysctls(ns);
        }
        let v = t.vpc.as_str();
        for i in 0..2 {
            let (n, p) = (t.nodes[i].as_str(), t.pods[i].as_str());
            let vdev = format!("e{i}");
            ip_n(
                n,
                &format!(
                    "link add eni address {} type veth peer name {vdev} netns {v}",
                    ENI_MAC[i]
                ),
            );
            ip_n(n, "link set eni up");
            ip_n(v, &format!("link set {vdev} up"));
            ip_n(v, &format!("addr add {GW6}/128 dev {vdev}"));
            ip_n(v, &format!("-6 route add {} dev {vdev}", POD6[i]));
            ip_n(
                v,
                &format!(
                    "-6 neigh replace {} lladdr {} dev {vdev} nud permanent",
                    POD6[i], ENI_MAC[i]
                ),
            );
            ip_n(
                n,
                &format!(
                    "link add tw0 address {} type veth peer name eth0 address {} netns {p}",
                    mac_str(&VETH_MAC[i]),
                    mac_str(&POD_MAC[i])
                ),
            );
            ip_n(n, "link set tw0 up");
            ip_n(p, "link set eth0 up");
            ip_n(p, &format!("addr add {}/128 dev eth0 nodad", POD6[i]));
            ip_n(
                p,
                &format!(
                    "-6 neigh replace fe80::1 lladdr {} dev eth0 nud permanent",
                    mac_str(&VETH_MAC[i])
                ),
            );
            ip_n(p, "-6 route add default via fe80::1 dev eth0");
            ip_n(n, &format!("-6 route add {} dev tw0", POD6[i]));
            ip_n(
                n,
                &format!("-6 route add default via {GW6} dev eni onlink table 1100"),
            );
            ip_n(
                n,
                &format!("-6 rule add to {} lookup main pref 512", POD6[i]),
            );
            ip_n(
                n,
                &format!("-6 rule add from {} lookup 1100 pref 2048", POD6[i]),
            );
        }
        t
    }

    fn ifindex(&self, i: usize, dev: &str) -> u32 {
        ns_must(&self.nodes[i], &format!("cat /sys/class/net/{dev}/ifindex"))
            .trim()
            .parse()
            .unwrap()
    }

    fn on_node<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce(PathBuf) -> T + Send + 'static,
    ) -> T {
        let pin = self.pins[i].clone();
        in_netns(&self.nodes[i], move || f(pin))
    }

    fn stats6(&self, i: usize) -> unicni_bpf::TerwayStats {
        self.on_node(i, |pin| {
            TerwayFastPath::open(&pin).unwrap().stats_v6().unwrap()
        })
    }

    fn ping(&self, from: usize, to: &str, extra: &[&str]) -> bool {
        let mut args = vec![
            "ip",
            "netns",
            "exec",
            &self.pods[from],
            "ping",
            "-6",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-q",
        ];
        args.extend_from_slice(extra);
        args.push(to);
        run(&args).status.success()
    }
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        for i in 0..2 {
            if self.pins[i].exists() {
                let _ = self.on_node(i, |pin| unicni_bpf::remove_all(&pin));
                let _ = std::fs::remove_dir_all(&self.pins[i]);
            }
        }
    }
}

/// One TCP request/response from pod 0 to pod 1's IPv6 address.
fn tcp6_echo(t: &TwoNodes) -> Vec<u8> {
    let addr: SocketAddr = format!("[{}]:7007", POD6[1]).parse().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_ns = t.pods[1].clone();
    let server = std::thread::spawn(move || {
        in_netns(&server_ns, move || {
            let l = TcpListener::bind(addr).unwrap();
            ready_tx.send(()).unwrap();
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 5];
            c.read_exact(&mut b).unwrap();
            b.reverse();
            c.write_all(&b).unwrap();
        })
    });
    ready_rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let got = in_netns(&t.pods[0], move || {
        let mut c = TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        b.to_vec()
    });
    server.join().unwrap();
    got
}

#[test]
fn terway_ipv6_pod_to_pod_across_nodes_takes_the_fast_path_and_ndp_still_works() {
    if !require_root() {
        return;
    }
    let t = TwoNodes::new("x");
    // The routing datapath alone first: the topology is right.
    assert!(
        t.ping(0, POD6[1], &[]),
        "pod to pod over the routing datapath"
    );
    for i in 0..2 {
        let (veth, eni) = (t.ifindex(i, "tw0"), t.ifindex(i, "eni"));
        t.on_node(i, move |pin| {
            let mut fp = TerwayFastPath::load_or_adopt(&pin).unwrap();
            fp.set_host_cidrs(&[("fd00:96::".parse().unwrap(), 108)])
                .unwrap();
            fp.attach_eni(eni).unwrap();
            fp.attach_pod(veth).unwrap();
            fp.upsert_pod(&TerwayPod {
                ip: POD6[i].parse().unwrap(),
                veth_ifindex: veth,
                eni_ifindex: eni,
                pod_mac: POD_MAC[i],
                veth_mac: VETH_MAC[i],
            })
            .unwrap();
        });
    }
    // The neighbour entries the routing datapath made expire or not: forget them, so the
    // fast path has to go through bpf_redirect_neigh and NDP on the ENI once more.
    for n in &t.nodes {
        let _ = run(&["ip", "-n", n, "-6", "neigh", "flush", "dev", "eni"]);
    }
    let s0 = [t.stats6(0), t.stats6(1)];
    assert!(t.ping(0, POD6[1], &[]), "ping over the fast path");
    assert_eq!(tcp6_echo(&t), b"olleh".to_vec(), "TCP over the fast path");
    let s1 = [t.stats6(0), t.stats6(1)];
    for i in 0..2 {
        let out = |s: &unicni_bpf::TerwayStats| s.out_redirect + s.out_redirect_neigh;
        // Requests out of node 0 and into node 1, replies the other way.
        assert!(
            out(&s1[i]) >= out(&s0[i]) + 4,
            "node {i}: {:?} -> {:?}",
            s0[i],
            s1[i]
        );
        assert!(
            s1[i].in_redirect >= s0[i].in_redirect + 4,
            "node {i}: {:?} -> {:?}",
            s0[i],
            s1[i]
        );
    }
    // The gateway was resolved again: NDP on the ENI passed to the host (NA in, NS out).
    let neigh = ip_n(&t.nodes[0], "-6 neigh show dev eni");
    assert!(neigh.contains(GW6), "{neigh}");
    assert!(
        s1[0].out_redirect_neigh > s0[0].out_redirect_neigh,
        "the first packet after the flush resolved the gateway: {:?}",
        s1[0]
    );
    // Hop limit 1: not decremented to 0 by the fast path, the host answers (time exceeded).
    let before = t.stats6(0).out_pass_other;
    assert!(!t.ping(0, POD6[1], &["-t", "1"]));
    assert!(t.stats6(0).out_pass_other >= before + 3);
    // A destination of the host-path CIDRs keeps the host path (kube-proxy's Services):
    // the first packet by the CIDR, the next ones by the pod socket it remembered.
    let before = t.stats6(0);
    let _ = t.ping(0, "fd00:96::1", &[]);
    let after = t.stats6(0);
    assert!(
        after.out_pass_host_dst > before.out_pass_host_dst
            && after.out_pass_host_dst + after.out_pass_host_flow
                >= before.out_pass_host_dst + before.out_pass_host_flow + 3,
        "{before:?} -> {after:?}"
    );
    let flows = t.on_node(0, |pin| {
        TerwayFastPath::open(&pin).unwrap().host_flows(None)
    });
    assert!(flows >= 1, "the pod socket kept on the host path");
    // IPv4 counters saw no IPv6 redirect.
    let v4 = t.on_node(0, |pin| {
        TerwayFastPath::open(&pin).unwrap().stats_v4().unwrap()
    });
    assert_eq!(v4.redirected(), 0, "{v4:?}");
    // NDP between the host veth and the pod (link-local) works: the host knows the pod.
    let pod_ll = ip_n(&t.nodes[0], "-6 neigh show dev tw0");
    assert!(
        pod_ll.contains(POD6[0]),
        "the host resolved the pod: {pod_ll}"
    );
    // Removing the entries hands the pods back to the routing datapath.
    for (i, ip) in POD6.iter().enumerate() {
        let ip: IpAddr = ip.parse().unwrap();
        t.on_node(i, move |pin| {
            TerwayFastPath::open(&pin).unwrap().remove_pod(ip).unwrap()
        });
    }
    let s2 = t.stats6(1);
    assert!(t.ping(0, POD6[1], &[]), "the routing datapath again");
    assert_eq!(t.stats6(1).in_redirect, s2.in_redirect);
}
