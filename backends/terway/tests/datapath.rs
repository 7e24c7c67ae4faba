//! Root-only tests of the terway datapath against real namespaces.
//!
//! Each test builds a "node" namespace and a "VPC" namespace joined by a veth whose node
//! end plays the ENI (known MAC, no address) and whose VPC end is the vSwitch gateway.
//! The VPC knows the pod addresses the way the real VPC does: a /32 (/128) route to the
//! ENI and a permanent neighbour with the ENI's MAC. The datapath functions run on a
//! thread inside the node namespace, like the plugin and the agent do on a node.

mod common;

use common::*;
use ipnet::IpNet;
use std::path::PathBuf;
use unicni_core::{Attachment, Error};
use unicni_terway::datapath;
use unicni_terway::proto::{EniInfo, PodMode, PodNetwork};

/// A host beyond the vSwitch gateway.
const REMOTE: &str = "203.0.113.1";
const REMOTE_V6: &str = "2001:db8:99::1";

fn pod_network(mode: PodMode, ipv4: &str, ipv6: Option<&str>, eni: EniInfo) -> PodNetwork {
    PodNetwork {
        mode,
        ipv4: Some(ipv4.parse().unwrap()),
        ipv6: ipv6.map(|s| s.parse().unwrap()),
        eni,
        node_ips: vec![format!("{NODE_IP}/32").parse::<IpNet>().unwrap()],
        service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        mtu: 1500,
        fast_path: None,
        policy: None,
    }
}

/// What only these tests ask of a namespace.
trait NsExt {
    /// Pings until one answer comes back or 8 s pass (IPv6 link-locals on freshly made
    /// links need a moment of duplicate address detection).
    fn ping(&self, target: &str) -> bool;
    fn sysctl(&self, key: &str) -> String;
    fn link_names(&self) -> Vec<String>;
    fn tx_packets(&self, dev: &str) -> u64;
    fn rules(&self, v6: bool) -> String;
}

impl NsExt for Ns {
    fn ping(&self, target: &str) -> bool {
        self.ping_within(target, None, 8)
    }

    fn sysctl(&self, key: &str) -> String {
        let out = self.exec(&["sysctl", "-n", key]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn link_names(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }

    fn tx_packets(&self, dev: &str) -> u64 {
        let out = self.ip(&["-s", "-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["stats64"]["tx"]["packets"].as_u64().unwrap()
    }

    fn rules(&self, v6: bool) -> String {
        if v6 {
            self.ip(&["-6", "rule", "show"])
        } else {
            self.ip(&["rule", "show"])
        }
    }
}

fn lab() -> Lab {
    Lab::new("tw", &[REMOTE, REMOTE_V6])
}

fn terway_veths(ns: &Ns) -> Vec<String> {
    ns.link_names()
        .into_iter()
        .filter(|n| datapath::names::is_host_veth(n))
        .collect()
}

#[test]
fn shared_pod_leaves_through_its_eni_and_reaches_the_node() {
    if !require_root() {
        return;
    }
    let lab = lab();
    let pod = Ns::new("twp");
    let pod_ip = "192.168.252.10";
    lab.vpc_knows(pod_ip);
    let att = attachment(&pod);
    lab.on_node(|| async {
        let (eni, link) = agent_prepares(false, true).await;
        assert_eq!(lab.node.sysctl("net.ipv4.ip_forward"), "1");
        assert_eq!(
            lab.node
                .sysctl(&format!("net.ipv4.conf.{}.rp_filter", lab.eni)),
            "2"
        );
        let table = eni.table.to_string();
        let t = lab.node.ip(&["route", "show", "table", &table]);
        assert!(
            t.contains(&format!("default via {GATEWAY} dev {} onlink", lab.eni)),
            "{t}"
        );
        // Preparing again changes nothing and does not fail.
        datapath::prepare_eni(&eni, true).await.unwrap();
        assert_eq!(link.name, lab.eni);

        // A previous owner of the address, gone without a DEL, left a rule to another
        // ENI's table: it would take the pod's traffic out of the wrong ENI.
        lab.node.ip(&[
            "rule", "add", "pref", "2048", "from", pod_ip, "lookup", "1099",
        ]);

        let net = pod_network(PodMode::Shared, pod_ip, None, eni.clone());
        let res = datapath::setup(&att, &net).await.unwrap();
        assert!(!lab.node.rules(false).contains("lookup 1099"));
        assert_eq!(res.interfaces.len(), 2);
        assert!(res.interfaces[0].sandbox.is_none());
        assert_eq!(res.interfaces[1].name, "eth0");
        assert!(res.interfaces[1].sandbox.is_some());
        assert_eq!(res.ips[0].address.to_string(), format!("{pod_ip}/32"));
        assert_eq!(res.ips[0].interface, Some(1));
        assert_eq!(res.ips[0].gateway, Some("169.254.1.1".parse().unwrap()));
        datapath::check(&att, &net).await.unwrap();

        // Pod side as specified.
        let routes = pod.ip(&["route", "show"]);
        assert!(
            routes.contains("default via 169.254.1.1 dev eth0 onlink"),
            "{routes}"
        );
        assert!(
            routes.contains("169.254.1.1 dev eth0 scope link"),
            "{routes}"
        );
        let neigh = pod.ip(&["neigh", "show", "dev", "eth0"]);
        assert!(
            neigh.contains(&format!("169.254.1.1 lladdr {}", res.interfaces[0].mac))
                && neigh.contains("PERMANENT"),
            "{neigh}"
        );
        // Host side: route and the two rules.
        let host_veth = &res.interfaces[0].name;
        let main = lab.node.ip(&["route", "show"]);
        assert!(
            main.contains(&format!("{pod_ip} dev {host_veth}")),
            "{main}"
        );
        let rules = lab.node.rules(false);
        assert!(
            rules.contains(&format!("512:\tfrom all to {pod_ip} lookup main")),
            "{rules}"
        );
        assert!(
            rules.contains(&format!("2048:\tfrom {pod_ip} lookup {table}")),
            "{rules}"
        );

        // Out through the ENI, to a host beyond the vSwitch gateway.
        let before = lab.node.tx_packets(&lab.eni);
        assert!(pod.ping(REMOTE), "pod -> VPC remote");
        assert!(
            lab.node.tx_packets(&lab.eni) > before,
            "the ping did not leave through the ENI link"
        );
        assert!(pod.ping(&GATEWAY.to_string()), "pod -> vSwitch gateway");
        assert!(pod.ping(NODE_IP), "pod -> node");

        // Without the 2048 rule the pod's traffic has no way out, and check says so.
        lab.node
            .ip(&["rule", "del", "pref", "2048", "from", pod_ip]);
        assert!(
            !pod.ping_once(REMOTE),
            "still reached the VPC without the rule"
        );
        match datapath::check(&att, &net).await {
            Err(Error::CheckFailed(m)) => assert!(m.contains("2048"), "{m}"),
            other => panic!("check without the rule: {other:?}"),
        }

        datapath::teardown(&att, Some(&net)).await.unwrap();
        assert!(terway_veths(&lab.node).is_empty());
        assert!(!lab.node.rules(false).contains(pod_ip));
        assert!(!lab.node.ip(&["route", "show"]).contains(pod_ip));
        assert!(!pod.link_names().contains(&"eth0".to_string()));
        // A second DEL, with and without the agent, succeeds.
        datapath::teardown(&att, Some(&net)).await.unwrap();
        datapath::teardown(&att, None).await.unwrap();
        // The ENI's table stays for other pods.
        assert!(lab
            .node
            .ip(&["route", "show", "table", &table])
            .contains("default via"));
    });
}

#[test]
fn teardown_without_the_agent_and_gc_remove_veths_rules_and_routes() {
    if !require_root() {
        return;
    }
    let lab = lab();
    let pods = [Ns::new("twp"), Ns::new("twp"), Ns::new("twp")];
    let ips = ["192.168.252.11", "192.168.252.12", "192.168.252.13"];
    let atts: Vec<Attachment> = pods.iter().map(attachment).collect();
    for ip in ips {
        lab.vpc_knows(ip);
    }
    lab.on_node(|| async {
        let (eni, _) = agent_prepares(false, true).await;
        for (att, ip) in atts.iter().zip(ips) {
            let net = pod_network(PodMode::Shared, ip, None, eni.clone());
            datapath::setup(att, &net).await.unwrap();
        }
        assert_eq!(terway_veths(&lab.node).len(), 3);

        // Agent down: everything is derived from the host veth and its routes.
        datapath::teardown(&atts[0], None).await.unwrap();
        assert_eq!(terway_veths(&lab.node).len(), 2);
        assert!(!lab.node.rules(false).contains(ips[0]));
        datapath::teardown(&atts[0], None).await.unwrap();

        // GC keeps the valid attachment, removes the other with its rules.
        let removed = datapath::collect_garbage(&[atts[1].id.clone()])
            .await
            .unwrap();
        assert_eq!(removed, 1);
        let rules = lab.node.rules(false);
        assert!(rules.contains(ips[1]), "{rules}");
        assert!(!rules.contains(ips[2]), "{rules}");
        assert!(pods[1].ping(REMOTE), "the kept pod still works");

        // A leftover rule without its pod is garbage too.
        lab.node.ip(&[
            "rule",
            "add",
            "pref",
            "2048",
            "from",
            "192.168.252.99",
            "lookup",
            "1077",
        ]);
        assert_eq!(
            datapath::collect_garbage(&[atts[1].id.clone()])
                .await
                .unwrap(),
            0
        );
        let rules = lab.node.rules(false);
        assert!(!rules.contains("192.168.252.99"), "{rules}");
        assert!(rules.contains(ips[1]), "{rules}");

        assert_eq!(datapath::collect_garbage(&[]).await.unwrap(), 1);
        assert!(terway_veths(&lab.node).is_empty());
        assert!(!lab.node.rules(false).contains("192.168.252."));
    });
}

#[test]
fn a_setup_that_fails_half_way_is_cleaned_by_teardown() {
    if !require_root() {
        return;
    }
    let lab = lab();
    let pod = Ns::new("twp");
    let taken = Ns::new("twp");
    // IPv6 is off in this pod: the veth exists before adding the IPv6 address fails.
    for key in ["all", "default"] {
        pod.exec(&[
            "sysctl",
            "-w",
            &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
        ]);
    }
    taken.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let att = attachment(&pod);
    let att_taken = attachment(&taken);
    lab.on_node(|| async {
        let (eni, _) = agent_prepares(true, true).await;
        let net = pod_network(
            PodMode::Shared,
            "192.168.252.14",
            Some("2001:db8:252::14"),
            eni.clone(),
        );
        assert!(datapath::setup(&att, &net).await.is_err());
        assert_eq!(
            terway_veths(&lab.node).len(),
            1,
            "the failure left the veth"
        );
        datapath::teardown(&att, None).await.unwrap();
        assert!(terway_veths(&lab.node).is_empty());
        assert!(!lab.node.rules(false).contains("192.168.252.14"));

        let net = pod_network(PodMode::Shared, "192.168.252.15", None, eni);
        match datapath::setup(&att_taken, &net).await {
            Err(Error::AlreadyExists(m)) => assert!(m.contains("eth0"), "{m}"),
            other => panic!("ADD over an existing eth0: {other:?}"),
        }
        datapath::teardown(&att_taken, Some(&net)).await.unwrap();
        assert!(terway_veths(&lab.node).is_empty());
        assert!(taken.link_names().contains(&"eth0".to_string()));
    });
}

#[test]
fn dual_stack_shared_pod_reaches_the_vpc_over_ipv6() {
    if !require_root() {
        return;
    }
    let lab = lab();
    let pod = Ns::new("twp");
    let (v4, v6) = ("192.168.252.16", "2001:db8:252::16");
    lab.vpc_knows(v4);
    lab.vpc_knows(v6);
    let att = attachment(&pod);
    lab.on_node(|| async {
        let (eni, _) = agent_prepares(true, true).await;
        assert_eq!(lab.node.sysctl("net.ipv6.conf.all.forwarding"), "1");
        let t6 = lab
            .node
            .ip(&["-6", "route", "show", "table", &eni.table.to_string()]);
        assert!(
            t6.contains(&format!("default via {GATEWAY_V6} dev {}", lab.eni)),
            "{t6}"
        );
        let net = pod_network(PodMode::Shared, v4, Some(v6), eni.clone());
        let res = datapath::setup(&att, &net).await.unwrap();
        assert_eq!(res.ips.len(), 2);
        assert_eq!(res.ips[1].address.to_string(), format!("{v6}/128"));
        datapath::check(&att, &net).await.unwrap();

        let r6 = pod.ip(&["-6", "route", "show"]);
        assert!(r6.contains("default via fe80::1 dev eth0"), "{r6}");
        let rules6 = lab.node.rules(true);
        assert!(
            rules6.contains(&format!("512:\tfrom all to {v6} lookup main")),
            "{rules6}"
        );
        assert!(
            rules6.contains(&format!("2048:\tfrom {v6} lookup {}", eni.table)),
            "{rules6}"
        );

        let before = lab.node.tx_packets(&lab.eni);
        assert!(pod.ping(REMOTE_V6), "pod -> VPC remote over IPv6");
        assert!(lab.node.tx_packets(&lab.eni) > before);
        assert!(
            lab.vpc.ping(v6),
            "VPC -> pod over IPv6 (through the ENI and the node)"
        );
        assert!(pod.ping(REMOTE), "pod -> VPC remote over IPv4");

        datapath::teardown(&att, None).await.unwrap();
        assert!(terway_veths(&lab.node).is_empty());
        assert!(!lab.node.rules(true).contains(v6));
        assert!(!lab.node.ip(&["-6", "route", "show"]).contains(v6));
        datapath::teardown(&att, Some(&net)).await.unwrap();
    });
}

#[test]
fn exclusive_eni_moves_into_the_pod_and_back_to_the_node() {
    if !require_root() {
        return;
    }
    let lab = lab();
    let pod = Ns::new("twp");
    let att = attachment(&pod);
    lab.on_node(|| async {
        let (eni, _) = agent_prepares(false, false).await;
        let primary = eni.primary_ip.to_string();
        let net = pod_network(PodMode::Exclusive, &primary, None, eni.clone());
        for round in 0..2 {
            let res = datapath::setup(&att, &net).await.unwrap();
            assert_eq!(res.interfaces[1].name, "eth0");
            assert_eq!(res.interfaces[1].mac, ENI_MAC);
            assert_eq!(res.ips[0].address.to_string(), format!("{primary}/24"));
            datapath::check(&att, &net).await.unwrap();
            assert!(
                datapath::find_eni_link(ENI_MAC).await.unwrap().is_none(),
                "the ENI is still on the node"
            );
            let link = pod.ip(&["link", "show", "eth0"]);
            assert!(link.contains(ENI_MAC), "{link}");
            let addrs = pod.ip(&["addr", "show", "eth0"]);
            assert!(addrs.contains(&format!("{primary}/24")), "{addrs}");
            let routes = pod.ip(&["route", "show"]);
            assert!(
                routes.contains(&format!("default via {GATEWAY} dev eth0")),
                "{routes}"
            );
            assert!(
                routes.contains(&format!("{NODE_IP} via 169.254.1.1 dev veth0 onlink")),
                "{routes}"
            );
            assert!(
                routes.contains("10.96.0.0/12 via 169.254.1.1 dev veth0 onlink"),
                "{routes}"
            );
            if !pod.ping(REMOTE) {
                let dbg = [
                    pod.ip(&["addr"]),
                    pod.ip(&["neigh"]),
                    lab.vpc.ip(&["addr"]),
                    lab.vpc.ip(&["neigh"]),
                    lab.vpc.ip(&["route"]),
                    pod.ip(&["-s", "link"]),
                ];
                panic!(
                    "pod -> VPC through its own ENI (round {round}): {}",
                    dbg.join("\n")
                );
            }
            assert!(pod.ping(NODE_IP), "pod -> node through the veth");

            // Round 0 with the agent's answer, round 1 without it.
            let net_arg = (round == 0).then_some(&net);
            datapath::teardown(&att, net_arg).await.unwrap();
            let back = datapath::find_eni_link(ENI_MAC)
                .await
                .unwrap()
                .expect("the ENI is back on the node");
            assert_eq!(back.name, lab.eni, "back under its old name");
            assert!(terway_veths(&lab.node).is_empty());
            assert!(!pod.link_names().contains(&"eth0".to_string()));
            datapath::teardown(&att, net_arg).await.unwrap();
            // The agent can use it again.
            datapath::prepare_eni(&eni, false).await.unwrap();
        }
        match datapath::check(&att, &net).await {
            Err(Error::CheckFailed(m)) => assert!(m.contains(&eni.id), "{m}"),
            other => panic!("check after DEL: {other:?}"),
        }
    });
}

#[test]
fn teardown_with_the_pod_namespace_gone_removes_the_host_side() {
    if !require_root() {
        return;
    }
    let lab = lab();
    let pod = Ns::new("twp");
    let pod_ip = "192.168.252.17";
    let att = attachment(&pod);
    // The runtime already removed the namespace file when DEL comes.
    let gone = Attachment {
        netns: Some(PathBuf::from(format!("/var/run/netns/{}", unique("gone")))),
        ..att.clone()
    };
    lab.on_node(|| async {
        let (eni, _) = agent_prepares(false, true).await;
        let net = pod_network(PodMode::Shared, pod_ip, None, eni);
        datapath::setup(&att, &net).await.unwrap();
        assert_eq!(terway_veths(&lab.node).len(), 1);
        datapath::teardown(&gone, None).await.unwrap();
        assert!(terway_veths(&lab.node).is_empty());
        assert!(!lab.node.rules(false).contains(pod_ip));
        let no_netns = Attachment {
            netns: None,
            ..att.clone()
        };
        datapath::teardown(&no_netns, Some(&net)).await.unwrap();
    });
}
