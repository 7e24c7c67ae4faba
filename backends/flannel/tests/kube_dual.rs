//! Dual-stack leases in the Kubernetes store, against the emulated API server: a node's
//! IPv6 subnet is the IPv6 entry of its `spec.podCIDRs`, and its underlay IPv6 address is
//! published as an annotation beside the others.

use serde_json::{json, Value};
use std::time::Duration;
use unicni_core::Error;
use unicni_flannel::lease::{Ipv6Plan, Lease};
use unicni_flannel::lease_store::{acquire, KubeLeases, LeaseStore};
use unicni_kube_emulator::Emulator;

const NODES: &str = "/api/v1/nodes";

fn node(name: &str, cidrs: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"}]}})
}

fn me(node: &str) -> Lease {
    Lease {
        node: node.into(),
        public_ip: Some("192.168.0.1".into()),
        public_ipv6: Some("fd00:250::b".into()),
        mode: Some("host-gw".into()),
        ..Lease::default()
    }
}

#[tokio::test]
async fn the_ipv6_subnet_comes_from_pod_cidrs() {
    let api = Emulator::new();
    api.put(NODES, node("a", &["10.244.1.0/24", "fd00:10:244:1::/64"]));
    api.put(NODES, node("b", &["10.244.2.0/24"]));
    api.put(NODES, node("c", &["10.244.3.0/24", "fd00:10:244:3::/80"]));
    let url = api.start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    let client = unicni_store::kube::client(Some(&kubeconfig)).await.unwrap();
    let store = KubeLeases::new(client);
    let net = "10.244.0.0/16".parse().unwrap();
    let plan = Some(Ipv6Plan {
        network: "fd00:10:244::/56".parse().unwrap(),
        subnet_len: 64,
    });
    let ttl = Duration::from_secs(60);

    let (a, _) = acquire(&store, net, 24, plan, &me("a"), None, ttl)
        .await
        .unwrap();
    assert_eq!(a.subnet, "10.244.1.0/24");
    assert_eq!(a.ipv6_subnet.as_deref(), Some("fd00:10:244:1::/64"));
    let n = api.get(NODES, "", "a").unwrap();
    assert_eq!(
        n["metadata"]["annotations"]["unicni.io/public-ipv6"],
        "fd00:250::b"
    );
    // Peers read both subnets and the IPv6 next hop back from the node object (through
    // the watch, so give the annotation a moment to arrive); a node no agent has
    // annotated yet is not a peer.
    let mut listed = store.list().await.unwrap();
    for _ in 0..50 {
        if listed
            .iter()
            .any(|l| l.node == "a" && l.public_ipv6.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        listed = store.list().await.unwrap();
    }
    let a2 = listed.iter().find(|l| l.node == "a").unwrap();
    assert_eq!(a2.ipv6_subnet, a.ipv6_subnet);
    assert_eq!(a2.public_ipv6.as_deref(), Some("fd00:250::b"));
    assert!(!listed.iter().any(|l| l.node == "b"), "{listed:?}");

    // No IPv6 entry yet: try again later; the wrong size: a config error naming the flag.
    let e = acquire(&store, net, 24, plan, &me("b"), None, ttl)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TryAgain(_)), "{e}");
    assert!(e.to_string().contains("podCIDRs"), "{e}");
    let e = acquire(&store, net, 24, plan, &me("c"), None, ttl)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    assert!(e.to_string().contains("--node-cidr-mask-size-ipv6"), "{e}");
    // An IPv4-only cluster ignores podCIDRs' IPv6 entry.
    let (a4, _) = acquire(&store, net, 24, None, &me("a"), None, ttl)
        .await
        .unwrap();
    assert_eq!(a4.ipv6_subnet, None);
}
