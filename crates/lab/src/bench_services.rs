//! `unicni lab bench-services`: a client pod's connections to a ClusterIP with 100, 1,000
//! and 10,000 Services loaded, through unicni's eBPF load balancer and through
//! kube-proxy-like iptables rules (crates/lab/src/kubeproxy.rs), beside the backend pod's
//! own address (no Service), in one run.
//!
//! Two flannel host-gw labs of two nodes, a client pod on node 1 and a backend pod on
//! node 2 in each, built from the same Service and EndpointSlice objects:
//! - `<id>e`: unicni's eBPF load balancer on node 1 (the Services applied to its maps,
//!   the client pod registered), no kube-proxy rules; also the path to the backend pod's
//!   address (the reference).
//! - `<id>k`: kube-proxy's iptables-mode rules in both node namespaces (as kube-proxy runs
//!   on every node), the eBPF load balancer off; the target Service is the last one in
//!   KUBE-SERVICES (the worst case: every new connection walks the chain rule by rule to
//!   it) and one sits in the middle; also the path to the backend pod's address, which
//!   walks the whole chain without a match.
//!
//! Every path gets an echo server of its own in the backend pod. For each Service count,
//! all paths are measured in interleaved slices (the order rotated every turn) so the
//! machine's load drifting touches every path alike, and each ratio is the median of the
//! ratios of slices taken in the same turn: first the new-connection rate (connect, one
//! byte each way, close, back to back), then the request/response rate on one kept-open
//! connection per path.

use super::bench::{interleave, median_of, ratios, start_echo_server, wait_reachable, Spread};
use super::kubeproxy::{self, Iptables};
use super::topology::{Backend, Datapath, Lab, LabState, Mode, Tuning, CLUSTER_CIDR};
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};
use unicni_net::NetNs;

/// The Services' namespace and the two the client talks to.
const NAMESPACE: &str = "bench";
const TARGET_LAST: &str = "target-last";
const TARGET_MIDDLE: &str = "target-middle";
/// ClusterIPs: decoys from 10.96.0.1 on, the targets apart.
const TARGET_LAST_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 255, 1);
const TARGET_MIDDLE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 255, 2);
const SERVICE_PORT: u16 = 80;
/// The backend pod's echo servers, one per path.
const PORT_LAST: u16 = 5301;
const PORT_DIRECT: u16 = 5302;
const PORT_MIDDLE: u16 = 5303;
/// The most Services the address plan holds (decoys 10.96.0.1 up to 10.96.254.255).
const MAX_SERVICES: usize = 65_000;

/// How `lab bench-services` measures.
pub struct Opts {
    pub services: Vec<usize>,
    /// Turns per Service count: each path gets one connection-rate and one
    /// request/response slice per turn.
    pub slices: usize,
    pub slice: Duration,
    pub iptables: Iptables,
}

/// The Service objects for `n` Services (`n - 2` decoys and the two targets, the middle
/// one halfway through and the last one last), each decoy with two endpoints that see no
/// traffic (198.18.0.0/15, the benchmarking range), the targets with the backend pod.
pub(super) fn objects(n: usize, backend: Ipv4Addr) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::with_capacity(n);
    let mut slices = Vec::with_capacity(n);
    let decoys = n.saturating_sub(2);
    let mut push = |name: String, ip: Ipv4Addr, endpoints: Vec<(Ipv4Addr, u16)>| {
        services.push(service(&name, ip));
        slices.push(endpoint_slice(&name, &endpoints));
    };
    for i in 0..decoys {
        if i == decoys / 2 && n >= 2 {
            push(
                TARGET_MIDDLE.into(),
                TARGET_MIDDLE_IP,
                vec![(backend, PORT_MIDDLE)],
            );
        }
        let ip = u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i as u32;
        let ep = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 2 * i as u32;
        push(
            format!("svc-{i:05}"),
            Ipv4Addr::from(ip),
            vec![(Ipv4Addr::from(ep), 8080), (Ipv4Addr::from(ep + 1), 8080)],
        );
    }
    if decoys == 0 && n >= 2 {
        push(
            TARGET_MIDDLE.into(),
            TARGET_MIDDLE_IP,
            vec![(backend, PORT_MIDDLE)],
        );
    }
    push(
        TARGET_LAST.into(),
        TARGET_LAST_IP,
        vec![(backend, PORT_LAST)],
    );
    (services, slices)
}

fn service(name: &str, ip: Ipv4Addr) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(),
                 "clusterIPs": [ip.to_string()],
                 "ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}]}
    }))
    .expect("a valid Service")
}

fn endpoint_slice(service: &str, endpoints: &[(Ipv4Addr, u16)]) -> EndpointSlice {
    let port = endpoints.first().map_or(8080, |e| e.1);
    let eps: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(a, _)| {
            serde_json::json!({"addresses": [a.to_string()],
                               "conditions": {"ready": true, "serving": true, "terminating": false}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": eps
    }))
    .expect("a valid EndpointSlice")
}

/// What `lab bench --host-services N` loads into every node: the rules for `n` Services
/// whose endpoints see no lab traffic.
pub(super) fn host_services(n: usize) -> Vec<kubeproxy::ServicePort> {
    let (s, e) = objects(n, Ipv4Addr::new(198, 19, 255, 254));
    kubeproxy::from_objects(&s, &e)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Ebpf,
    KubeProxy,
}

/// One measured path: the client pod of one lab to one address.
struct PathDef {
    label: &'static str,
    via: Via,
    to: SocketAddr,
    /// The backend pod's echo server this path reaches.
    server_port: u16,
}

const DIRECT: &str = "pod IP direct (no Service)";
const EBPF: &str = "unicni eBPF LB (ClusterIP)";
const KP_LAST: &str = "kube-proxy-like, last Service";
const KP_MIDDLE: &str = "kube-proxy-like, middle Service";
const KP_DIRECT: &str = "pod IP direct, kube-proxy rules on nodes";

fn paths(ebpf_backend: Ipv4Addr, kp_backend: Ipv4Addr) -> Vec<PathDef> {
    let cip = |ip| SocketAddr::from((ip, SERVICE_PORT));
    vec![
        PathDef {
            label: DIRECT,
            via: Via::Ebpf,
            to: SocketAddr::from((ebpf_backend, PORT_DIRECT)),
            server_port: PORT_DIRECT,
        },
        PathDef {
            label: EBPF,
            via: Via::Ebpf,
            to: cip(TARGET_LAST_IP),
            server_port: PORT_LAST,
        },
        PathDef {
            label: KP_LAST,
            via: Via::KubeProxy,
            to: cip(TARGET_LAST_IP),
            server_port: PORT_LAST,
        },
        PathDef {
            label: KP_MIDDLE,
            via: Via::KubeProxy,
            to: cip(TARGET_MIDDLE_IP),
            server_port: PORT_MIDDLE,
        },
        PathDef {
            label: KP_DIRECT,
            via: Via::KubeProxy,
            to: SocketAddr::from((kp_backend, PORT_DIRECT)),
            server_port: PORT_DIRECT,
        },
    ]
}

/// New connections back to back for `d`: connect, one byte each way, close. The loop
/// runs on a thread inside the client pod's namespace (sockets are made there).
fn conn_slice(src: &NetNs, to: SocketAddr, d: Duration) -> Result<f64> {
    src.run(move || -> Result<f64> {
        let t = Instant::now();
        let mut n = 0u64;
        let mut b = [1u8; 1];
        while t.elapsed() < d {
            let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(2))
                .with_context(|| format!("connect to {to}"))?;
            c.set_nodelay(true)?;
            c.set_read_timeout(Some(Duration::from_secs(2)))?;
            c.write_all(&b)?;
            c.read_exact(&mut b)
                .with_context(|| format!("reply from {to}"))?;
            n += 1;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    })?
}

/// One request/response slice: the rate over the slice, and the rate its median round
/// trip gives (what a stall of the loaded machine in the middle of the slice does not
/// move; the ratios use it).
#[derive(Debug, Clone, Copy)]
struct RrSlice {
    per_s: f64,
    per_s_median: f64,
}

/// Requests of one byte each way on the kept-open `c` for `d`.
fn rr_slice(c: &mut TcpStream, d: Duration) -> Result<RrSlice> {
    let t = Instant::now();
    let mut rounds = Vec::with_capacity(8192);
    let mut b = [1u8; 1];
    while t.elapsed() < d {
        let r = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        rounds.push(r.elapsed().as_secs_f64());
    }
    let per_s = rounds.len() as f64 / t.elapsed().as_secs_f64();
    Ok(RrSlice {
        per_s,
        per_s_median: 1.0 / median_of(&rounds),
    })
}

/// The eBPF load balancer of the `<id>e` lab's node 1, driven through the library (the
/// calls the agent makes at start and on every Service change, and the one the plugin
/// makes at ADD), detached and unpinned on drop.
mod ebpf {
    use super::*;
    use std::path::PathBuf;
    use unicni_services::{Lb as ServiceLb, ServiceTable};

    pub struct Lb {
        lb: ServiceLb,
        pin_dir: PathBuf,
    }

    impl Lb {
        /// Loads the load balancer with its maps pinned under node 1's pin directory
        /// (programs on the root cgroup v2) and registers the client pod's namespace.
        pub fn start(lab: &Lab, client_netns: &str) -> Result<Lb> {
            crate::mount_bpffs(lab)?;
            let pin_dir = lab.pin_dir(1);
            std::fs::create_dir_all(&pin_dir)
                .with_context(|| format!("create {}", pin_dir.display()))?;
            let mut lb = Lb {
                lb: ServiceLb::load(&pin_dir).context("load the eBPF Service load balancer")?,
                pin_dir,
            };
            let netns = PathBuf::from(format!("/var/run/netns/{client_netns}"));
            lb.lb
                .register_pod(&netns)
                .with_context(|| format!("register the client pod {}", netns.display()))?;
            Ok(lb)
        }

        pub fn apply(&mut self, services: &[Service], slices: &[EndpointSlice]) -> Result<()> {
            let table = ServiceTable::from_objects(services, slices);
            if !table.skipped().is_empty() {
                bail!("Services skipped: {:?}", table.skipped());
            }
            self.lb.apply(&table)?;
            Ok(())
        }
    }

    impl Drop for Lb {
        fn drop(&mut self) {
            if let Err(e) = ServiceLb::unload(&self.pin_dir) {
                eprintln!("    warning: unload the eBPF Service load balancer: {e}");
            }
        }
    }
}

/// Per Service count, per path.
#[derive(Debug, Serialize)]
struct Row {
    services: usize,
    path: &'static str,
    lab: String,
    conn_per_s: f64,
    /// The median of the slices' rates.
    rr_per_s: f64,
    /// The median of the slices' median-round-trip rates.
    rr_per_s_median_round: f64,
    conn_per_s_slices: Vec<f64>,
    rr_per_s_slices: Vec<f64>,
    rr_per_s_median_round_slices: Vec<f64>,
    /// Per turn against the kube-proxy-like path to the last Service (request/response:
    /// of the median-round-trip rates).
    conn_vs_kube_proxy: Spread,
    rr_vs_kube_proxy: Spread,
    /// Per turn against the pod IP direct path of the eBPF lab.
    conn_vs_direct: Spread,
    rr_vs_direct: Spread,
    /// How long loading this many Services took (the eBPF maps on one node; the rules on
    /// both nodes).
    load_ms: f64,
}

struct Labs {
    ebpf: Lab,
    kp: Lab,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Builds both labs with a client pod on node 1 and a backend pod on node 2.
fn build(lab: &Lab, what: &str) -> Result<LabState> {
    super::step(&format!(
        "{what}: flannel host-gw lab {} (2 nodes, client pod on node 1, backend pod on node 2)",
        lab.prefix
    ));
    let o = super::UpOpts {
        backend: Backend::Flannel,
        mode: Some(Mode::HostGw),
        nodes: 2,
        pods_per_node: 0,
        no_second_cluster: true,
        tuning: Tuning::default(),
        datapath: Datapath::Routing,
        ..super::default_up()
    };
    let mut st = super::up_or_clean(lab, &o)?;
    for node in [1, 2] {
        let pod = lab.add_pod(Backend::Flannel, node, 1, BTreeMap::new(), None)?;
        eprintln!("    pod {} in {} got {}", pod.name, pod.netns, pod.ip);
        st.pods.push(pod);
        lab.save_state(&st)?;
    }
    // Tens of thousands of short connections to a few addresses: reuse TIME_WAIT ports
    // and use the whole port range, as a busy client would.
    let client = &st.pods[0].netns;
    // Loopback up, as a runtime's loopback plugin leaves a pod.
    super::topology::in_ns(client, &["ip", "link", "set", "lo", "up"])?;
    super::topology::in_ns(client, &["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])?;
    super::topology::in_ns(
        client,
        &["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"],
    )?;
    Ok(st)
}

/// Kills the echo servers on drop.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run(id: Option<&str>, o: &Opts, output: &str) -> Result<ExitCode> {
    if o.services.is_empty() || o.slices == 0 || o.slice.is_zero() {
        bail!("--services, --slices and --slice-ms: measure at least once");
    }
    if let Some(n) = o.services.iter().find(|n| **n < 2 || **n > MAX_SERVICES) {
        bail!("--services {n}: use 2 to {MAX_SERVICES} (two of them are the targets)");
    }
    let started = Instant::now();
    let load_before = loadavg();
    let labs = Labs {
        ebpf: super::bench::sub_lab(id, "bs", "e")?,
        kp: super::bench::sub_lab(id, "bs", "k")?,
    };
    let result = measure_all(&labs, o);
    super::step("tearing the labs down");
    for lab in [&labs.ebpf, &labs.kp] {
        if let Err(e) = super::teardown(lab) {
            eprintln!("    warning: {}: {e:#}", lab.prefix);
        }
    }
    let (rows, lb) = result?;
    let load_after = loadavg();
    print(&rows, o, &lb, &load_before, &load_after, output);
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// How the eBPF load balancer was driven (reported with the results).
const LB_DRIVEN: &str = "the unicni-services library from the bench process (node 1's \
    maps pinned under its pin directory, the client pod's namespace registered)";

fn measure_all(labs: &Labs, o: &Opts) -> Result<(Vec<Row>, String)> {
    let est = build(&labs.ebpf, "eBPF load balancer")?;
    let kst = build(&labs.kp, "kube-proxy-like rules")?;
    let ip = |st: &LabState, i: usize| -> Result<Ipv4Addr> {
        st.pods[i].ip.parse().context("the backend pod's address")
    };
    let (eb, kb) = (ip(&est, 1)?, ip(&kst, 1)?);
    let defs = paths(eb, kb);
    let src = |via: Via| -> Result<NetNs> {
        let st = if via == Via::Ebpf { &est } else { &kst };
        Ok(NetNs::open(Path::new(&format!(
            "/var/run/netns/{}",
            st.pods[0].netns
        )))?)
    };
    let srcs: Vec<NetNs> = defs.iter().map(|d| src(d.via)).collect::<Result<_>>()?;
    // The echo servers, one per path, in the backend pods.
    let mut servers = Servers(Vec::new());
    for d in &defs {
        let st = if d.via == Via::Ebpf { &est } else { &kst };
        servers
            .0
            .push(start_echo_server(&st.pods[1].netns, d.server_port, None)?);
    }
    for st in [&est, &kst] {
        wait_reachable(&st.pods[0].netns, &st.pods[1].ip)?;
    }
    let mut lb = ebpf::Lb::start(&labs.ebpf, &est.pods[0].netns)?;
    let mut rows = Vec::new();
    for &n in &o.services {
        super::step(&format!("{n} Services"));
        let (services, slices) = objects(n, eb);
        let t = Instant::now();
        lb.apply(&services, &slices)
            .with_context(|| format!("apply {n} Services to the eBPF load balancer"))?;
        let ebpf_ms = t.elapsed().as_secs_f64() * 1e3;
        let (ks, ke) = objects(n, kb);
        let ports = kubeproxy::from_objects(&ks, &ke);
        let t = Instant::now();
        for node in &kst.nodes {
            kubeproxy::load(o.iptables, &node.netns, &ports, CLUSTER_CIDR)?;
        }
        let kp_ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "    eBPF maps of node 1 in {ebpf_ms:.0} ms; iptables-{} rules ({} lines) on 2 nodes in {kp_ms:.0} ms",
            o.iptables.as_str(),
            kubeproxy::restore_input(&ports, CLUSTER_CIDR).lines().count()
        );
        // Every path answers before the clock starts (first connections resolve
        // neighbours).
        for (d, s) in defs.iter().zip(&srcs) {
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                match conn_slice(s, d.to, Duration::from_millis(50)) {
                    Ok(_) => break,
                    Err(e) if Instant::now() > until => {
                        return Err(e.context(format!("{} does not answer", d.label)))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        let mut conn: Vec<Vec<f64>> = vec![Vec::new(); defs.len()];
        let mut rr: Vec<Vec<f64>> = vec![Vec::new(); defs.len()];
        let mut rr_all: Vec<Vec<f64>> = vec![Vec::new(); defs.len()];
        eprintln!(
            "    new connections: {} turns of {} ms per path",
            o.slices,
            o.slice.as_millis()
        );
        interleave(o.slices, defs.len(), |_, i| {
            conn[i].push(
                conn_slice(&srcs[i], defs[i].to, o.slice)
                    .with_context(|| format!("new connections, {}", defs[i].label))?,
            );
            Ok(())
        })?;
        eprintln!(
            "    request/response: {} turns of {} ms per path on kept-open connections",
            o.slices,
            o.slice.as_millis()
        );
        let mut conns: Vec<TcpStream> = defs
            .iter()
            .zip(&srcs)
            .map(|(d, s)| -> Result<TcpStream> {
                let to = d.to;
                let c =
                    s.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)))??;
                c.set_nodelay(true)?;
                c.set_read_timeout(Some(Duration::from_secs(5)))?;
                Ok(c)
            })
            .collect::<Result<_>>()?;
        for c in conns.iter_mut() {
            rr_slice(c, Duration::from_millis(30))?; // warm-up, unmeasured
        }
        interleave(o.slices, defs.len(), |_, i| {
            let r = rr_slice(&mut conns[i], o.slice)
                .with_context(|| format!("request/response, {}", defs[i].label))?;
            rr[i].push(r.per_s_median);
            rr_all[i].push(r.per_s);
            Ok(())
        })?;
        drop(conns);
        let kp = defs.iter().position(|d| d.label == KP_LAST).unwrap_or(0);
        let direct = 0;
        for (i, d) in defs.iter().enumerate() {
            let row = Row {
                services: n,
                path: d.label,
                lab: if d.via == Via::Ebpf {
                    labs.ebpf.prefix.clone()
                } else {
                    labs.kp.prefix.clone()
                },
                conn_per_s: median_of(&conn[i]),
                rr_per_s: median_of(&rr_all[i]),
                rr_per_s_median_round: median_of(&rr[i]),
                conn_vs_kube_proxy: ratios(&conn[i], &conn[kp]),
                rr_vs_kube_proxy: ratios(&rr[i], &rr[kp]),
                conn_vs_direct: ratios(&conn[i], &conn[direct]),
                rr_vs_direct: ratios(&rr[i], &rr[direct]),
                load_ms: if d.via == Via::Ebpf { ebpf_ms } else { kp_ms },
                conn_per_s_slices: conn[i].clone(),
                rr_per_s_slices: rr_all[i].clone(),
                rr_per_s_median_round_slices: rr[i].clone(),
            };
            eprintln!(
                "    {:<42} {:>8.0} conn/s {:>8.0} rr/s (1 / median round trip)",
                row.path, row.conn_per_s, row.rr_per_s_median_round
            );
            rows.push(row);
        }
    }
    drop(lb);
    drop(servers);
    for node in &kst.nodes {
        kubeproxy::unload(o.iptables, &node.netns)?;
    }
    Ok((rows, LB_DRIVEN.to_string()))
}

/// The eBPF path's flatness from the smallest to the largest Service count: its per-turn
/// ratio to pod IP direct at the largest count over the same at the smallest (machine
/// drift between the two cancels), and the plain ratio of its rates.
#[derive(Debug, Serialize)]
struct Flatness {
    from: usize,
    to: usize,
    conn_vs_direct: f64,
    rr_vs_direct: f64,
    conn_rate: f64,
    rr_rate: f64,
}

fn flatness(rows: &[Row]) -> Option<Flatness> {
    let ebpf: Vec<&Row> = rows.iter().filter(|r| r.path == EBPF).collect();
    let first = ebpf.iter().min_by_key(|r| r.services)?;
    let last = ebpf.iter().max_by_key(|r| r.services)?;
    Some(Flatness {
        from: first.services,
        to: last.services,
        conn_vs_direct: last.conn_vs_direct.median / first.conn_vs_direct.median,
        rr_vs_direct: last.rr_vs_direct.median / first.rr_vs_direct.median,
        conn_rate: last.conn_per_s / first.conn_per_s,
        rr_rate: last.rr_per_s_median_round / first.rr_per_s_median_round,
    })
}

fn print(rows: &[Row], o: &Opts, lb: &str, load_before: &str, load_after: &str, output: &str) {
    let flat = flatness(rows);
    let method = format!(
        "per Service count: {} turns, each path one {} ms slice of new connections \
         (connect, 1 byte each way, close) per turn, then {} turns of one {} ms \
         request/response slice (1 byte each way) on one kept-open connection per path; \
         the order rotates every turn; x KP and x DIR are medians of per-turn ratios (for \
         request/response of the rates 1 / median round trip of each slice, which a stall \
         of the loaded machine during a slice does not move); CONN/S, RR/S and RR/S MED \
         are medians over the turns of each path's slices",
        o.slices,
        o.slice.as_millis(),
        o.slices,
        o.slice.as_millis()
    );
    if output == "json" {
        println!(
            "{}",
            serde_json::json!({
                "method": "interleaved",
                "description": method,
                "services": o.services,
                "slices": o.slices,
                "slice_ms": o.slice.as_millis() as u64,
                "iptables": o.iptables.as_str(),
                "kube_proxy_target": "the last Service in KUBE-SERVICES (worst case; also one in the middle)",
                "ebpf_lb_driven_by": lb,
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "results": rows,
                "ebpf_flatness": flat,
            })
        );
        return;
    }
    println!(
        "{:>8}  {:<42} {:>7} {:>7} {:>9} {:>10} {:>8} {:>10} {:>8}",
        "SERVICES",
        "PATH",
        "CONN/S",
        "RR/S",
        "RR/S MED",
        "CONN x KP",
        "RR x KP",
        "CONN x DIR",
        "RR x DIR"
    );
    for r in rows {
        println!(
            "{:>8}  {:<42} {:>7.0} {:>7.0} {:>9.0} {:>10.2} {:>8.2} {:>10.2} {:>8.2}",
            r.services,
            r.path,
            r.conn_per_s,
            r.rr_per_s,
            r.rr_per_s_median_round,
            r.conn_vs_kube_proxy.median,
            r.rr_vs_kube_proxy.median,
            r.conn_vs_direct.median,
            r.rr_vs_direct.median
        );
    }
    if let Some(f) = flat {
        println!(
            "eBPF LB flatness {} -> {} Services: x DIR at {} / x DIR at {}: conn/s {:.3}, \
             rr/s {:.3}; absolute {} / {}: conn/s {:.3}, rr/s MED {:.3}",
            f.from,
            f.to,
            f.to,
            f.from,
            f.conn_vs_direct,
            f.rr_vs_direct,
            f.to,
            f.from,
            f.conn_rate,
            f.rr_rate
        );
    }
    println!(
        "({method}. KP = kube-proxy-like (iptables-{}) to the LAST Service of KUBE-SERVICES, \
         the worst case as kube-proxy walks the chain rule by rule; DIR = the backend pod's \
         address in the eBPF lab (no Service, no kube-proxy rules). eBPF LB driven by {lb}. \
         Machine load average {load_before} before, {load_after} after.)",
        o.iptables.as_str()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_sit_in_the_middle_and_last() {
        let backend = Ipv4Addr::new(10, 250, 2, 5);
        let (s, e) = objects(10, backend);
        assert_eq!(s.len(), 10);
        assert_eq!(e.len(), 10);
        let names: Vec<&str> = s
            .iter()
            .map(|s| s.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names[4], TARGET_MIDDLE);
        assert_eq!(names[9], TARGET_LAST);
        let ports = kubeproxy::from_objects(&s, &e);
        assert_eq!(ports.len(), 10);
        assert_eq!(ports[9].cluster_ip, TARGET_LAST_IP);
        assert_eq!(
            ports[9].endpoints,
            [std::net::SocketAddrV4::new(backend, PORT_LAST)]
        );
        assert_eq!(ports[4].endpoints[0].port(), PORT_MIDDLE);
        assert_eq!(ports[0].endpoints.len(), 2);
        let (s, _) = objects(2, backend);
        assert_eq!(s.len(), 2);
        let (s, _) = objects(10_000, backend);
        let mut ips: Vec<_> = s
            .iter()
            .map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap())
            .collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 10_000, "every ClusterIP distinct");
    }
}
