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

use ipnet::{IpNet, Ipv4Net};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use unicni_bpf::policy::{RuleDirection, RuleKey, RuleValue, ISOLATED_EGRESS, ISOLATED_INGRESS};
use unicni_bpf::{PolicyDatapath, PolicyStats, TerwayFastPath, TerwayStats};
use unicni_core::{Attachment, AttachmentId, PodRef};
use unicni_net::NetNs;
use unicni_terway::datapath::{self, EniLink};
use unicni_terway::proto::{eni_table, EniInfo, PodMode, PodNetwork};

static COUNTER: AtomicU32 = AtomicU32::new(0);

const ENI_MAC: &str = "02:e1:00:00:00:01";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 252, 253);
/// Two hosts beyond the vSwitch gateway: the policies allow one and not the other.
const ALLOWED: &str = "203.0.113.1";
const DENIED: &str = "203.0.113.2";
const NODE_IP: &str = "172.31.0.10";

fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "root-only test run without root in CI"
    );
    eprintln!("skipping: needs root");
    false
}

fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{:04x}{n:02x}", std::process::id() & 0xffff)
}

fn must(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A named network namespace, deleted on drop.
struct Ns {
    name: String,
}

impl Ns {
    fn new(prefix: &str) -> Ns {
        let name = unique(prefix);
        must("ip", &["netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        must("ip", &full)
    }

    fn nft(&self, script: &str) {
        let out = self.exec(&["nft", script]);
        assert!(
            out.status.success(),
            "nft {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One echo request from `from` (an address of this namespace, or its choice).
    fn ping_once(&self, target: &str, from: Option<&str>) -> bool {
        let mut args = vec!["ping", "-c", "1", "-W", "1"];
        if let Some(f) = from {
            args.extend_from_slice(&["-I", f]);
        }
        args.push(target);
        self.exec(&args).status.success()
    }

    /// Pings until one answer comes back or 4 s pass: an allowed flow must pass.
    fn reaches(&self, target: &str, from: Option<&str>) -> bool {
        let until = Instant::now() + Duration::from_secs(4);
        loop {
            if self.ping_once(target, from) {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Two echo requests, 1 s each, none answered: a denied flow is dropped.
    fn dropped(&self, target: &str, from: Option<&str>) -> bool {
        !self.ping_once(target, from) && !self.ping_once(target, from)
    }

    /// Packets counted by the node's `forward` counters.
    fn forward_counted(&self) -> u64 {
        let out = self.exec(&["nft", "-j", "list", "table", "inet", "ucpol"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("rule"))
            .flat_map(|r| r["expr"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
            .sum()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A node, its VPC (with the hosts `ALLOWED` and `DENIED`), the ENI between them, and a
/// pin directory of the test's own.
struct Lab {
    node: Ns,
    vpc: Ns,
    eni: String,
    vpc_end: String,
    pin: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let node = Ns::new("tpn");
        let vpc = Ns::new("tpv");
        let eni = unique("eni");
        let vpc_end = unique("vsw");
        must(
            "ip",
            &[
                "link", "add", &eni, "netns", &node.name, "address", ENI_MAC, "type", "veth",
                "peer", "name", &vpc_end, "netns", &vpc.name,
            ],
        );
        node.ip(&["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"]);
        vpc.ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", &vpc_end]);
        for host in [ALLOWED, DENIED] {
            vpc.ip(&["addr", "add", &format!("{host}/32"), "dev", "lo"]);
        }
        vpc.ip(&["link", "set", &vpc_end, "up"]);
        let pin = PathBuf::from(format!("/sys/fs/bpf/{}", unique("unicni-test-tpol-")));
        Lab {
            node,
            vpc,
            eni,
            vpc_end,
            pin,
        }
    }

    /// What the VPC knows about an address of the ENI.
    fn vpc_knows(&self, ip: &str) {
        let end = self.vpc_end.as_str();
        self.vpc
            .ip(&["route", "replace", &format!("{ip}/32"), "dev", end]);
        self.vpc.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            ENI_MAC,
            "dev",
            end,
            "nud",
            "permanent",
        ]);
    }

    /// Runs `f` on a thread inside the node namespace, on its own runtime.
    fn on_node<T: Send, Fut: Future<Output = T>>(&self, f: impl FnOnce() -> Fut + Send) -> T {
        NetNs::open(&self.node.path())
            .unwrap()
            .run(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f())
            })
            .unwrap()
    }

    /// Runs `f` with the policy datapath opened in the node namespace.
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

    /// The node's forward hook: count and drop everything from or to the pod network.
    fn forward_drop(&self) {
        self.node.nft(
            "add table inet ucpol; \
             add chain inet ucpol fw { type filter hook forward priority 0; policy accept; }; \
             add rule inet ucpol fw ip saddr 192.168.252.0/24 counter drop; \
             add rule inet ucpol fw ip daddr 192.168.252.0/24 counter drop",
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.pin.exists() {
            let pin = self.pin.clone();
            let _ = NetNs::open(&self.node.path())
                .unwrap()
                .run(move || unicni_bpf::remove_all(&pin));
            let _ = std::fs::remove_dir_all(&self.pin);
        }
    }
}

fn eni_info(table: u32) -> EniInfo {
    EniInfo {
        id: "eni-test0001".into(),
        mac: ENI_MAC.into(),
        vswitch_id: "vsw-test".into(),
        cidr: "192.168.252.0/24".parse::<Ipv4Net>().unwrap(),
        gateway: GATEWAY,
        cidr_v6: None,
        gateway_v6: None,
        primary_ip: "192.168.252.20".parse().unwrap(),
        table,
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

fn attachment(pod: &Ns) -> Attachment {
    Attachment {
        id: AttachmentId::new(unique("c"), "eth0"),
        netns: Some(pod.path()),
        pod: PodRef::default(),
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

/// The agent of a `terway.datapath = "ebpf"` node: node and ENI prepared, the fast path
/// loaded with its host-path CIDRs and on the ENI.
async fn agent_prepares_fast_path(pin: &Path) -> (EniInfo, EniLink) {
    datapath::prepare_node(false).await.unwrap();
    let found = datapath::find_eni_link(ENI_MAC).await.unwrap().unwrap();
    let eni = eni_info(eni_table(found.ifindex));
    let link = datapath::prepare_eni(&eni, true).await.unwrap();
    let mut fp = TerwayFastPath::load_or_adopt(pin).expect("load the terway fast path");
    fp.set_host_cidrs(&[
        ("10.96.0.0".parse().unwrap(), 12),
        (NODE_IP.parse().unwrap(), 32),
    ])
    .unwrap();
    datapath::attach_eni_fast_path(pin, link.ifindex).unwrap();
    (eni, link)
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
    let lab = Lab::new();
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
    lab.forward_drop();
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
        lab.node.forward_counted(),
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
    let lab = Lab::new();
    let pod = Ns::new("tpx");
    let att = attachment(&pod);
    let key = datapath::names::host_veth(&att.id);
    let pin = lab.pin.clone();

    // The policy engine has not loaded the programs yet: ADD says "try again later" and
    // leaves the ENI on the node, instead of running the pod unenforced.
    let eni = lab.on_node(|| async {
        datapath::prepare_node(false).await.unwrap();
        let found = datapath::find_eni_link(ENI_MAC).await.unwrap().unwrap();
        let eni = eni_info(eni_table(found.ifindex));
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
    let lab = Lab::new();
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
    lab.forward_drop();
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
    assert_eq!(lab.node.forward_counted(), 0);
    lab.on_node(|| async { datapath::teardown(&att, Some(&net)).await.unwrap() });
}
