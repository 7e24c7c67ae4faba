//! `unicni plan` and `unicni assess` through the real binary: output shapes and exit codes.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn unicni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unicni"))
        .args(args)
        .current_dir(root())
        .env_remove("UNICNI_FLANNEL__MODE")
        .output()
        .expect("the binary runs")
}

/// `unicni assess --to <to> --inventory <inventory> <extra>`.
fn assess(to: &str, inventory: &str, extra: &[&str]) -> Output {
    let mut args = vec!["assess", "--to", to, "--inventory", inventory];
    args.extend_from_slice(extra);
    unicni(&args)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn config(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn plan_terway_seed_examples() {
    let out = unicni(&["plan", "--config", "config/terway.toml", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["backend"], "terway");
    assert_eq!(v["max_nodes"], 5000);
    let c7 = v["pods_per_node"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["instance_type"] == "ecs.c7.4xlarge")
        .unwrap();
    assert_eq!(
        (c7["shared"].as_u64(), c7["exclusive"].as_u64()),
        (Some(210), Some(7))
    );
    for key in ["max_nodes_reason", "warnings"] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
}

#[test]
fn plan_flannel_seed_examples_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let f20 = config(
        &dir,
        "f20.toml",
        "[flannel]\nnetwork = \"172.16.0.0/20\"\nsubnet_len = 24\n",
    );
    let v = json(&unicni(&["plan", "-c", &f20, "-o", "json"]));
    assert_eq!(v["max_nodes"], 16);
    assert_eq!(v["addresses_per_node"], 256);
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .contains("fewer than the cluster size limit"));
    let vpc = config(
        &dir,
        "vpc.toml",
        "[cluster]\nservice_cidr = \"192.168.0.0/16\"\n[flannel]\nnetwork = \"10.0.0.0/8\"\nmode = \"vpc-route\"\n",
    );
    let v = json(&unicni(&["plan", "-c", &vpc, "-o", "json"]));
    assert_eq!(v["max_nodes"], 200);
    let table = unicni(&["plan", "-c", &f20]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Max nodes: 16") && text.contains("Pods per node: 253"),
        "{text}"
    );
}

#[test]
fn plan_with_override_and_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let t = config(
        &dir,
        "t.toml",
        "[backend]\nkind = \"terway\"\n[cluster]\nservice_cidr = \"172.21.0.0/20\"\n[terway]\nvswitches = [\"vsw-h1\", \"vsw-i1\"]\ninstance_types = [\"ecs.g9i.4xlarge\", \"ecs.c6.4xlarge\"]\n",
    );
    // Without the override the unknown type is an error naming it.
    let out = unicni(&["plan", "-c", &t]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ecs.g9i.4xlarge"));
    let v = json(&unicni(&[
        "plan",
        "-c",
        &t,
        "-o",
        "json",
        "--instance-types",
        "testdata/instance-types.yaml",
        "--inventory",
        "testdata/inventories/flannel-to-terway-ready.yaml",
    ]));
    let list = v["pods_per_node"].as_array().unwrap();
    assert_eq!(list[0]["shared"], 210);
    assert_eq!(list[1]["shared"], 60, "the override replaces c6.4xlarge");
    assert_eq!(v["pod_addresses"]["total"], 120000);
    assert_eq!(v["pod_addresses"]["by_zone"]["cn-hangzhou-h"], 60000);
}

#[test]
fn assess_exit_codes_follow_the_verdict() {
    // (inventory, extra arguments, exit code) for `assess --to terway`.
    let cases: &[(&str, &[&str], i32)] = &[
        ("flannel-to-terway-ready.yaml", &[], 0),
        ("flannel-to-terway-warnings.yaml", &[], 2),
        ("flannel-to-terway-blocked.yaml", &[], 3),
        (
            "flannel-to-terway-warnings.yaml",
            &["--fail-on", "blocker"],
            0,
        ),
        ("flannel-to-terway-blocked.yaml", &["--fail-on", "never"], 0),
        (
            "flannel-to-terway-warnings.yaml",
            &[
                "--ignore",
                "node-capacity,vswitch-ips",
                "--ignore",
                "host-dependencies",
                "--ignore",
                "pods-not-running",
            ],
            0,
        ),
    ];
    for (file, extra, want) in cases {
        let out = assess("terway", &format!("testdata/inventories/{file}"), extra);
        assert_eq!(out.status.code(), Some(*want), "{file} {extra:?}");
    }
}

#[test]
fn assess_errors_exit_1_and_say_what_is_wrong() {
    let out = assess("flannel", "testdata/inventories/malformed.yaml", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("free_ips") && err.contains("line 9"), "{err}");
    let out = assess(
        "flannel",
        "testdata/inventories/flannel-already.yaml",
        &["--ignore", "nope"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown check \"nope\""));
    let out = assess("flannel", "/nonexistent.yaml", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.yaml"));
    // The target config must agree with --to.
    let out = assess(
        "terway",
        "testdata/inventories/terway-to-flannel-warnings.yaml",
        &["--config", "testdata/inventories/flannel-target.toml"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("backend.kind"));
}

#[test]
fn assess_outputs_every_format() {
    let base = [
        "assess",
        "--to",
        "flannel",
        "--inventory",
        "testdata/inventories/terway-to-flannel-blocked.yaml",
        "-o",
    ];
    let j = json(&unicni(&[&base[..], &["json"]].concat()));
    assert_eq!(j["verdict"], "blocked");
    assert_eq!(j["schema"], "unicni.io/assessment/v1");
    let y = unicni(&[&base[..], &["yaml"]].concat());
    let yv: serde_json::Value = serde_yaml_from(&y.stdout);
    assert_eq!(yv, j);
    let md = String::from_utf8(unicni(&[&base[..], &["markdown"]].concat()).stdout).unwrap();
    assert!(md.starts_with("# Migration assessment: payments"), "{md}");
    let table = String::from_utf8(unicni(&[&base[..], &["table"]].concat()).stdout).unwrap();
    assert!(
        table.contains("VERDICT: blocked") && table.contains("MIGRATION PATH: new-cluster"),
        "{table}"
    );
}

fn serde_yaml_from(bytes: &[u8]) -> serde_json::Value {
    serde_yaml::from_slice(bytes).expect("YAML output parses")
}

#[test]
fn help_describes_checks_and_exit_codes() {
    let out = unicni(&["assess", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for check in [
        "current-backend",
        "node-capacity",
        "lost-features",
        "vswitch-ips",
        "cidr-conflicts",
        "node-limits",
        "flannel-subnets",
        "host-dependencies",
        "pods-not-running",
        "Exit codes",
    ] {
        assert!(text.contains(check), "--help lacks {check}");
    }
    let out = unicni(&["plan", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--instance-types"));
}

/// `kubectl get nodes,pods,services,networkpolicies -A -o json` of a flannel cluster
/// (testdata/inventories/kubectl-flannel-shop.json), assessed as it is, and as YAML.
#[test]
fn assess_reads_a_kubectl_list_in_json_and_yaml() {
    let file = "testdata/inventories/kubectl-flannel-shop.json";
    let out = assess("terway", file, &["-o", "json"]);
    // No vSwitch is known (a List has no cloud section): blocked, exit 3.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["cluster"], "kubectl-flannel-shop");
    assert_eq!(j["from"]["backend"], "flannel");
    assert_eq!(
        j["from"]["mode"], "vxlan",
        "from the nodes' flannel annotation"
    );
    assert_eq!(j["summary"]["nodes"], 4);
    assert_eq!(j["summary"]["pods"], 18);
    let check = |id: &str| {
        j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no check {id}: {j:#}"))
            .clone()
    };
    let findings = |id: &str| check(id)["findings"].to_string();
    // Owners, host ports and pod states come from the pods.
    assert!(
        findings("host-dependencies").contains("shop/ReplicaSet/ingress-gw-5c6b7d8f9"),
        "{}",
        findings("host-dependencies")
    );
    let not_running = findings("pods-not-running");
    assert!(
        not_running.contains("data/StatefulSet/pg") && not_running.contains("CrashLoopBackOff"),
        "{not_running}"
    );
    // Zones come from the node labels: one finding per zone without a vSwitch.
    let vsw = findings("vswitch-ips");
    assert!(
        vsw.contains("zone/cn-hangzhou-h") && vsw.contains("zone/cn-hangzhou-i"),
        "{vsw}"
    );
    // What a List cannot tell is said.
    let gaps = j["not_derived"].to_string();
    assert!(
        gaps.contains("vSwitches") && gaps.contains("service CIDR"),
        "{gaps}"
    );
    let table = String::from_utf8(assess("terway", file, &[]).stdout).unwrap();
    assert!(table.contains("NOT DERIVED FROM THE INVENTORY"), "{table}");

    // The same List as `-o yaml` prints it.
    let dir = tempfile::tempdir().unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(file)).unwrap()).unwrap();
    let yaml = dir.path().join("kubectl-flannel-shop.yaml");
    std::fs::write(&yaml, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let y = json(&assess("terway", yaml.to_str().unwrap(), &["-o", "json"]));
    assert_eq!(y["summary"], j["summary"]);
    assert_eq!(y["verdict"], j["verdict"]);
}

#[test]
fn malformed_json_inventory_names_the_field_path() {
    let out = assess("terway", "testdata/inventories/malformed.json", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodes[1].pod_cidr") && err.contains("line 7"),
        "{err}"
    );
}
