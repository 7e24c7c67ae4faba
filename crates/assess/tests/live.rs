//! The live path against an emulated API server: a small HTTP server that speaks the
//! Kubernetes wire protocol (JSON lists with `metadata.continue`, Status objects for 404)
//! and a kubeconfig pointing at it, so that the real kube client code runs end to end.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use unicni_assess::inventory::{IpStack, PodPhase, ServiceType};
use unicni_assess::{assess, Options, Verdict};
use unicni_capacity::InstanceTypeTable;
use unicni_config::BackendKind;

type Routes = HashMap<&'static str, String>;

fn list(api_version: &str, kind: &str, items: serde_json::Value, cont: Option<&str>) -> String {
    let mut meta = serde_json::json!({"resourceVersion": "100"});
    if let Some(c) = cont {
        meta["continue"] = c.into();
    }
    serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": meta, "items": items})
        .to_string()
}

fn not_found(path: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": format!("the server could not find the requested resource ({path})"),
        "reason": "NotFound", "details": {}, "code": 404
    })
    .to_string()
}

fn routes() -> Routes {
    let mut r = Routes::new();
    r.insert("/version", serde_json::json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "abc", "gitTreeState": "clean",
        "buildDate": "2025-05-15T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
    }).to_string());
    r.insert(
        "/apis/apps/v1/daemonsets",
        list(
            "apps/v1",
            "DaemonSetList",
            serde_json::json!([
                {"metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel"}},
                {"metadata": {"name": "kube-proxy", "namespace": "kube-system"}}
            ]),
            None,
        ),
    );
    r.insert("/api/v1/namespaces/kube-flannel/configmaps/kube-flannel-cfg", serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
        "data": {"net-conf.json": "{\"Network\": \"10.244.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}"}
    }).to_string());
    r.insert("/api/v1/nodes", list("v1", "NodeList", serde_json::json!([
        {"metadata": {"name": "n1", "labels": {
            "topology.kubernetes.io/zone": "cn-hangzhou-h",
            "node.kubernetes.io/instance-type": "ecs.g7.2xlarge",
            "alibabacloud.com/nodepool-id": "np-web"}},
         "spec": {"podCIDR": "10.244.1.0/24"},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.1.0.10"}],
                    "conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "n2", "labels": {"topology.kubernetes.io/zone": "cn-hangzhou-i",
            "node.kubernetes.io/instance-type": "ecs.c7.4xlarge"}},
         "spec": {"podCIDR": "10.244.2.0/24"},
         "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    ]), None));
    // Pods come in two pages: the client must follow `continue`.
    r.insert("/api/v1/pods", list("v1", "PodList", serde_json::json!([
        {"metadata": {"name": "web-1", "namespace": "shop",
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9", "uid": "u1", "controller": true}]},
         "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"containerPort": 8080, "hostPort": 80}]}]},
         "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}]}},
        {"metadata": {"name": "crash-1", "namespace": "shop"},
         "spec": {"nodeName": "n2", "containers": [{"name": "c"}]},
         "status": {"phase": "Running", "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 9,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    ]), Some("page-2")));
    r.insert("/api/v1/pods?continue=page-2", list("v1", "PodList", serde_json::json!([
        {"metadata": {"name": "proxy-n1", "namespace": "kube-system"},
         "spec": {"nodeName": "n1", "hostNetwork": true, "containers": [{"name": "c"}]},
         "status": {"phase": "Running"}},
        {"metadata": {"name": "db-0", "namespace": "shop", "annotations": {"k8s.aliyun.com/pod-networking": "fixed-db"},
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u2", "controller": true}]},
         "spec": {"nodeName": "n2", "containers": [{"name": "c"}]},
         "status": {"phase": "Running", "podIPs": [{"ip": "10.244.2.9"}]}},
        {"metadata": {"name": "pending-1", "namespace": "shop"},
         "spec": {"containers": [{"name": "c"}]},
         "status": {"phase": "Pending", "reason": "Unschedulable"}}
    ]), None));
    r.insert("/api/v1/services", list("v1", "ServiceList", serde_json::json!([
        {"metadata": {"name": "web", "namespace": "shop", "annotations": {"service.beta.kubernetes.io/backend-type": "eni"}},
         "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]}},
        {"metadata": {"name": "kubernetes", "namespace": "default"}, "spec": {"type": "ClusterIP", "ports": [{"port": 443}]}}
    ]), None));
    r.insert(
        "/apis/networking.k8s.io/v1/networkpolicies",
        list(
            "networking.k8s.io/v1",
            "NetworkPolicyList",
            serde_json::json!([
                {"metadata": {"name": "deny-all", "namespace": "shop"}, "spec": {"podSelector": {}}}
            ]),
            None,
        ),
    );
    r.insert("/apis/networking.k8s.io/v1/servicecidrs", list("networking.k8s.io/v1", "ServiceCIDRList", serde_json::json!([
        {"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["172.21.0.0/20", "fd00:21::/108"]}}
    ]), None));
    r.insert("/apis/network.alibabacloud.com/v1beta1/podnetworkings", list("network.alibabacloud.com/v1beta1", "PodNetworkingList", serde_json::json!([
        {"apiVersion": "network.alibabacloud.com/v1beta1", "kind": "PodNetworking",
         "metadata": {"name": "fixed-db"}, "spec": {"allocationType": {"type": "Fixed", "releaseStrategy": "TTL"}}},
        {"apiVersion": "network.alibabacloud.com/v1beta1", "kind": "PodNetworking",
         "metadata": {"name": "elastic"}, "spec": {"allocationType": {"type": "Elastic"}}}
    ]), None));
    r
}

/// Serves `routes` by path plus the `continue` query parameter; everything else is 404.
/// Returns the base URL and the request lines seen.
fn serve(routes: Routes) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut content_length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; content_length];
            let _ = reader.read_exact(&mut body);
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            log.lock().unwrap().push(request_line.trim().to_string());
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let cont = query.split('&').find_map(|kv| kv.strip_prefix("continue="));
            let key = match cont {
                Some(c) => format!("{path}?continue={c}"),
                None => path.to_string(),
            };
            let (status, body) = match routes.get(key.as_str()) {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", not_found(path)),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

fn kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emu\n  cluster:\n    server: {url}\nusers:\n- name: u\n  user:\n    token: test-token\ncontexts:\n- name: emu-ctx\n  context:\n    cluster: emu\n    user: u\ncurrent-context: emu-ctx\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn export_reads_a_cluster_through_the_kubernetes_api() {
    let (url, seen) = serve(routes());
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &url);
    let client = unicni_assess::live::client(Some(&kc)).await.unwrap();
    let inv = unicni_assess::live::export(client, "emu-ctx")
        .await
        .unwrap();

    assert_eq!(inv.cluster.network.backend, "flannel");
    assert_eq!(inv.cluster.network.mode.as_deref(), Some("vxlan"));
    assert_eq!(
        inv.cluster.network.cluster_cidr,
        Some("10.244.0.0/16".parse().unwrap())
    );
    assert_eq!(
        inv.cluster.service_cidr,
        Some("172.21.0.0/20".parse().unwrap())
    );
    assert_eq!(inv.cluster.kubernetes_version.as_deref(), Some("v1.33.1"));
    assert_eq!(inv.cluster.ip_stack, IpStack::Dual);

    assert_eq!(inv.nodes.len(), 2);
    let n1 = &inv.nodes[0];
    assert_eq!(
        (
            n1.zone.as_deref(),
            n1.instance_type.as_deref(),
            n1.pool.as_deref()
        ),
        (
            Some("cn-hangzhou-h"),
            Some("ecs.g7.2xlarge"),
            Some("np-web")
        )
    );
    assert_eq!(n1.internal_ip, Some("10.1.0.10".parse().unwrap()));
    assert!(n1.ready && !inv.nodes[1].ready);

    assert_eq!(inv.pods.len(), 5, "both pages were read");
    let pod = |n: &str| inv.pods.iter().find(|p| p.name == n).unwrap();
    assert_eq!(pod("web-1").host_ports, [80]);
    assert_eq!(pod("web-1").owner.as_deref(), Some("ReplicaSet/web-7d9"));
    assert_eq!(pod("crash-1").phase, PodPhase::Pending);
    assert_eq!(pod("crash-1").reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(pod("proxy-n1").host_network);
    assert!(pod("db-0").fixed_ip);
    assert_eq!(pod("db-0").pod_networking.as_deref(), Some("fixed-db"));
    assert_eq!(pod("pending-1").node, None);
    assert_eq!(pod("pending-1").reason.as_deref(), Some("Unschedulable"));

    let web = inv.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web.service_type, ServiceType::LoadBalancer);
    assert!(web.lb_to_pod);
    assert_eq!(web.node_ports, [30080]);
    assert_eq!(inv.network_policies.len(), 1);

    // The real client asked in pages and followed the continue token.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|l| l.contains("/api/v1/pods?") && l.contains("limit=500")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("continue=page-2")),
        "{seen:?}"
    );

    // The exported inventory round-trips through the file format and assesses.
    let text = inv.to_yaml();
    let again = unicni_assess::Inventory::parse(text.as_bytes(), "export.yaml", false).unwrap();
    assert_eq!(again, inv);
    let report = assess(
        &again,
        &Options {
            to: BackendKind::Flannel,
            target_config: None,
            instance_types: InstanceTypeTable::builtin(),
            ignore: vec![],
        },
    )
    .unwrap();
    assert_eq!(
        report.verdict,
        Verdict::Blocked,
        "flannel cannot keep dual stack and fixed IPs"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &url);
    let client = unicni_assess::live::client(Some(&kc)).await.unwrap();
    let e = unicni_assess::live::export(client, "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("live cluster: listing daemonsets"), "{e}");
}

#[tokio::test]
async fn a_missing_kubeconfig_names_the_file() {
    let e = match unicni_assess::live::client(Some(std::path::Path::new("/nonexistent/kc"))).await {
        Ok(_) => panic!("a missing kubeconfig must fail"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("/nonexistent/kc"), "{e}");
}
