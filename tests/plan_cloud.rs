//! `unicni plan --from-cloud`: the real cloud client asks the emulator (started here as
//! `unicni cloud-sim` on a loopback port) for instance-type limits and vSwitch free
//! addresses.

mod common;

use common::agent::{unicni, unicni_ok};

fn start_sim() -> (common::sim::Sim, String) {
    let sim = common::sim::start(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/cloud/sim.toml"
    )));
    let endpoint = sim.endpoint.clone();
    (sim, endpoint)
}

fn config(dir: &std::path::Path, endpoint: &str, secret: &str) -> std::path::PathBuf {
    let p = dir.join("terway.toml");
    std::fs::write(
        &p,
        format!(
            "[backend]\nkind = \"terway\"\n[cluster]\nservice_cidr = \"10.96.0.0/12\"\n\
             [terway]\nvswitches = [\"vsw-pod-a\", \"vsw-pod-b\"]\n\
             instance_types = [\"ecs.g7.large\", \"ecs.c7.xlarge\"]\n\
             [cloud]\nkind = \"alibaba\"\nregion = \"cn-hangzhou\"\nendpoint = \"{endpoint}\"\n\
             access_key_id = \"unicni-sim\"\naccess_key_secret = \"{secret}\"\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn plan_reads_instance_types_and_vswitches_from_the_cloud_api() {
    let (_sim, endpoint) = start_sim();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &endpoint, "unicni-sim-secret");
    let out = unicni_ok(
        &["plan", "--from-cloud", "--output", "json", "--config"],
        &cfg,
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pods = plan["pods_per_node"].as_array().unwrap();
    let g7 = pods
        .iter()
        .find(|p| p["instance_type"] == "ecs.g7.large")
        .unwrap();
    assert_eq!(g7["shared"], 12);
    assert_eq!(g7["exclusive"], 2);
    // Free addresses can only have come from DescribeVSwitches: no inventory was given.
    let total = plan["pod_addresses"]["total"]
        .as_u64()
        .expect("a total from the cloud");
    assert!(total > 8000, "{}", plan["pod_addresses"]);
    let zones = plan["pod_addresses"]["by_zone"].as_object().unwrap();
    assert!(zones.contains_key("cn-hangzhou-a") && zones.contains_key("cn-hangzhou-b"));
    // Without --from-cloud nobody knows the free addresses.
    let offline = unicni(&["plan", "--output", "json", "--config"], &cfg);
    let offline: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert!(offline["pod_addresses"]["total"].is_null());
}

#[test]
fn a_wrong_secret_is_an_auth_error_that_does_not_show_the_secret() {
    let (_sim, endpoint) = start_sim();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &endpoint, "definitely-wrong-secret");
    let out = unicni(&["plan", "--from-cloud", "--config"], &cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DescribeInstanceTypes"), "{err}");
    assert!(!err.contains("definitely-wrong-secret"), "{err}");
}
