//! Root-only: NetworkPolicy's eBPF programs together with the terway datapaths, on real
//! traffic between pods, a "VPC" namespace behind a veth playing the ENI, and the node.
//!
//! - eBPF fast path (shared ENI): the fast path attached first (as the plugin and agent
//!   do), the policy after it (as the policy engine does on a running node); the policy
//!   must still run first on the pod veth's tc ingress (before `uc_tw_pod` redirects out
//!   of the ENI or into a local pod) and on the ENI's tc ingress (before `uc_tw_eni`
//!   redirects into the pod with bpf_redirect_peer, which skips the veth's egress hook).
//!   Denied flows are dropped, allowed ones pass, and they still take the fast path.
//! - exclusive ENI: the plugin attaches the programs to the ENI inside the pod, where the
//!   pod's VPC traffic is; DEL, and the agent's reconcile after a pod vanished, remove them.

mod common;

use common::*;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use unicni_bpf::policy::{RuleDirection, RuleKey, RuleValue, ISOLATED_EGRESS, ISOLATED_INGRESS};
use unicni_bpf::{PolicyDatapath, PolicyStats, TerwayFastPath, TerwayStats};
use unicni_core::Attachment;
use unicni_net::NetNs;
use unicni_terway::datapath;
use unicni_terway::proto::{eni_table, EniInfo, PodMode, PodNetwork};

/// The nftables table of the node's forward drop.
const NFT: &str = "ucpol";
/// Two hosts beyond the vSwitch gateway: the policies allow one and not the other.
const ALLOWED: &str = "203.0.113.1";
const DENIED: &str = "203.0.113.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What only these tests ask of a namespace.
trait NsExt {
    /// Pings until one answer comes back or 4 s pass: an allowed flow must pass.
    fn reaches(&self, target: &str, from: Option<&str>) -> bool;
    /// Two echo requests, 1 s each, none answered: a denied flow is dropped.
    fn dropped(&self, target: &str, from: Option<&str>) -> bool;
}

impl NsExt for Ns {
    fn reaches(&self, target: &str, from: Option<&str>) -> bool {
        self.ping_within(target, from, 4)
    }

    fn dropped(&self, target: &str, from: Option<&str>) -> bool {
        !self.ping_from(target, from) && !self.ping_from(target, from)
    }
}

trait LabExt {
    /// Runs `f` with the policy datapath opened in the node namespace.
    fn policy<T: Send>(&self, f: impl FnOnce(&mut PolicyDatapath) -> T + Send) -> T;
    fn policy_stats(&self) -> PolicyStats;
    fn fast_stats(&self) -> TerwayStats;
}

impl LabExt for Lab {
    fn policy<T: Send>(&self, f: impl FnOnce(&mut PolicyDatapath) -> T + Send) -> T {
        let pin = self.pin.clone();
        NetNs::open(&self.node.path())
            .unwrap()
            .run(move || f(&mut PolicyDatapath::open(&pin).unwrap()))
            .unwrap()
    }

    fn policy_stats(&self) -> PolicyStats {
        self.policy(|dp| dp.stats().unwrap())
    }

    fn fast_stats(&self) -> TerwayStats {
        let pin = self.pin.clone();
        self.on_node(|| async move { TerwayFastPath::open(&pin).unwrap().stats().unwrap() })
    }
}

fn pod_network(mode: PodMode, ipv4: Ipv4Addr, eni: EniInfo, pin: &Path) -> PodNetwork {
    let pin = Some(pin.display().to_string());
    PodNetwork {
        mode,
        ipv4: Some(ipv4),
        ipv6: None,
        eni,
        node_ips: vec![format!("{NODE_IP}/32").parse::<IpNet>().unwrap()],
        service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        mtu: 1500,
        fast_path: (mode == PodMode::Shared).then(|| pin.clone()).flatten(),
        policy: (mode == PodMode::Exclusive).then_some(pin).flatten(),
    }
}

fn rule(direction: RuleDirection, local: &str, remote: &str) -> RuleKey {
    RuleKey {
        direction,
        local: ip(local),
        remote: ip(remote),
        prefix_len: 32,
    }
}

fn host_veth_index(node: &Ns, att: &Attachment) -> u32 {
    ifindex(node, &datapath::names::host_veth(&att.id))
}

fn ifindex(node: &Ns, name: &str) -> u32 {
    must(
        "ip",
        &[
            "netns",
            "exec",
            &node.name,
            "cat",
            &format!("/sys/class/net/{name}/ifindex"),
        ],
    )
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn policy_runs_ahead_of_the_terway_fast_path_on_the_pod_veth_and_the_eni() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("tp", &[ALLOWED, DENIED]);
    let (pod_a, pod_b) = (Ns::new("tpa"), Ns::new("tpb"));
    let (ip_a, ip_b) = ("192.168.252.31", "192.168.252.32");
    lab.vpc_knows(ip_a);
    lab.vpc_knows(ip_b);
    let (att_a, att_b) = (attachment(&pod_a), attachment(&pod_b));
    // The fast path first: the agent's ENI program, then the plugin's pod programs.
    let pin = lab.pin.clone();
    let eni = lab.on_node(|| async {
        let (eni, link) = agent_prepares_fast_path(&pin).await;
        for (att, ip) in [(&att_a, ip_a), (&att_b, ip_b)] {
            let net = pod_network(PodMode::Shared, ip.parse().unwrap(), eni.clone(), &pin);
            datapath::setup(att, &net).await.unwrap();
        }
        link
    });
    let (veth_a, veth_b) = (
        host_veth_index(&lab.node, &att_a),
        host_veth_index(&lab.node, &att_b),
    );
    // Then the policy, as the engine attaches it on a node already running pods: both pod
    // veths and the ENI (an uplink).
    let pin = lab.pin.clone();
    let first = NetNs::open(&lab.node.path())
        .unwrap()
        .run(move || {
            let mut dp = PolicyDatapath::load_or_adopt(&pin).expect("load the policy");
            for i in [veth_a, veth_b, eni.ifindex] {
                dp.attach(i).unwrap();
            }
            // The fast path re-attached afterwards (a restarted agent, a repeated ADD)
            // does not push the policy back.
            let mut fp = TerwayFastPath::open(&pin).unwrap();
            fp.attach_pod(veth_a).unwrap();
            fp.attach_eni(eni.ifindex).unwrap();
            [veth_a, veth_b, eni.ifindex].map(|i| dp.tcx_attached_first(i).unwrap())
        })
        .unwrap();
    assert_eq!(
        first, [true; 3],
        "policy first in the tcx chains of the veths and the ENI"
    );

    // Nothing isolated: everything passes, by the fast path (the host forward hook drops
    // whatever would be routed).
    lab.forward_drop(NFT);
    assert!(pod_a.reaches(ALLOWED, None) && pod_a.reaches(DENIED, None));
    assert!(lab.vpc.reaches(ip_b, Some(DENIED)));
    assert!(pod_a.reaches(ip_b, None), "pod to pod on the node");

    // A may send only to ALLOWED; B may receive only from ALLOWED.
    lab.policy(|dp| {
        dp.add_node_address(ip(NODE_IP)).unwrap();
        dp.set_pod(ip(ip_a), ISOLATED_EGRESS).unwrap();
        dp.set_pod(ip(ip_b), ISOLATED_INGRESS).unwrap();
        dp.upsert_rule(&rule(RuleDirection::Egress, ip_a, ALLOWED), RuleValue::Any)
            .unwrap();
        dp.upsert_rule(&rule(RuleDirection::Ingress, ip_b, ALLOWED), RuleValue::Any)
            .unwrap();
    });
    let (p0, f0) = (lab.policy_stats(), lab.fast_stats());

    // Pod veth tc ingress, ahead of uc_tw_pod's redirect out of the ENI.
    assert!(pod_a.reaches(ALLOWED, None), "A -> allowed VPC host");
    let (p1, f1) = (lab.policy_stats(), lab.fast_stats());
    assert!(pod_a.dropped(DENIED, None), "A -> denied VPC host");
    let p2 = lab.policy_stats();
    assert!(
        p2.dropped_egress >= p1.dropped_egress + 2,
        "{p1:?} -> {p2:?}"
    );
    assert!(
        f1.out_redirect + f1.out_redirect_neigh > f0.out_redirect + f0.out_redirect_neigh,
        "allowed egress still short-cut: {f0:?} -> {f1:?}"
    );
    assert!(f1.in_redirect > f0.in_redirect, "and its replies: {f1:?}");
    // ... and ahead of its redirect into a local pod.
    assert!(pod_a.dropped(ip_b, None), "A -> B: A may not send to B");

    // ENI tc ingress, ahead of uc_tw_eni's bpf_redirect_peer into the pod.
    let f2 = lab.fast_stats();
    assert!(lab.vpc.dropped(ip_b, Some(DENIED)), "denied VPC host -> B");
    let p3 = lab.policy_stats();
    assert!(
        p3.dropped_ingress >= p2.dropped_ingress + 2,
        "{p2:?} -> {p3:?}"
    );
    assert!(
        lab.vpc.reaches(ip_b, Some(ALLOWED)),
        "allowed VPC host -> B"
    );
    let f3 = lab.fast_stats();
    assert!(
        f3.in_redirect > f2.in_redirect,
        "allowed ingress still short-cut: {f2:?} -> {f3:?}"
    );
    // The node reaches its pods whatever the policy (host path, not the fast path).
    assert!(lab.node.reaches(ip_b, None), "node -> B");
    assert_eq!(
        lab.node.forward_counted(NFT),
        0,
        "nothing took the routed path through the host"
    );
    assert!(p3.new_flows > p0.new_flows && p3.established > p0.established);
}

#[test]
fn exclusive_eni_pods_are_enforced_on_their_eni() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("tp", &[ALLOWED, DENIED]);
    let pod = Ns::new("tpx");
    let att = attachment(&pod);
    let key = datapath::names::host_veth(&att.id);
    let pin = lab.pin.clone();

    // The policy engine has not loaded the programs yet: ADD says "try again later" and
    // leaves the ENI on the node, instead of running the pod unenforced.
    let eni = lab.on_node(|| async {
        datapath::prepare_node(false).await.unwrap();
        let found = datapath::find_eni_link(ENI_MAC).await.unwrap().unwrap();
        let eni = eni_info(eni_table(found.ifindex), false);
        datapath::prepare_eni(&eni, false).await.unwrap();
        let net = pod_network(PodMode::Exclusive, eni.primary_ip, eni.clone(), &pin);
        match datapath::setup(&att, &net).await {
            Err(unicni_core::Error::TryAgain(m)) => assert!(m.contains("NetworkPolicy"), "{m}"),
            other => panic!("ADD without the policy programs: {other:?}"),
        }
        datapath::teardown(&att, Some(&net)).await.unwrap();
        assert!(datapath::find_eni_link(ENI_MAC).await.unwrap().is_some());
        eni
    });
    let pod_ip = eni.primary_ip.to_string();
    lab.vpc_knows(&pod_ip);

    // The engine loads them (and puts them on the node's links, the ENI among them).
    let pin = lab.pin.clone();
    let eni_index = ifindex(&lab.node, &lab.eni);
    NetNs::open(&lab.node.path())
        .unwrap()
        .run(move || {
            let mut dp = PolicyDatapath::load_or_adopt(&pin).unwrap();
            dp.attach(eni_index).unwrap();
            dp.add_node_address(ip(NODE_IP)).unwrap();
        })
        .unwrap();
    let pin = lab.pin.clone();
    let net = pod_network(PodMode::Exclusive, eni.primary_ip, eni.clone(), &pin);
    lab.on_node(|| async {
        datapath::setup(&att, &net).await.unwrap();
        datapath::setup(&att, &net).await.unwrap(); // repeated ADD
        datapath::check(&att, &net).await.unwrap();
    });
    for hook in ["ingress", "egress"] {
        let p = lab.pin.join(format!("policy/links/pod_{key}_{hook}"));
        assert!(p.exists(), "{} pinned", p.display());
    }
    let first = NetNs::open(&pod.path())
        .unwrap()
        .run(|| PolicyDatapath::pod_interface_tcx_first("eth0").unwrap())
        .unwrap();
    assert!(first, "policy first on the pod's ENI, both hooks");
    assert_eq!(lab.policy(|dp| dp.pod_interfaces()), vec![key.clone()]);

    // Not isolated: both VPC hosts and the node.
    assert!(pod.reaches(ALLOWED, None) && pod.reaches(DENIED, None));
    assert!(lab.vpc.reaches(&pod_ip, Some(DENIED)));

    // The pod may send only to ALLOWED and receive only from ALLOWED.
    lab.policy(|dp| {
        dp.set_pod(ip(&pod_ip), ISOLATED_INGRESS | ISOLATED_EGRESS)
            .unwrap();
        dp.upsert_rule(
            &rule(RuleDirection::Egress, &pod_ip, ALLOWED),
            RuleValue::Any,
        )
        .unwrap();
        dp.upsert_rule(
            &rule(RuleDirection::Ingress, &pod_ip, ALLOWED),
            RuleValue::Any,
        )
        .unwrap();
    });
    let s0 = lab.policy_stats();
    assert!(pod.reaches(ALLOWED, None), "pod -> allowed VPC host");
    assert!(pod.dropped(DENIED, None), "pod -> denied VPC host");
    let s1 = lab.policy_stats();
    assert!(
        s1.dropped_egress >= s0.dropped_egress + 2,
        "{s0:?} -> {s1:?}"
    );
    assert!(
        lab.vpc.reaches(&pod_ip, Some(ALLOWED)),
        "allowed VPC host -> pod"
    );
    assert!(
        lab.vpc.dropped(&pod_ip, Some(DENIED)),
        "denied VPC host -> pod"
    );
    let s2 = lab.policy_stats();
    assert!(
        s2.dropped_ingress >= s1.dropped_ingress + 2,
        "{s1:?} -> {s2:?}"
    );
    // Node traffic goes through the veth and is always allowed.
    assert!(pod.reaches(NODE_IP, None), "pod -> node");
    assert!(lab.node.reaches(&pod_ip, None), "node -> pod");

    // DEL: the programs leave the ENI before it goes back to the node.
    lab.on_node(|| async {
        datapath::teardown(&att, Some(&net)).await.unwrap();
        datapath::teardown(&att, Some(&net)).await.unwrap();
        assert!(datapath::find_eni_link(ENI_MAC).await.unwrap().is_some());
    });
    assert!(lab.policy(|dp| dp.pod_interfaces()).is_empty());

    // A pod deleted without its DEL reaching the policy (agent down): the engine's
    // reconcile removes the pins once the pod's host veth is gone.
    lab.on_node(|| async {
        datapath::setup(&att, &net).await.unwrap();
        datapath::teardown(&att, None).await.unwrap();
    });
    assert_eq!(lab.policy(|dp| dp.pod_interfaces()), vec![key.clone()]);
    let removed = lab.policy(|dp| dp.reconcile().unwrap().1);
    assert!(removed >= 2, "both pins of the departed pod: {removed}");
    assert!(lab.policy(|dp| dp.pod_interfaces()).is_empty());
    assert!(!lab
        .pin
        .join(format!("policy/links/pod_{key}_ingress"))
        .exists());

    // A pod that started before policy was turned on (no `policy` in its network): the
    // agent's pass over its pods puts the programs on its ENI, once.
    let plain = PodNetwork {
        policy: None,
        ..net.clone()
    };
    let pin = lab.pin.clone();
    let netns = pod.path();
    lab.on_node(|| async { datapath::setup(&att, &plain).await.unwrap() });
    // The ENI took the engine's node-side links along into the pod (tcx links follow the
    // device); the engine's next pass drops them, its index being gone from the node.
    lab.policy(|dp| dp.reconcile().unwrap());
    assert!(pod.reaches(DENIED, None), "not enforced yet");
    let passes = lab.on_node(|| async {
        let pods = [(att.id.clone(), netns.display().to_string())];
        let pass = || {
            datapath::ensure_exclusive_policy(&pin, &pods)
                .unwrap()
                .remove(0)
                .1
                .unwrap()
        };
        (pass(), pass())
    });
    assert_eq!(passes, (true, false), "attached, then kept");
    assert!(pod.dropped(DENIED, None), "enforced after the agent's pass");
    assert!(pod.reaches(ALLOWED, None));
    lab.on_node(|| async { datapath::teardown(&att, Some(&net)).await.unwrap() });
    assert!(lab.policy(|dp| dp.pod_interfaces()).is_empty());
}

fn mac(ns: &Ns, dev: &str) -> [u8; 6] {
    let text = must(
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            "cat",
            &format!("/sys/class/net/{dev}/address"),
        ],
    );
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(text.trim().split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

fn tc_filters(ns: &Ns, dev: &str, dir: &str) -> String {
    String::from_utf8_lossy(&ns.exec(&["tc", "filter", "show", "dev", dev, dir]).stdout)
        .into_owned()
}

#[test]
fn clsact_policy_filters_run_ahead_of_the_fast_path_filters() {
    if !require_root() {
        return;
    }
    // Kernels without tcx: both as cls_bpf filters on clsact, the fast path's first.
    let lab = Lab::new("tp", &[ALLOWED, DENIED]);
    let pod = Ns::new("tpc");
    let pod_ip = "192.168.252.41";
    lab.vpc_knows(pod_ip);
    let att = attachment(&pod);
    let pin = lab.pin.clone();
    let (eni, mut net) = lab.on_node(|| async {
        let (eni, link) = agent_prepares_fast_path(&pin).await;
        let mut net = pod_network(PodMode::Shared, pod_ip.parse().unwrap(), eni, &pin);
        net.fast_path = None; // routing only; the fast path goes on by hand below
        datapath::setup(&att, &net).await.unwrap();
        (link, net)
    });
    net.fast_path = Some(lab.pin.display().to_string());
    let veth_name = datapath::names::host_veth(&att.id);
    let veth = ifindex(&lab.node, &veth_name);
    let (pod_mac, veth_mac) = (mac(&pod, "eth0"), mac(&lab.node, &veth_name));
    let pin = lab.pin.clone();
    let eni_index = eni.ifindex;
    NetNs::open(&lab.node.path())
        .unwrap()
        .run(move || {
            let mut fp = TerwayFastPath::open_with(&pin, unicni_bpf::AttachMode::Netlink).unwrap();
            // The ENI carries the agent's tcx program already: off it, then on by clsact.
            fp.detach(eni_index).unwrap();
            assert_eq!(
                fp.attach_eni(eni_index).unwrap(),
                unicni_bpf::Attachment::Netlink
            );
            fp.attach_pod(veth).unwrap();
            fp.upsert_pod(&unicni_bpf::TerwayPod {
                ip: ip(pod_ip),
                veth_ifindex: veth,
                eni_ifindex: eni_index,
                pod_mac,
                veth_mac,
            })
            .unwrap();
            let mut dp =
                PolicyDatapath::load_or_adopt_with(&pin, unicni_bpf::AttachMode::Netlink).unwrap();
            for i in [veth, eni_index] {
                assert_eq!(dp.attach(i).unwrap(), unicni_bpf::Attachment::Netlink);
            }
            dp.set_pod(ip(pod_ip), ISOLATED_INGRESS | ISOLATED_EGRESS)
                .unwrap();
            for d in [RuleDirection::Ingress, RuleDirection::Egress] {
                dp.upsert_rule(&rule(d, pod_ip, ALLOWED), RuleValue::Any)
                    .unwrap();
            }
        })
        .unwrap();
    // The policy's filters at a lower priority number than the fast path's: run first.
    for (dev, dir, prog) in [
        (lab.eni.as_str(), "ingress", "uc_tw_eni"),
        (veth_name.as_str(), "ingress", "uc_tw_pod"),
    ] {
        let f = tc_filters(&lab.node, dev, dir);
        let pol = f.find("uc_pol_").unwrap_or_else(|| panic!("{dev}: {f}"));
        let fast = f.find(prog).unwrap_or_else(|| panic!("{dev}: {f}"));
        assert!(f.contains("pref 4096") && f.contains("pref 8192"), "{f}");
        assert!(
            pol < fast,
            "policy listed (and run) first on {dev} {dir}: {f}"
        );
    }
    lab.forward_drop(NFT);
    let (p0, f0) = (lab.policy_stats(), lab.fast_stats());
    assert!(pod.dropped(DENIED, None), "pod -> denied host, at the veth");
    assert!(
        lab.vpc.dropped(pod_ip, Some(DENIED)),
        "denied host -> pod, at the ENI"
    );
    let p1 = lab.policy_stats();
    assert!(
        p1.dropped_egress >= p0.dropped_egress + 2 && p1.dropped_ingress >= p0.dropped_ingress + 2,
        "{p0:?} -> {p1:?}"
    );
    assert!(pod.reaches(ALLOWED, None), "pod -> allowed host");
    assert!(
        lab.vpc.reaches(pod_ip, Some(ALLOWED)),
        "allowed host -> pod"
    );
    let f1 = lab.fast_stats();
    assert!(
        f1.in_redirect > f0.in_redirect
            && f1.out_redirect + f1.out_redirect_neigh > f0.out_redirect + f0.out_redirect_neigh,
        "allowed traffic short-cut: {f0:?} -> {f1:?}"
    );
    assert_eq!(lab.node.forward_counted(NFT), 0);
    lab.on_node(|| async { datapath::teardown(&att, Some(&net)).await.unwrap() });
}
