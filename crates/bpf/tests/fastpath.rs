//! Root-only: the same-node fast path on a real bridge between two pod namespaces.

mod common;

use common::*;
use std::net::Ipv4Addr;
use unicni_bpf::{AttachMode, Attachment, FastPath};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Loads (or adopts) the fast path in the node, attaches both host veths and registers
/// both pods; returns the veths' interface indexes. The `FastPath` is dropped before it
/// returns: only the pins hold the programs.
fn attach_both(t: &Topo) -> (u32, u32) {
    let (ha, hb) = t.hosts();
    t.run(move |pin| {
        let mut fp = FastPath::load_or_adopt(&pin).unwrap();
        fp.attach(ha).unwrap();
        fp.attach(hb).unwrap();
        fp.upsert_endpoint(ip(IP_A), ha, MAC_A).unwrap();
        fp.upsert_endpoint(ip(IP_B), hb, MAC_B).unwrap();
    });
    (ha, hb)
}

#[test]
fn tcx_fast_path_redirects_between_pods_and_steps_aside_without_endpoints() {
    let Some(t) = Topo::for_root_test("tcx") else {
        return;
    };
    let (ha, hb) = t.hosts();
    let (s0, kinds) = t.run(move |pin| {
        let mut fp = FastPath::load_or_adopt(&pin).expect("load");
        let kinds = (fp.attach(ha).unwrap(), fp.attach(hb).unwrap());
        // Attaching twice changes nothing.
        assert_eq!(fp.attach(ha).unwrap(), kinds.0);
        fp.upsert_endpoint(ip(IP_A), ha, MAC_A).unwrap();
        fp.upsert_endpoint(ip(IP_B), hb, MAC_B).unwrap();
        assert_eq!(fp.endpoints().unwrap().len(), 2);
        (fp.stats().unwrap(), kinds)
    });
    assert_eq!(
        kinds,
        (Attachment::Tcx, Attachment::Tcx),
        "kernel 6.6+ has tcx"
    );
    assert!(t.pin_dir.join(format!("links/tcx_ingress_{ha}")).exists());

    assert!(
        t.ping_from_a(IP_B, 3),
        "pods on one bridge must reach each other"
    );
    let s1 = t.run(move |pin| FastPath::open(&pin).unwrap().stats().unwrap());
    // 3 echo requests through ha and 3 replies through hb, at least.
    assert!(
        s1.redirected >= s0.redirected + 6,
        "fast path hits must rise: {s0:?} -> {s1:?}"
    );

    // Proof that the bridge is skipped: take B's port off the bridge. Only the fast path
    // can still deliver (neighbours are static so no ARP is needed).
    t.static_neighbours();
    ip_n(&t.node, "link set hb nomaster");
    assert!(
        t.ping_from_a(IP_B, 3),
        "fast path must deliver without the bridge"
    );

    // Without endpoints everything goes through the bridge and no hit is counted.
    let s2 = t.run(move |pin| {
        let mut fp = FastPath::open(&pin).unwrap();
        fp.remove_endpoint(ip(IP_A)).unwrap();
        assert_eq!(fp.remove_endpoints_on(hb).unwrap(), 1);
        fp.remove_endpoint(ip(IP_B)).unwrap(); // again: CNI DEL repeats
        assert!(fp.endpoints().unwrap().is_empty());
        fp.stats().unwrap()
    });
    // B's port is still off the bridge: nothing can arrive now.
    assert!(
        !t.ping_from_a(IP_B, 1),
        "without endpoints only the bridge delivers"
    );
    ip_n(&t.node, "link set hb master br0");
    assert!(t.ping_from_a(IP_B, 3), "bridge path must still work");
    let s3 = t.run(move |pin| FastPath::open(&pin).unwrap().stats().unwrap());
    assert_eq!(s3.redirected, s2.redirected, "no hits without endpoints");
    assert!(s3.passed_no_endpoint >= s2.passed_no_endpoint + 6);

    // Detach leaves no tcx program and no pin; traffic is unaffected.
    let attached_after = t.run(move |pin| {
        let mut fp = FastPath::open(&pin).unwrap();
        assert!(fp.tcx_attached(ha).unwrap());
        fp.detach(ha).unwrap();
        fp.detach(hb).unwrap();
        fp.detach(hb).unwrap(); // idempotent
        assert!(fp.attachments().unwrap().is_empty());
        (fp.tcx_attached(ha).unwrap(), fp.tcx_attached(hb).unwrap())
    });
    assert_eq!(attached_after, (false, false));
    assert!(!t.pin_dir.join(format!("links/tcx_ingress_{ha}")).exists());
    assert!(t.tc_filters("ha").trim().is_empty());
    assert!(t.ping_from_a(IP_B, 2));

    t.run(move |pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(!t.pin_dir.exists(), "remove_all leaves nothing pinned");
}

#[test]
fn clsact_fallback_attaches_a_filter_that_redirects_and_is_removed() {
    let Some(t) = Topo::for_root_test("nl") else {
        return;
    };
    let (ha, hb) = t.hosts();
    let kinds = t.run(move |pin| {
        let mut fp = FastPath::load_or_adopt_with(&pin, AttachMode::Netlink).expect("load");
        let k = (fp.attach(ha).unwrap(), fp.attach(hb).unwrap());
        assert_eq!(fp.attach(ha).unwrap(), Attachment::Netlink); // replace in place
        fp.upsert_endpoint(ip(IP_A), ha, MAC_A).unwrap();
        fp.upsert_endpoint(ip(IP_B), hb, MAC_B).unwrap();
        k
    });
    assert_eq!(kinds, (Attachment::Netlink, Attachment::Netlink));
    let filters = t.tc_filters("ha");
    assert_eq!(
        filters.matches("handle 0x75630001 uc_fastpath").count(),
        1,
        "exactly one filter: {filters}"
    );
    assert!(filters.contains("direct-action"), "{filters}");

    let s0 = t.run(move |pin| FastPath::open(&pin).unwrap().stats().unwrap());
    assert!(t.ping_from_a(IP_B, 3));
    let s1 = t.run(move |pin| FastPath::open(&pin).unwrap().stats().unwrap());
    assert!(s1.redirected >= s0.redirected + 6, "{s0:?} -> {s1:?}");

    // A later Auto-mode handle keeps netlink interfaces on netlink (never both).
    let again = t.run(move |pin| FastPath::open(&pin).unwrap().attach(ha).unwrap());
    assert_eq!(again, Attachment::Netlink);
    let pin = t.pin_dir.clone();
    assert!(!t.in_node(move || FastPath::open(&pin).unwrap().tcx_attached(ha).unwrap()));

    t.run(move |pin| FastPath::open(&pin).unwrap().detach(ha))
        .unwrap();
    assert!(!t.tc_filters("ha").contains("uc_fastpath"));
    assert!(t.tc_filters("hb").contains("uc_fastpath"));

    // remove_all finds the remaining (unpinnable) filter through the record map.
    t.run(move |pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(!t.tc_filters("hb").contains("uc_fastpath"));
    assert!(!t.pin_dir.exists());
    assert!(t.ping_from_a(IP_B, 2));
}

#[test]
fn reconcile_forgets_interfaces_that_are_gone() {
    let Some(t) = Topo::for_root_test("rec") else {
        return;
    };
    let (ha, hb) = attach_both(&t);
    // Pod B dies without a CNI DEL.
    ip_n(&t.node, "link del hb");
    let (report, eps, att) = t.run(move |pin| {
        let mut fp = FastPath::load_or_adopt(&pin).unwrap();
        // load_or_adopt already reconciled; a second pass finds nothing more.
        let r = fp.reconcile().unwrap();
        (r, fp.endpoints().unwrap(), fp.attachments().unwrap())
    });
    assert_eq!(report.removed_attachments, 0);
    assert_eq!(report.removed_endpoints, 0);
    assert_eq!(report.kept_attachments, 1);
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0].ip, ip(IP_A));
    assert_eq!(att, vec![(ha, Attachment::Tcx)]);
    assert!(!t.pin_dir.join(format!("links/tcx_ingress_{hb}")).exists());
}

/// Phase 1 here, phase 2 in a child process: the pins keep traffic on the fast path while
/// no process holds anything, and a new process adopts them without a gap.
#[test]
#[allow(unsafe_code)] // if_indextoname in the check below
fn pinned_fast_path_survives_the_process_and_is_adopted() {
    let Some(t) = Topo::for_root_test("adopt") else {
        return;
    };
    // attach_both has dropped its FastPath: every fd of this process is closed.
    let (ha, hb) = attach_both(&t);
    assert!(t.ping_from_a(IP_B, 2));
    let before = t.run(move |pin| FastPath::open(&pin).unwrap().stats().unwrap());
    assert!(before.redirected >= 4);

    // Continuous traffic while the second process adopts: no packet may be lost.
    let flood = std::process::Command::new("ip")
        .args([
            "netns", "exec", &t.pod_a, "ping", "-c", "150", "-i", "0.01", "-W", "1", "-q", IP_B,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "adopt_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("UNICNI_BPF_ADOPT_NS", &t.node)
        .env("UNICNI_BPF_ADOPT_PIN", &t.pin_dir)
        .env("UNICNI_BPF_ADOPT_IFS", format!("{ha},{hb}"))
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(
        String::from_utf8_lossy(&child.stdout).contains("adopted 2 attachments"),
        "{}",
        String::from_utf8_lossy(&child.stdout)
    );
    let flood = flood.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&flood.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "traffic interrupted: {text}"
    );

    let after = t.run(move |pin| FastPath::open(&pin).unwrap().stats().unwrap());
    assert!(
        after.redirected >= before.redirected + 300,
        "{before:?} -> {after:?}"
    );

    t.run(move |pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(!t.pin_dir.exists());
    let attached = t.run(move |pin| {
        let name = |i: u32| -> String {
            let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
            // SAFETY: buffer of IF_NAMESIZE as required; i is a valid index here.
            let p = unsafe { libc::if_indextoname(i, buf.as_mut_ptr()) };
            assert!(!p.is_null());
            // SAFETY: non-NULL result points into buf, NUL-terminated.
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        };
        let q = |i: u32| {
            aya::programs::SchedClassifier::query_tcx(
                &name(i),
                aya::programs::TcAttachType::Ingress,
            )
            .unwrap()
            .1
            .len()
        };
        assert!(matches!(
            FastPath::open(&pin),
            Err(unicni_bpf::BpfError::NotLoaded { .. })
        ));
        (q(ha), q(hb))
    });
    assert_eq!(attached, (0, 0), "no tcx program left after remove_all");
}

/// The second process of `pinned_fast_path_survives_the_process_and_is_adopted`.
#[test]
#[ignore = "run by pinned_fast_path_survives_the_process_and_is_adopted"]
fn adopt_child() {
    let Ok(ns) = std::env::var("UNICNI_BPF_ADOPT_NS") else {
        return;
    };
    let pin = std::path::PathBuf::from(std::env::var("UNICNI_BPF_ADOPT_PIN").unwrap());
    let ifs: Vec<u32> = std::env::var("UNICNI_BPF_ADOPT_IFS")
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    in_netns(&ns, move || {
        let mut fp = FastPath::load_or_adopt(&pin).unwrap();
        let att = fp.attachments().unwrap();
        assert_eq!(att.iter().map(|a| a.0).collect::<Vec<_>>(), ifs);
        assert_eq!(fp.endpoints().unwrap().len(), 2);
        assert!(fp.stats().unwrap().redirected > 0, "counters survive");
        for i in &ifs {
            assert!(fp.tcx_attached(*i).unwrap());
            assert_eq!(fp.attach(*i).unwrap(), Attachment::Tcx);
        }
        println!("adopted {} attachments", att.len());
    });
}

/// An agent of a newer version finds attachments of an older program: it pins its own and
/// moves every attachment over (tcx: link update, clsact: in-place replace) while traffic
/// flows.
#[test]
fn changed_program_takes_over_every_attachment_without_a_gap() {
    let Some(t) = Topo::for_root_test("upg") else {
        return;
    };
    let (ha, hb) = t.hosts();
    let old_tag = t.run(move |pin| {
        let mut fp = FastPath::load_or_adopt_object(
            &pin,
            AttachMode::Auto,
            unicni_bpf::testing::FASTPATH_V3,
        )
        .unwrap();
        assert_eq!(fp.attach(ha).unwrap(), Attachment::Tcx);
        fp.upsert_endpoint(ip(IP_A), ha, MAC_A).unwrap();
        fp.upsert_endpoint(ip(IP_B), hb, MAC_B).unwrap();
        let mut nl = FastPath::open_with(&pin, AttachMode::Netlink).unwrap();
        assert_eq!(nl.attach(hb).unwrap(), Attachment::Netlink);
        fp.program_tag().unwrap()
    });
    assert!(t.ping_from_a(IP_B, 1));
    let flood = std::process::Command::new("ip")
        .args([
            "netns", "exec", &t.pod_a, "ping", "-c", "150", "-i", "0.01", "-W", "1", "-q", IP_B,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (new_tag, on_ha, s0) = t.run(move |pin| {
        let fp = FastPath::load_or_adopt(&pin).unwrap();
        let name = String::from("ha");
        let progs =
            aya::programs::SchedClassifier::query_tcx(&name, aya::programs::TcAttachType::Ingress)
                .unwrap()
                .1;
        (
            fp.program_tag().unwrap(),
            progs.iter().map(|p| p.tag()).collect::<Vec<_>>(),
            fp.stats().unwrap(),
        )
    });
    let flood = flood.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&flood.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "traffic interrupted: {text}"
    );
    assert_ne!(new_tag, old_tag, "the two builds differ");
    assert_eq!(on_ha, vec![new_tag], "tcx runs the new program only");
    let filters = t.tc_filters("hb");
    assert_eq!(filters.matches("handle 0x75630001").count(), 1, "{filters}");
    assert!(
        filters.contains(&format!("tag {new_tag:016x}")),
        "{filters}"
    );
    assert!(t.ping_from_a(IP_B, 2));
    let s1 = t.run(move |pin| FastPath::open(&pin).unwrap().stats().unwrap());
    assert!(s1.redirected >= s0.redirected + 4, "{s0:?} -> {s1:?}");
}

/// One TCP exchange from pod A to `ip:port` (python3), true when the reply arrived.
fn tcp_exchange(t: &Topo, ip: &str, port: u16) -> bool {
    let code = format!(
        "import socket;s=socket.create_connection(('{ip}',{port}),timeout=2);\
         s.sendall(b'x');assert s.recv(10)==b'pong'"
    );
    run(&["ip", "netns", "exec", &t.pod_a, "python3", "-c", &code])
        .status
        .success()
}

/// A Service connection DNATed by the host (as kube-proxy does) to a backend on the same
/// node: the backend answers the client directly at layer 2, and that reply must not be
/// short-cut, or it skips conntrack's reverse NAT (br_netfilter) and the client drops it.
#[test]
fn service_dnat_to_a_same_node_backend_keeps_working() {
    let Some(t) = Topo::for_root_test("svc") else {
        return;
    };
    let node = t.node.clone();
    ns_must(&node, "sysctl -qw net.ipv4.ip_forward=1");
    let brnf = ns_run(&node, "cat /proc/sys/net/bridge/bridge-nf-call-iptables");
    if String::from_utf8_lossy(&brnf.stdout).trim() != "1" {
        eprintln!("skipped: br_netfilter is not active (the bridge path itself could not un-NAT)");
        return;
    }
    for p in [&t.pod_a, &t.pod_b] {
        ip_n(p, "route add default via 10.77.0.1");
    }
    must(&[
        "ip",
        "netns",
        "exec",
        &node,
        "nft",
        "add table ip ucsvc; add chain ip ucsvc pre { type nat hook prerouting priority -100; }; \
         add rule ip ucsvc pre ip daddr 10.96.0.10 tcp dport 80 dnat to 10.77.0.3:8080",
    ]);
    let mut server = std::process::Command::new("ip")
        .args([
            "netns", "exec", &t.pod_b, "python3", "-c",
            "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',8080));s.listen()\nwhile True:\n c,_=s.accept();c.recv(10);c.sendall(b'pong');c.close()",
        ])
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !tcp_exchange(&t, IP_B, 8080) {
        assert!(
            std::time::Instant::now() < until,
            "test server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        tcp_exchange(&t, "10.96.0.10", 80),
        "the service works over the bridge"
    );

    attach_both(&t);
    let s0 = t.run(|pin| FastPath::open(&pin).unwrap().stats().unwrap());
    let via_service = tcp_exchange(&t, "10.96.0.10", 80);
    let direct = tcp_exchange(&t, IP_B, 8080);
    let s1 = t.run(move |pin| FastPath::open(&pin).unwrap().stats().unwrap());
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        via_service,
        "service reply must go back through the host: {s0:?} -> {s1:?}"
    );
    assert!(direct, "direct pod-to-pod TCP works");
    assert!(
        s1.passed_host_flow > s0.passed_host_flow,
        "{s0:?} -> {s1:?}"
    );
    assert!(
        s1.redirected > s0.redirected,
        "the direct connection is short-cut"
    );
}
