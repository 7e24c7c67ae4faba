//! Root-only: the policy programs on a real bridge between two pod namespaces, driven
//! through the map API directly (the policy engine's tests cover NetworkPolicy semantics).

mod common;

use common::*;
use std::net::IpAddr;
use unicni_bpf::policy::{
    PortEntry, RuleDirection, RuleKey, RuleValue, ISOLATED_EGRESS, ISOLATED_INGRESS,
};
use unicni_bpf::{AttachMode, Attachment, FastPath, PolicyDatapath};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn policy_drops_what_the_maps_deny_and_runs_before_the_fast_path() {
    let Some(t) = Topo::for_root_test("pol") else {
        return;
    };
    let (ha, hb) = t.hosts();
    let kinds = t.run(move |pin| {
        // The fast path first, then the policy: the policy must still end up in front.
        let mut fp = FastPath::load_or_adopt(&pin).expect("load fast path");
        fp.attach(ha).unwrap();
        fp.attach(hb).unwrap();
        fp.upsert_endpoint(IP_A.parse().unwrap(), ha, MAC_A)
            .unwrap();
        fp.upsert_endpoint(IP_B.parse().unwrap(), hb, MAC_B)
            .unwrap();
        let mut pol = PolicyDatapath::load_or_adopt(&pin).expect("load policy");
        let kinds = (pol.attach(ha).unwrap(), pol.attach(hb).unwrap());
        assert_eq!(pol.attach(ha).unwrap(), kinds.0, "idempotent");
        assert!(pol.tcx_attached_first(ha).unwrap());
        assert!(pol.tcx_attached_first(hb).unwrap());
        kinds
    });
    assert_eq!(kinds, (Attachment::Tcx, Attachment::Tcx));
    assert!(t
        .pin_dir
        .join(format!("policy/links/tcx_ingress_{ha}"))
        .exists());

    // No pod in the maps: everything passes, untracked.
    assert!(t.ping_from_a(IP_B, 2), "no policy, no isolation");

    // B isolated for ingress with nothing allowed: A's pings are dropped, even though the
    // fast path would redirect them past B's veth.
    let s0 = t.run(move |pin| {
        let mut pol = PolicyDatapath::open(&pin).unwrap();
        pol.set_pod(ip(IP_A), 0).unwrap();
        pol.set_pod(ip(IP_B), ISOLATED_INGRESS).unwrap();
        pol.stats().unwrap()
    });
    assert!(!t.ping_from_a(IP_B, 2), "B denies all ingress");
    let s1 = t.run(move |pin| PolicyDatapath::open(&pin).unwrap().stats().unwrap());
    assert!(
        s1.dropped_ingress >= s0.dropped_ingress + 2,
        "{s0:?} -> {s1:?}"
    );

    // Allow A (any protocol): pings pass and leave conntrack entries.
    t.run(move |pin| {
        let mut pol = PolicyDatapath::open(&pin).unwrap();
        let key = RuleKey {
            direction: RuleDirection::Ingress,
            local: ip(IP_B),
            remote: ip(IP_A),
            prefix_len: 32,
        };
        pol.upsert_rule(&key, RuleValue::Any).unwrap();
        assert_eq!(pol.rules().unwrap(), vec![(key, RuleValue::Any)]);
    });
    assert!(t.ping_from_a(IP_B, 2), "A is allowed");

    // A port set that does not cover ICMP: dropped again (new echo ids), then A isolated
    // for egress too, and a port set round trip through the map API.
    t.run(move |pin| {
        let mut pol = PolicyDatapath::open(&pin).unwrap();
        let port = PortEntry {
            port_set: 7,
            protocol: 6,
            port: 32000,
            prefix_len: 8,
        };
        pol.add_port(&port).unwrap();
        assert_eq!(pol.ports().unwrap(), vec![port]);
        let key = RuleKey {
            direction: RuleDirection::Ingress,
            local: ip(IP_B),
            remote: ip("10.77.0.0"),
            prefix_len: 24,
        };
        pol.remove_rule(&RuleKey {
            prefix_len: 32,
            remote: ip(IP_A),
            ..key
        })
        .unwrap();
        pol.upsert_rule(&key, RuleValue::PortSet(7)).unwrap();
        pol.set_pod(ip(IP_A), ISOLATED_EGRESS).unwrap();
        assert!(pol.conntrack_entries().unwrap() >= 2);
    });
    assert!(!t.ping_from_a(IP_B, 1), "ICMP is not in the port set");

    // The node's own address always reaches its pods.
    t.run(move |pin| {
        let mut pol = PolicyDatapath::open(&pin).unwrap();
        pol.add_node_address(ip("10.77.0.1")).unwrap();
        assert_eq!(pol.node_addresses().unwrap(), vec![ip("10.77.0.1")]);
    });
    let node_ping = ns_run(&t.node, &format!("ping -c 2 -i 0.2 -W 1 -q {IP_B}"));
    assert!(node_ping.status.success(), "node to pod under deny-all");

    t.run(move |pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(!t.pin_dir.exists(), "remove_all takes the policy too");
}

#[test]
fn clsact_fallback_attaches_ahead_of_the_fast_path_and_is_removed() {
    let Some(t) = Topo::for_root_test("polnl") else {
        return;
    };
    let (ha, hb) = t.hosts();
    t.run(move |pin| {
        let mut pol = PolicyDatapath::load_or_adopt_with(&pin, AttachMode::Netlink).unwrap();
        assert_eq!(pol.attach(ha).unwrap(), Attachment::Netlink);
        assert_eq!(pol.attach(ha).unwrap(), Attachment::Netlink, "idempotent");
        pol.attach(hb).unwrap();
        pol.set_pod(ip(IP_B), ISOLATED_INGRESS).unwrap();
    });
    let filters = t.tc_filters("ha");
    assert!(
        filters.contains("uc_pol_from_pod") && filters.contains("pref 4096"),
        "{filters}"
    );
    assert!(!t.ping_from_a(IP_B, 1), "dropped through the clsact filter");
    // A restarted agent adopts the attachments.
    let atts = t.run(move |pin| {
        let pol = PolicyDatapath::load_or_adopt(&pin).unwrap();
        pol.attachments().unwrap()
    });
    assert_eq!(atts.len(), 2);
    t.run(move |pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(t.tc_filters("ha").trim().is_empty(), "filters removed");
    assert!(t.ping_from_a(IP_B, 1));
}

#[test]
fn changed_programs_take_over_every_attachment_without_a_gap() {
    let Some(t) = Topo::for_root_test("polup") else {
        return;
    };
    let (ha, hb) = t.hosts();
    let pin = t.pin_dir.clone();
    // An older build on both veths (ha by tcx, hb by clsact), B isolated and A allowed.
    let old_tags = t.in_node(move || {
        let mut dp = PolicyDatapath::load_or_adopt_object(
            &pin,
            AttachMode::Tcx,
            unicni_bpf::testing::POLICY_V3,
        )
        .unwrap();
        dp.attach(ha).unwrap();
        let mut nl = PolicyDatapath::open_with(&pin, AttachMode::Netlink).unwrap();
        nl.attach(hb).unwrap();
        dp.set_pod(ip(IP_A), 0).unwrap();
        dp.set_pod(ip(IP_B), ISOLATED_INGRESS).unwrap();
        dp.upsert_rule(
            &RuleKey {
                direction: RuleDirection::Ingress,
                local: ip(IP_B),
                remote: ip(IP_A),
                prefix_len: 32,
            },
            RuleValue::Any,
        )
        .unwrap();
        let tags = dp.program_tags().unwrap();
        // The fast path joins ha's tcx chain behind the policy (it attaches last), so the
        // new build has to keep the policy's place ahead of it, not just be alone there.
        let mut fp = FastPath::load_or_adopt(&pin).expect("load fast path");
        assert_eq!(fp.attach(ha).unwrap(), Attachment::Tcx);
        assert!(
            dp.tcx_attached_first(ha).unwrap(),
            "policy ahead of the fast path"
        );
        tags
    });
    // A ping flood runs while the agent's build replaces them.
    let pod_a = t.pod_a.clone();
    let flood =
        std::thread::spawn(move || ns_run(&pod_a, &format!("ping -c 300 -i 0.005 -W 1 -q {IP_B}")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (new_tags, atts, first) = t.run(move |pin| {
        let dp = PolicyDatapath::load_or_adopt(&pin).unwrap();
        let first = dp.tcx_attached_first(ha).unwrap();
        let fp = FastPath::open(&pin).unwrap();
        assert!(
            fp.tcx_attached(ha).unwrap(),
            "the fast path is still behind it"
        );
        (dp.program_tags().unwrap(), dp.attachments().unwrap(), first)
    });
    let out = flood.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "no packet lost while switching: {text}"
    );
    assert_ne!(old_tags, new_tags, "the new build took over");
    assert!(first, "still ahead of the fast path in the tcx chain");
    assert_eq!(
        atts,
        vec![(ha, Attachment::Tcx), (hb, Attachment::Netlink)],
        "both attachments kept their mechanism"
    );
    assert!(t.tc_filters("hb").contains("uc_pol_from_pod"));
    // The rules are the pinned maps': B still admits A only.
    let node_ping = ns_run(&t.node, &format!("ping -c 1 -W 1 -q {IP_B}"));
    assert!(
        !node_ping.status.success(),
        "the node's address is not in policy_node here: B still isolated"
    );
}
