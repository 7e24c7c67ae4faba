//! Smoke test of `lab bench-services` (root): with tiny settings, every path (pod IP
//! direct, the eBPF load balancer, kube-proxy-like rules to the last and to the middle
//! Service, pod IP direct beside those rules) answers for each Service count, the ratios
//! are per turn, and both labs and the load balancer's programs are gone afterwards. The
//! numbers are in docs/services.md ("Benchmark").

mod common;

use serde_json::Value;
use std::process::Command;

fn netns_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn bench_services_measures_every_path_per_service_count_and_cleans_up() {
    if !common::require_root() {
        return;
    }
    let id = format!("s{:04x}", std::process::id() & 0xffff);
    let out = Command::new(common::BIN)
        .args(["lab", "--id", &id, "bench-services", "--services", "10,50"])
        .args(["--slices", "2", "--slice-ms", "100", "--output", "json"])
        .output()
        .unwrap();
    let mut leftovers = Vec::new();
    for s in ["e", "k"] {
        leftovers.extend(netns_with(&format!("ulab{id}{s}-")));
        let _ = Command::new(common::BIN)
            .args(["lab", "--id", &format!("{id}{s}"), "down"])
            .output();
    }
    assert!(
        out.status.success(),
        "bench-services failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers, Vec::<String>::new(), "labs not removed");
    assert!(
        !std::path::Path::new(&format!("/run/unicni-lab-{id}e")).exists(),
        "the eBPF lab's root (and its pinned load balancer) not removed"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["method"], "interleaved", "{v:#}");
    assert_eq!(v["iptables"], "legacy");
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 10, "{v:#}");
    for (k, n) in [(0, 10), (5, 50)] {
        let paths: Vec<&str> = rows[k..k + 5]
            .iter()
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "pod IP direct (no Service)",
                "unicni eBPF LB (ClusterIP)",
                "kube-proxy-like, last Service",
                "kube-proxy-like, middle Service",
                "pod IP direct, kube-proxy rules on nodes",
            ]
        );
        for r in &rows[k..k + 5] {
            assert_eq!(r["services"], n, "{r}");
            for key in ["conn_per_s", "rr_per_s", "rr_per_s_median_round"] {
                assert!(r[key].as_f64().unwrap() > 0.0, "{key}: {r}");
            }
            for key in [
                "conn_per_s_slices",
                "rr_per_s_slices",
                "rr_per_s_median_round_slices",
            ] {
                assert_eq!(r[key].as_array().unwrap().len(), 2, "{key}: {r}");
            }
            for key in ["conn_vs_direct", "conn_vs_kube_proxy", "rr_vs_direct"] {
                assert!(r[key]["median"].as_f64().unwrap() > 0.0, "{key}: {r}");
            }
        }
        // Each row's ratio to itself is 1.
        assert_eq!(rows[k]["conn_vs_direct"]["median"], 1.0);
        assert_eq!(rows[k + 2]["conn_vs_kube_proxy"]["median"], 1.0);
    }
    assert_eq!(v["ebpf_flatness"]["from"], 10);
    assert_eq!(v["ebpf_flatness"]["to"], 50);
}
