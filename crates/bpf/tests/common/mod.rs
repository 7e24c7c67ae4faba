//! Test topology: a "node" network namespace holding a bridge and the host sides of two
//! "pods" (each its own namespace), built with `ip`, removed on drop. Every name is unique
//! per test and process; the bridge and veths live inside the private node namespace so
//! nothing touches the host's links.
#![allow(dead_code)]

use std::path::PathBuf;

pub const SUBNET_GW: &str = "10.77.0.1/24";
pub const IP_A: &str = "10.77.0.2";
pub const IP_B: &str = "10.77.0.3";
pub const MAC_A: [u8; 6] = [0x02, 0x75, 0x63, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0x75, 0x63, 0, 0, 0x0b];

// Each test binary, and the bench that includes this module, uses part of it.
#[allow(unused_imports)]
pub use unicni_testkit::{
    cmd::{must, run},
    in_netns,
    probe::{ip_n, ns_must, ns_run, static_neigh},
    require_root, Netns,
};

pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub struct Topo {
    pub node: String,
    pub pod_a: String,
    pub pod_b: String,
    pub pin_dir: PathBuf,
    /// Deleted after `Drop for Topo` has unpinned inside the node namespace.
    _namespaces: [Netns; 3],
}

impl Topo {
    pub fn new(tag: &str) -> Topo {
        let namespaces = ["n", "a", "b"].map(|r| Netns::with_prefix(&format!("ucbpf-{tag}-{r}")));
        let t = Topo {
            node: namespaces[0].name.clone(),
            pod_a: namespaces[1].name.clone(),
            pod_b: namespaces[2].name.clone(),
            pin_dir: PathBuf::from(format!(
                "/sys/fs/bpf/unicni-test-{tag}-{}",
                std::process::id()
            )),
            _namespaces: namespaces,
        };
        let n = t.node.as_str();
        ip_n(n, "link set lo up");
        ip_n(n, "link add br0 type bridge");
        ip_n(n, &format!("addr add {SUBNET_GW} dev br0"));
        ip_n(n, "link set br0 up");
        for (host, pod, ip, mac) in [("ha", &t.pod_a, IP_A, MAC_A), ("hb", &t.pod_b, IP_B, MAC_B)] {
            let mac = mac_str(&mac);
            ip_n(
                n,
                &format!("link add {host} type veth peer name eth0 address {mac} netns {pod}"),
            );
            ip_n(n, &format!("link set {host} master br0 up"));
            ip_n(pod, "link set lo up");
            ip_n(pod, &format!("addr add {ip}/24 dev eth0"));
            ip_n(pod, "link set eth0 up");
        }
        t
    }

    /// [`Topo::new`] when root-only tests may run (see [`require_root`]), else `None`.
    pub fn for_root_test(tag: &str) -> Option<Topo> {
        require_root().then(|| Topo::new(tag))
    }

    /// The interface indexes of the host sides of pod A's and pod B's veths.
    pub fn hosts(&self) -> (u32, u32) {
        (self.ifindex("ha"), self.ifindex("hb"))
    }

    pub fn ifindex(&self, dev: &str) -> u32 {
        unicni_testkit::probe::ifindex(&self.node, dev)
    }

    /// `count` pings from pod A to `ip`, true when all were answered.
    pub fn ping_from_a(&self, ip: &str, count: u32) -> bool {
        unicni_testkit::probe::ping(&self.pod_a, ip, count)
    }

    /// Output of `tc filter show dev <dev> ingress` in the node namespace.
    pub fn tc_filters(&self, dev: &str) -> String {
        String::from_utf8_lossy(
            &ns_run(&self.node, &format!("tc filter show dev {dev} ingress")).stdout,
        )
        .into_owned()
    }

    /// Static neighbour entries in both pods, so they need no ARP through the bridge.
    pub fn static_neighbours(&self) {
        static_neigh(&self.pod_a, IP_B, &mac_str(&MAC_B), "eth0");
        static_neigh(&self.pod_b, IP_A, &mac_str(&MAC_A), "eth0");
    }

    /// Runs `f` on a thread inside the node namespace (the fast path's interface indexes
    /// are per namespace).
    pub fn in_node<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.node, f)
    }

    /// [`Topo::in_node`] with the pin directory handed to `f`.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce(PathBuf) -> T + Send + 'static) -> T {
        let pin = self.pin_dir.clone();
        in_netns(&self.node, move || f(pin))
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        let pin = self.pin_dir.clone();
        if pin.exists() {
            let _ = in_netns(&self.node, move || unicni_bpf::remove_all(&pin));
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
    }
}
