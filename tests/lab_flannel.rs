//! The multi-node lab as the e2e harness (root): a 3-node flannel cluster on a real etcd
//! server, for vxlan and host-gw. Every pod reaches every other pod, outside sees the
//! node's address, an agent restart keeps the node's subnet and connectivity, deleted
//! datapath state is repaired, and a node whose agent stopped loses its routes on the
//! others once its lease expires.

mod common;

use common::lab::{assert_gone, failed_checks, wait_for, Lab};

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn three_nodes(mode: &str, tag: &str) {
    if !common::require_root() || !std::path::Path::new("/usr/bin/etcd").exists() {
        return;
    }
    let lab = Lab::new(tag);
    lab.ok(&[
        "up",
        "--mode",
        mode,
        "--nodes",
        "3",
        "--pods-per-node",
        "2",
        "--store",
        "etcd",
        "--lease-ttl",
        "10",
    ]);
    let st = lab.state();
    let etcd_pid = st["etcd_pid"].as_u64().expect("lab runs its own etcd") as i32;

    // Every pod reaches every other pod with its own address; outside sees the node's.
    let v = lab.check();
    assert_eq!(failed_checks(&v), Vec::<String>::new());
    let checks = v["checks"].as_array().unwrap();
    let across = checks
        .iter()
        .filter(|c| c["name"] == "pod to pod, across nodes")
        .count();
    assert_eq!(across, 6 * 4, "each of 6 pods to the 4 pods on other nodes");
    let masq: Vec<&Value> = checks
        .iter()
        .filter(|c| c["name"] == "pod to outside (masquerade)")
        .collect();
    assert_eq!(masq.len(), 6);
    assert!(masq
        .iter()
        .all(|c| c["observed"].as_str().unwrap().starts_with("192.168.250.1")));

    // The agents publish their state as metrics.
    let metrics = lab.in_node(1, &["curl", "-sf", "http://127.0.0.1:9099/metrics"]);
    assert!(metrics.contains("unicni_agent_peers 2"), "{metrics}");
    assert!(metrics.contains("unicni_agent_lease_held 1"), "{metrics}");

    // An agent refuses a config that drifts from the cluster lock.
    let cfg = std::fs::read_to_string(format!("{}/n1/unicni.toml", lab.root())).unwrap();
    let other = if mode == "vxlan" { "host-gw" } else { "vxlan" };
    let drifted = format!("{}/drift.toml", lab.root());
    std::fs::write(
        &drifted,
        cfg.replace(
            &format!("mode = \"{mode}\""),
            &format!("mode = \"{other}\""),
        ),
    )
    .unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.node_ns(1),
            common::BIN,
            "agent",
            "--config",
            &drifted,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("locked") && err.contains(other),
        "{err}"
    );

    // Restart node 2's agent: same subnet, connectivity intact.
    let subnet2 = st["nodes"][1]["subnet"].as_str().unwrap().to_string();
    lab.ok(&["agent", "stop", "--node", "2"]);
    lab.ok(&["agent", "start", "--node", "2"]);
    assert_eq!(lab.state()["nodes"][1]["subnet"], subnet2.as_str());
    assert_eq!(failed_checks(&lab.check()), Vec::<String>::new());

    // Drift is repaired: a peer route, and in vxlan the device, neighbour and FDB entry.
    let peer_routes = |n: usize| {
        lab.in_node(n, &["ip", "route", "show", "proto", "77"])
            .lines()
            .count()
    };
    let subnet3 = st["nodes"][2]["subnet"].as_str().unwrap().to_string();
    lab.in_node(1, &["ip", "route", "del", &subnet3]);
    wait_for("peer route repaired", Duration::from_secs(5), || {
        peer_routes(1) == 2
    });
    if mode == "vxlan" {
        lab.in_node(1, &["ip", "link", "del", "flannel.1"]);
        wait_for(
            "vxlan device and routes repaired",
            Duration::from_secs(5),
            || {
                peer_routes(1) == 2
                    && lab
                        .in_node(1, &["bridge", "fdb", "show", "dev", "flannel.1"])
                        .lines()
                        .count()
                        >= 2
            },
        );
        let vtep3 = subnet3.split('/').next().unwrap().to_string();
        lab.in_node(1, &["ip", "neigh", "del", &vtep3, "dev", "flannel.1"]);
        wait_for("neighbour repaired", Duration::from_secs(5), || {
            lab.in_node(1, &["ip", "neigh", "show", "dev", "flannel.1"])
                .contains(&format!("{vtep3} lladdr"))
        });
        let mac = lab
            .in_node(3, &["cat", "/sys/class/net/flannel.1/address"])
            .trim()
            .to_string();
        lab.in_node(
            1,
            &[
                "bridge",
                "fdb",
                "del",
                &mac,
                "dev",
                "flannel.1",
                "dst",
                "192.168.250.13",
            ],
        );
        wait_for("fdb entry repaired", Duration::from_secs(5), || {
            lab.in_node(1, &["bridge", "fdb", "show", "dev", "flannel.1"])
                .contains(&mac)
        });
    }
    assert_eq!(failed_checks(&lab.check()), Vec::<String>::new());

    // Node 3's agent stops and its lease expires: the others drop its routes.
    lab.ok(&["agent", "stop", "--node", "3"]);
    wait_for(
        "node 3's routes removed after its lease expired",
        Duration::from_secs(30),
        || {
            !lab.in_node(1, &["ip", "route"]).contains(&subnet3)
                && !lab.in_node(2, &["ip", "route"]).contains(&subnet3)
        },
    );
    if mode == "vxlan" {
        assert_eq!(
            lab.in_node(1, &["bridge", "fdb", "show", "dev", "flannel.1"])
                .matches("192.168.250.13")
                .count(),
            0
        );
    }
    // ... and a new pod on node 3 is refused with "try again later" while it has no lease.
    assert!(!std::path::Path::new(&format!("{}/n3/run/flannel/subnet.json", lab.root())).exists());

    // Down removes every process, namespace and file.
    lab.ok(&["down"]);
    // Gone, or a zombie waiting for whoever inherited it to reap it.
    assert_gone(etcd_pid, "etcd");
    assert!(!std::path::Path::new(&lab.root()).exists());
    lab.assert_no_namespaces();
}

#[test]
fn vxlan_three_nodes_on_etcd() {
    three_nodes("vxlan", "v");
}

#[test]
fn host_gw_three_nodes_on_etcd() {
    three_nodes("host-gw", "h");
}

#[test]
fn default_lab_run_is_fast_and_clean() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("d");
    let started = Instant::now();
    let out = lab.unicni(&["run", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failed"], 0);
    assert!(v["passed"].as_u64().unwrap() >= 10);
    // flannel's design, observed: the VPC host cannot reach a pod directly, it sees a
    // pod's connections from the node's address, and a second cluster's pod in the same
    // VPC cannot reach this cluster's pods.
    let named = |name: &str| -> Vec<String> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == name)
            .map(|c| c["observed"].as_str().unwrap().to_string())
            .collect()
    };
    let direct = named("VPC host to pod, direct");
    assert_eq!(direct.len(), 2);
    assert!(
        direct.iter().all(|o| o.starts_with("unreachable")),
        "{direct:?}"
    );
    let seen = named("pod to VPC host: source seen");
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|o| o.starts_with("192.168.250.1")),
        "{seen:?}"
    );
    let other = named("second cluster's pod to pod");
    assert_eq!(other.len(), 2);
    assert!(
        other.iter().all(|o| o.starts_with("unreachable")),
        "{other:?}"
    );
    let re = named("pod re-created: its address");
    assert_eq!(re.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(!std::path::Path::new(&lab.root()).exists());
}

#[test]
fn down_cleans_up_after_a_crash_without_state() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("c");
    lab.ok(&["up", "--nodes", "2", "--pods-per-node", "1"]);
    let pids: Vec<u64> = lab.state()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["agent_pid"].as_u64().unwrap())
        .collect();
    // As if `lab up` had crashed before writing its state: only names and processes remain.
    std::fs::remove_file(format!("{}/lab.json", lab.root())).unwrap();
    lab.ok(&["down"]);
    for pid in pids {
        assert_gone(pid, "agent");
    }
    lab.assert_no_namespaces();
    assert!(!std::path::Path::new(&lab.root()).exists());
}

/// A dual-stack flannel lab (`--ip-stack dual`): every pod has an IPv6 address from its
/// node's /64 and reaches the pods of the other node over IPv6 (vxlan: on the one vxlan
/// device over the IPv4 underlay; host-gw: via the peer's underlay IPv6 address); IPv6
/// traffic leaving the cluster leaves with the node's IPv6 address; the IPv6 network is
/// locked; a deleted IPv6 peer route comes back.
fn dual_stack(mode: &str, tag: &str) {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new(tag);
    lab.ok(&[
        "up",
        "--mode",
        mode,
        "--ip-stack",
        "dual",
        "--nodes",
        "2",
        "--pods-per-node",
        "2",
        "--no-second-cluster",
        "--lease-ttl",
        "10",
    ]);
    let st = lab.state();
    for p in st["pods"].as_array().unwrap() {
        let ip6 = p["ip6"].as_str().unwrap_or_default();
        assert!(ip6.starts_with("fd00:10:250:"), "{p}");
    }
    let v = lab.check();
    assert_eq!(failed_checks(&v), Vec::<String>::new());
    let checks = v["checks"].as_array().unwrap();
    let count = |name: &str| checks.iter().filter(|c| c["name"] == name).count();
    assert_eq!(count("pod to pod over IPv6, across nodes"), 4 * 2);
    assert_eq!(count("pod to pod over IPv6, same node"), 4);
    let masq6: Vec<&Value> = checks
        .iter()
        .filter(|c| c["name"] == "pod to outside over IPv6 (masquerade)")
        .collect();
    assert_eq!(masq6.len(), 4);
    assert!(masq6
        .iter()
        .all(|c| c["observed"].as_str().unwrap().starts_with("fd00:250::")));

    // The IPv6 peer route, its next hop by mode, and the ip6 masquerade table.
    let routes6 = || lab.in_node(1, &["ip", "-6", "route", "show", "proto", "77"]);
    let r = routes6();
    assert_eq!(r.lines().count(), 1, "{r}");
    let peer6 = r.split_whitespace().next().unwrap().to_string();
    assert!(
        peer6.starts_with("fd00:10:250:") && peer6.ends_with("/64"),
        "{r}"
    );
    if mode == "vxlan" {
        assert!(r.contains("dev flannel.1"), "{r}");
        let vtep6 = peer6.trim_end_matches("/64");
        let n = lab.in_node(1, &["ip", "-6", "neigh", "show", "dev", "flannel.1"]);
        assert!(n.contains(&format!("{vtep6} lladdr")), "{n}");
    } else {
        assert!(r.contains("via fd00:250::c dev eth0"), "{r}");
    }
    let nft = lab.in_node(1, &["nft", "list", "tables"]);
    assert!(nft.contains("table ip6 unicni_unicni_lab"), "{nft}");

    // Drift: the IPv6 network is locked like the IPv4 one.
    let cfg = std::fs::read_to_string(format!("{}/n1/unicni.toml", lab.root())).unwrap();
    let drifted = format!("{}/drift.toml", lab.root());
    std::fs::write(
        &drifted,
        cfg.replace("fd00:10:250::/56", "fd00:10:260::/56"),
    )
    .unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.node_ns(1),
            common::BIN,
            "agent",
            "--config",
            &drifted,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("locked")
            && err.contains("flannel.ipv6_network")
            && err.contains("fd00:10:260::/56"),
        "{err}"
    );

    // A deleted IPv6 peer route is repaired, and IPv6 works again.
    lab.in_node(1, &["ip", "-6", "route", "del", &peer6]);
    wait_for("IPv6 peer route repaired", Duration::from_secs(5), || {
        routes6().lines().count() == 1
    });
    assert_eq!(failed_checks(&lab.check()), Vec::<String>::new());

    // Node 2's agent stops and its lease expires: node 1 drops its IPv6 route (and in
    // vxlan its IPv6 neighbour entry).
    lab.ok(&["agent", "stop", "--node", "2"]);
    wait_for(
        "node 2's IPv6 route removed after its lease expired",
        Duration::from_secs(30),
        || routes6().trim().is_empty(),
    );
    if mode == "vxlan" {
        let n = lab.in_node(1, &["ip", "-6", "neigh", "show", "dev", "flannel.1"]);
        assert!(!n.contains("PERMANENT"), "{n}");
    }

    // Uninstall on node 2 removes the IPv6 side too: its ip6 table and IPv6 peer routes.
    let cfg2 = format!("{}/n2/unicni.toml", lab.root());
    // Scratch CNI directories: the lab's plugin binary is shared by every node.
    let scratch = tempfile::tempdir().unwrap();
    let conf2 = scratch.path().join("net.d").display().to_string();
    let bin2 = scratch.path().join("bin").display().to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.node_ns(2), common::BIN, "uninstall"])
        .args([
            "--config",
            &cfg2,
            "--cni-conf-dir",
            &conf2,
            "--cni-bin-dir",
            &bin2,
        ])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("removed nftables table ip6 unicni_unicni_lab"),
        "{said}"
    );
    let nft = lab.in_node(2, &["nft", "list", "tables"]);
    assert!(!nft.contains("unicni_unicni_lab"), "{nft}");
    let r = lab.in_node(2, &["ip", "-6", "route", "show", "proto", "77"]);
    assert!(r.trim().is_empty(), "{r}");

    lab.ok(&["down"]);
    assert!(!std::path::Path::new(&lab.root()).exists());
    lab.assert_no_namespaces();
}

#[test]
fn vxlan_dual_stack() {
    dual_stack("vxlan", "dv");
}

#[test]
fn host_gw_dual_stack() {
    dual_stack("host-gw", "dh");
}

#[test]
fn dual_stack_is_refused_for_vpc_route() {
    let out = Lab::new("dr").unicni(&["up", "--mode", "vpc-route", "--ip-stack", "dual"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("vpc-route"), "{err}");
}

/// Dual stack with the eBPF same-node fast path and NetworkPolicy: the fast path carries
/// IPv4 only and leaves IPv6 to the bridge (same-node IPv6 still works), and the policy
/// engine judges IPv6 as it judges IPv4.
#[test]
fn dual_stack_with_fast_path_and_policy() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("dp");
    lab.ok(&[
        "up",
        "--mode",
        "vxlan",
        "--ip-stack",
        "dual",
        "--datapath",
        "ebpf",
        "--policy",
        "--nodes",
        "2",
        "--pods-per-node",
        "2",
        "--no-second-cluster",
    ]);
    let v = lab.check();
    assert_eq!(failed_checks(&v), Vec::<String>::new());
    let checks = v["checks"].as_array().unwrap();
    let v6_rows = |prefix: &str| {
        checks
            .iter()
            .filter(|c| {
                c["name"].as_str().unwrap_or_default().starts_with(prefix)
                    && c["from"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("fd00:10:250:")
            })
            .count()
    };
    assert!(v6_rows("policy:") >= 4, "IPv6 policy probes ran");
    assert_eq!(v6_rows("pod to pod over IPv6, same node"), 4);
    let dropped6 = checks.iter().any(|c| {
        c["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("policy:")
            && c["from"].as_str().unwrap_or_default().contains("fd00:")
            && c["observed"]
                .as_str()
                .unwrap_or_default()
                .starts_with("dropped")
    });
    assert!(dropped6, "a policy dropped IPv6 traffic");
    lab.ok(&["down"]);
    lab.assert_no_namespaces();
}
