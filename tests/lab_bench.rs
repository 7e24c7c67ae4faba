//! Smoke tests of the lab benchmarks (root): `lab bench` measures the host network and
//! every design (flannel vxlan and host-gw, terway shared-eni routing and eBPF,
//! exclusive-eni) in one run of interleaved slices with per-slice ratios, `lab bench
//! --policies N` measures N NetworkPolicies vs none end to end, `lab bench-add` times terway ADDs with a warm and an empty pool beside the
//! reference plugins; both remove every lab they built. Short runs: the numbers are in
//! bench/lab/RESULTS.md.

mod common;

use serde_json::Value;
use std::process::Command;

/// Runs `unicni lab --id ID ARGS --output json`, then `lab down` for every lab the bench
/// may have left behind (`ID<suffix>`); returns the JSON.
fn bench(id: &str, args: &[&str], suffixes: &[&str]) -> Value {
    let out = Command::new(common::BIN)
        .args(["lab", "--id", id])
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let mut leftovers = Vec::new();
    for s in suffixes {
        let ns = format!("ulab{id}{s}-");
        let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
        if String::from_utf8_lossy(&listed.stdout).contains(&ns) {
            leftovers.push(ns);
        }
        let _ = Command::new(common::BIN)
            .args(["lab", "--id", &format!("{id}{s}"), "down"])
            .output();
    }
    assert!(
        out.status.success(),
        "lab {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers, Vec::<String>::new(), "labs not removed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_measures_host_network_and_every_design() {
    if !common::require_root() {
        return;
    }
    let id = format!("b{:04x}", std::process::id() & 0xffff);
    let v = bench(
        &id,
        &[
            "bench",
            "--seconds",
            "1",
            "--rounds",
            "200",
            "--repeats",
            "2",
            "--slices",
            "3",
        ],
        &["v", "g", "s", "e", "x"],
    );
    assert_eq!(v["method"], "interleaved", "{v:#}");
    assert_eq!(v["rr_slices"], 3);
    let rows = v["results"].as_array().unwrap();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "host network (node to node, the limit)",
            "flannel vxlan (pod to pod across nodes)",
            "flannel host-gw (pod to pod across nodes)",
            "terway shared-eni (pod to pod across nodes)",
            "terway shared-eni + eBPF (pod to pod across nodes)",
            "host network, eBPF lab's nodes (no netfilter)",
            "terway exclusive-eni (pod to pod across nodes)",
        ],
        "{v:#}"
    );
    for r in rows {
        for k in ["gbit_per_s", "rr_median_us", "rr_p99_us", "rr_per_s"] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r}");
        }
        assert!(r["rr_p99_us"].as_f64() >= r["rr_median_us"].as_f64(), "{r}");
    }
    for r in rows {
        assert_eq!(r["gbit_per_s_runs"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["rr_per_s_slices"].as_array().unwrap().len(), 3, "{r}");
        for k in ["throughput_ratio_spread", "rr_per_s_ratio_spread"] {
            let s = &r[k];
            let (p25, med, p75) = (
                s["p25"].as_f64().unwrap(),
                s["median"].as_f64().unwrap(),
                s["p75"].as_f64().unwrap(),
            );
            assert!(p25 > 0.0 && p25 <= med && med <= p75, "{k}: {r}");
        }
    }
    // The eBPF row also compares itself with the routing datapath and with its own lab's
    // bare nodes, slice by slice.
    let ebpf = &rows[4];
    for v in ["vs_routing", "vs_bare_nodes"] {
        for k in ["throughput_ratio", "rr_per_s_ratio"] {
            assert!(ebpf[v][k]["median"].as_f64().unwrap() > 0.0, "{v}: {ebpf}");
        }
    }
    assert!(rows[3].get("vs_routing").is_none(), "{}", rows[3]);
}

#[test]
fn bench_policies_compares_n_policies_with_none_on_the_same_pods() {
    if !common::require_root() {
        return;
    }
    let id = format!("q{:04x}", std::process::id() & 0xffff);
    let v = bench(
        &id,
        &[
            "bench",
            "--policies",
            "50",
            "--slices",
            "2",
            "--rounds",
            "200",
        ],
        &["p"],
    );
    assert_eq!(v["policies"], 50, "{v:#}");
    let rows = v["results"].as_array().unwrap();
    let settings: Vec<&str> = rows
        .iter()
        .map(|r| r["setting"].as_str().unwrap())
        .collect();
    assert_eq!(settings, ["no policy", "50 policies"]);
    for r in rows {
        for k in ["rr_per_s", "conn_per_s", "rr_median_us"] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r}");
        }
        assert_eq!(r["rr_per_s_slices"].as_array().unwrap().len(), 2, "{r}");
    }
    for k in ["rr_per_s_ratio", "conn_per_s_ratio"] {
        assert!(v[k]["median"].as_f64().unwrap() > 0.0, "{k}: {v:#}");
    }
}

#[test]
fn bench_add_times_warm_and_empty_pools_beside_the_reference() {
    if !common::require_root() {
        return;
    }
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipping: the reference plugins (containernetworking-plugins) are missing");
        return;
    }
    let id = format!("{:04x}", std::process::id() & 0xffff);
    let v = bench(
        &id,
        &["bench-add", "--pods", "1", "--attach-delay-ms", "150"],
        &["sw", "xw", "se", "xe"],
    );
    // The emulator got the delay asked for (its default is 100 ms).
    assert_eq!(v["eni_attach_delay_ms"], 150, "{v:#}");
    let series = v["series"].as_array().unwrap();
    let names: Vec<&str> = series
        .iter()
        .map(|s| s["series"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "terway shared-eni, warm pool",
            "terway exclusive-eni, warm pool",
            "terway shared-eni, empty pool, ENI attached",
            "terway shared-eni, empty pool, no ENI",
            "terway exclusive-eni, empty pool",
        ],
        "{v:#}"
    );
    for s in series {
        assert!(s["median_ms"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["reference_median_ms"].as_f64().unwrap() > 0.0, "{s}");
        // A warm pool's ADD never goes to the cloud; an empty pool's always does (once).
        let warm = s["pool_min"].as_u64().unwrap() > 0;
        assert_eq!(s["cloud_actions_during_adds"], u64::from(!warm), "{s}");
    }
    // Creating and attaching an ENI waits for the emulator's attach delay.
    let attach = v["eni_attach_delay_ms"].as_f64().unwrap();
    assert!(series[3]["median_ms"].as_f64().unwrap() >= attach, "{v:#}");
    assert!(series[4]["median_ms"].as_f64().unwrap() >= attach, "{v:#}");
}
