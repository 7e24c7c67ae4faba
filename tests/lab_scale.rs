//! The agent at scale (root): 15,000 synthetic peers fed through the store are programmed
//! into one node namespace (one route, neighbour and FDB entry each), within time and
//! memory budgets. The release numbers are in bench/lab (target: < 10 s, < 100 MiB); this
//! debug-build guard allows some slack for a loaded CI machine.

mod common;

use std::process::Command;

#[test]
fn fifteen_thousand_peers_converge_within_budget() {
    if !common::require_root() {
        return;
    }
    let id = format!("s{:04x}", std::process::id() & 0xffff);
    let out = Command::new(common::BIN)
        .args([
            "lab", "--id", &id, "scale", "--peers", "15000", "--output", "json",
        ])
        .output()
        .unwrap();
    let _ = Command::new(common::BIN)
        .args(["lab", "--id", &id, "down"])
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{v}");
    assert_eq!(v["routes_in_kernel"], 15000);
    assert!(v["converge_seconds"].as_f64().unwrap() < 15.0, "{v}");
    assert!(v["peak_rss_mib"].as_f64().unwrap() < 100.0, "{v}");
}
