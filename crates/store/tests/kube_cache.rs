//! The watched caches the agents read (Nodes, the Pods of a node) against the emulated API
//! server: one list at start, then nothing but the watch (bookmarks keep it current while
//! nothing changes); a change arrives without a list; a 410 Gone costs exactly one re-list.
//! The request log of `unicni-kube-emulator` is the judge.

use serde_json::{json, Value};
use std::time::Duration;
use unicni_kube_emulator::Emulator;
use unicni_store::kube::{node_cache, pods_of_node};
use unicni_store::KubeNodes;

const NODES: &str = "/api/v1/nodes";
const PODS: &str = "/api/v1/pods";

fn node(name: &str, cidr: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"podCIDR": cidr},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"}],
                   "images": [{"names": ["registry/big:1"], "sizeBytes": 1}]}})
}

fn pod(ns: &str, name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": node, "containers": []}})
}

/// Requests on `collection` (e.g. `/api/v1/nodes`) in the log from index `from` on:
/// (lists, watches, other).
fn count(api: &Emulator, from: usize, collection: &str) -> (usize, usize, Vec<String>) {
    let (mut lists, mut watches, mut other) = (0, 0, Vec::new());
    for r in api.requests().into_iter().skip(from) {
        let target = r.split_whitespace().nth(1).unwrap_or("").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if r.starts_with("GET ") && path == collection {
            if query.split('&').any(|kv| kv == "watch=true") {
                watches += 1;
            } else {
                lists += 1;
            }
        } else {
            other.push(r);
        }
    }
    (lists, watches, other)
}

async fn client(api: &Emulator) -> (kube::Client, tempfile::TempDir) {
    let url = api.start();
    let dir = tempfile::tempdir().unwrap();
    let kc = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    (unicni_store::kube::client(Some(&kc)).await.unwrap(), dir)
}

#[tokio::test]
async fn the_node_cache_lists_once_then_only_watches() {
    let api = Emulator::new();
    api.bookmark_every(Some(Duration::from_millis(300)));
    for i in 0..3 {
        api.put(NODES, node(&format!("n{i}"), &format!("10.244.{i}.0/24")));
    }
    let (client, _dir) = client(&api).await;
    let cache = node_cache(client);
    cache.wait_synced(Duration::from_secs(10)).await.unwrap();
    assert_eq!(cache.state().len(), 3);
    let n0 = cache.get("", "n0").unwrap();
    assert_eq!(
        KubeNodes::parse(&n0).pod_cidr.as_deref(),
        Some("10.244.0.0/24")
    );
    // What no agent reads is not kept; what the lease view reads is.
    assert!(n0.status.as_ref().unwrap().images.is_none());
    assert_eq!(
        KubeNodes::parse(&n0).public_ip.as_deref(),
        Some("192.168.0.1")
    );
    let (lists, _, _) = count(&api, 0, NODES);
    assert_eq!(lists, 1, "one list to start: {:?}", api.requests());

    // Steady state: several bookmark periods with no change make no request but the watch.
    let mark = api.requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (lists, watches, other) = count(&api, mark, NODES);
    assert_eq!(
        (lists, other.len()),
        (0, 0),
        "steady state: {:?}",
        &api.requests()[mark..]
    );
    assert!(watches <= 1, "the watch is held open: {watches} watches");

    // A node added arrives through the watch, and wakes whoever waits on the cache.
    let mut changes = cache.changes();
    api.put(NODES, node("n9", "10.244.9.0/24"));
    tokio::time::timeout(Duration::from_secs(2), changes.changed())
        .await
        .expect("woken by the new node")
        .unwrap();
    let seen = cache
        .wait_for(Duration::from_secs(2), |c| c.get("", "n9"))
        .await;
    assert!(seen.is_some(), "the new node is in the cache");
    let (lists, _, other) = count(&api, mark, NODES);
    assert_eq!(
        (lists, other.len()),
        (0, 0),
        "{:?}",
        &api.requests()[mark..]
    );
    // A deletion too.
    api.delete(NODES, "", "n1");
    let gone = cache
        .wait_for(Duration::from_secs(2), |c| {
            c.get("", "n1").is_none().then_some(())
        })
        .await;
    assert!(gone.is_some(), "the deleted node left the cache");
    assert_eq!(count(&api, mark, NODES).0, 0);
}

/// kube's watcher sends `timeoutSeconds` from its config and resumes from the last version
/// when the server ends the watch; a 410 there is what forces a re-list. The emulator ends a
/// watch only at its timeout, so this cache asks for 1 s watches to reconnect often.
#[tokio::test]
async fn a_410_gone_costs_exactly_one_relist() {
    let api = Emulator::new();
    // Without bookmarks the watcher's version stays at its last event, which compaction
    // then makes too old.
    api.bookmark_every(None);
    api.put(NODES, node("a", "10.244.1.0/24"));
    let (client, _dir) = client(&api).await;
    let cache = unicni_store::Cache::start(
        kube::Api::<k8s_openapi::api::core::v1::Node>::all(client),
        kube::runtime::watcher::Config::default().timeout(1),
        "Node",
        |_| {},
    );
    cache.wait_synced(Duration::from_secs(10)).await.unwrap();
    // Reconnects at the timeout resume the watch: no list.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (lists, watches, _) = count(&api, 0, NODES);
    assert_eq!(lists, 1, "{:?}", api.requests());
    assert!(watches >= 2, "the watch was resumed: {:?}", api.requests());

    // A node is deleted and another added, then another kind moves the version on and the
    // history is forgotten: whatever the open watch saw of the two, the version it resumes
    // from is older than the compaction.
    let mark = api.requests().len();
    api.delete(NODES, "", "a");
    api.put(NODES, node("b", "10.244.2.0/24"));
    api.put(
        "/api/v1/configmaps",
        json!({"metadata": {"name": "x", "namespace": "default"}}),
    );
    api.compact();
    let relisted = cache
        .wait_for(Duration::from_secs(10), |c| {
            (c.get("", "a").is_none() && c.get("", "b").is_some()).then_some(())
        })
        .await;
    assert!(relisted.is_some(), "the re-list replaced the cache");
    // A few more reconnects: they resume from the re-list's version.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (lists, watches, _) = count(&api, mark, NODES);
    assert_eq!(
        lists,
        1,
        "exactly one re-list: {:?}",
        &api.requests()[mark..]
    );
    assert!(watches >= 2);
    assert_eq!(cache.state().len(), 1);
}

#[tokio::test]
async fn the_pod_cache_holds_this_nodes_pods_only() {
    let api = Emulator::new();
    api.bookmark_every(Some(Duration::from_millis(300)));
    api.put(PODS, pod("shop", "web-0", "me"));
    api.put(PODS, pod("shop", "web-1", "other"));
    let (client, _dir) = client(&api).await;
    let pods = pods_of_node(client, "me");
    pods.wait_synced(Duration::from_secs(10)).await.unwrap();
    assert!(pods.get("shop", "web-0").is_some());
    assert!(pods.get("shop", "web-1").is_none(), "another node's pod");
    let reqs = api.requests();
    assert!(
        reqs.iter()
            .all(|r| r.contains("fieldSelector=spec.nodeName%3Dme")
                || r.contains("fieldSelector=spec.nodeName=me")),
        "every request is filtered by node: {reqs:?}"
    );
    let mark = api.requests().len();
    api.put(PODS, pod("shop", "web-2", "me"));
    api.put(PODS, pod("shop", "web-3", "other"));
    let seen = pods
        .wait_for(Duration::from_secs(2), |c| c.get("shop", "web-2"))
        .await;
    assert!(seen.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(pods.get("shop", "web-3").is_none());
    let (lists, _, other) = count(&api, mark, PODS);
    assert_eq!(
        (lists, other.len()),
        (0, 0),
        "{:?}",
        &api.requests()[mark..]
    );
}
