//! Flannel's lease view on `store.kind = "kubernetes"` against the emulated API server,
//! driven the way the agent drives it (acquire, then passes: renew, list, wait_change):
//! the node's annotations are written once, a steady state makes no LIST and no write, a
//! Node added wakes the pass and is listed without a LIST.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use unicni_flannel::lease::Lease;
use unicni_flannel::lease_store::{acquire, KubeLeases, LeaseStore};
use unicni_kube_emulator::Emulator;

const NODES: &str = "/api/v1/nodes";

fn node(name: &str, cidr: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"podCIDR": cidr},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
}

/// A node whose agent has published its lease (only those are peers).
fn peer(name: &str, cidr: &str, ip: &str) -> Value {
    let mut n = node(name, cidr, ip);
    n["metadata"]["annotations"] = json!({"unicni.io/public-ip": ip,
        "unicni.io/vtep-mac": "02:00:00:00:00:02", "unicni.io/backend-mode": "vxlan"});
    n
}

fn me() -> Lease {
    Lease {
        node: "me".into(),
        public_ip: Some("192.168.5.1".into()),
        vtep_mac: Some("02:00:00:00:00:01".into()),
        mode: Some("vxlan".into()),
        ..Lease::default()
    }
}

/// (lists of nodes, writes, GETs of one node) in the log from `from` on.
fn tally(api: &Emulator, from: usize) -> (usize, usize, usize) {
    let reqs = api.requests();
    let mut t = (0, 0, 0);
    for r in reqs.iter().skip(from) {
        let target = r.split_whitespace().nth(1).unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let watch = query.split('&').any(|kv| kv == "watch=true");
        if r.starts_with("GET ") && path == NODES && !watch {
            t.0 += 1;
        } else if r.starts_with("PATCH ") || r.starts_with("PUT ") || r.starts_with("POST ") {
            t.1 += 1;
        } else if r.starts_with("GET ") && path.starts_with("/api/v1/nodes/") {
            t.2 += 1;
        }
    }
    t
}

/// One agent pass as `Agent::run` makes it: renew, then list.
async fn pass(store: &KubeLeases, lease: &Lease) -> Vec<Lease> {
    assert!(store
        .renew(lease, 0, Duration::from_secs(60))
        .await
        .unwrap());
    store.list().await.unwrap()
}

#[tokio::test]
async fn annotations_once_no_list_at_steady_state_and_new_nodes_wake_the_pass() {
    let api = Emulator::new();
    api.bookmark_every(Some(Duration::from_millis(300)));
    api.put(NODES, node("me", "10.80.1.0/24", "192.168.5.1"));
    api.put(NODES, peer("peer", "10.80.2.0/24", "192.168.5.2"));
    // Registered, podCIDR assigned, no agent yet: not a peer.
    api.put(NODES, node("bare", "10.80.4.0/24", "192.168.5.4"));
    let url = api.start();
    let dir = tempfile::tempdir().unwrap();
    let kc = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    let client = unicni_store::kube::client(Some(&kc)).await.unwrap();
    let net = "10.80.0.0/16".parse().unwrap();
    let ttl = Duration::from_secs(60);

    let store = KubeLeases::new(client.clone());
    let why = store.synced().unwrap_err();
    assert!(why.contains("Node cache has not synced"), "{why}");
    let (lease, _) = acquire(&store, net, 24, None, &me(), None, ttl)
        .await
        .unwrap();
    assert_eq!(lease.subnet, "10.80.1.0/24");
    assert_eq!(store.synced(), Ok(()));
    let ann = &api.get(NODES, "", "me").unwrap()["metadata"]["annotations"];
    assert_eq!(ann["unicni.io/public-ip"], "192.168.5.1");
    assert_eq!(ann["unicni.io/vtep-mac"], "02:00:00:00:00:01");
    assert_eq!(ann["unicni.io/backend-mode"], "vxlan");
    let (lists, writes, gets) = tally(&api, 0);
    assert_eq!(
        (lists, writes, gets),
        (1, 1, 0),
        "one list, one patch: {:?}",
        api.requests()
    );

    // Steady state: passes every 200 ms for 3 s, nothing changes.
    let mark = api.requests().len();
    let until = Instant::now() + Duration::from_secs(3);
    let mut passes = 0;
    while Instant::now() < until {
        let leases = pass(&store, &lease).await;
        assert_eq!(leases.len(), 2);
        store.wait_change(Duration::from_millis(200)).await;
        passes += 1;
    }
    assert!(passes >= 10);
    assert_eq!(
        tally(&api, mark),
        (0, 0, 0),
        "steady state: {:?}",
        &api.requests()[mark..]
    );

    // A restarted agent finds its annotations in place: no write.
    drop(store);
    let store = KubeLeases::new(client);
    let mark = api.requests().len();
    let (again, _) = acquire(&store, net, 24, None, &me(), None, ttl)
        .await
        .unwrap();
    assert_eq!(again, lease);
    let (lists, writes, _) = tally(&api, mark);
    assert_eq!((lists, writes), (1, 0), "{:?}", &api.requests()[mark..]);

    // A node joins: the waiting pass wakes long before its 30 s timeout, and lists it.
    let mark = api.requests().len();
    pass(&store, &lease).await;
    let joiner = api.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        joiner.put(NODES, peer("new", "10.80.3.0/24", "192.168.5.3"));
    });
    let t = Instant::now();
    store.wait_change(Duration::from_secs(30)).await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "woken by the change: {:?}",
        t.elapsed()
    );
    let leases = pass(&store, &lease).await;
    assert!(
        leases
            .iter()
            .any(|l| l.node == "new" && l.subnet == "10.80.3.0/24"),
        "{leases:?}"
    );
    assert_eq!(
        tally(&api, mark),
        (0, 0, 0),
        "{:?}",
        &api.requests()[mark..]
    );

    // A change that leaves the lease view as it was (a kubelet status update) does not
    // wake the pass.
    let mut n = api.get(NODES, "", "peer").unwrap();
    n["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    api.put(NODES, n);
    let t = Instant::now();
    store.wait_change(Duration::from_millis(800)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(750),
        "{:?}",
        t.elapsed()
    );

    // Someone strips our annotations: the next renewal writes them back, once.
    let mut mine = api.get(NODES, "", "me").unwrap();
    mine["metadata"]["annotations"] = json!({});
    api.put(NODES, mine);
    store.wait_change(Duration::from_secs(2)).await;
    let mark = api.requests().len();
    pass(&store, &lease).await;
    store.wait_change(Duration::from_millis(500)).await;
    pass(&store, &lease).await;
    let ann = &api.get(NODES, "", "me").unwrap()["metadata"]["annotations"];
    assert_eq!(ann["unicni.io/public-ip"], "192.168.5.1");
    assert_eq!(tally(&api, mark).1, 1, "{:?}", &api.requests()[mark..]);
}
