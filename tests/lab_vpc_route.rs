//! The lab in flannel vpc-route mode (root): the cloud emulator runs in the VPC namespace
//! and its route table is mirrored there as real routes, so pod traffic between nodes is
//! routed by the VPC router. Three nodes pass `lab check`; with a route-table quota of 3 a
//! fourth node stays not ready with the quota error; a node that leaves loses its entry
//! (and its route), which lets the fourth node in.

mod common;

use common::lab::{wait_for, Lab};

use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// The VPC router's routes to pod subnets: (destination, gateway).
fn vpc_routes(lab: &Lab) -> Vec<(String, String)> {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("ulab{}-vpc", lab.id)])
        .args(["ip", "-j", "route"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut r: Vec<(String, String)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["dst"].as_str().is_some_and(|d| d.starts_with("10.250.")))
        .map(|r| {
            (
                r["dst"].as_str().unwrap_or_default().to_string(),
                r["gateway"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    r.sort();
    r
}

#[test]
fn vpc_route_lab_quota_and_node_leaving() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("vr");
    lab.ok(&[
        "up",
        "--mode",
        "vpc-route",
        "--nodes",
        "3",
        "--pods-per-node",
        "2",
        "--route-quota",
        "3",
        "--lease-ttl",
        "4",
    ]);
    let st = lab.state();
    let subnet = |i: usize| st["nodes"][i]["subnet"].as_str().unwrap().to_string();
    let ip = |i: usize| st["nodes"][i]["ip"].as_str().unwrap().to_string();
    // One mirrored route per node, via that node; nodes carry no peer routes themselves.
    let mut want: Vec<(String, String)> = (0..3).map(|i| (subnet(i), ip(i))).collect();
    want.sort();
    assert_eq!(vpc_routes(&lab), want);
    let node_routes = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("ulab{}-n1", lab.id),
            "ip",
            "route",
        ])
        .output()
        .unwrap();
    let node_routes = String::from_utf8_lossy(&node_routes.stdout).into_owned();
    for i in 1..3 {
        assert!(!node_routes.contains(&subnet(i)), "{node_routes}");
    }

    let out = lab.unicni(&["check", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failed"], 0, "{v}");
    assert!(out.status.success());
    let across = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "pod to pod, across nodes")
        .count();
    assert_eq!(across, 24, "{v}");

    // A fourth node does not fit: not ready, the quota error on /readyz and the metric.
    let out = lab.unicni(&["add-node"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("node 4 added but not ready: not ready: node not ready")
            && err.contains("QuotaExceeded.VpcRouteEntryNum"),
        "{err}"
    );
    assert!(
        err.contains("unicni_agent_vpc_route_quota_exceeded 1"),
        "{err}"
    );
    let subnet_file = format!("{}/n4/run/flannel/subnet.json", lab.root());
    assert!(!std::path::Path::new(&subnet_file).exists());
    assert_eq!(vpc_routes(&lab).len(), 3);

    // Node 3 leaves: once its lease expires its entry and route go, and node 4 gets in.
    lab.ok(&["agent", "stop", "--node", "3"]);
    let gone = subnet(2);
    wait_for(
        "node 3's route removed from the VPC router",
        Duration::from_secs(30),
        || !vpc_routes(&lab).iter().any(|r| r.0 == gone),
    );
    wait_for("node 4 ready", Duration::from_secs(30), || {
        std::path::Path::new(&subnet_file).exists()
    });
    let four: Value = serde_json::from_slice(&std::fs::read(&subnet_file).unwrap()).unwrap();
    let four = four["subnet"].as_str().unwrap().to_string();
    wait_for(
        "node 4's route on the VPC router",
        Duration::from_secs(10),
        || vpc_routes(&lab).contains(&(four.clone(), "192.168.250.14".to_string())),
    );
    assert_eq!(vpc_routes(&lab).len(), 3);
}
