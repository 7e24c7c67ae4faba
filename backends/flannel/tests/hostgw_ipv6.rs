//! host-gw's IPv6 next hop on a segment without global IPv6: the peer's link-local
//! address, which the kernel takes as a gateway where it refuses an IPv4 one for an IPv6
//! route. Two namespaces on one veth segment (root only).

use std::net::Ipv6Addr;
use std::time::Duration;
use unicni_flannel::hostgw::HostGw;
use unicni_flannel::peers::Peer;
use unicni_net::{NetNs, Netlink};
use unicni_testkit::{require_root, wait_until, Netns};

fn sh(ns: &Netns, args: &[&str]) -> String {
    let out = ns.exec(args);
    assert!(
        out.status.success(),
        "{args:?} in {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn link_local(ns: &Netns) -> Ipv6Addr {
    let out = sh(
        ns,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ],
    );
    let addr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .unwrap_or_else(|| panic!("no link-local address: {out}"));
    addr.split('/').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn ipv6_routes_go_via_the_peers_link_local_address() {
    if !require_root() {
        return;
    }
    let (a, b) = (Netns::with_lo_up("uhga"), Netns::with_lo_up("uhgb"));
    sh(
        &a,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name,
        ],
    );
    for (ns, v4, pod6) in [
        (&a, "192.168.77.1/24", "fd00:10:99:1::1/128"),
        (&b, "192.168.77.2/24", "fd00:10:99:2::1/128"),
    ] {
        sh(ns, &["ip", "addr", "add", v4, "dev", "eth0"]);
        sh(ns, &["ip", "link", "set", "eth0", "up"]);
        // A pod address of the node's IPv6 subnet, reachable on the node itself.
        sh(ns, &["ip", "-6", "addr", "add", pod6, "dev", "lo"]);
    }
    wait_until(
        "link-local addresses past duplicate address detection",
        Duration::from_secs(10),
        String::new,
        || {
            [&a, &b]
                .iter()
                .all(|ns| sh(ns, &["ip", "-6", "addr", "show", "tentative"]).is_empty())
        },
    );
    let (lla, llb) = (link_local(&a), link_local(&b));
    // The way back, as b's agent would program it.
    let back = lla.to_string();
    sh(
        &b,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:10:99:1::/64",
            "via",
            &back,
            "dev",
            "eth0",
        ],
    );

    let ns = NetNs::open(a.path_buf().as_path()).unwrap();
    let nl = Netlink::in_netns(&ns).unwrap();
    let index = nl.link("eth0").await.unwrap().unwrap().index;
    let hostgw = HostGw {
        underlay: index,
        underlay_name: "eth0".into(),
        dual: true,
    };
    let mut peer = Peer {
        node: "b".into(),
        subnet: "10.99.2.0/24".parse().unwrap(),
        public_ip: "192.168.77.2".parse().unwrap(),
        vtep_mac: None,
        ipv6_subnet: Some("fd00:10:99:2::/64".parse().unwrap()),
        public_ipv6: Some(llb),
    };
    let pass = hostgw
        .reconcile(&nl, std::slice::from_ref(&peer))
        .await
        .unwrap();
    assert!(
        pass.errors.is_empty() && pass.refused.is_empty(),
        "{pass:?}"
    );
    assert_eq!(pass.routes, 2);
    let routes = sh(&a, &["ip", "-6", "route", "show", "proto", "77"]);
    assert!(
        routes.contains(&format!("fd00:10:99:2::/64 via {llb} dev eth0")),
        "{routes}"
    );
    let ping = a.exec(&[
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "2",
        "-I",
        "fd00:10:99:1::1",
        "fd00:10:99:2::1",
    ]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // A peer that published no underlay IPv6 address: its IPv6 route is refused by name
    // (and the stale one removed); its IPv4 route stays.
    peer.public_ipv6 = None;
    let pass = hostgw.reconcile(&nl, &[peer]).await.unwrap();
    assert_eq!(pass.refused.len(), 1, "{pass:?}");
    assert!(pass.refused[0].contains("\"b\"") && pass.refused[0].contains("no underlay IPv6"));
    assert!(sh(&a, &["ip", "-6", "route", "show", "proto", "77"])
        .trim()
        .is_empty());
    assert!(sh(&a, &["ip", "route", "show", "proto", "77"]).contains("10.99.2.0/24"));
}
