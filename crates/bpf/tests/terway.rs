//! Root-only: the terway fast path's lifecycle (load, pins, attach with tcx and clsact,
//! pod entries, host-path CIDRs, reconcile, upgrade in place, remove_all). Forwarding
//! itself is tested with the real terway datapath in backends/terway/tests/fastpath.rs.

mod common;

use aya::programs::{SchedClassifier, TcAttachType};
use common::{in_netns, must, require_root, run};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use unicni_bpf::{AttachMode, Attachment, TerwayFastPath, TerwayPod};

/// A node namespace with two "pod veths" and one "ENI" (dummies: attaching needs no
/// traffic), and a pin directory of its own; both removed on drop.
struct Node {
    ns: String,
    pin: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Node {
        let n = Node {
            ns: format!("uctw-{tag}-{}", std::process::id()),
            pin: PathBuf::from(format!(
                "/sys/fs/bpf/unicni-test-tw-{tag}-{}",
                std::process::id()
            )),
        };
        let _ = run(&["ip", "netns", "del", &n.ns]);
        must(&["ip", "netns", "add", &n.ns]);
        // veth pairs (the kernel may have no dummy driver); the peers stay in the node.
        for (dev, mac) in [
            ("twa", "02:74:77:00:00:0a"),
            ("twb", "02:74:77:00:00:0b"),
            ("eni1", "02:e1:00:00:00:01"),
        ] {
            let peer = format!("{dev}p");
            must(&[
                "ip", "-n", &n.ns, "link", "add", dev, "address", mac, "type", "veth", "peer",
                "name", &peer,
            ]);
            must(&["ip", "-n", &n.ns, "link", "set", dev, "up"]);
            must(&["ip", "-n", &n.ns, "link", "set", &peer, "up"]);
        }
        n
    }

    fn ifindex(&self, dev: &str) -> u32 {
        must(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "cat",
            &format!("/sys/class/net/{dev}/ifindex"),
        ])
        .trim()
        .parse()
        .unwrap()
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce(PathBuf) -> T + Send + 'static) -> T {
        let pin = self.pin.clone();
        in_netns(&self.ns, move || f(pin))
    }

    fn tc(&self, dev: &str, dir: &str) -> String {
        String::from_utf8_lossy(
            &run(&[
                "ip", "netns", "exec", &self.ns, "tc", "filter", "show", "dev", dev, dir,
            ])
            .stdout,
        )
        .into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.pin.exists() {
            let _ = self.run(|pin| unicni_bpf::remove_all(&pin));
            let _ = std::fs::remove_dir_all(&self.pin);
        }
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

fn pod(ip: &str, veth: u32, eni: u32, last: u8) -> TerwayPod {
    TerwayPod {
        ip: ip.parse().unwrap(),
        veth_ifindex: veth,
        eni_ifindex: eni,
        pod_mac: [0x02, 0x70, 0, 0, 0, last],
        veth_mac: [0x02, 0x74, 0x77, 0, 0, last],
    }
}

#[test]
fn terway_fast_path_loads_pins_attaches_and_is_removed_without_a_trace() {
    if !require_root() {
        return;
    }
    let n = Node::new("life");
    let (a, b, eni) = (n.ifindex("twa"), n.ifindex("twb"), n.ifindex("eni1"));
    let kinds = n.run(move |pin| {
        let mut fp = TerwayFastPath::load_or_adopt(&pin).expect("verifier accepts terway.c");
        let k = (
            fp.attach_pod(a).unwrap(),
            fp.attach_eni(eni).unwrap(),
            fp.attach_pod(a).unwrap(), // idempotent
        );
        assert!(fp.tcx_attached(a, false).unwrap());
        assert!(fp.tcx_attached(eni, true).unwrap());
        assert!(
            !fp.tcx_attached(eni, false).unwrap(),
            "no pod programs on the ENI"
        );
        fp.set_host_cidrs(&[
            ("10.96.0.0".parse().unwrap(), 12),
            ("172.31.0.10".parse().unwrap(), 32),
            // Host bits are cut.
            ("192.168.7.9".parse().unwrap(), 24),
        ])
        .unwrap();
        assert_eq!(
            fp.host_cidrs().unwrap(),
            vec![
                ("10.96.0.0".parse::<Ipv4Addr>().unwrap(), 12),
                ("172.31.0.10".parse().unwrap(), 32),
                ("192.168.7.0".parse().unwrap(), 24),
            ]
        );
        // Replacing the set removes what is no longer wanted.
        fp.set_host_cidrs(&[("10.96.0.0".parse().unwrap(), 12)])
            .unwrap();
        assert_eq!(fp.host_cidrs().unwrap().len(), 1);

        // The pod entry's veth MAC must be the veth's for reconcile to keep it.
        let mut pa = pod("192.168.252.10", a, eni, 0x0a);
        pa.veth_mac = [0x02, 0x74, 0x77, 0, 0, 0x0a];
        fp.upsert_pod(&pa).unwrap();
        // An entry for an index that is now another interface (MAC differs): stale.
        fp.upsert_pod(&pod("192.168.252.11", b, eni, 0x33)).unwrap();
        // An entry for a veth that is gone.
        fp.upsert_pod(&pod("192.168.252.12", 999_999, eni, 0x0c))
            .unwrap();
        assert!(fp.upsert_pod(&pod("192.168.252.13", 0, eni, 1)).is_err());
        assert_eq!(fp.pods().unwrap().len(), 3);
        let r = fp.reconcile().unwrap();
        assert_eq!(r.removed_endpoints, 2, "{r:?}");
        assert_eq!(fp.pods().unwrap(), vec![pa]);
        fp.remove_pod(pa.ip).unwrap();
        fp.remove_pod(pa.ip).unwrap(); // DEL repeats
        fp.upsert_pod(&pa).unwrap();
        assert_eq!(fp.remove_pods_on(a).unwrap(), 1);
        fp.upsert_pod(&pa).unwrap();
        k
    });
    assert_eq!(
        kinds,
        (Attachment::Tcx, Attachment::Tcx, Attachment::Tcx),
        "kernel 6.6+ has tcx"
    );
    for f in [
        "progs/uc_tw_pod",
        "progs/uc_tw_pod_eg",
        "progs/uc_tw_eni",
        "maps/tw_pods",
        "maps/tw_host_cidrs",
        "maps/tw_host_flows",
        "maps/tw_stats",
        "maps/tw_links",
        &format!("links/tw_ingress_{a}"),
        &format!("links/tw_egress_{a}"),
        &format!("links/tw_ingress_{eni}"),
    ] {
        assert!(n.pin.join(f).exists(), "{f} pinned");
    }
    assert!(!n.pin.join(format!("links/tw_egress_{eni}")).exists());

    // A restarted agent adopts everything: same program, entries kept, nothing re-attached.
    let (tag0, tag1, pods, atts) = n.run(move |pin| {
        let before = TerwayFastPath::open(&pin).unwrap().program_tag().unwrap();
        let fp = TerwayFastPath::load_or_adopt(&pin).unwrap();
        (
            before,
            fp.program_tag().unwrap(),
            fp.pods().unwrap().len(),
            fp.attachments().unwrap(),
        )
    });
    assert_eq!(tag0, tag1);
    assert_eq!(pods, 1);
    assert_eq!(
        atts,
        vec![(a, Attachment::Tcx, false), (eni, Attachment::Tcx, true)]
    );

    // The veth goes away (pod deleted without DEL): the next start forgets it.
    must(&["ip", "-n", &n.ns, "link", "del", "twa"]);
    let (pods, atts) = n.run(move |pin| {
        let fp = TerwayFastPath::load_or_adopt(&pin).unwrap();
        (fp.pods().unwrap(), fp.attachments().unwrap())
    });
    assert!(pods.is_empty(), "{pods:?}");
    assert_eq!(atts, vec![(eni, Attachment::Tcx, true)]);
    assert!(!n.pin.join(format!("links/tw_ingress_{a}")).exists());

    n.run(|pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(!n.pin.exists(), "remove_all leaves nothing pinned");
    let left = n.run(|_| tcx_programs("eni1", TcAttachType::Ingress));
    assert!(left.is_empty(), "{left:?}");
}

/// (name, tag) of the programs in the tcx chain of `dev` (current namespace).
fn tcx_programs(dev: &str, hook: TcAttachType) -> Vec<(String, u64)> {
    let (_, progs) = SchedClassifier::query_tcx(dev, hook).unwrap();
    progs
        .iter()
        .map(|p| (p.name_as_str().unwrap_or("").to_string(), p.tag()))
        .collect()
}

#[test]
fn terway_clsact_fallback_attaches_filters_that_remove_all_takes_away() {
    if !require_root() {
        return;
    }
    let n = Node::new("nl");
    let (a, eni) = (n.ifindex("twa"), n.ifindex("eni1"));
    let kinds = n.run(move |pin| {
        let mut fp = TerwayFastPath::load_or_adopt_with(&pin, AttachMode::Netlink).unwrap();
        (
            fp.attach_pod(a).unwrap(),
            fp.attach_eni(eni).unwrap(),
            fp.attach_eni(eni).unwrap(), // replaced in place
        )
    });
    assert_eq!(
        kinds,
        (
            Attachment::Netlink,
            Attachment::Netlink,
            Attachment::Netlink
        )
    );
    assert!(n.tc("twa", "ingress").contains("uc_tw_pod"));
    assert!(n.tc("twa", "egress").contains("uc_tw_pod_eg"));
    let eni_filters = n.tc("eni1", "ingress");
    assert_eq!(
        eni_filters
            .lines()
            .filter(|l| l.contains("uc_tw_eni"))
            .count(),
        1,
        "{eni_filters}"
    );
    // Auto mode keeps an interface on the mechanism it already uses.
    let again = n.run(move |pin| TerwayFastPath::open(&pin).unwrap().attach_pod(a).unwrap());
    assert_eq!(again, Attachment::Netlink);
    // Detaching one interface leaves the other.
    n.run(move |pin| TerwayFastPath::open(&pin).unwrap().detach(a).unwrap());
    assert!(!n.tc("twa", "ingress").contains("uc_tw"));
    assert!(n.tc("eni1", "ingress").contains("uc_tw_eni"));
    n.run(|pin| unicni_bpf::remove_all(&pin)).unwrap();
    assert!(!n.tc("eni1", "ingress").contains("uc_tw"), "filter removed");
    assert!(!n.pin.exists());
}

#[test]
fn terway_upgrade_switches_tcx_and_clsact_attachments_in_place() {
    if !require_root() {
        return;
    }
    let n = Node::new("up");
    let (a, eni) = (n.ifindex("twa"), n.ifindex("eni1"));
    let old = n.run(move |pin| {
        let mut fp = TerwayFastPath::load_or_adopt_object(
            &pin,
            AttachMode::Auto,
            unicni_bpf::testing::TERWAY_V3,
        )
        .unwrap();
        fp.attach_pod(a).unwrap();
        let mut nl = TerwayFastPath::open_with(&pin, AttachMode::Netlink).unwrap();
        nl.attach_eni(eni).unwrap();
        fp.program_tag().unwrap()
    });
    let (new, atts) = n.run(move |pin| {
        let fp = TerwayFastPath::load_or_adopt(&pin).unwrap();
        (fp.program_tag().unwrap(), fp.attachments().unwrap())
    });
    assert_ne!(old, new, "a different build has a different tag");
    assert_eq!(
        atts,
        vec![
            (a, Attachment::Tcx, false),
            (eni, Attachment::Netlink, true)
        ]
    );
    // Both interfaces now run the new code.
    let (pod_in, pod_eg, eni_tcx) = n.run(move |_| {
        (
            tcx_programs("twa", TcAttachType::Ingress),
            tcx_programs("twa", TcAttachType::Egress),
            tcx_programs("eni1", TcAttachType::Ingress),
        )
    });
    assert_eq!(pod_in, vec![("uc_tw_pod".to_string(), new)]);
    assert_eq!(pod_eg.len(), 1);
    assert_eq!(pod_eg[0].0, "uc_tw_pod_eg");
    assert!(eni_tcx.is_empty(), "the ENI stays on clsact: {eni_tcx:?}");
    let eni_filters = n.tc("eni1", "ingress");
    assert_eq!(
        eni_filters
            .lines()
            .filter(|l| l.contains("uc_tw_eni"))
            .count(),
        1,
        "{eni_filters}"
    );
    let eni_tag = n.run(|pin| {
        SchedClassifier::from_pin(pin.join("progs/uc_tw_eni"))
            .unwrap()
            .info()
            .unwrap()
            .tag()
    });
    assert!(
        eni_filters.contains(&format!("tag {eni_tag:016x}")),
        "{eni_filters}"
    );
}
