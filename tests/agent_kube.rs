//! `unicni agent` with `store.kind = "kubernetes"` (root): the node's subnet is its
//! `spec.podCIDR`, its underlay address is published as a node annotation, and peers'
//! routes follow the Node objects. The API server is emulated (`unicni-kube-emulator`),
//! listening inside the node's namespace where the agent runs.

mod common;

use serde_json::{json, Value};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use unicni_kube_emulator::Emulator;

const NODES: &str = "/api/v1/nodes";

/// A listener on 127.0.0.1 inside network namespace `ns`, where the agent runs (bound from
/// a thread of its own).
fn listen_in(ns: &str) -> TcpListener {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpListener::bind("127.0.0.1:0").unwrap()
    })
    .join()
    .unwrap()
}

fn node(name: &str, cidr: Option<&str>, ip: &str) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
    if let Some(c) = cidr {
        n["spec"] = json!({"podCIDR": c});
    }
    n
}

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

impl Ns {
    fn exec(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, log: &std::path::Path, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            Instant::now() < until,
            "timed out waiting for: {what}; agent log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pod_cidr_annotations_and_peer_routes_from_the_kubernetes_api() {
    if !common::require_root() {
        return;
    }
    let ns = Ns(common::unique("ukub"));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    ns.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.exec(&["ip", "addr", "add", "192.168.77.1/24", "dev", "eth0"]);
    ns.exec(&["ip", "link", "set", "eth0", "up"]);
    ns.exec(&["ip", "link", "set", "eth1", "up"]);

    let api = Emulator::new();
    api.put(NODES, node("me", Some("10.80.3.0/24"), "192.168.77.1"));
    let mut peer = node("peer", Some("10.80.4.0/24"), "192.168.77.99");
    peer["metadata"]["annotations"] =
        json!({"unicni.io/public-ip": "192.168.77.2", "unicni.io/backend-mode": "host-gw"});
    api.put(NODES, peer);
    let url = api.serve(listen_in(&ns.0));
    let dir = tempfile::tempdir().unwrap();
    let kc = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    let cfg = dir.path().join("unicni.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster]\nname = \"k\"\n[flannel]\nnetwork = \"10.80.0.0/16\"\nmode = \"host-gw\"\ninterface = \"eth0\"\n\
             [cni]\nnetwork_name = \"{net}\"\n[store]\nkind = \"kubernetes\"\nkubeconfig = \"{kc}\"\n\
             [node]\nname = \"me\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n[agent]\nreconcile_seconds = 1\n",
            net = common::unique("k"),
            kc = kc.display(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _agent = Agent(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, common::BIN, "agent", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
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
    // The peer node is deleted: its route goes.
    api.delete(NODES, "", "peer").unwrap();
    wait_for("route removed", &log_path, || {
        !ns.exec(&["ip", "route"]).contains("10.80.4.0")
    });
}
