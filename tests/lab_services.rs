//! ClusterIP Services in the lab (root): `lab up --services` turns on the eBPF Service
//! load balancer on every node (agents following the lab's manifests directory, or the API
//! server with `--store kubernetes`), starts a backend server in the second pod of nodes 1
//! and 2 and publishes a TCP, a UDP, a ClientIP-affinity and a drained Service (and, dual
//! stack, an IPv6 one). `lab check` then probes them from the first pod of each node: both
//! nodes' backends reached, the backend seeing the client pod's own address, UDP answered
//! from the ClusterIP, affinity kept, a scaled-down backend getting no new connections
//! while an open one keeps answering; the plugin registered each node's pods with its load
//! balancer (and a DEL took a pod out). flannel (vxlan, also dual stack) and terway (shared
//! ENI); on the Kubernetes store `kubectl` (the machine's own) applies and reads
//! EndpointSlices and a Service it creates is served.

mod common;

use common::lab::Lab;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use unicni_net::NetNs;

/// The rows every services lab must have, by name prefix.
const ROWS: [&str; 6] = [
    "service: TCP ClusterIP reaches backends on both nodes",
    "service: the backend sees the client pod's own address",
    "service: UDP ClusterIP answers from the Service address",
    "service: sessionAffinity ClientIP keeps a client on one backend",
    "service: a scaled-down backend gets no new connections, an established one finishes",
    "service: IPv6 ClusterIP reaches backends on both nodes",
];

/// `lab up --services ARGS`, `lab check`: every check passes and the Service rows are
/// there (the IPv6 one on dual-stack labs only). Returns the lab (still up) and the rows.
fn services_lab(tag: &str, up: &[&str], dual: bool) -> (Lab, Vec<Value>) {
    let lab = Lab::new(tag);
    let started = Instant::now();
    let mut args = vec!["up", "--services", "--no-second-cluster"];
    args.extend_from_slice(up);
    lab.ok(&args);
    // Each node pins its own load balancer, with its 2 pods registered by CNI ADD.
    let registered = |n: usize| {
        let pin = format!("{}/bpf/n{n}", lab.root());
        assert!(Path::new(&pin).join("services").exists(), "{pin}");
        unicni_services::Lb::open(Path::new(&pin))
            .unwrap()
            .pods()
            .unwrap()
    };
    let before = [registered(1), registered(2)];
    assert_eq!([before[0].len(), before[1].len()], [2, 2], "{before:?}");
    let v = lab.check();
    // `check` re-created node 1's first pod: DEL took the old namespace out, ADD put the
    // new one in.
    let after = [registered(1), registered(2)];
    assert_eq!(after[1], before[1]);
    assert_eq!(after[0].len(), 2, "{after:?}");
    assert_eq!(
        after[0].iter().filter(|c| before[0].contains(c)).count(),
        1,
        "{before:?} {after:?}"
    );
    let checks = v["checks"].as_array().unwrap().clone();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["passed"] != true)
        .map(|c| c.to_string())
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let rows: Vec<Value> = checks
        .into_iter()
        .filter(|c| c["name"].as_str().unwrap_or("").starts_with("service: "))
        .collect();
    for name in ROWS {
        let n = rows.iter().filter(|c| c["name"] == name).count();
        let want = match name {
            _ if name.contains("IPv6") && !dual => 0,
            _ if name.contains("Affinity") || name.contains("scaled-down") => 1,
            // One per client (node 1's and node 2's).
            _ => 2,
        };
        assert_eq!(n, want, "{name}: {rows:#?}");
    }
    eprintln!("{tag}: up + check in {:?}", started.elapsed());
    (lab, rows)
}

/// One line from `to` over a new TCP connection from pod namespace `pod` (`n1-p1`),
/// retried for up to 10 s.
fn ask(lab: &Lab, pod: &str, to: &str) -> String {
    let client = NetNs::open(Path::new(&format!("/var/run/netns/{}", lab.ns(pod)))).unwrap();
    let to: SocketAddr = to.parse().unwrap();
    let start = Instant::now();
    loop {
        let r = client
            .run(|| TcpStream::connect_timeout(&to, Duration::from_millis(500)))
            .unwrap()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(b"?\n")?;
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line)?;
                Ok(line)
            });
        match r {
            Ok(line) => return line,
            Err(e) if start.elapsed() > Duration::from_secs(10) => {
                panic!("{pod} -> {to}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn flannel_vxlan_lab_load_balances_cluster_ips() {
    if !common::require_root() {
        return;
    }
    let (lab, rows) = services_lab("sf", &["--mode", "vxlan"], false);
    // Without its agent a node's pods still reach Services (programs, maps and
    // registrations are pinned); the agent started again adopts them and is ready.
    lab.ok(&["agent", "stop", "--node", "1"]);
    let line = ask(&lab, "n1-p1", "10.96.100.10:80");
    assert!(
        line.starts_with("n1-p2 ") || line.starts_with("n2-p2 "),
        "{line}"
    );
    lab.ok(&["agent", "start", "--node", "1"]);
    // The drained backend was really one of the two, and the open connection stayed on it.
    let drain = rows
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains("scaled-down"))
        .unwrap();
    assert!(
        drain["observed"]
            .as_str()
            .unwrap()
            .contains("open one still on"),
        "{drain}"
    );
    // A second check passes too: the drained Service was restored.
    let v = lab.check();
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true),
        "{v:#}"
    );
}

#[test]
fn terway_shared_eni_lab_load_balances_cluster_ips() {
    if !common::require_root() {
        return;
    }
    services_lab("st", &["--backend", "terway"], false);
}

#[test]
fn flannel_dual_stack_lab_load_balances_an_ipv6_cluster_ip() {
    if !common::require_root() {
        return;
    }
    services_lab("sd", &["--mode", "vxlan", "--ip-stack", "dual"], true);
}

#[test]
fn kubernetes_store_lab_serves_services_kubectl_applies() {
    if !common::require_root() {
        return;
    }
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!("skipping: kubectl is not installed");
        return;
    }
    let (lab, _) = services_lab("sk", &["--store", "kubernetes"], false);
    // kubectl reads the lab's EndpointSlices (discovery.k8s.io/v1) ...
    let out = lab.kubectl_ok(&["get", "endpointslices", "-n", "lab", "-o", "json"], None);
    let list: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    for want in ["echo-ipv4", "echo-udp-ipv4", "sticky-ipv4", "drain-ipv4"] {
        assert!(names.contains(&want), "{names:?}");
    }
    // ... and applies a Service of its own with node 2's backend only, which the agents
    // then serve.
    let st = lab.state();
    let backend = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str().unwrap().ends_with("n2-p2"))
        .unwrap();
    let ip = backend["ip"].as_str().unwrap();
    let manifest = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: extra, namespace: lab}}\n\
         spec:\n  clusterIP: 10.96.100.50\n  ports: [{{name: p, port: 81, targetPort: 7000, protocol: TCP}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: extra-1, namespace: lab, labels: {{kubernetes.io/service-name: extra}}}}\n\
         addressType: IPv4\nports: [{{name: p, port: 7000, protocol: TCP}}]\n\
         endpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"
    );
    lab.kubectl_ok(&["apply", "-f", "-"], Some(&manifest));
    let got = lab.kubectl_ok(
        &["get", "endpointslice", "extra-1", "-n", "lab", "-o", "json"],
        None,
    );
    let got: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["endpoints"][0]["addresses"][0], ip);
    let answer = ask(&lab, "n1-p1", "10.96.100.50:81");
    assert!(
        answer.starts_with(backend["name"].as_str().unwrap()),
        "{answer}"
    );
}

/// A pod the load balancer cannot register is refused before the backend builds anything
/// (CNI error 11, try again later, naming the namespace and the pin directory); the same
/// pod without Services then gets the network's first address (nothing was reserved).
#[test]
fn an_add_whose_registration_fails_is_refused_and_leaves_nothing() {
    if !common::require_root() {
        return;
    }
    let net = common::TestNet::new();
    let ns = common::Netns::new();
    // A pin directory whose `services` is not on a bpf filesystem: opening it fails.
    let pin = tempfile::tempdir().unwrap();
    std::fs::create_dir(pin.path().join("services")).unwrap();
    let mut conf = net.conf("1.1.0");
    conf["services"] = serde_json::json!({"pin_dir": pin.path()});
    let out = common::cni("ADD", "c1", &ns.path, &conf);
    assert!(!out.ok, "{}", out.stdout);
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["code"], 11, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&ns.path) && msg.contains("services") && msg.contains("eBPF Service"),
        "{msg}"
    );
    let links = String::from_utf8(ns.exec(&["ip", "-o", "link"]).stdout).unwrap();
    assert!(!links.contains("eth0"), "{links}");
    let plain = net.conf("1.1.0");
    let out = common::cni("ADD", "c1", &ns.path, &plain);
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
    let first = out.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(first.ends_with(".2/24"), "{first}");
    assert!(common::cni("DEL", "c1", &ns.path, &plain).ok);
}
