//! The benchmark's kube-proxy peer does the work (root): the generated rules load with
//! iptables-restore (legacy and nft), a connection from a pod to a ClusterIP is DNATed to
//! its endpoints (both endpoints chosen over a few dozen connections: the probability
//! jumps work; the endpoint sees the pod's own address), the node's own connection to the
//! ClusterIP works too (OUTPUT), and removing the rules leaves nothing behind and the
//! ClusterIP unreachable.
//!
//! Topology, all in namespaces of this test: client (10.250.1.2) -- node (router, the
//! rules) -- server (10.250.2.2 and 10.250.2.3, one listener answering with the address a
//! connection reached).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;
use unicni_lab::kubeproxy::{self, Iptables, ServicePort};
use unicni_testkit::{in_netns, require_root, unique_ifname, Netns};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 7, 200);
const ENDPOINTS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 250, 2, 2), Ipv4Addr::new(10, 250, 2, 3)];
const PORT: u16 = 8080;

fn must(ns: &Netns, args: &[&str]) {
    let out = ns.exec(args);
    assert!(
        out.status.success(),
        "{} in {}: {}",
        args.join(" "),
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn veth(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str) {
    let (x, y) = (unique_ifname("ukpa"), unique_ifname("ukpb"));
    must(
        a,
        &[
            "ip", "link", "add", &x, "type", "veth", "peer", "name", &y, "netns", &b.name,
        ],
    );
    must(a, &["ip", "addr", "add", a_ip, "dev", &x]);
    must(a, &["ip", "link", "set", &x, "up"]);
    must(b, &["ip", "addr", "add", b_ip, "dev", &y]);
    must(b, &["ip", "link", "set", &y, "up"]);
}

struct Topology {
    client: Netns,
    node: Netns,
    _server: Netns,
}

fn topology() -> Topology {
    let client = Netns::with_lo_up("ukpc");
    let node = Netns::with_lo_up("ukpn");
    let server = Netns::with_lo_up("ukps");
    veth(&node, "10.250.1.1/24", &client, "10.250.1.2/24");
    veth(&node, "10.250.2.1/24", &server, "10.250.2.2/24");
    let dev = server.links().into_iter().find(|l| l != "lo").unwrap();
    must(
        &server,
        &["ip", "addr", "add", "10.250.2.3/24", "dev", &dev],
    );
    must(
        &client,
        &["ip", "route", "add", "default", "via", "10.250.1.1"],
    );
    must(
        &server,
        &["ip", "route", "add", "default", "via", "10.250.2.1"],
    );
    must(&node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // A node has a default route: the OUTPUT chain's DNAT comes after the route lookup.
    // (Through the client, which does not forward: without the rules the ClusterIP
    // stays unreachable.)
    must(
        &node,
        &["ip", "route", "add", "default", "via", "10.250.1.2"],
    );
    // One listener for both endpoints: it answers with the address the connection reached
    // and the peer it saw.
    let listener = in_netns(&server.name, || {
        TcpListener::bind(("0.0.0.0", PORT)).unwrap()
    });
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { continue };
            let mut b = [0u8; 1];
            if c.read_exact(&mut b).is_ok() {
                let reply = format!(
                    "{} {}",
                    c.local_addr().unwrap().ip(),
                    c.peer_addr().unwrap().ip()
                );
                let _ = c.write_all(reply.as_bytes());
            }
        }
    });
    Topology {
        client,
        node,
        _server: server,
    }
}

/// 50 decoy Services ahead of the target in KUBE-SERVICES, the target with both endpoints.
fn services() -> Vec<ServicePort> {
    let mut v: Vec<ServicePort> = (0..50u8)
        .map(|i| ServicePort {
            name: format!("bench/decoy-{i}:http"),
            cluster_ip: Ipv4Addr::new(10, 96, 0, i + 1),
            port: 80,
            endpoints: vec![
                SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, i + 1), 80),
                SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, i + 101), 80),
            ],
        })
        .collect();
    v.push(ServicePort {
        name: "shop/web:http".into(),
        cluster_ip: CLUSTER_IP,
        port: 80,
        endpoints: ENDPOINTS
            .iter()
            .map(|a| SocketAddrV4::new(*a, PORT))
            .collect(),
    });
    v
}

/// One request to the ClusterIP from namespace `ns`: (endpoint reached, source it saw).
fn request(ns: &str) -> std::io::Result<(String, String)> {
    in_netns(ns, || {
        let to = SocketAddr::from((CLUSTER_IP, 80));
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.write_all(b"x")?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        let (a, b) = s.split_once(' ').unwrap_or_default();
        Ok((a.to_string(), b.to_string()))
    })
}

fn reaches_endpoints_through_the_rules(ipt: Iptables) {
    if !require_root() {
        return;
    }
    let t = topology();
    assert!(request(&t.client.name).is_err(), "no rules yet, no Service");
    kubeproxy::load(ipt, &t.node.name, &services(), "10.250.0.0/16").unwrap();
    assert!(kubeproxy::loaded(ipt, &t.node.name).unwrap());
    let save = t.node.exec(&[&format!("iptables-{}-save", ipt.as_str())]);
    let save = String::from_utf8_lossy(&save.stdout);
    assert_eq!(
        save.lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .count(),
        52,
        "51 Services and the nodeports rule:\n{save}"
    );
    let mut reached = BTreeSet::new();
    for _ in 0..40 {
        let (endpoint, source) = request(&t.client.name).unwrap();
        assert_eq!(
            source, "10.250.1.2",
            "the pod's own address, not masqueraded"
        );
        reached.insert(endpoint);
    }
    let want: BTreeSet<String> = ENDPOINTS.iter().map(|a| a.to_string()).collect();
    // Each connection picks either endpoint with probability 1/2: all 40 on one side
    // happens once in 2^39 runs.
    assert_eq!(reached, want, "both endpoints chosen");
    let (endpoint, _) = request(&t.node.name).expect("the node's own connection (OUTPUT)");
    assert!(want.contains(&endpoint), "{endpoint}");
    // Loading again replaces the rules (no duplicate jumps).
    kubeproxy::load(ipt, &t.node.name, &services()[45..], "10.250.0.0/16").unwrap();
    let save = t.node.exec(&[&format!("iptables-{}-save", ipt.as_str())]);
    let save = String::from_utf8_lossy(&save.stdout);
    assert_eq!(save.matches("-j KUBE-SERVICES").count(), 4, "{save}");
    assert_eq!(
        save.lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .count(),
        7,
        "{save}"
    );
    assert!(request(&t.client.name).is_ok());
    kubeproxy::unload(ipt, &t.node.name).unwrap();
    assert!(!kubeproxy::loaded(ipt, &t.node.name).unwrap());
    let save = t.node.exec(&[&format!("iptables-{}-save", ipt.as_str())]);
    assert!(
        !String::from_utf8_lossy(&save.stdout).contains("KUBE-"),
        "{}",
        String::from_utf8_lossy(&save.stdout)
    );
    assert!(request(&t.client.name).is_err(), "rules gone, Service gone");
}

#[test]
fn legacy_rules_take_a_pod_to_both_endpoints_and_go_away() {
    reaches_endpoints_through_the_rules(Iptables::Legacy);
}

#[test]
fn nft_rules_take_a_pod_to_both_endpoints_and_go_away() {
    reaches_endpoints_through_the_rules(Iptables::Nft);
}
