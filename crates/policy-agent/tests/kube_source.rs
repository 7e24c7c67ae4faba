//! The Kubernetes source against the emulated API server (`unicni-kube-emulator`: list and
//! watch as kube-rs watchers use them): the first snapshot comes from the lists, later ones follow
//! watch events (added, modified, deleted) within a fraction of a second. No root needed.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use unicni_kube_emulator::Emulator;
use unicni_policy_agent::{KubeSource, Source};

const PODS: &str = "/api/v1/pods";
const NAMESPACES: &str = "/api/v1/namespaces";
const POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";

fn pod(ns: &str, name: &str, app: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn namespace(name: &str, team: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"team": team}},
    })
}

fn deny_all(ns: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })
}

#[test]
fn kubernetes_source_follows_lists_and_watch_events() {
    let api = Emulator::new();
    api.put(NAMESPACES, namespace("shop", "shop"));
    api.put(PODS, pod("shop", "web", "web", "10.0.0.2"));
    let url = api.start();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let mut source = Source::Kubernetes(KubeSource::start(client, Duration::from_millis(20)));
        let snap = next(&mut source).await;
        assert_eq!(snap.pods.len(), 1);
        assert!(snap.policies.is_empty());
        assert_eq!(
            snap.namespace_labels("shop")
                .get("team")
                .map(String::as_str),
            Some("shop")
        );

        // A policy and a pod arrive through the watches.
        let t = Instant::now();
        api.put(POLICIES, deny_all("shop"));
        api.put(PODS, pod("shop", "db", "db", "10.0.0.3"));
        let mut snap = next(&mut source).await;
        while snap.policies.len() != 1 || snap.pods.len() != 2 {
            snap = next(&mut source).await;
        }
        let took = t.elapsed();
        assert!(took < Duration::from_secs(1), "watch events took {took:?}");
        assert_eq!(snap.policies[0].name, "deny");

        // Modified and deleted objects are followed too.
        api.put(PODS, pod("shop", "db", "db", "10.0.0.4"));
        api.delete(POLICIES, "shop", "deny");
        let mut snap = next(&mut source).await;
        while !snap.policies.is_empty()
            || !snap
                .pods
                .iter()
                .any(|p| p.ips == vec!["10.0.0.4".parse::<std::net::IpAddr>().unwrap()])
        {
            snap = next(&mut source).await;
        }
    });
}

/// At steady state the source makes no request but its three watches (asked with
/// bookmarks), and bookmarks alone do not wake the engine.
#[test]
fn kubernetes_source_is_quiet_at_steady_state() {
    let api = Emulator::new();
    api.bookmark_every(Some(Duration::from_millis(300)));
    api.put(NAMESPACES, namespace("shop", "shop"));
    api.put(PODS, pod("shop", "web", "web", "10.0.0.2"));
    api.put(POLICIES, deny_all("shop"));
    let url = api.start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let mut source = Source::Kubernetes(KubeSource::start(client, Duration::from_millis(20)));
        let snap = next(&mut source).await;
        assert_eq!((snap.pods.len(), snap.policies.len()), (1, 1));
        // The initial list may end in an InitDone wake-up; let it pass.
        let _ = tokio::time::timeout(Duration::from_millis(500), source.next()).await;
        let mark = api.requests().len();
        let quiet = tokio::time::timeout(Duration::from_secs(3), source.next()).await;
        assert!(quiet.is_err(), "no snapshot without a change");
        let after: Vec<String> = api.requests().into_iter().skip(mark).collect();
        assert!(
            after.iter().all(|r| r.contains("watch=true")),
            "only watches at steady state: {after:?}"
        );
        let watches: Vec<String> = api
            .requests()
            .into_iter()
            .filter(|r| r.contains("watch=true"))
            .collect();
        assert!(
            watches.len() >= 3
                && watches
                    .iter()
                    .all(|r| r.contains("allowWatchBookmarks=true")),
            "{watches:?}"
        );
    });
}

async fn next(s: &mut Source) -> unicni_policy::Snapshot {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("a snapshot within 5 s")
        .expect("a snapshot")
}
