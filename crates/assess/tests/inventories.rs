//! The inventories in testdata/inventories, each with its expected verdict; together they
//! make every check fire. Also: the report's JSON shape, which docs/plan-assess.md documents.

use std::collections::BTreeSet;
use std::path::PathBuf;
use unicni_assess::render::{render, Format};
use unicni_assess::{assess, CheckId, Inventory, Options, Report, Status};
use unicni_capacity::InstanceTypeTable;
use unicni_config::BackendKind;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/inventories")
        .join(name)
}

fn run(file: &str, to: BackendKind, config: Option<&str>) -> Report {
    let inv = Inventory::load(&testdata(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let target_config = config.map(|c| {
        (
            unicni_config::load(&testdata(c)).expect("target config loads"),
            c.to_string(),
        )
    });
    assess(
        &inv,
        &Options {
            to,
            target_config,
            instance_types: InstanceTypeTable::builtin(),
            ignore: vec![],
        },
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"))
}

struct Case {
    file: &'static str,
    to: BackendKind,
    config: Option<&'static str>,
    verdict: &'static str,
    strategy: &'static str,
    /// Checks that must have this status.
    statuses: &'static [(&'static str, Status)],
}

const CASES: &[Case] = &[
    // `kubectl get nodes,pods,services,networkpolicies -A -o json` as kubectl prints it.
    Case {
        file: "kubectl-flannel-shop.json",
        to: BackendKind::Terway,
        config: None,
        verdict: "blocked",
        strategy: "new-cluster",
        statuses: &[
            ("vswitch-ips", Status::Blocker),
            ("host-dependencies", Status::Warning),
            ("pods-not-running", Status::Warning),
            ("flannel-subnets", Status::Skipped),
        ],
    },
    Case {
        file: "flannel-to-terway-ready.yaml",
        to: BackendKind::Terway,
        config: None,
        verdict: "ready",
        strategy: "node-pool-by-node-pool",
        statuses: &[
            ("flannel-subnets", Status::Skipped),
            ("pods-not-running", Status::Pass),
        ],
    },
    Case {
        file: "flannel-to-terway-warnings.yaml",
        to: BackendKind::Terway,
        config: None,
        verdict: "ready-with-warnings",
        strategy: "new-cluster",
        statuses: &[
            ("node-capacity", Status::Warning),
            ("vswitch-ips", Status::Warning),
            ("host-dependencies", Status::Warning),
            ("pods-not-running", Status::Warning),
        ],
    },
    Case {
        file: "flannel-to-terway-blocked.yaml",
        to: BackendKind::Terway,
        config: None,
        verdict: "blocked",
        strategy: "new-cluster",
        statuses: &[
            ("node-capacity", Status::Blocker),
            ("lost-features", Status::Blocker),
            ("vswitch-ips", Status::Blocker),
            ("cidr-conflicts", Status::Blocker),
        ],
    },
    Case {
        file: "terway-to-flannel-blocked.yaml",
        to: BackendKind::Flannel,
        config: None,
        verdict: "blocked",
        strategy: "new-cluster",
        statuses: &[
            ("node-capacity", Status::Blocker),
            ("lost-features", Status::Blocker),
            ("cidr-conflicts", Status::Blocker),
            ("node-limits", Status::Blocker),
            ("flannel-subnets", Status::Blocker),
            ("vswitch-ips", Status::Skipped),
        ],
    },
    Case {
        file: "terway-to-flannel-warnings.yaml",
        to: BackendKind::Flannel,
        config: Some("flannel-target.toml"),
        verdict: "ready-with-warnings",
        strategy: "new-cluster",
        statuses: &[
            ("lost-features", Status::Warning),
            ("host-dependencies", Status::Warning),
            ("pods-not-running", Status::Warning),
            ("cidr-conflicts", Status::Info),
        ],
    },
    Case {
        file: "flannel-already.yaml",
        to: BackendKind::Flannel,
        config: None,
        verdict: "ready",
        strategy: "none",
        statuses: &[("current-backend", Status::Info)],
    },
    Case {
        file: "calico-to-terway.yaml",
        to: BackendKind::Terway,
        config: None,
        verdict: "ready-with-warnings",
        strategy: "new-cluster",
        statuses: &[("current-backend", Status::Warning)],
    },
];

#[test]
fn every_inventory_gets_its_expected_verdict() {
    for case in CASES {
        let r = run(case.file, case.to, case.config);
        assert_eq!(r.verdict.as_str(), case.verdict, "{}", case.file);
        assert_eq!(
            r.migration_path.strategy.as_str(),
            case.strategy,
            "{}",
            case.file
        );
        for (id, want) in case.statuses {
            let got = r
                .checks
                .iter()
                .find(|c| c.id == *id)
                .expect("check ran")
                .status;
            assert_eq!(got, *want, "{}: {id}", case.file);
        }
    }
}

#[test]
fn the_inventories_make_every_check_fire() {
    let mut fired = BTreeSet::new();
    for case in CASES {
        for c in run(case.file, case.to, case.config).checks {
            if matches!(c.status, Status::Warning | Status::Blocker) {
                fired.insert(c.id);
            }
        }
    }
    let all: BTreeSet<String> = CheckId::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    assert_eq!(fired, all);
}

#[test]
fn every_testdata_inventory_is_covered_or_malformed_on_purpose() {
    let dir = testdata("");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".yaml") && !name.ends_with(".json") {
            continue;
        }
        let covered = CASES.iter().any(|c| c.file == name);
        assert!(
            covered || name.starts_with("malformed"),
            "{name} has no expected verdict"
        );
    }
}

#[test]
fn malformed_inventory_error_names_field_and_line() {
    let e = Inventory::load(&testdata("malformed.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("malformed.yaml"), "{e}");
    assert!(e.contains("cloud.vswitches[0].free_ips"), "{e}");
    assert!(e.contains("line 9"), "{e}");
    let e = Inventory::load(&testdata("malformed.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nodes[1].pod_cidr") && e.contains("line 7"),
        "{e}"
    );
}

#[test]
fn report_json_shape_is_stable() {
    let r = run("terway-to-flannel-blocked.yaml", BackendKind::Flannel, None);
    let v: serde_json::Value = serde_json::from_str(&render(&r, Format::Json).unwrap()).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        [
            "checks",
            "cluster",
            "from",
            "ignored",
            "migration_path",
            "schema",
            "summary",
            "target_source",
            "to",
            "verdict"
        ]
    );
    assert_eq!(v["schema"], "unicni.io/assessment/v1");
    assert_eq!(keys(&v["from"]), ["backend", "mode"]);
    assert_eq!(
        keys(&v["summary"]),
        ["blockers", "info", "nodes", "pods", "warnings"]
    );
    assert_eq!(
        keys(&v["checks"][0]),
        ["findings", "id", "status", "summary", "title"]
    );
    let f = &v["checks"][0]["findings"][0];
    assert_eq!(keys(f), ["message", "object", "remedy", "severity"]);
    assert_eq!(keys(&v["migration_path"]), ["reason", "steps", "strategy"]);
    assert_eq!(
        keys(&v["migration_path"]["steps"][0]),
        ["action", "detail", "order"]
    );
    assert_eq!(v["verdict"], "blocked");
    // YAML carries the same document.
    let y: serde_json::Value = serde_yaml::from_str(&render(&r, Format::Yaml).unwrap()).unwrap();
    assert_eq!(y, v);
}

#[test]
fn table_and_markdown_show_verdict_path_and_aligned_columns() {
    let r = run("flannel-to-terway-blocked.yaml", BackendKind::Terway, None);
    let t = render(&r, Format::Table).unwrap();
    assert!(t.contains("VERDICT: blocked"), "{t}");
    assert!(t.contains("MIGRATION PATH: new-cluster"));
    // The STATUS column starts at the same offset on every check row.
    let offsets: BTreeSet<usize> = t
        .lines()
        .filter(|l| CheckId::ALL.iter().any(|c| l.starts_with(c.as_str())))
        .map(|l| {
            let id_end = l.find(' ').unwrap();
            id_end + l[id_end..].find(|c: char| c != ' ').unwrap()
        })
        .collect();
    assert_eq!(offsets.len(), 1, "{t}");
    let m = render(&r, Format::Markdown).unwrap();
    assert!(
        m.contains("**Verdict: `blocked`**") && m.contains("| `node-capacity` | blocker |"),
        "{m}"
    );
}

#[test]
fn table_caps_findings_per_check() {
    let r = run("terway-to-flannel-blocked.yaml", BackendKind::Flannel, None);
    let mut r2 = r.clone();
    let c = &mut r2.checks[1];
    let f = c.findings[0].clone();
    c.findings = vec![f; 25];
    let t = render(&r2, Format::Table).unwrap();
    assert!(t.contains("5 more findings of node-capacity"), "{t}");
    let j: serde_json::Value = serde_json::from_str(&render(&r2, Format::Json).unwrap()).unwrap();
    assert_eq!(j["checks"][1]["findings"].as_array().unwrap().len(), 25);
}
