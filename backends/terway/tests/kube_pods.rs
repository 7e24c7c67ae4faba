//! Terway's pod information on the Kubernetes API against the emulated API server: read
//! from the watched caches of this node's Pods and the Namespaces (no request per ADD), a
//! pod created just before its ADD is found by waiting on the cache, and only a pod the
//! watch never delivers costs one GET.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use unicni_core::PodRef;
use unicni_kube_emulator::Emulator;
use unicni_terway::podinfo::KubePods;
use unicni_terway::server::PodLookup;

const PODS: &str = "/api/v1/pods";
const NAMESPACES: &str = "/api/v1/namespaces";

fn pod(name: &str, node: &str, ann: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "annotations": ann},
        "spec": {"nodeName": node, "containers": []}})
}

fn pod_ref(name: &str) -> PodRef {
    PodRef {
        namespace: Some("shop".into()),
        name: Some(name.into()),
        uid: None,
    }
}

/// Requests other than the watches of the two caches, from `from` on.
fn not_watches(api: &Emulator, from: usize) -> Vec<String> {
    api.requests()
        .into_iter()
        .skip(from)
        .filter(|r| !r.contains("watch=true"))
        .collect()
}

#[tokio::test]
async fn pods_come_from_the_cache_and_a_new_pod_is_waited_for() {
    let api = Emulator::new();
    api.bookmark_every(Some(Duration::from_millis(300)));
    api.put(
        NAMESPACES,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop",
            "annotations": {"unicni.io/security-groups": "sg-ns"}}}),
    );
    api.put(
        PODS,
        pod("old", "me", json!({"unicni.io/vswitches": "vsw-a"})),
    );
    let url = api.start();
    let dir = tempfile::tempdir().unwrap();
    let kc = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    let client = unicni_store::kube::client(Some(&kc)).await.unwrap();
    let pods = KubePods::new(client, "me");
    assert!(pods.synced().is_err(), "not synced before the first list");
    let t = Instant::now();
    while pods.synced().is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", pods.synced());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mark = api.requests().len();

    let info = pods.lookup(&pod_ref("old")).await.unwrap();
    assert_eq!(info.vswitches, ["vsw-a"]);
    assert_eq!(info.security_groups, ["sg-ns"]);

    // Created just before its ADD: the watch may not have delivered it yet; the lookup
    // waits on the cache and finds it there.
    api.put(
        PODS,
        pod(
            "fresh",
            "me",
            json!({"unicni.io/security-groups": "sg-pod"}),
        ),
    );
    let info = pods.lookup(&pod_ref("fresh")).await.unwrap();
    assert_eq!(info.security_groups, ["sg-pod"]);

    // Created a while after the ADD arrived (still inside the 2 s bound).
    let later = api.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut p = pod("late", "me", json!({}));
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
            "kind": "StatefulSet", "name": "late", "uid": "u"}]);
        later.put(PODS, p);
    });
    let t = Instant::now();
    let info = pods.lookup(&pod_ref("late")).await.unwrap();
    assert!(info.fixed_ip, "a StatefulSet pod keeps its IP: {info:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // Steady state meanwhile: no request but the watches.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pods.fallback_gets(), 0);
    assert_eq!(
        not_watches(&api, mark),
        Vec::<String>::new(),
        "no LIST, no GET"
    );

    // The same name re-created (a StatefulSet pod): the lookup wants this sandbox's uid,
    // not the one the cache may still hold.
    let old_uid = api.get(PODS, "shop", "old").unwrap()["metadata"]["uid"].clone();
    api.delete(PODS, "shop", "old");
    let stored = api.put(
        PODS,
        pod("old", "me", json!({"unicni.io/vswitches": "vsw-new"})),
    );
    let uid = stored["metadata"]["uid"].as_str().unwrap().to_string();
    assert_ne!(json!(uid), old_uid);
    let mut r = pod_ref("old");
    r.uid = Some(uid);
    assert_eq!(pods.lookup(&r).await.unwrap().vswitches, ["vsw-new"]);

    // A pod the watch never delivers (scheduled to another node): one GET after the wait.
    api.put(
        PODS,
        pod(
            "elsewhere",
            "other",
            json!({"unicni.io/vswitches": "vsw-x"}),
        ),
    );
    let mark = api.requests().len();
    let pods = pods.with_wait(Duration::from_millis(300));
    let info = pods.lookup(&pod_ref("elsewhere")).await.unwrap();
    assert_eq!(info.vswitches, ["vsw-x"]);
    assert_eq!(pods.fallback_gets(), 1);
    assert_eq!(
        not_watches(&api, mark),
        ["GET /api/v1/namespaces/shop/pods/elsewhere HTTP/1.1"]
    );
}
