//! Root-only test cluster: one node namespace holding both backends' pod shapes, pods in
//! their own namespaces, and an outside host; servers in every pod; the policy engine run
//! on a thread inside the node namespace, watching a manifest directory.
//!
//! ```text
//!   web    (shop, app=web)    bridge port uc00000000001  10.88.0.11  fd88::11  (flannel shape)
//!   db     (shop, app=db)     routed      tw00000000002  10.89.0.12  fd89::12  (terway shape)
//!   client (lab,  app=client) bridge port uc00000000003  10.88.0.13  fd88::13
//!   probe  (lab,  app=probe)  routed      tw00000000004  10.89.0.14  fd89::14
//!   ext    outside host, routed via the node: 10.90.0.2 and .3, fd90::2 and ::3
//!   node   br0 10.88.0.1/24 fd88::1/64, next0 10.90.0.1/24 fd90::1/64
//! ```
//!
//! Every name carries the test's tag and the process id; everything is removed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol as SockProto, SockAddr, Socket, Type};
use unicni_policy_agent::{Engine, EngineConfig, ManifestSource, Source, Status};

pub const TCP_PORTS: &[u16] = &[53, 80, 5432, 8080, 8081, 8999, 9000, 9005, 9006];
pub const UDP_PORTS: &[u16] = &[53, 9000];

// Each test binary, and the bench that includes this module, uses part of it.
#[allow(unused_imports)]
pub use unicni_testkit::{
    cmd::{must, run},
    enter_netns as enter, in_netns as in_ns,
    probe::{ip_n, ns_must, ns_run, static_neigh, sysfs_net},
    require_root, Netns,
};

#[derive(Debug, Clone)]
pub struct PodNs {
    pub name: &'static str,
    pub namespace: &'static str,
    pub app: &'static str,
    pub routed: bool,
    pub veth: String,
    pub v4: IpAddr,
    pub v6: IpAddr,
    pub netns: String,
}

pub struct Cluster {
    pub node: String,
    pub ext: String,
    pub pods: Vec<PodNs>,
    pub pin_dir: PathBuf,
    pub dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    /// Deleted after `Drop for Cluster` has unpinned inside the node namespace.
    _namespaces: Vec<Netns>,
}

pub const EXT_V4: &str = "10.90.0.2";
pub const EXT2_V4: &str = "10.90.0.3";
pub const EXT_V6: &str = "fd90::2";
pub const EXT2_V6: &str = "fd90::3";

fn sysctls(ns: &str) {
    for kv in [
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ] {
        ns_must(ns, &format!("sysctl -qw {kv}"));
    }
}

impl Cluster {
    pub fn new(tag: &str) -> Cluster {
        Self::build(tag, true)
    }

    /// The cluster without the probe servers (benchmarks run their own).
    pub fn quiet(tag: &str) -> Cluster {
        Self::build(tag, false)
    }

    fn build(tag: &str, servers: bool) -> Cluster {
        let base = format!("upa{tag}{}", std::process::id());
        let guard = |role: &str| Netns::with_prefix(&format!("{base}-{role}-"));
        let mut namespaces = vec![guard("node"), guard("ext")];
        let specs: [(&'static str, &'static str, &'static str, bool); 4] = [
            ("web", "shop", "web", false),
            ("db", "shop", "db", true),
            ("client", "lab", "client", false),
            ("probe", "lab", "probe", true),
        ];
        let pods: Vec<PodNs> = specs
            .iter()
            .enumerate()
            .map(|(i, (name, namespace, app, routed))| {
                let n = 11 + i as u8;
                let net = if *routed { 89 } else { 88 };
                PodNs {
                    name,
                    namespace,
                    app,
                    routed: *routed,
                    veth: format!("{}{:011x}", if *routed { "tw" } else { "uc" }, i + 1),
                    v4: format!("10.{net}.0.{n}").parse().unwrap(),
                    v6: format!("fd{net}::{n}").parse().unwrap(),
                    netns: {
                        namespaces.push(guard(name));
                        namespaces.last().unwrap().name.clone()
                    },
                }
            })
            .collect();
        let c = Cluster {
            node: namespaces[0].name.clone(),
            ext: namespaces[1].name.clone(),
            pods,
            pin_dir: PathBuf::from(format!(
                "/sys/fs/bpf/unicni-test-pa-{tag}-{}",
                std::process::id()
            )),
            dir: tempfile::tempdir().unwrap(),
            stop: Arc::new(AtomicBool::new(false)),
            _namespaces: namespaces,
        };
        let mut all = vec![c.node.clone(), c.ext.clone()];
        all.extend(c.pods.iter().map(|p| p.netns.clone()));
        for ns in &all {
            ip_n(ns, "link set lo up");
            sysctls(ns);
        }
        let n = c.node.as_str();
        for kv in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            ns_must(n, &format!("sysctl -qw {kv}"));
        }
        ip_n(n, "link add br0 type bridge");
        ip_n(n, "addr add 10.88.0.1/24 dev br0");
        ip_n(n, "addr add fd88::1/64 dev br0 nodad");
        ip_n(n, "link set br0 up");
        // The outside host.
        ip_n(
            n,
            &format!("link add next0 type veth peer name eth0 netns {}", c.ext),
        );
        ip_n(n, "addr add 10.90.0.1/24 dev next0");
        ip_n(n, "addr add fd90::1/64 dev next0 nodad");
        ip_n(n, "link set next0 up");
        let e = c.ext.as_str();
        for a in ["10.90.0.2/24", "10.90.0.3/24"] {
            ip_n(e, &format!("addr add {a} dev eth0"));
        }
        for a in ["fd90::2/64", "fd90::3/64"] {
            ip_n(e, &format!("addr add {a} dev eth0 nodad"));
        }
        ip_n(e, "link set eth0 up");
        ip_n(e, "route add default via 10.90.0.1");
        ip_n(e, "-6 route add default via fd90::1");
        for p in &c.pods {
            let ns = p.netns.as_str();
            ip_n(
                n,
                &format!("link add {} type veth peer name eth0 netns {ns}", p.veth),
            );
            ip_n(ns, "link set eth0 up");
            if p.routed {
                ip_n(n, &format!("link set {} up", p.veth));
                let mac = ns_must(n, &format!("cat /sys/class/net/{}/address", p.veth));
                let mac = mac.trim();
                ip_n(ns, &format!("addr add {}/32 dev eth0", p.v4));
                ip_n(ns, &format!("addr add {}/128 dev eth0 nodad", p.v6));
                ip_n(ns, "route add 169.254.1.1 dev eth0 scope link");
                ip_n(ns, "route add default via 169.254.1.1 dev eth0");
                ip_n(
                    ns,
                    &format!("neigh replace 169.254.1.1 lladdr {mac} dev eth0 nud permanent"),
                );
                ip_n(
                    ns,
                    &format!("-6 neigh replace fe80::1 lladdr {mac} dev eth0 nud permanent"),
                );
                ip_n(ns, "-6 route add default via fe80::1 dev eth0");
                ip_n(n, &format!("route add {}/32 dev {}", p.v4, p.veth));
                ip_n(n, &format!("-6 route add {}/128 dev {}", p.v6, p.veth));
            } else {
                ip_n(n, &format!("link set {} master br0 up", p.veth));
                ip_n(ns, &format!("addr add {}/24 dev eth0", p.v4));
                ip_n(ns, &format!("addr add {}/64 dev eth0 nodad", p.v6));
                ip_n(ns, "route add default via 10.88.0.1");
                ip_n(ns, "-6 route add default via fd88::1");
            }
        }
        for ns in all.iter().filter(|ns| servers && **ns != c.node) {
            serve(ns, c.stop.clone());
        }
        c.write("00-cluster.yaml", &c.cluster_manifests());
        c
    }

    pub fn pod(&self, name: &str) -> &PodNs {
        self.pods.iter().find(|p| p.name == name).expect("pod")
    }

    /// Namespaces and pods as manifests (every pod on node "n1").
    pub fn cluster_manifests(&self) -> String {
        let mut y = String::from(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: lab, labels: {team: lab, purpose: test}}\n",
        );
        for p in &self.pods {
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: {}, labels: {{app: {}}}}}\n\
                 spec:\n  nodeName: n1\n  containers:\n  - name: c\n    ports: [{{name: http, containerPort: 8080}}, {{name: dns, containerPort: 53, protocol: UDP}}]\n\
                 status: {{podIPs: [{{ip: \"{}\"}}, {{ip: \"{}\"}}]}}\n",
                p.name, p.namespace, p.app, p.v4, p.v6
            ));
        }
        y
    }

    /// Writes a manifest file into the watched directory (atomically: tmp file + rename).
    pub fn write(&self, name: &str, yaml: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.path().join(name));
    }

    /// Starts the engine inside the node namespace.
    pub fn start_engine(&self) -> EngineRunner {
        EngineRunner::start(&self.node, &self.pin_dir, self.dir.path(), Vec::new())
    }

    /// The engine, told the cluster's Service CIDRs.
    pub fn start_engine_with_services(&self, services: Vec<ipnet::IpNet>) -> EngineRunner {
        EngineRunner::start(&self.node, &self.pin_dir, self.dir.path(), services)
    }

    /// Runs `f` inside the node namespace.
    pub fn in_node<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_ns(&self.node, f)
    }

    pub fn stats(&self) -> unicni_bpf::PolicyStats {
        let pin = self.pin_dir.clone();
        self.in_node(move || {
            unicni_bpf::PolicyDatapath::open(&pin)
                .unwrap()
                .stats()
                .unwrap()
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let pin = self.pin_dir.clone();
        if pin.exists() {
            let _ = in_ns(&self.node, move || unicni_bpf::remove_all(&pin));
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
    }
}

/// Every TCP port in [`TCP_PORTS`] (greets with "hello", then echoes) and UDP port in
/// [`UDP_PORTS`] (echoes), on both families, until `stop`.
fn serve(ns: &str, stop: Arc<AtomicBool>) {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&ns);
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for &port in TCP_PORTS {
            let l = TcpListener::bind(("::", port)).expect("bind tcp");
            l.set_nonblocking(true).unwrap();
            tcp.push(l);
        }
        for &port in UDP_PORTS {
            let s = UdpSocket::bind(("::", port)).expect("bind udp");
            s.set_nonblocking(true).unwrap();
            udp.push(s);
        }
        tx.send(()).unwrap();
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            for l in &tcp {
                if let Ok((mut s, _)) = l.accept() {
                    idle = false;
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                        let _ = s.write_all(b"hello");
                        let mut b = [0u8; 1024];
                        while let Ok(n) = s.read(&mut b) {
                            if n == 0 || s.write_all(&b[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
            for s in &udp {
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    idle = false;
                    let _ = s.send_to(&buf[..n], from);
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    rx.recv().expect("server started");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One connection attempt: from namespace `from` (optionally from source address `bind`)
/// to `to`:`port`. TCP passes when the server's greeting arrives (so the reply direction
/// passed too); UDP when the datagram comes back.
#[derive(Debug, Clone)]
pub struct Probe {
    pub from: String,
    pub bind: Option<IpAddr>,
    pub to: IpAddr,
    pub proto: Proto,
    pub port: u16,
    pub expect: bool,
    pub label: String,
}

pub fn attempt(p: &Probe, timeout: Duration) -> Result<(), String> {
    let target = SocketAddr::new(p.to, p.port);
    let domain = if p.to.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    match p.proto {
        Proto::Tcp => {
            let s = Socket::new(domain, Type::STREAM, Some(SockProto::TCP))
                .map_err(|e| e.to_string())?;
            if let Some(b) = p.bind {
                s.bind(&SockAddr::from(SocketAddr::new(b, 0)))
                    .map_err(|e| format!("bind {b}: {e}"))?;
            }
            s.connect_timeout(&SockAddr::from(target), timeout)
                .map_err(|e| format!("connect: {e}"))?;
            let mut stream: std::net::TcpStream = s.into();
            stream.set_read_timeout(Some(timeout)).unwrap();
            let mut b = [0u8; 5];
            stream
                .read_exact(&mut b)
                .map_err(|e| format!("connected, no greeting: {e}"))?;
            Ok(())
        }
        Proto::Udp => {
            let s = Socket::new(domain, Type::DGRAM, Some(SockProto::UDP))
                .map_err(|e| e.to_string())?;
            if let Some(b) = p.bind {
                s.bind(&SockAddr::from(SocketAddr::new(b, 0)))
                    .map_err(|e| format!("bind {b}: {e}"))?;
            }
            let sock: UdpSocket = s.into();
            sock.set_read_timeout(Some(timeout)).unwrap();
            let mut b = [0u8; 16];
            // Two tries: the first datagram of a flow may wait for ARP/NDP.
            for _ in 0..2 {
                sock.send_to(b"ping", target)
                    .map_err(|e| format!("send: {e}"))?;
                if let Ok((n, _)) = sock.recv_from(&mut b) {
                    if &b[..n] == b"ping" {
                        return Ok(());
                    }
                }
            }
            Err("no echo".into())
        }
    }
}

/// Runs every probe at once (each on its own thread in its namespace) and returns the ones
/// whose outcome differs from `expect`, described.
pub fn check(probes: &[Probe], timeout: Duration) -> Vec<String> {
    let handles: Vec<_> = probes
        .iter()
        .cloned()
        .map(|p| {
            std::thread::spawn(move || {
                enter(&p.from);
                let r = attempt(&p, timeout);
                (p, r)
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for h in handles {
        let (p, r) = h.join().expect("probe thread");
        if r.is_ok() != p.expect {
            wrong.push(format!(
                "{}: {:?} {} -> {}:{} expected {}, got {:?}",
                p.label,
                p.proto,
                p.bind
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| p.from.clone()),
                p.to,
                p.port,
                if p.expect { "pass" } else { "drop" },
                r
            ));
        }
    }
    wrong
}

/// The engine on a thread inside the node namespace (current-thread runtime).
pub struct EngineRunner {
    pub status: Arc<Status>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The backends' host-veth rules (policy-agent cannot depend on them): flannel's `uc` and
/// terway's `tw`, each + 11 lowercase hex digits; [`PodNs::veth`] names are made the same way.
pub fn is_pod_veth(name: &str) -> bool {
    (name.starts_with("uc") || name.starts_with("tw"))
        && name.len() == 13
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl EngineRunner {
    pub fn start(
        node: &str,
        pin_dir: &Path,
        dir: &Path,
        services: Vec<ipnet::IpNet>,
    ) -> EngineRunner {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (node, pin_dir, dir) = (node.to_string(), pin_dir.to_path_buf(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            enter(&node);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut cfg = EngineConfig::new("n1", pin_dir);
                cfg.is_pod_veth = is_pod_veth;
                cfg.rescan = Duration::from_millis(500);
                cfg.service_cidrs = services;
                let source =
                    Source::Manifests(ManifestSource::new(dir, Duration::from_millis(100)));
                let engine = match Engine::start(cfg, source).await {
                    Ok(e) => e,
                    Err(e) => {
                        tx.send(Err(e.to_string())).unwrap();
                        return;
                    }
                };
                assert!(
                    engine.wait_synced(Duration::from_secs(10)).await,
                    "first sync"
                );
                tx.send(Ok(engine.status().clone())).unwrap();
                let _ = stop_rx.await;
                drop(engine);
            });
        });
        let status = rx.recv().expect("engine thread").expect("engine start");
        EngineRunner {
            status,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn syncs(&self) -> u64 {
        self.status.syncs.load(Ordering::Relaxed)
    }

    /// Waits until a sync after `after` has applied `policies` policies.
    pub fn wait_applied(&self, after: u64, policies: u64) -> Duration {
        let start = Instant::now();
        while !(self.syncs() > after && self.status.policies.load(Ordering::Relaxed) == policies) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "engine did not apply {policies} policies: {}",
                self.status.last_error()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        start.elapsed()
    }
}

impl Drop for EngineRunner {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
