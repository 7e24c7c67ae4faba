//! The Kubernetes store against the emulated API server (`unicni-kube-emulator`): Node
//! list/get/merge-patch, ConfigMap create with 409 on conflict, get, delete and list by
//! label, through the real kube client end to end.

use serde_json::{json, Value};
use unicni_core::{CreateOutcome, Store};
use unicni_kube_emulator::Emulator;
use unicni_store::{KubeNodes, KubeStore};

const NODES: &str = "/api/v1/nodes";
const CONFIGMAPS: &str = "/api/v1/configmaps";

fn node(name: &str, cidr: Option<&str>, ip: &str) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
    if let Some(c) = cidr {
        n["spec"] = json!({"podCIDR": c});
    }
    n
}

#[tokio::test]
async fn node_leases_and_configmap_records_through_the_kube_client() {
    let api = Emulator::new();
    api.put(NODES, node("a", Some("10.244.1.0/24"), "192.168.0.1"));
    api.put(NODES, node("b", None, "192.168.0.2"));
    // Unmanaged ConfigMaps are not the store's: a list by label leaves them out.
    api.put(
        CONFIGMAPS,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "other", "namespace": "kube-system",
                            "annotations": {"unicni.io/key": "loose"}}}),
    );
    let url = api.start();
    let dir = tempfile::tempdir().unwrap();
    let client =
        unicni_store::kube::client(Some(&unicni_kube_emulator::kubeconfig(dir.path(), &url)))
            .await
            .unwrap();

    // The lock record: create-only, the loser sees the winner's value.
    let store = KubeStore::new(client.clone(), "kube-system");
    assert_eq!(
        store.create("lock", b"first").await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store.create("lock", b"second").await.unwrap(),
        CreateOutcome::Exists(b"first".to_vec())
    );
    assert_eq!(store.get("lock").await.unwrap().unwrap(), b"first");
    assert_eq!(store.get("absent").await.unwrap(), None);
    assert_eq!(
        store.list("lo").await.unwrap(),
        vec![("lock".to_string(), b"first".to_vec())]
    );
    let cm = api.get(CONFIGMAPS, "kube-system", "unicni-lock").unwrap();
    assert_eq!(cm["immutable"], true);
    // Replacing an immutable record deletes and creates it again.
    store.put("lock", b"third").await.unwrap();
    assert_eq!(store.get("lock").await.unwrap().unwrap(), b"third");
    store.delete("lock").await.unwrap();
    store.delete("lock").await.unwrap();
    assert_eq!(store.get("lock").await.unwrap(), None);

    // Nodes: podCIDR is the subnet; the underlay IP falls back to InternalIP until annotated.
    let nodes = KubeNodes::new(client);
    let a = nodes.get("a").await.unwrap();
    assert_eq!(a.pod_cidr.as_deref(), Some("10.244.1.0/24"));
    assert_eq!(a.public_ip.as_deref(), Some("192.168.0.1"));
    assert_eq!(a.vtep_mac, None);
    nodes
        .annotate("a", "192.168.9.1", Some("02:00:00:00:00:01"), "vxlan")
        .await
        .unwrap();
    let a = nodes.get("a").await.unwrap();
    assert_eq!(a.public_ip.as_deref(), Some("192.168.9.1"));
    assert_eq!(a.vtep_mac.as_deref(), Some("02:00:00:00:00:01"));
    assert_eq!(a.mode.as_deref(), Some("vxlan"));
    let all = nodes.list().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().find(|n| n.node == "b").unwrap().pod_cidr, None);
    let e = nodes.get("missing").await.unwrap_err().to_string();
    assert!(e.contains("\"missing\"") && e.contains("node.name"), "{e}");
}
