//! NetworkPolicy in the lab (root): `lab up --policy` turns on enforcement on every node
//! (agents watching the lab's manifest directory), and `lab check` runs the policy matrix
//! on real traffic between the lab's pods, within and across nodes: the upstream recipes
//! (deny all, same namespace, labelled namespace, ipBlock with except, named port, endPort
//! range, egress deny with DNS allowed), a change applied within 1 s, an established
//! connection kept across an agent restart and a policy update, and the node's own
//! traffic to its pods under deny-all. flannel (vxlan), terway (shared ENI, dual stack),
//! and, IPv4 only, terway shared ENI with the eBPF fast path (the policy programs ahead of
//! it on the pod veths and the ENIs, and the fast path still carrying the allowed
//! traffic) and terway exclusive ENI (the programs on each pod's ENI inside the pod).

mod common;

use common::lab::Lab;
use serde_json::Value;
use std::time::Instant;

fn policy_lab(tag: &str, up: &[&str]) -> Value {
    policy_lab_probed(tag, up, |_| ()).0
}

/// `policy_lab`, reading `probe(lab root)` right before `lab check` and after it.
fn policy_lab_probed<T>(tag: &str, up: &[&str], probe: impl Fn(&str) -> T) -> (Value, T, T) {
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
    let before = probe(&lab.root());
    let v = lab.check();
    let after = probe(&lab.root());
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
    (v, before, after)
}

/// Packets the terway fast path redirected (out of pods, into pods) on nodes 1 and 2.
fn fast_path_redirects(root: &str) -> (u64, u64) {
    let (mut out, mut into) = (0, 0);
    for n in [1, 2] {
        let pin = format!("{root}/bpf/n{n}");
        let s = unicni_bpf::TerwayFastPath::open(std::path::Path::new(&pin))
            .and_then(|fp| fp.stats())
            .unwrap_or_else(|e| panic!("{pin}: {e}"));
        out += s.out_redirect + s.out_redirect_neigh + s.out_local;
        into += s.in_redirect;
    }
    (out, into)
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

#[test]
fn terway_ebpf_fast_path_lab_enforces_the_policy_matrix() {
    if !common::require_root() {
        return;
    }
    let (v, before, after) = policy_lab_probed(
        "pe",
        &[
            "--backend",
            "terway",
            "--mode",
            "shared-eni",
            "--datapath",
            "ebpf",
        ],
        fast_path_redirects,
    );
    // Enforcement did not turn the fast path off: the checks' allowed traffic (pod to
    // pod across nodes arrives through the ENI program) was short-cut both ways.
    assert!(
        after.0 > before.0 + 100 && after.1 > before.1 + 100,
        "fast path redirects during the checks: {before:?} -> {after:?}"
    );
    let carried = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "eBPF fast path carried pod traffic" && c["passed"] == true)
        .count();
    assert!(carried >= 2, "{carried} nodes' fast path check");
}

#[test]
fn terway_exclusive_eni_lab_enforces_the_policy_matrix() {
    if !common::require_root() {
        return;
    }
    let (_, links, _) = policy_lab_probed(
        "px",
        &["--backend", "terway", "--mode", "exclusive-eni"],
        |root| {
            // Every pod's ENI carries the programs (two tcx links each).
            [1, 2].map(|n| {
                std::fs::read_dir(format!("{root}/bpf/n{n}/policy/links"))
                    .unwrap()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("pod_"))
                    .count()
            })
        },
    );
    assert_eq!(links, [4, 4], "policy links on the pods' ENIs per node");
}
