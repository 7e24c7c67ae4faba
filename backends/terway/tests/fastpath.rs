//! Root-only tests of the terway eBPF fast path (`terway.datapath = "ebpf"`) with the real
//! shared-ENI datapath: a "node" namespace, a "VPC" namespace behind a veth whose node end
//! plays the ENI (as in tests/datapath.rs), pods in their own namespaces, and the fast path
//! loaded and pinned in a pin directory of the test's own.
//!
//! "Skipped the host stack" is shown with nftables in the node: a forward-hook rule that
//! counts and drops every packet from or to the pods. Forwarded (routed) traffic dies there;
//! fast-path traffic never meets it; the node's own traffic to its pods (output/input
//! hooks, not forward) is not affected either.

mod common;

use common::*;
use ipnet::IpNet;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};
use unicni_bpf::{TerwayFastPath, TerwayStats};
use unicni_terway::datapath;
use unicni_terway::proto::{EniInfo, PodMode, PodNetwork};

/// The nftables table of the node's forward drop.
const NFT: &str = "uctw";
/// A host beyond the vSwitch gateway.
const REMOTE: &str = "203.0.113.1";
const SERVICE_CIDR: &str = "10.96.0.0/12";
const SERVICE_IP: &str = "10.96.0.10";

const SERVER: &str = "import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(('0.0.0.0',int(sys.argv[1]))); s.listen(64)
while True:
    c,a=s.accept(); d=c.recv(100); c.sendall(d+b' '+a[0].encode()); c.close()";

const CLIENT: &str = "import socket,sys
c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2); c.sendall(b'hi')
print(c.recv(100).decode())";

/// A background process, killed on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What only these tests ask of a namespace.
trait NsExt {
    /// Pings until one answer comes back or 5 s pass.
    fn ping(&self, target: &str) -> bool;
    /// A TCP request to `host:port` through the echo server; its answer names the
    /// address the server saw the connection from.
    fn tcp(&self, host: &str, port: u16) -> Option<String>;
}

impl NsExt for Ns {
    fn ping(&self, target: &str) -> bool {
        self.ping_within(target, None, 5)
    }

    fn tcp(&self, host: &str, port: u16) -> Option<String> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.exec(&["python3", "-c", CLIENT, host, &port.to_string()]);
            if out.status.success() {
                return Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

trait LabExt {
    fn stats(&self) -> TerwayStats;
}

impl LabExt for Lab {
    fn stats(&self) -> TerwayStats {
        let pin = self.pin.clone();
        self.on_node(|| async move { TerwayFastPath::open(&pin).unwrap().stats().unwrap() })
    }
}

fn pod_network(ipv4: &str, eni: EniInfo, fast_path: Option<&PathBuf>) -> PodNetwork {
    PodNetwork {
        mode: PodMode::Shared,
        ipv4: Some(ipv4.parse().unwrap()),
        ipv6: None,
        eni,
        node_ips: vec![format!("{NODE_IP}/32").parse::<IpNet>().unwrap()],
        service_cidrs: vec![SERVICE_CIDR.parse().unwrap()],
        mtu: 1500,
        fast_path: fast_path.map(|p| p.display().to_string()),
        policy: None,
    }
}

#[test]
fn fast_path_skips_the_host_stack_both_ways_and_leaves_node_traffic_to_it() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("tf", &[REMOTE]);
    let fast_pod = Ns::new("tfp");
    let routed_pod = Ns::new("tfr");
    let (fast_ip, routed_ip) = ("192.168.252.10", "192.168.252.11");
    lab.vpc_knows(fast_ip);
    lab.vpc_knows(routed_ip);
    let fast_att = attachment(&fast_pod);
    let routed_att = attachment(&routed_pod);
    let pin = lab.pin.clone();
    let (eni, fast_net) = lab.on_node(|| async {
        let (eni, _) = agent_prepares_fast_path(&pin).await;
        let net = pod_network(fast_ip, eni.clone(), Some(&pin));
        datapath::setup(&fast_att, &net).await.unwrap();
        datapath::check(&fast_att, &net).await.unwrap();
        // A pod of the same node on the routing datapath, for comparison.
        let routed = pod_network(routed_ip, eni.clone(), None);
        datapath::setup(&routed_att, &routed).await.unwrap();
        (eni, net)
    });
    let entries = {
        let pin = lab.pin.clone();
        lab.on_node(|| async move { TerwayFastPath::open(&pin).unwrap().pods().unwrap() })
    };
    assert_eq!(
        entries.len(),
        1,
        "only the fast pod has an entry: {entries:?}"
    );
    assert_eq!(entries[0].ip.to_string(), fast_ip);
    assert_eq!(
        Some(entries[0].eni_ifindex),
        unicni_terway::proto::eni_ifindex(eni.table)
    );

    // Before the forward rule both pods reach the VPC (the routed one by the host).
    assert!(routed_pod.ping(REMOTE), "routed pod -> VPC");
    assert!(fast_pod.ping(REMOTE), "fast pod -> VPC");

    lab.forward_drop(NFT);
    let s0 = lab.stats();
    assert!(
        fast_pod.ping(REMOTE),
        "fast pod -> VPC host past a forward drop"
    );
    assert!(lab.vpc.ping(fast_ip), "VPC -> fast pod past a forward drop");
    assert_eq!(
        lab.node.forward_counted(NFT),
        0,
        "the host's forward hook saw fast-path packets"
    );
    let s1 = lab.stats();
    assert!(
        s1.out_redirect + s1.out_redirect_neigh >= s0.out_redirect + s0.out_redirect_neigh + 2,
        "pod -> ENI redirects: {s0:?} -> {s1:?}"
    );
    assert!(
        s1.in_redirect >= s0.in_redirect + 2,
        "ENI -> pod redirects: {s0:?} -> {s1:?}"
    );

    // The same rule stops the routing datapath: it does go through the host.
    assert!(
        !routed_pod.ping_once(REMOTE),
        "routed pod passed a forward drop"
    );
    assert!(!lab.vpc.ping_once(routed_ip), "VPC reached the routed pod");
    assert!(lab.node.forward_counted(NFT) >= 2);

    // The node and its pods talk through the host (input/output hooks, not forward),
    // the fast path leaves that alone.
    let s2 = lab.stats();
    assert!(fast_pod.ping(NODE_IP), "fast pod -> node");
    assert!(lab.node.ping(fast_ip), "node -> fast pod");
    let s3 = lab.stats();
    assert!(s3.out_pass_host_dst > s2.out_pass_host_dst, "{s3:?}");
    // Pod to pod on the node: straight across with bpf_redirect_peer, no forward hook.
    // (The routed pod's replies are forwarded by the host: dropped. So only one way.)
    assert!(!fast_pod.ping_once(routed_ip));
    assert!(
        lab.stats().out_local == s3.out_local,
        "no entry for the routed pod"
    );

    // DEL: the entry and the programs go with the pod; nothing of it is left pinned.
    let pin = lab.pin.clone();
    let left = lab.on_node(|| async move {
        datapath::teardown(&fast_att, Some(&fast_net))
            .await
            .unwrap();
        datapath::teardown(&fast_att, Some(&fast_net))
            .await
            .unwrap(); // repeated DEL
        datapath::teardown(&routed_att, None).await.unwrap();
        let fp = TerwayFastPath::open(&pin).unwrap();
        (
            fp.pods().unwrap(),
            fp.attachments().unwrap().len(),
            fp.host_flows(Some(fast_ip.parse().unwrap())),
        )
    });
    assert!(left.0.is_empty(), "{:?}", left.0);
    assert_eq!(left.1, 1, "only the ENI keeps its program");
    assert_eq!(left.2, 0, "the pod's host flows are forgotten");
    let links: Vec<String> = std::fs::read_dir(lab.pin.join("links"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(links[0].starts_with("tw_ingress_"), "{links:?}");
}

#[test]
fn pods_of_one_node_reach_each_other_with_redirect_peer() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("tf", &[REMOTE]);
    let pods = [Ns::new("tfa"), Ns::new("tfb")];
    let ips = ["192.168.252.21", "192.168.252.22"];
    let atts = [attachment(&pods[0]), attachment(&pods[1])];
    let pin = lab.pin.clone();
    lab.on_node(|| async {
        let (eni, _) = agent_prepares_fast_path(&pin).await;
        for (att, ip) in atts.iter().zip(ips) {
            datapath::setup(att, &pod_network(ip, eni.clone(), Some(&pin)))
                .await
                .unwrap();
        }
    });
    lab.forward_drop(NFT);
    let s0 = lab.stats();
    assert!(pods[0].ping(ips[1]), "pod -> pod on one node");
    assert!(pods[1].ping(ips[0]), "and back");
    assert_eq!(lab.node.forward_counted(NFT), 0);
    let s1 = lab.stats();
    assert!(s1.out_local >= s0.out_local + 4, "{s0:?} -> {s1:?}");
    // TTL - 1, as a routed hop would: 64 from a Linux sender arrives as 63.
    let out = pods[0].exec(&["ping", "-c", "1", "-W", "1", ips[1]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ttl=63"), "{text}");
}

#[test]
fn service_and_nodeport_flows_keep_the_host_path_so_nat_is_undone() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("tf", &[REMOTE]);
    let pod = Ns::new("tfs");
    let pod_ip = "192.168.252.30";
    lab.vpc_knows(pod_ip);
    lab.vpc_knows(NODE_IP);
    let att = attachment(&pod);
    let pin = lab.pin.clone();
    lab.on_node(|| async {
        let (eni, _) = agent_prepares_fast_path(&pin).await;
        datapath::setup(&att, &pod_network(pod_ip, eni, Some(&pin)))
            .await
            .unwrap();
    });
    // kube-proxy's part, reduced to two DNAT rules: a ClusterIP whose backend is a VPC
    // host, and a NodePort whose backend is the pod.
    lab.node.nft(&format!(
        "add table ip ucsvc; \
         add chain ip ucsvc pre {{ type nat hook prerouting priority -100; }}; \
         add rule ip ucsvc pre ip daddr {SERVICE_IP} tcp dport 80 dnat to {REMOTE}:8080; \
         add rule ip ucsvc pre ip daddr {NODE_IP} tcp dport 30080 dnat to {pod_ip}:8080"
    ));
    let _vpc_server = Bg(lab.vpc.spawn(&["python3", "-c", SERVER, "8080"]));
    let _pod_server = Bg(pod.spawn(&["python3", "-c", SERVER, "8080"]));

    // Direct: fast both ways; the VPC host sees the pod's own address.
    let s0 = lab.stats();
    assert_eq!(
        pod.tcp(REMOTE, 8080).as_deref(),
        Some(format!("hi {pod_ip}").as_str()),
        "pod -> VPC host"
    );
    let s1 = lab.stats();
    assert!(s1.in_redirect > s0.in_redirect, "{s0:?} -> {s1:?}");

    // ClusterIP: the request goes to the host (DNAT), and the backend's replies, which
    // come from an address the pod never addressed, must too (un-DNAT).
    assert_eq!(
        pod.tcp(SERVICE_IP, 80).as_deref(),
        Some(format!("hi {pod_ip}").as_str()),
        "pod -> Service -> VPC backend"
    );
    let s2 = lab.stats();
    assert!(s2.out_pass_host_dst > s1.out_pass_host_dst, "{s2:?}");
    assert!(s2.in_pass_host_flow > s1.in_pass_host_flow, "{s2:?}");

    // NodePort: the host DNATs to the pod; the pod's replies must go back through the
    // host to get the node's address as their source again.
    let answer = lab.vpc.tcp(NODE_IP, 30080);
    assert!(
        answer.as_deref().is_some_and(|a| a.starts_with("hi ")),
        "VPC -> NodePort -> pod: {answer:?}"
    );
    let s3 = lab.stats();
    assert!(s3.out_pass_host_flow > s2.out_pass_host_flow, "{s3:?}");
    let pin = lab.pin.clone();
    let flows = lab.on_node(|| async move {
        TerwayFastPath::open(&pin)
            .unwrap()
            .host_flows(Some(pod_ip.parse().unwrap()))
    });
    assert!(
        flows >= 2,
        "a Service wildcard and a NodePort flow: {flows}"
    );

    // Direct traffic is still short-cut afterwards.
    assert!(pod.tcp(REMOTE, 8080).is_some());
    assert!(lab.stats().in_redirect > s3.in_redirect);
}

#[test]
fn pods_added_while_the_fast_path_is_not_loaded_still_work() {
    if !require_root() {
        return;
    }
    // The agent said "ebpf" but the pins are gone (uninstalled under a running node): the
    // ADD succeeds on the routing datapath; CHECK says what is missing.
    let lab = Lab::new("tf", &[REMOTE]);
    let pod = Ns::new("tfm");
    let pod_ip = "192.168.252.40";
    lab.vpc_knows(pod_ip);
    let att = attachment(&pod);
    let pin = lab.pin.clone();
    let check = lab.on_node(|| async {
        let (eni, _) = agent_prepares_fast_path(&pin).await;
        unicni_bpf::remove_all(&pin).unwrap();
        let net = pod_network(pod_ip, eni, Some(&pin));
        datapath::setup(&att, &net).await.unwrap();
        let check = datapath::check(&att, &net).await;
        datapath::teardown(&att, Some(&net)).await.unwrap();
        datapath::setup(&att, &net).await.unwrap();
        check
    });
    match check {
        Err(unicni_core::Error::CheckFailed(m)) => assert!(m.contains("eBPF fast path"), "{m}"),
        other => panic!("CHECK without the fast path: {other:?}"),
    }
    assert!(pod.ping(REMOTE), "routing still carries the pod");
}
