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

    // A namespace whose loopback is still down (as a CNI ADD may find it) registers too.
    let fresh = unicni_testkit::Netns::with_prefix("ucsvc-lo");
    let cookie = lb.register_pod(&fresh.path_buf()).unwrap();
    assert_eq!(lb.unregister_pod(&fresh.path_buf()).unwrap(), Some(cookie));
    assert!(!lb.pods().unwrap().contains(&cookie));
    let gone = fresh.path_buf();
    drop(fresh);
    assert_eq!(lb.unregister_pod(&gone).unwrap(), None);

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

fn name_of(answer: &str) -> &str {
    answer.split_whitespace().next().unwrap_or("")
}

#[test]
fn udp_unconnected_and_connected_see_the_clusterip_and_keep_their_backend() {
    if !require_root() {
        return;
    }
    let t = Topo::new("udp", 3);
    let (client, b1, b2) = (t.pod(0), t.pod(1), t.pod(2));
    udp_server(b1, 5353, "b1");
    udp_server(b2, 5353, "b2");
    let mut lb = t.lb();
    lb.register_pod(&client.ns.path_buf()).unwrap();
    let fe = frontend("10.96.7.53", 53, Protocol::Udp);
    let mut table = ServiceTable::new();
    table.insert(fe, entry(&[(b1.v4, 5353, READY)]));
    lb.apply(&table).unwrap();
    let vip: SocketAddr = "10.96.7.53:53".parse().unwrap();

    // Unconnected: every answer comes "from" the ClusterIP, from the one backend.
    let got = udp_unconnected_in(&client.ns.name, vec![vip; 3]).expect("UDP to the ClusterIP");
    for (text, from) in &got {
        assert_eq!(*from, vip, "recvmsg shows the ClusterIP as the source");
        assert_eq!(
            text,
            &format!("b1 {}", client.v4),
            "the backend sees the pod's address"
        );
    }

    // Connected: getpeername and the source of the answer are the ClusterIP.
    let (text, peer, from) = udp_connected_in(&client.ns.name, vip).unwrap();
    assert_eq!(name_of(&text), "b1");
    assert_eq!((peer, from), (vip, vip));

    // A flow keeps its backend across endpoint changes: add b2, then mark b1 terminating.
    // One socket, datagrams sent between the changes (on a thread kept in the pod).
    let (to_client, cmds) = std::sync::mpsc::channel::<bool>();
    let (answers, from_client) = std::sync::mpsc::channel::<(String, SocketAddr)>();
    let ns = client.ns.name.clone();
    let flow = std::thread::spawn(move || {
        unicni_testkit::enter_netns(&ns);
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        let mut buf = [0u8; 1500];
        while cmds.recv().unwrap_or(false) {
            s.send_to(b"x", vip).unwrap();
            let (n, from) = s.recv_from(&mut buf).unwrap();
            answers
                .send((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
                .unwrap();
        }
    });
    let ask = || {
        to_client.send(true).unwrap();
        from_client
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap()
    };
    assert_eq!(name_of(&ask().0), "b1");
    table.insert(fe, entry(&[(b1.v4, 5353, READY), (b2.v4, 5353, READY)]));
    lb.apply(&table).unwrap();
    for _ in 0..10 {
        assert_eq!(
            name_of(&ask().0),
            "b1",
            "the flow stays on b1 with b2 added"
        );
    }
    let terminating = BackendState::Terminating { serving: false };
    table.insert(
        fe,
        entry(&[(b1.v4, 5353, terminating), (b2.v4, 5353, READY)]),
    );
    lb.apply(&table).unwrap();
    for _ in 0..5 {
        assert_eq!(
            name_of(&ask().0),
            "b1",
            "a terminating backend keeps its flow"
        );
    }
    // New sockets go to b2 only.
    let fresh = udp_unconnected_in(&client.ns.name, vec![vip]).unwrap();
    assert_eq!(name_of(&fresh[0].0), "b2");
    for _ in 0..10 {
        let (text, _, _) = udp_connected_in(&client.ns.name, vip).unwrap();
        assert_eq!(
            name_of(&text),
            "b2",
            "no new flow to the terminating backend"
        );
    }
    // b1 gone: the flow moves on.
    table.insert(fe, entry(&[(b2.v4, 5353, READY)]));
    lb.apply(&table).unwrap();
    let (text, from) = ask();
    assert_eq!((name_of(&text), from), ("b2", vip));
    to_client.send(false).unwrap();
    flow.join().unwrap();
    assert!(lb.status().unwrap().stats.udp_flow_kept >= 15);
}

#[test]
fn ipv6_tcp_and_udp() {
    if !require_root() {
        return;
    }
    let t = Topo::new("v6", 2);
    let (client, b1) = (t.pod(0), t.pod(1));
    tcp_server(b1, 8080, "b1");
    udp_server(b1, 5353, "b1");
    let mut lb = t.lb();
    lb.register_pod(&client.ns.path_buf()).unwrap();
    let mut table = ServiceTable::new();
    table.insert(
        frontend("fd96::7:1", 80, Protocol::Tcp),
        entry(&[(b1.v6, 8080, READY)]),
    );
    table.insert(
        frontend("fd96::7:1", 53, Protocol::Udp),
        entry(&[(b1.v6, 5353, READY)]),
    );
    // An IPv4 frontend, reached from an IPv6 socket through its v4-mapped address.
    table.insert(
        frontend("10.96.7.2", 80, Protocol::Tcp),
        entry(&[(b1.v4, 8080, READY)]),
    );
    lb.apply(&table).unwrap();

    let vip: SocketAddr = "[fd96::7:1]:80".parse().unwrap();
    let seen = tcp_connect_in(&client.ns.name, vip).expect("TCP to the IPv6 ClusterIP");
    assert_eq!(
        (seen.server.as_str(), seen.client_seen, seen.peer),
        ("b1", client.v6, vip)
    );

    let uvip: SocketAddr = "[fd96::7:1]:53".parse().unwrap();
    let got = udp_unconnected_in(&client.ns.name, vec![uvip]).unwrap();
    assert_eq!(got[0].1, uvip);
    assert_eq!(got[0].0, format!("b1 {}", client.v6));
    let (_, peer, from) = udp_connected_in(&client.ns.name, uvip).unwrap();
    assert_eq!((peer, from), (uvip, uvip));

    let mapped: SocketAddr = "[::ffff:10.96.7.2]:80".parse().unwrap();
    let seen = tcp_connect_in(&client.ns.name, mapped).expect("TCP to a v4-mapped ClusterIP");
    assert_eq!(
        (seen.server.as_str(), seen.client_seen, seen.peer),
        ("b1", client.v4, mapped)
    );
}

#[test]
fn terminating_backend_gets_no_new_connections_but_established_ones_work() {
    if !require_root() {
        return;
    }
    let t = Topo::new("term", 3);
    let (client, b1, b2) = (t.pod(0), t.pod(1), t.pod(2));
    tcp_server(b1, 8080, "b1");
    tcp_server(b2, 8080, "b2");
    let mut lb = t.lb();
    lb.register_pod(&client.ns.path_buf()).unwrap();
    let fe = frontend("10.96.7.3", 80, Protocol::Tcp);
    let vip: SocketAddr = "10.96.7.3:80".parse().unwrap();
    let mut table = ServiceTable::new();
    table.insert(fe, entry(&[(b1.v4, 8080, READY)]));
    lb.apply(&table).unwrap();
    let held = HeldConn::open(&client.ns.name, vip);
    assert_eq!(name_of(&held.greeting), "b1");

    table.insert(
        fe,
        entry(&[
            (b1.v4, 8080, BackendState::Terminating { serving: true }),
            (b2.v4, 8080, READY),
        ]),
    );
    lb.apply(&table).unwrap();
    for _ in 0..20 {
        let seen = tcp_connect_in(&client.ns.name, vip).unwrap();
        assert_eq!(
            seen.server, "b2",
            "a new connection went to the terminating backend"
        );
    }
    assert_eq!(held.ask("still there").unwrap(), "b1 still there");

    // Scaled down to nothing ready: the serving terminating one is the fallback.
    table.insert(
        fe,
        entry(&[(b1.v4, 8080, BackendState::Terminating { serving: true })]),
    );
    lb.apply(&table).unwrap();
    assert_eq!(tcp_connect_in(&client.ns.name, vip).unwrap().server, "b1");
    // Not even that: refused at connect().
    table.insert(fe, entry(&[]));
    lb.apply(&table).unwrap();
    let err = tcp_connect_in(&client.ns.name, vip).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert_eq!(
        held.ask("and now").unwrap(),
        "b1 and now",
        "established flow unaffected"
    );
    assert!(lb.status().unwrap().stats.no_backend >= 1);
}

#[test]
fn client_ip_affinity_picks_the_same_backend() {
    if !require_root() {
        return;
    }
    let t = Topo::new("aff", 4);
    let (client, b1, b2, b3) = (t.pod(0), t.pod(1), t.pod(2), t.pod(3));
    for (p, n) in [(b1, "b1"), (b2, "b2"), (b3, "b3")] {
        tcp_server(p, 8080, n);
    }
    let mut lb = t.lb();
    lb.register_pod(&client.ns.path_buf()).unwrap();
    let fe = frontend("10.96.7.4", 80, Protocol::Tcp);
    let vip: SocketAddr = "10.96.7.4:80".parse().unwrap();
    let all = [
        (b1.v4, 8080, READY),
        (b2.v4, 8080, READY),
        (b3.v4, 8080, READY),
    ];
    let mut e = entry(&all);
    e.affinity_timeout = Some(60);
    let mut table = ServiceTable::new();
    table.insert(fe, e.clone());
    lb.apply(&table).unwrap();
    let first = tcp_connect_in(&client.ns.name, vip).unwrap().server;
    for _ in 0..20 {
        assert_eq!(tcp_connect_in(&client.ns.name, vip).unwrap().server, first);
    }
    assert!(lb.status().unwrap().stats.affinity >= 20);

    // Its backend terminating: the client moves, and sticks to the new one.
    let idx = ["b1", "b2", "b3"].iter().position(|n| *n == first).unwrap();
    let mut backends = all.to_vec();
    backends[idx].2 = BackendState::Terminating { serving: true };
    let mut e2 = entry(&backends);
    e2.affinity_timeout = Some(60);
    table.insert(fe, e2);
    lb.apply(&table).unwrap();
    let second = tcp_connect_in(&client.ns.name, vip).unwrap().server;
    assert_ne!(second, first);
    for _ in 0..10 {
        assert_eq!(tcp_connect_in(&client.ns.name, vip).unwrap().server, second);
    }

    // Without affinity the choice spreads again.
    table.insert(fe, entry(&all));
    lb.apply(&table).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(tcp_connect_in(&client.ns.name, vip).unwrap().server);
    }
    assert!(seen.len() >= 2, "{seen:?}");
}

#[test]
fn unload_detaches_everything_from_the_root_cgroup() {
    if !require_root() {
        return;
    }
    let t = Topo::new("unl", 2);
    let (client, b1) = (t.pod(0), t.pod(1));
    tcp_server(b1, 8080, "b1");
    let mut lb = t.lb();
    lb.register_pod(&client.ns.path_buf()).unwrap();
    let mut table = ServiceTable::new();
    table.insert(
        frontend("10.96.7.5", 80, Protocol::Tcp),
        entry(&[(b1.v4, 8080, READY)]),
    );
    lb.apply(&table).unwrap();
    let vip: SocketAddr = "10.96.7.5:80".parse().unwrap();
    assert!(tcp_connect_in(&client.ns.name, vip).is_ok());

    let ids = unicni_bpf::services::ServiceDatapath::open(&t.pin_dir)
        .unwrap()
        .program_ids()
        .unwrap();
    let cg = unicni_bpf::services::cgroup2_root().unwrap();
    let before = unicni_bpf::services::cgroup_program_ids(&cg).unwrap();
    assert!(ids.iter().all(|id| before.contains(id)));
    drop(lb);
    // The whole pin directory, as `unicni uninstall` removes it.
    unicni_bpf::remove_all(&t.pin_dir).unwrap();
    let after = unicni_bpf::services::cgroup_program_ids(&cg).unwrap();
    for id in &ids {
        assert!(
            !after.contains(id),
            "program {id} still on {}",
            cg.display()
        );
    }
    assert!(!t.pin_dir.exists());
    assert!(
        tcp_connect_in(&client.ns.name, vip).is_err(),
        "the ClusterIP is still rewritten after unload"
    );
}

#[test]
fn a_restarted_agent_continues_the_diff_in_place() {
    if !require_root() {
        return;
    }
    use unicni_bpf::services::{BackendEntry, ServiceDatapath};
    let t = Topo::new("rst", 0);
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let term = BackendState::Terminating { serving: false };
    let tcp4 = frontend("10.96.9.1", 80, Protocol::Tcp);
    let udp4 = frontend("10.96.9.1", 53, Protocol::Udp);
    let tcp6 = frontend("fd96::9:1", 80, Protocol::Tcp);
    let mut table = ServiceTable::new();
    table.insert(
        tcp4,
        entry(&[(ip("10.0.0.1"), 8080, READY), (ip("10.0.0.2"), 8080, READY)]),
    );
    table.insert(udp4, entry(&[(ip("10.0.0.1"), 5353, READY)]));
    table.insert(tcp6, entry(&[(ip("fd00::1"), 8080, READY)]));

    let mut lb = t.lb();
    let r = lb.apply(&table).unwrap();
    assert_eq!((r.frontends_added, r.backends_added), (3, 4));
    assert!(
        lb.apply(&table).unwrap().is_empty(),
        "the same table again changes nothing"
    );
    let dp = ServiceDatapath::open(&t.pin_dir).unwrap();
    let fronts = dp.frontends().unwrap();
    let backs = dp.backends().unwrap();

    // A restart: load again, the first apply reads the maps back and finds nothing to do.
    drop(lb);
    let mut lb = t.lb();
    assert!(lb.apply(&table).unwrap().is_empty());
    assert_eq!(dp.frontends().unwrap(), fronts);
    assert_eq!(dp.backends().unwrap(), backs);

    // Changes are made in place: ids of what stays are kept.
    table.insert(
        tcp4,
        entry(&[(ip("10.0.0.2"), 8080, term), (ip("10.0.0.3"), 8080, READY)]),
    );
    table.remove(&udp4);
    let r = lb.apply(&table).unwrap();
    assert_eq!(
        (
            r.frontends_added,
            r.frontends_updated,
            r.frontends_removed,
            r.backends_added,
            r.backends_removed
        ),
        (0, 1, 1, 1, 2),
        "{r:?}"
    );
    let f2 = dp.frontends().unwrap();
    assert_eq!(f2.len(), 2);
    let tcp4_before = fronts
        .iter()
        .find(|(k, _)| k.port == 80 && k.ip.is_ipv4())
        .unwrap();
    let tcp4_after = f2
        .iter()
        .find(|(k, _)| k.port == 80 && k.ip.is_ipv4())
        .unwrap();
    assert_eq!(
        tcp4_after.1.id, tcp4_before.1.id,
        "the frontend keeps its id"
    );
    assert_eq!(tcp4_after.1.count, 1, "only the ready backend is choosable");
    let id = tcp4_after.1.id;
    let b2_before = backs
        .iter()
        .find(|(_, b)| b.svc_id == id && b.ip == ip("10.0.0.2"))
        .unwrap()
        .0;
    let b = dp.backends().unwrap();
    let b2_after = b
        .iter()
        .find(|(_, b)| b.svc_id == id && b.ip == ip("10.0.0.2"))
        .unwrap();
    assert_eq!(
        b2_after.0, b2_before,
        "a backend turning terminating keeps its id"
    );
    assert!(b2_after.1.terminating);
    let b3 = b.iter().find(|(_, b)| b.ip == ip("10.0.0.3")).unwrap().0;
    let slots: Vec<(u32, u32, u32)> = dp
        .slots()
        .unwrap()
        .into_iter()
        .filter(|s| s.0 == id)
        .collect();
    assert_eq!(slots, vec![(id, 0, b3)]);
    assert_eq!(b.len(), 3);

    // Leftovers of an interrupted apply (a backend of no frontend) go with the next
    // apply of a fresh handle (the CNI plugin's kind: maps only).
    let mut raw = ServiceDatapath::open(&t.pin_dir).unwrap();
    raw.set_backend(
        4_000_000,
        &BackendEntry {
            ip: ip("10.0.0.9"),
            port: 1,
            terminating: false,
            svc_id: 3_000_000,
        },
    )
    .unwrap();
    raw.set_slot(3_000_000, 0, 4_000_000).unwrap();
    let mut plugin_side = unicni_services::Lb::open(&t.pin_dir).unwrap();
    let r = plugin_side.apply(&table).unwrap();
    assert_eq!(r.backends_removed, 1);
    assert!(dp
        .backends()
        .unwrap()
        .iter()
        .all(|(id, _)| *id != 4_000_000));
    assert!(dp.slots().unwrap().iter().all(|s| s.0 != 3_000_000));

    // Everything away.
    let r = lb.apply(&ServiceTable::new());
    // `lb` still believes the leftovers it never saw are absent: fine, they are.
    let r = r.unwrap();
    assert_eq!(r.frontends_removed, 2);
    assert!(dp.frontends().unwrap().is_empty());
    assert!(dp.backends().unwrap().is_empty());
    assert!(dp.slots().unwrap().is_empty());
}

#[test]
fn open_without_a_loaded_balancer_says_not_loaded() {
    if !require_root() {
        return;
    }
    let dir =
        std::path::PathBuf::from(format!("/sys/fs/bpf/{}", unicni_testkit::unique("ucsvcnl")));
    let err = unicni_services::Lb::open(&dir).unwrap_err();
    assert!(err.is_not_loaded(), "{err}");
    assert!(!err.is_unavailable());
    assert!(!dir.exists());
}
