//! `unicni agent` with `store.kind = "kubernetes"` (root): the node's subnet is its
//! `spec.podCIDR`, its underlay address is published as a node annotation, and peers'
//! routes follow the Node objects. The API server is emulated (enough of the wire protocol
//! for the kube client), listening inside the node's namespace where the agent runs.

mod common;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Value>,
    configmaps: BTreeMap<String, Value>,
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "message": reason, "reason": reason, "code": code}),
    )
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (slot, Value::Object(b)) if !slot.is_object() => {
            *slot = json!({});
            merge(slot, &Value::Object(b.clone()));
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn handle(st: &Mutex<State>, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut st = st.lock().unwrap();
    let cms = "/api/v1/namespaces/kube-system/configmaps";
    match (method, path) {
        ("GET", "/api/v1/nodes") => (
            200,
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": st.nodes.values().collect::<Vec<_>>()}),
        ),
        ("GET", p) if p.starts_with("/api/v1/nodes/") => match st.nodes.get(&p[14..]) {
            Some(n) => (200, n.clone()),
            None => status(404, "NotFound"),
        },
        ("PATCH", p) if p.starts_with("/api/v1/nodes/") => match st.nodes.get_mut(&p[14..]) {
            Some(n) => {
                merge(n, &serde_json::from_slice(body).unwrap());
                (200, n.clone())
            }
            None => status(404, "NotFound"),
        },
        ("POST", p) if p == cms => {
            let mut cm: Value = serde_json::from_slice(body).unwrap();
            let name = cm["metadata"]["name"].as_str().unwrap().to_string();
            if st.configmaps.contains_key(&name) {
                return status(409, "AlreadyExists");
            }
            cm["apiVersion"] = "v1".into();
            cm["kind"] = "ConfigMap".into();
            st.configmaps.insert(name, cm.clone());
            (201, cm)
        }
        ("GET", p) if p == cms => (
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": st.configmaps.values().collect::<Vec<_>>()}),
        ),
        ("GET", p) if p.starts_with(cms) => match st.configmaps.get(&p[cms.len() + 1..]) {
            Some(c) => (200, c.clone()),
            None => status(404, "NotFound"),
        },
        _ => status(404, "NotFound"),
    }
}

/// Serves the emulated API from a socket created inside network namespace `ns`.
fn serve_in(ns: &str, state: Arc<Mutex<State>>) -> String {
    let path = format!("/var/run/netns/{ns}");
    let listener = std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpListener::bind("127.0.0.1:0").unwrap()
    })
    .join()
    .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("/").to_string();
            let path = target.split('?').next().unwrap().to_string();
            let (code, v) = handle(&state, &method, &path, &body);
            let b = v.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            );
        }
    });
    url
}

fn kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emu\n  cluster:\n    server: {url}\n\
             contexts:\n- name: emu\n  context:\n    cluster: emu\n    user: u\ncurrent-context: emu\n\
             users:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    p
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

    let state = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().unwrap();
        s.nodes.insert(
            "me".into(),
            node("me", Some("10.80.3.0/24"), "192.168.77.1"),
        );
        let mut peer = node("peer", Some("10.80.4.0/24"), "192.168.77.99");
        peer["metadata"]["annotations"] =
            json!({"unicni.io/public-ip": "192.168.77.2", "unicni.io/backend-mode": "host-gw"});
        s.nodes.insert("peer".into(), peer);
    }
    let url = serve_in(&ns.0, state.clone());
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &url);
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
    {
        let s = state.lock().unwrap();
        let ann = &s.nodes["me"]["metadata"]["annotations"];
        assert_eq!(ann["unicni.io/public-ip"], "192.168.77.1");
        assert_eq!(ann["unicni.io/backend-mode"], "host-gw");
        assert!(
            s.configmaps.contains_key("unicni-lock"),
            "the cluster lock is a ConfigMap"
        );
    }
    // The peer node is deleted: its route goes.
    state.lock().unwrap().nodes.remove("peer");
    wait_for("route removed", &log_path, || {
        !ns.exec(&["ip", "route"]).contains("10.80.4.0")
    });
}
