//! The Service load balancer in real network namespaces (root only): a client pod
//! registered with the node's load balancer reaches a ClusterIP's backends; everything
//! asserted is what the client and the servers observe.

mod common;

use common::*;
use std::net::{IpAddr, SocketAddr};
use unicni_services::{BackendState, Protocol, ServiceTable};

const READY: BackendState = BackendState::Ready;

#[test]
fn tcp_v4_clusterip_reaches_a_backend_and_shows_the_clusterip() {
    if !require_root() {
        return;
    }
    let t = Topo::new("tcp4", 3);
    let (client, b1, b2) = (t.pod(0), t.pod(1), t.pod(2));
    tcp_server(b1, 8080, "b1");
    tcp_server(b2, 8080, "b2");
    let mut lb = t.lb();
    lb.register_pod(&client.ns.path_buf()).unwrap();
    let mut table = ServiceTable::new();
    table.insert(
        frontend("10.96.7.1", 80, Protocol::Tcp),
        entry(&[(b1.v4, 8080, READY), (b2.v4, 8080, READY)]),
    );
    let report = lb.apply(&table).unwrap();
    assert_eq!(report.frontends_added, 1);
    assert_eq!(report.backends_added, 2);

    let vip: SocketAddr = "10.96.7.1:80".parse().unwrap();
    let mut servers = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let seen = tcp_connect_in(&client.ns.name, vip).expect("connect to the ClusterIP");
        assert_eq!(seen.peer, vip, "getpeername shows the ClusterIP");
        assert_eq!(
            seen.client_seen, client.v4,
            "the backend sees the pod's own address"
        );
        servers.insert(seen.server);
    }
    assert_eq!(
        servers.into_iter().collect::<Vec<_>>(),
        vec!["b1".to_string(), "b2".to_string()],
        "random choice reaches both backends in 40 connections"
    );
    let st = lb.status().unwrap();
    assert_eq!((st.frontends, st.backends, st.pods), (1, 2, 1));
    assert!(st.stats.connects >= 40, "{st:?}");

    // A pod that is not registered is not rewritten: nothing listens on the ClusterIP.
    let other = t.pod(0).ns.name.clone();
    lb.unregister_pod(&client.ns.path_buf()).unwrap();
    let r = tcp_connect_in(&other, vip);
    assert!(r.is_err(), "an unregistered pod reached {vip}: {r:?}");

    // Removing the Service stops the rewrite for a registered pod too.
    lb.register_pod(&client.ns.path_buf()).unwrap();
    assert!(tcp_connect_in(&client.ns.name, vip).is_ok());
    let report = lb.apply(&ServiceTable::new()).unwrap();
    assert_eq!((report.frontends_removed, report.backends_removed), (1, 2));
    assert!(tcp_connect_in(&client.ns.name, vip).is_err());
    let st = lb.status().unwrap();
    assert_eq!((st.frontends, st.backends), (0, 0));
    let _: IpAddr = b1.v4;
}
