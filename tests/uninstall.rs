//! `unicni uninstall` leaves a lab node clean, for every backend and mode (root): the
//! lab builds a cluster through the real binary; on node 1 the agent is stopped (the
//! DaemonSet is gone) and `unicni uninstall` runs in the node's namespace as the lab runs
//! node commands; then netlink, nftables and the file system of that node are read: no
//! unicni link, route, rule, table, nftables table, pin, socket or state file may remain,
//! and with `--release-cloud` the cloud emulator holds no secondary ENI of the node.
//! The pods stay: a node decommissioned without a drain must not leak either.

mod common;

use common::lab::Lab;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `args` in node 1's namespace; returns stdout, fails the test on error.
fn in_node(lab: &Lab, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.node_ns(1)])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} in {}: {}",
        lab.node_ns(1),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_in_node(lab: &Lab, args: &[&str]) -> Vec<Value> {
    let text = in_node(lab, args);
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// Every file (not directory) under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A value of node 1's config (`[section] key = "value"`), as the lab wrote it.
fn node_setting(lab: &Lab, section: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("{}/n1/unicni.toml", lab.root())).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    v.get(section)?.get(key)?.as_str().map(str::to_string)
}

/// Stops node 1's agent, runs uninstall there with `flags`, and asserts the node clean.
fn uninstall_node_1(lab: &Lab, flags: &[&str]) {
    // Something to clean: the pods' wiring is on the node before.
    let veths_before = json_in_node(lab, &["ip", "-j", "link", "show", "type", "veth"]);
    assert!(
        veths_before.len() > 1,
        "no pod wiring to remove: {veths_before:?}"
    );
    let released = flags.contains(&"--release-cloud");
    let terway = lab.state()["backend"] == "terway";
    if released && terway {
        let enis = secondary_enis_of_node_1(lab);
        assert!(!enis.is_empty(), "node 1 has no ENI to give back");
    }
    lab.ok(&["agent", "stop", "--node", "1"]);
    let root = lab.root();
    let config = format!("{root}/n1/unicni.toml");
    let conf_dir = format!("{root}/n1/net.d");
    // Not the lab's shared bin dir: the other nodes still run their plugin from it.
    let bin_dir = tempfile::tempdir().unwrap();
    let ns = lab.node_ns(1);
    let mut args = vec![
        "ip",
        "netns",
        "exec",
        &ns,
        common::BIN,
        "uninstall",
        "--config",
        &config,
        "--cni-conf-dir",
        &conf_dir,
        "--cni-bin-dir",
    ];
    let bin = bin_dir.path().display().to_string();
    args.push(&bin);
    args.push("--purge");
    args.extend_from_slice(flags);
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("uninstall on {}:\n{said}", lab.node_ns(1));

    // Links: the node's own uplink and loopback; every unicni device and pod veth gone
    // (and with --release-cloud the ENI links with their ENIs).
    let allowed = |n: &str| n == "lo" || n == "eth0";
    if released || lab.state()["backend"] == "flannel" {
        // A released ENI's link leaves when the cloud has detached it, as a hot-unplugged
        // NIC does: a moment after the API call returned.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let links: Vec<String> = json_in_node(lab, &["ip", "-j", "link", "show"])
                .iter()
                .map(|l| l["ifname"].as_str().unwrap().to_string())
                .collect();
            if links.iter().all(|n| allowed(n)) {
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "links left: {links:?}\n{said}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    // Rules: the kernel's three defaults only.
    for family in ["-4", "-6"] {
        let rules = json_in_node(lab, &["ip", "-j", family, "rule", "show"]);
        let prios: Vec<u64> = rules
            .iter()
            .map(|r| r["priority"].as_u64().unwrap())
            .collect();
        assert!(
            prios.iter().all(|p| [0, 32766, 32767].contains(p)),
            "{family} rules left: {rules:?}\n{said}"
        );
    }
    // Routes: no table but main and local, and in main only routes of the uplink.
    for family in ["-4", "-6"] {
        for r in json_in_node(lab, &["ip", "-j", family, "route", "show", "table", "all"]) {
            let table = r["table"].as_str().unwrap_or("main");
            assert!(
                table == "main" || table == "local",
                "{family} route in table {table} left: {r}\n{said}"
            );
            let dev = r["dev"].as_str().unwrap_or("");
            assert!(allowed(dev), "{family} route left: {r}\n{said}");
        }
    }
    // nftables: no table of ours.
    let tables = in_node(lab, &["nft", "list", "tables"]);
    assert!(!tables.contains("unicni"), "nftables left: {tables}");
    // Files: the conflist, and every socket, state and lease file of the node.
    assert!(files_under(Path::new(&conf_dir)).is_empty());
    for key in ["state_dir", "run_dir"] {
        let dir = node_setting(lab, "node", key).unwrap();
        let left = files_under(Path::new(&dir));
        assert!(left.is_empty(), "{key} {dir}: {left:?}\n{said}");
    }
    // eBPF: nothing pinned where the node's config pins.
    if let Some(pin) = node_setting(lab, "bpf", "pin_dir") {
        let left = files_under(Path::new(&pin));
        assert!(left.is_empty(), "pins left under {pin}: {left:?}");
    }
    if released && terway {
        let left = secondary_enis_of_node_1(lab);
        assert!(
            left.is_empty(),
            "ENIs of node 1 left in the cloud: {left:?}"
        );
    }
}

/// The secondary ENIs the emulator's state file ties to node 1's instance (attached to
/// it, or tagged with it by the agent).
fn secondary_enis_of_node_1(lab: &Lab) -> Vec<String> {
    let instance = format!("i-ulab{}-n1", lab.id);
    let state: Value =
        serde_json::from_slice(&std::fs::read(format!("{}/cloud/state.json", lab.root())).unwrap())
            .unwrap();
    let enis = state["enis"]
        .as_object()
        .unwrap_or_else(|| panic!("no ENIs in the emulator state: {state}"));
    enis.values()
        .filter(|e| e["eni_type"] == "Secondary")
        .filter(|e| {
            e["instance_id"] == instance.as_str()
                || e["tags"].to_string().contains(&format!("\"{instance}\""))
        })
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// The VPC route entries whose next hop is node 1's instance, from the emulator's state.
fn route_entries_of_node_1(lab: &Lab) -> Vec<Value> {
    let instance = format!("i-ulab{}-n1", lab.id);
    let state: Value =
        serde_json::from_slice(&std::fs::read(format!("{}/cloud/state.json", lab.root())).unwrap())
            .unwrap();
    state["route_tables"]
        .as_object()
        .unwrap_or_else(|| panic!("no route tables in the emulator state: {state}"))
        .values()
        .flat_map(|t| t["entries"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["next_hop_id"] == instance.as_str())
        .collect()
}

#[test]
fn flannel_node_is_clean_after_uninstall_in_every_mode() {
    if !common::require_root() {
        return;
    }
    for mode in ["vxlan", "host-gw", "vpc-route"] {
        let lab = Lab::new("un");
        lab.ok(&[
            "up",
            "--backend",
            "flannel",
            "--mode",
            mode,
            "--nodes",
            "2",
            "--pods-per-node",
            "1",
            "--no-second-cluster",
        ]);
        if mode == "vpc-route" {
            assert!(!route_entries_of_node_1(&lab).is_empty());
            uninstall_node_1(&lab, &["--release-cloud"]);
            // The cloud deletes an entry asynchronously (`Deleting`, then gone).
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let left = route_entries_of_node_1(&lab);
                if left.is_empty() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < until,
                    "route entries via node 1 left: {left:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        } else {
            uninstall_node_1(&lab, &[]);
        }
        eprintln!("flannel {mode}: node 1 clean");
    }
}

#[test]
fn terway_node_is_clean_after_uninstall_and_gives_its_enis_back() {
    if !common::require_root() {
        return;
    }
    for args in [
        &["--mode", "shared-eni"][..],
        &["--mode", "exclusive-eni"][..],
        &["--mode", "shared-eni", "--datapath", "ebpf"][..],
    ] {
        let lab = Lab::new("ut");
        let mut up = vec![
            "up",
            "--backend",
            "terway",
            "--nodes",
            "2",
            "--pods-per-node",
            "1",
            "--no-second-cluster",
        ];
        up.extend_from_slice(args);
        lab.ok(&up);
        uninstall_node_1(&lab, &["--release-cloud"]);
        eprintln!("terway {args:?}: node 1 clean, ENIs released");
    }
}
