//! `unicni agent` with `store.kind = "kubernetes"` (root): the node's subnet is its
//! `spec.podCIDR`, its underlay address is published as a node annotation, and peers'
//! routes follow the Node objects. The API server is emulated (`unicni-kube-emulator`),
//! listening inside the node's namespace where the agent runs.

mod common;

use common::agent::{self, listen_in, NodeNs};
use serde_json::{json, Value};
use unicni_kube_emulator::Emulator;

const NODES: &str = "/api/v1/nodes";

fn node(name: &str, cidr: Option<&str>, ip: &str) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
    if let Some(c) = cidr {
        n["spec"] = json!({"podCIDR": c});
    }
    n
}

fn wait_for(what: &str, log: &std::path::Path, f: impl FnMut() -> bool) {
    agent::wait_for(what, 10, log, f);
}

#[test]
fn pod_cidr_annotations_and_peer_routes_from_the_kubernetes_api() {
    if !common::require_root() {
        return;
    }
    let ns = NodeNs::new("ukub", "192.168.77.1/24");

    let api = Emulator::new();
    api.put(NODES, node("me", Some("10.80.3.0/24"), "192.168.77.1"));
    let mut peer = node("peer", Some("10.80.4.0/24"), "192.168.77.99");
    peer["metadata"]["annotations"] =
        json!({"unicni.io/public-ip": "192.168.77.2", "unicni.io/backend-mode": "host-gw"});
    api.put(NODES, peer);
    let url = api.serve(listen_in(ns.name()));
    let dir = tempfile::tempdir().unwrap();
    let kc = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    let cfg = agent::write_config(
        dir.path(),
        format!(
            "[cluster]\nname = \"k\"\n[flannel]\nnetwork = \"10.80.0.0/16\"\nmode = \"host-gw\"\ninterface = \"eth0\"\n\
             [cni]\nnetwork_name = \"{net}\"\n[store]\nkind = \"kubernetes\"\nkubeconfig = \"{kc}\"\n\
             [node]\nname = \"me\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n[agent]\nreconcile_seconds = 1\n",
            net = common::unique("k"),
            kc = kc.display(),
            d = dir.path().display()
        ),
    );
    let log_path = dir.path().join("agent.log");
    let _agent = agent::start(ns.name(), &cfg, &log_path);
    let subnet_file = dir.path().join("run/flannel/subnet.json");
    wait_for("lease file", &log_path, || subnet_file.exists());
    assert!(std::fs::read_to_string(&subnet_file)
        .unwrap()
        .contains("10.80.3.0/24"));
    let route = "10.80.4.0/24 via 192.168.77.2 dev eth0 proto 77";
    wait_for("peer route", &log_path, || {
        ns.exec(&["ip", "route"]).contains(route)
    });
    let me = api.get(NODES, "", "me").unwrap();
    let ann = &me["metadata"]["annotations"];
    assert_eq!(ann["unicni.io/public-ip"], "192.168.77.1");
    assert_eq!(ann["unicni.io/backend-mode"], "host-gw");
    assert!(
        api.get("/api/v1/configmaps", "kube-system", "unicni-lock")
            .is_some(),
        "the cluster lock is a ConfigMap"
    );
    // Steady state: several passes (reconcile_seconds = 1) and renewals make no LIST and
    // no write; the agent only holds its Node watch open.
    let mark = api.requests().len();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let quiet: Vec<String> = api.requests().into_iter().skip(mark).collect();
    assert!(
        quiet
            .iter()
            .all(|r| r.starts_with("GET ") && r.contains("watch=true")),
        "steady state: only the watch, no LIST, GET or PATCH: {quiet:?}"
    );
    let patches = api
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH /api/v1/nodes/me"))
        .count();
    assert_eq!(
        patches,
        1,
        "the node is annotated once: {:?}",
        api.requests()
    );
    // The peer node is deleted: its route goes.
    api.delete(NODES, "", "peer").unwrap();
    wait_for("route removed", &log_path, || {
        !ns.exec(&["ip", "route"]).contains("10.80.4.0")
    });
}
