//! What the root-only terway tests (datapath, fastpath, policy) share: namespaces, the lab
//! of a node and its VPC joined by a veth playing the ENI, and the agent's node
//! preparation.
//!
//! The lab: a "node" namespace and a "VPC" namespace joined by a veth whose node end plays
//! the ENI (known MAC, no address) and whose VPC end is the vSwitch gateway. The VPC knows
//! the pod addresses the way the real VPC does: a /32 (/128) route to the ENI and a
//! permanent neighbour with the ENI's MAC. Code for the node runs on a thread inside the
//! node namespace, like the plugin and the agent do on a node.

#![allow(dead_code)]

use ipnet::{Ipv4Net, Ipv6Net};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use unicni_bpf::TerwayFastPath;
use unicni_core::{Attachment, AttachmentId, PodRef};
use unicni_net::NetNs;
use unicni_terway::datapath::{self, EniLink};
use unicni_terway::proto::{eni_table, EniInfo};
pub use unicni_testkit::{require_root, unique, Netns};

pub const ENI_MAC: &str = "02:e1:00:00:00:01";
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 252, 253);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x252, 0, 0, 0, 0, 0xfffd);
pub const NODE_IP: &str = "172.31.0.10";

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap()
}

pub fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace with its loopback up, deleted on drop (the testkit's guard,
/// with the lab's helpers on top).
pub struct Ns(Netns);

impl std::ops::Deref for Ns {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.0
    }
}

impl Ns {
    pub fn new(prefix: &str) -> Ns {
        Ns(Netns::with_lo_up(prefix))
    }

    pub fn path(&self) -> PathBuf {
        self.0.path_buf()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// `ip -n <ns> args...`, with the `proto static` that programmed routes carry left
    /// out so the expectations read like the routes they describe.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        must("ip", &full).replace(" proto static", "")
    }

    pub fn nft(&self, script: &str) {
        let out = self.exec(&["nft", script]);
        assert!(
            out.status.success(),
            "nft {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One echo request.
    pub fn ping_once(&self, target: &str) -> bool {
        self.ping_from(target, None)
    }

    /// One echo request from `from` (an address of this namespace, or its choice).
    pub fn ping_from(&self, target: &str, from: Option<&str>) -> bool {
        let mut args = vec!["ping", "-c", "1", "-W", "1"];
        if let Some(f) = from {
            args.extend_from_slice(&["-I", f]);
        }
        args.push(target);
        self.exec(&args).status.success()
    }

    /// Pings until one answer comes back or `secs` pass.
    pub fn ping_within(&self, target: &str, from: Option<&str>, secs: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.ping_from(target, from) {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Packets counted by the `forward` counters of nftables table `inet <table>`.
    pub fn forward_counted(&self, table: &str) -> u64 {
        let out = self.exec(&["nft", "-j", "list", "table", "inet", table]);
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

/// A node, its VPC, the ENI between them, and a pin directory of the test's own (removed
/// on drop if something was pinned there).
pub struct Lab {
    pub node: Ns,
    pub vpc: Ns,
    pub eni: String,
    pub vpc_end: String,
    pub pin: PathBuf,
}

impl Lab {
    /// `tag` names the namespaces and the pin directory; `vpc_hosts` are addresses of hosts
    /// beyond the vSwitch gateway (on the VPC's loopback).
    pub fn new(tag: &str, vpc_hosts: &[&str]) -> Lab {
        let node = Ns::new(&format!("{tag}n"));
        let vpc = Ns::new(&format!("{tag}v"));
        let eni = unique("eni");
        let vpc_end = unique("vsw");
        must(
            "ip",
            &[
                "link", "add", &eni, "netns", &node.name, "address", ENI_MAC, "type", "veth",
                "peer", "name", &vpc_end, "netns", &vpc.name,
            ],
        );
        // The node's own address.
        node.ip(&["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"]);
        vpc.ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", &vpc_end]);
        if vpc_hosts.iter().any(|h| h.contains(':')) {
            vpc.ip(&[
                "addr",
                "add",
                &format!("{GATEWAY_V6}/64"),
                "dev",
                &vpc_end,
                "nodad",
            ]);
        }
        for host in vpc_hosts {
            vpc.ip(&[
                "addr",
                "add",
                &format!("{host}{}", host_len(host)),
                "dev",
                "lo",
            ]);
        }
        vpc.ip(&["link", "set", &vpc_end, "up"]);
        let pin = PathBuf::from(format!(
            "/sys/fs/bpf/{}",
            unique(&format!("unicni-test-{tag}-"))
        ));
        Lab {
            node,
            vpc,
            eni,
            vpc_end,
            pin,
        }
    }

    /// What the VPC knows about an address of the ENI.
    pub fn vpc_knows(&self, ip: &str) {
        let end = self.vpc_end.as_str();
        self.vpc.ip(&[
            "route",
            "replace",
            &format!("{ip}{}", host_len(ip)),
            "dev",
            end,
        ]);
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
    pub fn on_node<T: Send, Fut: Future<Output = T>>(&self, f: impl FnOnce() -> Fut + Send) -> T {
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

    /// The node's forward hook (nftables table `inet <table>`): count and drop everything
    /// from or to the pod network.
    pub fn forward_drop(&self, table: &str) {
        self.node.nft(&format!(
            "add table inet {table}; \
             add chain inet {table} fw {{ type filter hook forward priority 0; policy accept; }}; \
             add rule inet {table} fw ip saddr 192.168.252.0/24 counter drop; \
             add rule inet {table} fw ip daddr 192.168.252.0/24 counter drop"
        ));
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

fn host_len(ip: &str) -> &'static str {
    if ip.contains(':') {
        "/128"
    } else {
        "/32"
    }
}

pub fn eni_info(table: u32, dual: bool) -> EniInfo {
    EniInfo {
        id: "eni-test0001".into(),
        mac: ENI_MAC.into(),
        vswitch_id: "vsw-test".into(),
        cidr: "192.168.252.0/24".parse::<Ipv4Net>().unwrap(),
        gateway: GATEWAY,
        cidr_v6: dual.then(|| "2001:db8:252::/64".parse::<Ipv6Net>().unwrap()),
        gateway_v6: dual.then_some(GATEWAY_V6),
        primary_ip: "192.168.252.20".parse().unwrap(),
        table,
    }
}

/// The attachment of a pod's `eth0`, for a container of a unique id.
pub fn attachment(pod: &Ns) -> Attachment {
    Attachment {
        id: AttachmentId::new(unique("c"), "eth0"),
        netns: Some(pod.path()),
        pod: PodRef::default(),
    }
}

/// Node preparation as the agent does it: forwarding, then the ENI found by MAC, its table
/// number from its ifindex, and its link prepared.
pub async fn agent_prepares(dual: bool, shared: bool) -> (EniInfo, EniLink) {
    datapath::prepare_node(dual).await.unwrap();
    let found = datapath::find_eni_link(&ENI_MAC.to_ascii_uppercase())
        .await
        .unwrap()
        .expect("ENI link found by MAC");
    let eni = eni_info(eni_table(found.ifindex), dual);
    let link = datapath::prepare_eni(&eni, shared).await.unwrap();
    assert_eq!(link, found);
    (eni, link)
}

/// What the agent does on a node with `terway.datapath = "ebpf"`: node and ENI as in the
/// routing datapath, then the fast path loaded and pinned, its host-path CIDRs (Service
/// CIDR, node address) set, and its program on the ENI.
pub async fn agent_prepares_fast_path(pin: &Path) -> (EniInfo, EniLink) {
    datapath::prepare_node(false).await.unwrap();
    let found = datapath::find_eni_link(ENI_MAC).await.unwrap().unwrap();
    let eni = eni_info(eni_table(found.ifindex), false);
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
