//! The lab with the eBPF fast paths (root): `lab up --datapath ebpf` for terway shared-eni
//! (dual stack: IPv4 and IPv6 both through the fast path) and for flannel, `lab check` green with every design check, and the fast path's own
//! counters on each node showing the checks' traffic went through it; the lab's bpffs goes
//! with `lab down`. An exclusive-ENI lab with eBPF is refused.

mod common;

use common::lab::Lab;
use serde_json::Value;

fn checks(v: &Value) -> Vec<&Value> {
    v["checks"].as_array().unwrap().iter().collect()
}

fn mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(path))
}

fn run(lab: &Lab, up: &[&str]) -> Value {
    lab.ok(up);
    let st = lab.state();
    assert_eq!(st["datapath"], "ebpf");
    let bpf = format!("{}/bpf", lab.root());
    assert!(mounted(&bpf), "the lab's bpffs at {bpf}");
    let v = lab.check();
    let failed: Vec<&Value> = checks(&v)
        .into_iter()
        .filter(|c| c["passed"] != true)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    v
}

#[test]
fn terway_lab_with_the_ebpf_fast_path_passes_every_check_through_it() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("et");
    let v = run(
        &lab,
        &[
            "up",
            "--backend",
            "terway",
            "--nodes",
            "2",
            "--datapath",
            "ebpf",
            "--ip-stack",
            "dual",
        ],
    );
    // Both nodes and the second cluster's node; IPv6: the two nodes whose pods the
    // checks connect over IPv6 (pod to pod across nodes, both ways).
    for (name, nodes) in [
        ("eBPF fast path carried pod traffic", 3),
        ("eBPF fast path carried pod IPv6 traffic", 2),
    ] {
        let fast: Vec<&Value> = checks(&v)
            .into_iter()
            .filter(|c| c["name"] == name)
            .collect();
        assert_eq!(fast.len(), nodes, "{name}: {v:#}");
        for c in &fast {
            let o = c["observed"].as_str().unwrap();
            assert!(o.starts_with("out ") && o.contains(", in "), "{o}");
        }
    }
    // Everything else of terway's design holds on the fast path too.
    for name in [
        "VPC host to pod, direct",
        "pod to VPC host: source seen",
        "second cluster's pod to pod",
        "pod re-created: its address",
    ] {
        assert!(
            checks(&v).iter().any(|c| c["name"] == name),
            "{name} missing: {v:#}"
        );
    }
    let agent = lab.in_node(1, &["curl", "-sf", "http://127.0.0.1:9099/readyz"]);
    assert!(agent.contains("datapath ebpf"), "{agent}");
    lab.ok(&["down"]);
    assert!(!mounted(&format!("{}/bpf", lab.root())));
}

#[test]
fn flannel_lab_with_the_same_node_fast_path_passes_every_check() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("ef");
    let v = run(&lab, &["up", "--nodes", "2", "--datapath", "ebpf"]);
    let fast = checks(&v)
        .into_iter()
        .filter(|c| c["name"] == "eBPF fast path carried pod traffic")
        .count();
    assert_eq!(fast, 2, "the two nodes with two pods each: {v:#}");
}

#[test]
fn ebpf_with_exclusive_eni_is_refused() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("ex");
    let out = lab.unicni(&[
        "up",
        "--backend",
        "terway",
        "--mode",
        "exclusive-eni",
        "--datapath",
        "ebpf",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--datapath ebpf is for shared-eni"), "{err}");
}
