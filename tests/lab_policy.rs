//! NetworkPolicy in the lab (root): `lab up --policy` turns on enforcement on every node
//! (agents watching the lab's manifest directory), and `lab check` runs the policy matrix
//! on real traffic between the lab's pods, within and across nodes: the upstream recipes
//! (deny all, same namespace, labelled namespace, ipBlock with except, named port, endPort
//! range, egress deny with DNS allowed), a change applied within 1 s, an established
//! connection kept across an agent restart and a policy update, and the node's own
//! traffic to its pods under deny-all. flannel (vxlan) and terway (shared ENI, dual stack).

mod common;

use common::lab::Lab;
use serde_json::Value;
use std::time::Instant;

fn policy_lab(tag: &str, up: &[&str]) -> Value {
    let lab = Lab::new(tag);
    let started = Instant::now();
    let mut args = vec!["up", "--policy", "--no-second-cluster"];
    args.extend_from_slice(up);
    lab.ok(&args);
    // Each node pins its own policy datapath.
    for n in [1, 2] {
        let pin = format!("{}/bpf/n{n}/policy/progs/uc_pol_from_pod", lab.root());
        assert!(std::path::Path::new(&pin).exists(), "{pin}");
    }
    let v = lab.check();
    let checks = v["checks"].as_array().unwrap();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["passed"] != true)
        .map(|c| c.to_string())
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let policy: Vec<&Value> = checks
        .iter()
        .filter(|c| c["name"].as_str().unwrap_or("").starts_with("policy: "))
        .collect();
    for recipe in [
        "deny all ingress",
        "allow same namespace",
        "allow from a labelled namespace",
        "ipBlock with except",
        "named port",
        "endPort range",
        "egress deny with DNS allowed",
        "a change applies within 1 s",
        "established connection across an agent restart and a policy update",
    ] {
        let of: Vec<&&Value> = policy
            .iter()
            .filter(|c| c["name"] == format!("policy: {recipe}"))
            .collect();
        assert!(!of.is_empty(), "no check for {recipe}");
    }
    // Denied pairs were really probed and dropped, allowed ones really passed.
    let dropped = policy.iter().filter(|c| c["expected"] == "dropped").count();
    let passed = policy.iter().filter(|c| c["expected"] == "passes").count();
    assert!(
        dropped >= 20 && passed >= 20,
        "{dropped} dropped, {passed} passed"
    );
    let root = lab.root();
    drop(lab);
    assert!(
        !std::path::Path::new(&root).exists(),
        "lab down unmounts its bpffs and removes everything"
    );
    eprintln!("{tag}: up + check in {:?}", started.elapsed());
    v
}

#[test]
fn flannel_lab_enforces_the_policy_matrix() {
    if !common::require_root() {
        return;
    }
    policy_lab("pf", &["--mode", "vxlan"]);
}

#[test]
fn terway_lab_enforces_the_policy_matrix_on_both_families() {
    if !common::require_root() {
        return;
    }
    let v = policy_lab(
        "pt",
        &[
            "--backend",
            "terway",
            "--mode",
            "shared-eni",
            "--ip-stack",
            "dual",
        ],
    );
    let v6 = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["name"].as_str().unwrap_or("").starts_with("policy: ")
                && c["to"].as_str().unwrap_or("").contains("fd00:")
        })
        .count();
    assert!(v6 >= 10, "IPv6 pairs probed: {v6}");
}
