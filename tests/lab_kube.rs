//! The lab on the Kubernetes store (root): `lab up --store kubernetes` runs `unicni
//! kube-sim` in the VPC namespace, registers the nodes and pods there as the control plane
//! and the kubelets would, and the agents (in-cluster configuration: the service account
//! mounted where a pod has it) take their subnets, pod annotations and NetworkPolicies from
//! the API. `lab check` passes as on the other stores, plus a row comparing the API's view
//! with what the lab saw; `kubectl` (the machine's own) judges what is in the API, and a
//! NetworkPolicy created with it takes effect on the wire.

mod common;

use common::lab::{failed_checks, wait_for, Lab};
use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use unicni_net::NetNs;

fn kubectl_json(lab: &Lab, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl_ok(&all, None)).unwrap()
}

/// `lab up --store kubernetes --policy ARGS` and `lab check`: every check passes, the API
/// view row among them, and kubectl sees the nodes with their podCIDRs (flannel), the
/// pods with their addresses and the cluster lock as an immutable ConfigMap.
fn kube_lab(tag: &str, up: &[&str]) {
    let lab = Lab::new(tag);
    let started = Instant::now();
    let mut args = vec![
        "up",
        "--store",
        "kubernetes",
        "--policy",
        "--no-second-cluster",
    ];
    args.extend_from_slice(up);
    lab.ok(&args);
    let st = lab.state();
    let kube_pid = st["kube_pid"].as_u64().expect("lab.json records kube-sim");
    let status = lab.ok(&["status"]);
    assert!(
        status.contains(&format!(
            "API server       https://192.168.250.1:6443  running (pid {kube_pid})"
        )),
        "{status}"
    );

    // The agents run with the in-cluster configuration, not a kubeconfig.
    let config = std::fs::read_to_string(format!("{}/n1/unicni.toml", lab.root())).unwrap();
    assert!(config.contains("kind = \"kubernetes\""), "{config}");
    assert!(!config.contains("kubeconfig"), "{config}");
    let pid = st["nodes"][0]["agent_pid"].as_u64().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("KUBERNETES_SERVICE_HOST=192.168.250.1"),
        "the agent's environment: {environ}"
    );
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        mounts.contains(" /run/secrets/kubernetes.io/serviceaccount "),
        "the agent has the service account mounted: {mounts}"
    );
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_mounts.contains("/run/secrets/kubernetes.io/serviceaccount"),
        "the mount stays in the agent's mount namespace"
    );

    let v = lab.check();
    let failed = failed_checks(&v);
    assert!(failed.is_empty(), "{failed:#?}");
    let checks = v["checks"].as_array().unwrap();
    let api = checks
        .iter()
        .find(|c| c["name"] == "API view (Nodes, Pods)")
        .expect("an API view row");
    assert_eq!(api["passed"], true, "{api}");
    assert!(
        checks
            .iter()
            .filter(|c| c["name"].as_str().unwrap_or("").starts_with("policy: "))
            .count()
            >= 20,
        "the policy matrix ran"
    );

    // kubectl's view: what the lab recorded (after `lab check` re-created a pod).
    let st = lab.state();
    let nodes = kubectl_json(&lab, &["get", "nodes"]);
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{nodes}");
    for n in items {
        let name = n["metadata"]["name"].as_str().unwrap();
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], name);
        let internal = n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .unwrap_or_else(|| panic!("{name}: no InternalIP"));
        assert!(
            internal["address"]
                .as_str()
                .unwrap()
                .starts_with("192.168.250."),
            "{n}"
        );
    }
    for n in st["nodes"].as_array().unwrap() {
        let node = items
            .iter()
            .find(|i| i["metadata"]["name"] == n["name"])
            .unwrap_or_else(|| panic!("kubectl get nodes has no {}", n["name"]));
        if st["backend"] == "flannel" {
            assert_eq!(node["spec"]["podCIDR"], n["subnet"], "{node}");
        } else {
            let labels = &node["metadata"]["labels"];
            assert_eq!(labels["topology.kubernetes.io/zone"], "cn-hangzhou-a");
            assert!(labels["node.kubernetes.io/instance-type"].is_string());
        }
    }
    let pods = kubectl_json(&lab, &["get", "pods", "-A"]);
    for p in st["pods"].as_array().unwrap() {
        let pod = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == p["name"])
            .unwrap_or_else(|| panic!("kubectl get pods has no {}", p["name"]));
        assert_eq!(pod["status"]["podIP"], p["ip"], "{pod}");
    }
    // A node added later gets the next free subnet from the allocator, and its agent the
    // subnet its Node says.
    if st["backend"] == "flannel" {
        let used: Vec<&str> = st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["subnet"].as_str().unwrap())
            .collect();
        assert_eq!(used, ["10.250.0.0/24", "10.250.1.0/24"]);
        lab.ok(&["add-node"]);
        let n3 = kubectl_json(&lab, &["get", "node", &format!("ulab{}-node-3", lab.id)]);
        assert_eq!(n3["spec"]["podCIDR"], "10.250.2.0/24", "{n3}");
        assert_eq!(n3["spec"]["podCIDRs"][0], "10.250.2.0/24", "{n3}");
        assert_eq!(lab.state()["nodes"][2]["subnet"], "10.250.2.0/24");
    }
    let cms = kubectl_json(&lab, &["get", "configmaps", "-n", "kube-system"]);
    let lock = cms["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metadata"]["annotations"]["unicni.io/key"].is_string())
        .unwrap_or_else(|| panic!("no unicni ConfigMap in kube-system: {cms}"));
    assert_eq!(lock["immutable"], true, "{lock}");

    let root = lab.root();
    drop(lab);
    assert!(!Path::new(&root).exists(), "lab down removes everything");
    common::lab::assert_gone(kube_pid, "unicni kube-sim");
    eprintln!("{tag}: up + check in {:?}", started.elapsed());
}

#[test]
fn flannel_vxlan_on_kubernetes_with_policy() {
    if !common::require_root() {
        return;
    }
    kube_lab("kf", &["--mode", "vxlan"]);
}

#[test]
fn terway_shared_eni_on_kubernetes_with_policy() {
    if !common::require_root() {
        return;
    }
    kube_lab("kt", &["--backend", "terway", "--mode", "shared-eni"]);
}

/// A TCP server in namespace `ns` on `port` that greets every connection; stops on drop.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(ns: &str, port: u16) -> Server {
        let netns = NetNs::open(Path::new(&format!("/var/run/netns/{ns}"))).unwrap();
        let listener = netns
            .run(|| TcpListener::bind(("0.0.0.0", port)))
            .unwrap()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        use std::io::Write;
                        let _ = c.write_all(b"hello");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a connection from namespace `ns` to `to` gets the greeting within 1 s.
fn passes(ns: &str, to: SocketAddr) -> bool {
    let netns = NetNs::open(Path::new(&format!("/var/run/netns/{ns}"))).unwrap();
    netns
        .run(|| {
            let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut b = [0u8; 5];
            s.read_exact(&mut b).is_ok()
        })
        .unwrap()
}

const DENY_WEB: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: kubectl-deny-web
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: web
  policyTypes: [Ingress]
";

/// kubectl is the judge: a NetworkPolicy `kubectl apply` creates drops a connection that
/// passed before, across nodes, and `kubectl delete` lets it through again.
#[test]
fn a_network_policy_created_with_kubectl_takes_effect_on_the_wire() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("kk");
    lab.ok(&[
        "up",
        "--store",
        "kubernetes",
        "--policy",
        "--no-second-cluster",
        "--mode",
        "host-gw",
    ]);
    let st = lab.state();
    let pod = |name: &str| {
        st["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
            .clone()
    };
    // web (shop, node 1) serves; client (lab, node 2) connects.
    let (web, client) = (pod("n1-p1"), pod("n2-p1"));
    let web_pod = kubectl_json(&lab, &["get", "pod", "-n", "shop", "n1-p1"]);
    assert_eq!(web_pod["metadata"]["labels"]["app"], "web");
    let to: SocketAddr = format!("{}:8080", web["ip"].as_str().unwrap())
        .parse()
        .unwrap();
    let client_ns = client["netns"].as_str().unwrap().to_string();
    let _server = Server::start(web["netns"].as_str().unwrap(), 8080);
    assert!(passes(&client_ns, to), "client -> web before any policy");

    let out = lab.kubectl_ok(&["apply", "-f", "-"], Some(DENY_WEB));
    assert!(out.contains("kubectl-deny-web"), "{out}");
    let applied = Instant::now();
    wait_for(
        "the kubectl NetworkPolicy drops client -> web",
        Duration::from_secs(10),
        || !passes(&client_ns, to),
    );
    eprintln!("kubectl apply to dropped: {:?}", applied.elapsed());
    // Every agent reports it applied under its namespace/name.
    for n in [1, 2] {
        let status: Value = serde_json::from_slice(
            &std::fs::read(format!("{}/n{n}/run/policy.json", lab.root())).unwrap(),
        )
        .unwrap();
        assert!(
            status["policies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "shop/kubectl-deny-web"),
            "node {n}: {status}"
        );
    }

    lab.kubectl_ok(
        &["delete", "networkpolicy", "-n", "shop", "kubectl-deny-web"],
        None,
    );
    wait_for(
        "client -> web passes again after kubectl delete",
        Duration::from_secs(10),
        || passes(&client_ns, to),
    );
    let listed = lab.kubectl_ok(&["get", "networkpolicies", "-A"], None);
    assert!(!listed.contains("kubectl-deny-web"), "{listed}");
}
