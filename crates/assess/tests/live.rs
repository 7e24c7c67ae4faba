//! The live path against the emulated API server (`unicni-kube-emulator`: JSON lists in
//! pages with `metadata.continue`, Status objects for 404) and a kubeconfig pointing at it,
//! so that the real kube client code runs end to end.

use serde_json::json;
use std::net::TcpListener;
use unicni_assess::inventory::{IpStack, PodPhase, ServiceType};
use unicni_assess::{assess, Options, Verdict};
use unicni_capacity::InstanceTypeTable;
use unicni_config::BackendKind;
use unicni_kube_emulator::{kubeconfig, Emulator};

/// The cluster the export reads: a flannel cluster (its DaemonSet and ConfigMap), two
/// nodes, five pods (served in pages of three: the client must follow `continue`),
/// Services, a NetworkPolicy, the ServiceCIDRs and terway's PodNetworkings.
fn cluster() -> Emulator {
    let api = Emulator::new();
    api.page_size(3);
    api.set_raw("/version", json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "abc", "gitTreeState": "clean",
        "buildDate": "2025-05-15T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
    }));
    for (ns, name) in [
        ("kube-flannel", "kube-flannel-ds"),
        ("kube-system", "kube-proxy"),
    ] {
        api.put(
            "/apis/apps/v1/daemonsets",
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": ns}}),
        );
    }
    api.put("/api/v1/configmaps", json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
        "data": {"net-conf.json": "{\"Network\": \"10.244.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}"}
    }));
    for node in [
        json!({"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": "n1", "labels": {
            "topology.kubernetes.io/zone": "cn-hangzhou-h",
            "node.kubernetes.io/instance-type": "ecs.g7.2xlarge",
            "alibabacloud.com/nodepool-id": "np-web"}},
         "spec": {"podCIDR": "10.244.1.0/24"},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.1.0.10"}],
                    "conditions": [{"type": "Ready", "status": "True"}]}}),
        json!({"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": "n2", "labels": {"topology.kubernetes.io/zone": "cn-hangzhou-i",
            "node.kubernetes.io/instance-type": "ecs.c7.4xlarge"}},
         "spec": {"podCIDR": "10.244.2.0/24"},
         "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    ] {
        api.put("/api/v1/nodes", node);
    }
    for pod in [
        json!({"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-1", "namespace": "shop",
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9", "uid": "u1", "controller": true}]},
         "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"containerPort": 8080, "hostPort": 80}]}]},
         "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}]}}),
        json!({"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "crash-1", "namespace": "shop"},
         "spec": {"nodeName": "n2", "containers": [{"name": "c"}]},
         "status": {"phase": "Running", "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 9,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
        json!({"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "proxy-n1", "namespace": "kube-system"},
         "spec": {"nodeName": "n1", "hostNetwork": true, "containers": [{"name": "c"}]},
         "status": {"phase": "Running"}}),
        json!({"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "db-0", "namespace": "shop", "annotations": {"k8s.aliyun.com/pod-networking": "fixed-db"},
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u2", "controller": true}]},
         "spec": {"nodeName": "n2", "containers": [{"name": "c"}]},
         "status": {"phase": "Running", "podIPs": [{"ip": "10.244.2.9"}]}}),
        json!({"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "pending-1", "namespace": "shop"},
         "spec": {"containers": [{"name": "c"}]},
         "status": {"phase": "Pending", "reason": "Unschedulable"}}),
    ] {
        api.put("/api/v1/pods", pod);
    }
    for svc in [
        json!({"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "web", "namespace": "shop", "annotations": {"service.beta.kubernetes.io/backend-type": "eni"}},
         "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kubernetes", "namespace": "default"}, "spec": {"type": "ClusterIP", "ports": [{"port": 443}]}}),
    ] {
        api.put("/api/v1/services", svc);
    }
    api.put(
        "/apis/networking.k8s.io/v1/networkpolicies",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "deny-all", "namespace": "shop"}, "spec": {"podSelector": {}}}),
    );
    api.put(
        "/apis/networking.k8s.io/v1/servicecidrs",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
               "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["172.21.0.0/20", "fd00:21::/108"]}}),
    );
    for pn in [
        json!({"apiVersion": "network.alibabacloud.com/v1beta1", "kind": "PodNetworking",
         "metadata": {"name": "fixed-db"}, "spec": {"allocationType": {"type": "Fixed", "releaseStrategy": "TTL"}}}),
        json!({"apiVersion": "network.alibabacloud.com/v1beta1", "kind": "PodNetworking",
         "metadata": {"name": "elastic"}, "spec": {"allocationType": {"type": "Elastic"}}}),
    ] {
        api.put("/apis/network.alibabacloud.com/v1beta1/podnetworkings", pn);
    }
    api
}

#[tokio::test]
async fn export_reads_a_cluster_through_the_kubernetes_api() {
    let api = cluster();
    let url = api.start();
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &url);
    let client = unicni_assess::live::client(Some(&kc)).await.unwrap();
    let inv = unicni_assess::live::export(client, "emu").await.unwrap();

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
    let seen = api.requests();
    assert!(
        seen.iter()
            .any(|l| l.contains("/api/v1/pods?") && l.contains("limit=500")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("/api/v1/pods?") && l.contains("continue=")),
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
