//! `unicni lab bench`: cross-node pod-to-pod TCP throughput (iperf3) and request/response
//! latency for flannel (vxlan, host-gw) and terway (shared-eni with the routing datapath
//! and with the eBPF fast path, exclusive-eni), each against the same two nodes talking
//! over their own underlay addresses (host network: the limit), printed as ratios to that
//! limit. Every design gets a lab of its own (same underlay: the VPC bridge and the nodes'
//! links); all are up together and every path is measured in turn, `--repeats` times, so
//! that the machine's load drifting during the run touches every path alike.
//!
//! `unicni lab bench-add`: terway pod ADD latency, the installed plugin executed inside
//! the node's namespace as the lab (and a runtime) does, with a warm pool and with an
//! empty pool (every ADD goes to the cloud emulator), each ADD interleaved with one of the
//! reference `bridge` + `host-local` plugins executed the same way in the same namespace.

use super::topology::{Backend, Datapath, Lab, LabState, Mode, PodState, Tuning};
use anyhow::{bail, Context, Result};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use unicni_cloud_sim::Profile as CloudProfile;
use unicni_net::NetNs;
use unicni_testkit::CniRun;

/// A lab of its own for one design: `<id><suffix>` (the lab ID rules allow 6 characters).
pub(super) fn sub_lab(id: Option<&str>, default: &str, suffix: &str) -> Result<Lab> {
    let base = id.unwrap_or(default);
    if base.len() + suffix.len() > 6 {
        bail!(
            "--id {base:?}: use up to {} characters (the labs are <id>{suffix} and the like)",
            6 - suffix.len()
        );
    }
    Lab::new(Some(&format!("{base}{suffix}")))
}

fn opts(
    backend: Backend,
    mode: Mode,
    datapath: Datapath,
    nodes: u16,
    tuning: Tuning,
    cloud_profile: CloudProfile,
) -> super::UpOpts {
    super::UpOpts {
        backend,
        mode: Some(mode),
        nodes,
        pods_per_node: 0,
        no_second_cluster: true,
        tuning,
        cloud_profile,
        datapath,
        ..super::default_up()
    }
}

/// Runs `f` on a freshly built lab and removes the lab (CNI DEL of its pods, then
/// everything else) whatever `f` returns.
fn with_lab<T>(
    lab: &Lab,
    o: &super::UpOpts,
    f: impl FnOnce(&mut LabState) -> Result<T>,
) -> Result<T> {
    let mut st = super::up_or_clean(lab, o)?;
    let result = f(&mut st);
    let _ = lab.save_state(&st);
    let down = super::teardown(lab);
    let out = result?;
    down?;
    Ok(out)
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    // Nearest rank.
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------------------
// Throughput and request/response latency
// ---------------------------------------------------------------------------------------

/// The designs `lab bench` compares, each in its own lab `<id><suffix>`.
const DESIGNS: [(Backend, Mode, Datapath, &str); 5] = [
    (Backend::Flannel, Mode::Vxlan, Datapath::Routing, "v"),
    (Backend::Flannel, Mode::HostGw, Datapath::Routing, "g"),
    (Backend::Terway, Mode::SharedEni, Datapath::Routing, "s"),
    (Backend::Terway, Mode::SharedEni, Datapath::Ebpf, "e"),
    (Backend::Terway, Mode::ExclusiveEni, Datapath::Routing, "x"),
];

const LIMIT: &str = "host network (node to node, the limit)";
/// The same limit between the eBPF lab's own nodes, which (unlike the vxlan lab's, whose
/// masquerade table turns conntrack on) carry no netfilter at all: the strictest reference
/// for the fast path.
const LIMIT_BARE: &str = "host network, eBPF lab's nodes (no netfilter)";

/// Waits until `server` listens on TCP `port` in namespace `dst`; kills it if it does not.
/// Connecting to see would use up a one-connection server (`iperf3 -1`, the echo server):
/// this looks for the listening socket (state 0A) in the namespace's tables instead.
fn wait_listening(
    server: &mut std::process::Child,
    dst: &str,
    port: u16,
    what: &str,
) -> Result<()> {
    let dst_ns = NetNs::open(Path::new(&format!("/var/run/netns/{dst}")))?;
    let local = format!(":{port:04X} ");
    let listening = || {
        std::fs::read_to_string("/proc/thread-self/net/tcp6")
            .unwrap_or_default()
            .lines()
            .chain(
                std::fs::read_to_string("/proc/thread-self/net/tcp")
                    .unwrap_or_default()
                    .lines(),
            )
            .any(|l| l.contains(&local) && l.split_whitespace().nth(3) == Some("0A"))
    };
    let until = Instant::now() + Duration::from_secs(5);
    while !dst_ns.run(listening)? {
        if Instant::now() > until {
            let _ = server.kill();
            let _ = server.wait();
            bail!("{what} in {dst} did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `unicni lab bench-echo`: accepts TCP connections one after another and sends back every
/// byte each one receives until its client closes it; runs until killed. The
/// request/response server, a process of its own in the destination namespace (as a real
/// server is), started by [`Echo::start`]: one kept-open connection (request/response
/// rate) or one connection per request (connection rate).
pub fn echo(port: u16) -> Result<ExitCode> {
    // Both families where the namespace has IPv6, else IPv4.
    let listener = TcpListener::bind(("::", port))
        .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
        .with_context(|| format!("listen on port {port}"))?;
    loop {
        let (mut c, _) = listener.accept()?;
        c.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while c.read(&mut b)? == 1 {
            c.write_all(&b)?;
        }
    }
}

const RR_PORT: u16 = 5202;
/// The connection-rate echo server's port (the policy A/B run).
const CR_PORT: u16 = 5203;

/// `--pin-cpus`: the client (this process's measuring thread) on CPU 0, the echo and
/// iperf3 servers on CPU 1, identically for every path. None: the scheduler decides.
#[derive(Debug, Clone, Copy)]
struct Pin {
    client: usize,
    server: usize,
}

fn pin_current_thread(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).context("CPU index")?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pin the measuring thread to CPU {cpu}"))
}

/// A command run in namespace `ns`, on a CPU of its own with `pin`.
fn in_ns_cmd(ns: &str, cpu: Option<usize>) -> Command {
    let mut c = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), "ip"]);
            c
        }
        None => Command::new("ip"),
    };
    c.args(["netns", "exec", ns]);
    c
}

fn iperf(p: &Path3, seconds: u32, pin: Option<Pin>) -> Result<f64> {
    let mut server = in_ns_cmd(&p.dst, pin.map(|p| p.server))
        .args(["iperf3", "-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start iperf3 (Debian package iperf3)")?;
    wait_listening(&mut server, &p.dst, 5201, "iperf3 server")?;
    let out = in_ns_cmd(&p.src, pin.map(|p| p.client))
        .args(["iperf3", "-c", &p.ip, "-p", "5201", "-J", "-t"])
        .arg(seconds.to_string())
        .output()
        .context("run iperf3 client")?;
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("decode iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .with_context(|| {
            format!(
                "iperf3 {} -> {} gave no result: {}",
                p.src, p.ip, v["error"]
            )
        })
}

/// An echo server in a path's destination namespace, killed on drop.
struct Echo {
    server: std::process::Child,
    addr: SocketAddr,
    src: NetNs,
}

/// `lab bench-echo` on TCP `port` in namespace `ns` (on CPU `cpu`), listening when this
/// returns.
pub(super) fn start_echo_server(
    ns: &str,
    port: u16,
    cpu: Option<usize>,
) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("locate the unicni binary")?;
    let mut server = in_ns_cmd(ns, cpu)
        .arg(&exe)
        .args(["lab", "bench-echo", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the request/response echo server")?;
    wait_listening(&mut server, ns, port, "the echo server")?;
    Ok(server)
}

impl Echo {
    fn start(p: &Path3, port: u16, pin: Option<Pin>) -> Result<Echo> {
        let server = start_echo_server(&p.dst, port, pin.map(|p| p.server))?;
        let ip: std::net::IpAddr = p.ip.parse().context("path address")?;
        Ok(Echo {
            server,
            addr: SocketAddr::new(ip, port),
            src: NetNs::open(Path::new(&format!("/var/run/netns/{}", p.src)))?,
        })
    }

    /// A connection from the path's source namespace (the socket keeps that namespace).
    fn connect(&self) -> Result<TcpStream> {
        let addr = self.addr;
        let c = self
            .src
            .run(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2)))??;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(c)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// `rounds` rounds of 1 byte each way on the kept-open `c`; each round's time in µs.
fn rr_slice(c: &mut TcpStream, rounds: usize) -> Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(rounds);
    let mut b = [1u8; 1];
    for _ in 0..rounds {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(samples)
}

/// `n` requests, each on a new connection (connect, 1 byte each way, close), as a
/// short-lived HTTP client makes them; connections per second.
fn cr_slice(e: &Echo, n: usize) -> Result<f64> {
    // The sockets are made in the source namespace before the clock starts (a socket keeps
    // the namespace it was made in): entering the namespace per connection would add a
    // thread per connection to what is timed.
    let family = match e.addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let sockets = e.src.run(|| {
        (0..n)
            .map(|_| socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None))
            .collect::<nix::Result<Vec<_>>>()
    })??;
    let to = SockaddrStorage::from(e.addr);
    let t = Instant::now();
    for fd in sockets {
        connect(fd.as_raw_fd(), &to).with_context(|| format!("connect to {}", e.addr))?;
        let mut c = TcpStream::from(fd);
        c.set_nodelay(true)?;
        let mut b = [1u8; 1];
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// `net.ipv4.tcp_tw_reuse = 1` in namespace `ns` (it also covers IPv6 sockets).
fn client_reuses_time_wait(ns: &str) -> Result<()> {
    super::topology::in_ns(ns, &["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])
}

/// Waits until `src` reaches `ip` (a fresh pod's first packets may wait for neighbours).
pub(super) fn wait_reachable(src: &str, ip: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = Command::new("ip")
            .args(["netns", "exec", src, "ping", "-c1", "-W1", "-q", ip])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{src} does not reach {ip}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One measured path: `src` namespace to `ip` in namespace `dst`.
struct Path3 {
    label: String,
    lab: String,
    src: String,
    dst: String,
    ip: String,
}

/// Median and quartiles (p25, p75) of per-slice ratios.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(super) struct Spread {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
}

/// The ratios `a[i] / b[i]` of slices taken next to each other, summarized.
pub(super) fn ratios(a: &[f64], b: &[f64]) -> Spread {
    let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    r.sort_by(|x, y| x.total_cmp(y));
    if r.is_empty() {
        return Spread {
            median: f64::NAN,
            p25: f64::NAN,
            p75: f64::NAN,
        };
    }
    Spread {
        median: percentile(&r, 50),
        p25: percentile(&r, 25),
        p75: percentile(&r, 75),
    }
}

pub(super) fn median_of(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|x, y| x.total_cmp(y));
    if s.is_empty() {
        f64::NAN
    } else {
        percentile(&s, 50)
    }
}

/// What the slices of one path gathered.
#[derive(Default)]
struct Gathered {
    /// One iperf3 run per throughput slice.
    gbit: Vec<f64>,
    /// Requests per second of each request/response slice.
    rr_rate: Vec<f64>,
    /// Every round of every slice (µs).
    rr_us: Vec<f64>,
    rr_time: Duration,
}

#[derive(Debug)]
struct Measure {
    path: String,
    lab: String,
    /// The median of the throughput slices.
    gbit_per_s: f64,
    gbit_per_s_runs: Vec<f64>,
    /// Over the request/response rounds of every slice.
    rr_median_us: f64,
    rr_p99_us: f64,
    rr_per_s: f64,
    rr_per_s_slices: Vec<f64>,
    /// Per slice against the limit's slice of the same turn.
    throughput_ratio: Spread,
    rr_per_s_ratio: Spread,
    /// The eBPF fast path's row: per slice against terway's routing datapath.
    vs_routing: Option<(Spread, Spread)>,
    /// The eBPF fast path's row: per slice against its own lab's bare node-to-node path.
    vs_bare_nodes: Option<(Spread, Spread)>,
}

/// Slices in turn, the order rotated by one path each turn (so no path always follows the
/// same one), every path `turns` times; `f(turn, path index)`.
pub(super) fn interleave(
    turns: usize,
    paths: usize,
    mut f: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    for t in 0..turns {
        for k in 0..paths {
            f(t, (t + k) % paths)?;
        }
    }
    Ok(())
}

/// Interleaved measurement of `paths` (the limit first): `tput_turns` iperf3 runs of
/// `seconds` per path, then `slices` request/response slices of `rounds` rounds per path,
/// each path on a connection of its own kept open for the whole run.
fn measure_interleaved(
    paths: &[Path3],
    seconds: u32,
    tput_turns: usize,
    slices: usize,
    rounds: usize,
    pin: Option<Pin>,
) -> Result<Vec<Gathered>> {
    let mut g: Vec<Gathered> = paths.iter().map(|_| Gathered::default()).collect();
    for p in paths {
        eprintln!("    {}: {} -> {} ({})", p.label, p.src, p.dst, p.ip);
        wait_reachable(&p.src, &p.ip)?;
    }
    if let Some(pin) = pin {
        pin_current_thread(pin.client)?;
    }
    super::step(&format!(
        "throughput: {tput_turns} turns of one {seconds}s iperf3 run per path, order rotated"
    ));
    interleave(tput_turns, paths.len(), |_, i| {
        g[i].gbit.push(iperf(&paths[i], seconds, pin)?);
        Ok(())
    })?;
    super::step(&format!(
        "request/response: {slices} turns of {rounds} rounds per path on kept-open \
         connections, order rotated"
    ));
    let servers: Vec<Echo> = paths
        .iter()
        .map(|p| Echo::start(p, RR_PORT, pin))
        .collect::<Result<_>>()?;
    let mut conns: Vec<TcpStream> = servers.iter().map(|e| e.connect()).collect::<Result<_>>()?;
    for c in conns.iter_mut() {
        rr_slice(c, 200)?; // warm-up, unmeasured
    }
    interleave(slices, paths.len(), |_, i| {
        let t = Instant::now();
        let s = rr_slice(&mut conns[i], rounds)
            .with_context(|| format!("request/response {}", paths[i].label))?;
        let d = t.elapsed();
        g[i].rr_rate.push(rounds as f64 / d.as_secs_f64());
        g[i].rr_time += d;
        g[i].rr_us.extend(s);
        Ok(())
    })?;
    drop(conns);
    drop(servers);
    Ok(g)
}

fn summarize(paths: &[Path3], g: Vec<Gathered>) -> Vec<Measure> {
    let routing = paths
        .iter()
        .position(|p| p.label == design_label(Mode::SharedEni, Datapath::Routing));
    let ebpf = paths
        .iter()
        .position(|p| p.label == design_label(Mode::SharedEni, Datapath::Ebpf));
    let vs_routing = match (routing, ebpf) {
        (Some(r), Some(e)) => Some((
            ratios(&g[e].gbit, &g[r].gbit),
            ratios(&g[e].rr_rate, &g[r].rr_rate),
        )),
        _ => None,
    };
    let bare = paths.iter().position(|p| p.label == LIMIT_BARE);
    let vs_bare_nodes = match (bare, ebpf) {
        (Some(b), Some(e)) => Some((
            ratios(&g[e].gbit, &g[b].gbit),
            ratios(&g[e].rr_rate, &g[b].rr_rate),
        )),
        _ => None,
    };
    let (lim_gbit, lim_rate) = (g[0].gbit.clone(), g[0].rr_rate.clone());
    paths
        .iter()
        .zip(g)
        .enumerate()
        .map(|(i, (p, g))| {
            let mut rr = g.rr_us;
            rr.sort_by(|a, b| a.total_cmp(b));
            Measure {
                path: p.label.clone(),
                lab: p.lab.clone(),
                gbit_per_s: median_of(&g.gbit),
                throughput_ratio: ratios(&g.gbit, &lim_gbit),
                rr_per_s_ratio: ratios(&g.rr_rate, &lim_rate),
                gbit_per_s_runs: g.gbit,
                rr_median_us: percentile(&rr, 50),
                rr_p99_us: percentile(&rr, 99),
                rr_per_s: rr.len() as f64 / g.rr_time.as_secs_f64(),
                rr_per_s_slices: g.rr_rate,
                vs_routing: if Some(i) == ebpf { vs_routing } else { None },
                vs_bare_nodes: if Some(i) == ebpf { vs_bare_nodes } else { None },
            }
        })
        .collect()
}

fn design_label(mode: Mode, datapath: Datapath) -> String {
    format!(
        "{} {}{} (pod to pod across nodes)",
        mode.backend().as_str(),
        mode.as_str(),
        match datapath {
            Datapath::Routing => "",
            Datapath::Ebpf => " + eBPF",
        }
    )
}

/// How `lab bench` measures.
pub struct BenchOpts {
    /// Seconds of each iperf3 run.
    pub seconds: u32,
    /// Request/response rounds per slice.
    pub rounds: usize,
    /// iperf3 runs per path (throughput turns).
    pub repeats: usize,
    /// Request/response turns (slices per path).
    pub slices: usize,
    pub host_services: usize,
    pub pin_cpus: bool,
    /// Non-zero: the NetworkPolicy A/B run instead (this many policies vs none).
    pub policies: usize,
    /// The cloud emulator's latency profile in the terway labs.
    pub cloud_profile: CloudProfile,
}

/// Builds a lab per design (all up together), then measures every path in interleaved
/// slices (the limit and every design in turn, the order rotated each turn), so that a
/// change in the machine's load touches every path alike and each ratio compares slices
/// taken next to each other; removes every lab whatever happens.
pub fn run(id: Option<&str>, o: &BenchOpts, output: &str) -> Result<ExitCode> {
    if o.rounds == 0 || o.repeats == 0 || o.slices == 0 {
        bail!("--rounds, --repeats and --slices: measure at least once");
    }
    if o.policies > 0 {
        return run_policy_ab(id, o, output);
    }
    let pin = o.pin_cpus.then_some(Pin {
        client: 0,
        server: 1,
    });
    let started = Instant::now();
    let labs: Vec<Lab> = DESIGNS
        .iter()
        .map(|d| sub_lab(id, "bn", d.3))
        .collect::<Result<_>>()?;
    let result = (|| -> Result<Vec<Measure>> {
        let mut paths = Vec::new();
        for (lab, (backend, mode, datapath, _)) in labs.iter().zip(DESIGNS) {
            super::step(&format!(
                "{} lab {} (2 nodes, 1 pod each)",
                design_label(mode, datapath).replace(" (pod to pod across nodes)", ""),
                lab.prefix
            ));
            let uo = opts(
                backend,
                mode,
                datapath,
                2,
                Tuning::default(),
                o.cloud_profile,
            );
            let mut st = super::up_or_clean(lab, &uo)?;
            if o.host_services > 0 {
                for node in &st.nodes {
                    load_host_rules(&node.netns, o.host_services)?;
                }
            }
            for node in 1..=2 {
                // Plain pods: no fixed IP, no vSwitch annotation (both on the node's vSwitch).
                let owner = (backend == Backend::Terway).then_some("ReplicaSet");
                let pod = lab.add_pod(backend, node, 1, BTreeMap::new(), owner)?;
                eprintln!("    pod {} in {} got {}", pod.name, pod.netns, pod.ip);
                st.pods.push(pod);
                lab.save_state(&st)?;
            }
            if paths.is_empty() {
                let (a, b) = (&st.nodes[0], &st.nodes[1]);
                paths.push(Path3 {
                    label: LIMIT.into(),
                    lab: lab.prefix.clone(),
                    src: a.netns.clone(),
                    dst: b.netns.clone(),
                    ip: b.ip.clone(),
                });
            }
            let (a, b) = (&st.pods[0], &st.pods[1]);
            paths.push(Path3 {
                label: design_label(mode, datapath),
                lab: lab.prefix.clone(),
                src: a.netns.clone(),
                dst: b.netns.clone(),
                ip: b.ip.clone(),
            });
            if datapath == Datapath::Ebpf && o.host_services == 0 {
                let (a, b) = (&st.nodes[0], &st.nodes[1]);
                paths.push(Path3 {
                    label: LIMIT_BARE.into(),
                    lab: lab.prefix.clone(),
                    src: a.netns.clone(),
                    dst: b.netns.clone(),
                    ip: b.ip.clone(),
                });
            }
        }
        let g = measure_interleaved(&paths, o.seconds, o.repeats, o.slices, o.rounds, pin)?;
        Ok(summarize(&paths, g))
    })();
    super::step("tearing the labs down");
    for lab in &labs {
        if let Err(e) = super::teardown(lab) {
            eprintln!("    warning: {}: {e:#}", lab.prefix);
        }
    }
    let rows = result?;
    print_throughput(&rows, o, output);
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// kube-proxy's iptables-mode rules for `services` Services (their endpoints see no lab
/// traffic) in node namespace `netns`: every new connection through the node walks
/// KUBE-SERVICES, and connection tracking is on. Deleting the node's namespace (the
/// lab's teardown) removes them.
fn load_host_rules(netns: &str, services: usize) -> Result<()> {
    super::kubeproxy::load(
        super::kubeproxy::Iptables::Legacy,
        netns,
        &super::bench_services::host_services(services),
        super::topology::CLUSTER_CIDR,
    )
    .with_context(|| format!("load {services} kube-proxy-like Services into {netns}"))
}

fn print_throughput(rows: &[Measure], o: &BenchOpts, output: &str) {
    let (seconds, rounds, repeats, slices) = (o.seconds, o.rounds, o.repeats, o.slices);
    let host_services = o.host_services;
    let lr = rows[0].rr_median_us;
    if output == "json" {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut j = serde_json::json!({
                    "path": r.path, "lab": r.lab, "gbit_per_s": r.gbit_per_s,
                    "gbit_per_s_runs": r.gbit_per_s_runs, "rr_median_us": r.rr_median_us,
                    "rr_p99_us": r.rr_p99_us, "rr_per_s": r.rr_per_s,
                    "rr_per_s_slices": r.rr_per_s_slices,
                    "throughput_ratio": r.throughput_ratio.median,
                    "throughput_ratio_spread": r.throughput_ratio,
                    "latency_ratio": r.rr_median_us / lr,
                    "rr_per_s_ratio": r.rr_per_s_ratio.median,
                    "rr_per_s_ratio_spread": r.rr_per_s_ratio,
                });
                if let Some((t, q)) = &r.vs_routing {
                    j["vs_routing"] = serde_json::json!({
                        "throughput_ratio": t, "rr_per_s_ratio": q,
                    });
                }
                if let Some((t, q)) = &r.vs_bare_nodes {
                    j["vs_bare_nodes"] = serde_json::json!({
                        "throughput_ratio": t, "rr_per_s_ratio": q,
                    });
                }
                j
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "method": "interleaved",
                "iperf_seconds": seconds, "repeats": repeats, "rr_rounds": rounds,
                "rr_slices": slices, "pin_cpus": o.pin_cpus,
                "host_services": host_services,
                "results": v,
            })
        );
        return;
    }
    println!(
        "{:<50} {:>7} {:>17} {:>9} {:>9} {:>8} {:>17}",
        "PATH", "GBIT/S", "x LIM (p25-p75)", "RR MED µs", "RR p99 µs", "RR/S", "x LIM (p25-p75)"
    );
    let cell = |s: &Spread| format!("{:.2} ({:.2}-{:.2})", s.median, s.p25, s.p75);
    for r in rows {
        println!(
            "{:<50} {:>7.2} {:>17} {:>9.1} {:>9.1} {:>8.0} {:>17}",
            r.path,
            r.gbit_per_s,
            cell(&r.throughput_ratio),
            r.rr_median_us,
            r.rr_p99_us,
            r.rr_per_s,
            cell(&r.rr_per_s_ratio),
        );
        let extra = [
            ("  the same, x terway shared-eni routing", &r.vs_routing),
            ("  the same, x its own lab's bare nodes", &r.vs_bare_nodes),
        ];
        for (what, v) in extra {
            if let Some((t, q)) = v {
                println!(
                    "{:<50} {:>7} {:>17} {:>9} {:>9} {:>8} {:>17}",
                    what,
                    "",
                    cell(t),
                    "",
                    "",
                    "",
                    cell(q)
                );
            }
        }
    }
    println!(
        "(interleaved: {repeats} turns of one {seconds}s iperf3 run (one TCP stream) per path, \
         then {slices} turns of {rounds} request/response rounds (1 byte each way) per path on \
         one kept-open connection each; the order rotates every turn. x LIM: the median of the \
         per-turn ratios to the host network's run or slice of the same turn, with their \
         quartiles; GBIT/S and RR/S are the medians and totals of the absolute numbers; \
         latency percentiles over all rounds{})",
        if o.pin_cpus {
            "; client on CPU 0, servers on CPU 1 for every path"
        } else {
            ""
        }
    );
    if host_services > 0 {
        println!(
            "(every node with kube-proxy's iptables-mode rules (iptables-legacy) for \
             {host_services} Services: KUBE-SERVICES walked by every new connection, \
             connection tracking on, kube-proxy's forward rules)"
        );
    }
}

// ---------------------------------------------------------------------------------------
// NetworkPolicy: N policies vs none, end to end
// ---------------------------------------------------------------------------------------

/// `n` NetworkPolicies selecting the web pod (namespace `shop`, `app: web`; the lab's
/// policy roles, see policy.rs): `n - 1` that allow TCP [`RR_PORT`] and [`CR_PORT`] from a /24 of
/// 172.16.0.0/12 each (no lab address), and one that allows it from the client's
/// namespace (`purpose: test`), so every new connection of the benchmark goes through the
/// whole lookup and is allowed.
fn bench_policies(n: usize) -> String {
    let mut y = String::new();
    let ports = format!(
        "    ports: [{{protocol: TCP, port: {RR_PORT}}}, {{protocol: TCP, port: {CR_PORT}}}]\n"
    );
    for i in 0..n {
        let from = if i + 1 == n {
            "    - namespaceSelector: {matchLabels: {purpose: test}}\n".to_string()
        } else {
            format!(
                "    - ipBlock: {{cidr: \"172.{}.{}.0/24\"}}\n",
                16 + (i / 256) % 16,
                i % 256
            )
        };
        y.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: bench-{i:05}, namespace: shop}}\nspec:\n  \
             podSelector: {{matchLabels: {{app: web}}}}\n  policyTypes: [Ingress]\n  \
             ingress:\n  - from:\n{from}{ports}"
        ));
    }
    if y.is_empty() {
        y.push_str("# no policy\n");
    }
    y
}

/// Writes `n` benchmark policies (0: none) and waits until every node's agent reports
/// exactly those applied; returns how long that took.
fn set_policies(lab: &Lab, st: &LabState, n: usize, yaml: &str) -> Result<Duration> {
    let start = Instant::now();
    super::policy::write(lab, "bench.yaml", yaml)?;
    let names: Vec<String> = (0..n).map(|i| format!("shop/bench-{i:05}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // Compiling and writing 1,000 policies takes the agents seconds.
    super::policy::wait_applied(lab, st, &names, Duration::from_secs(60))?;
    Ok(start.elapsed())
}

/// The pause after a policy change before the next slice.
const SETTLE: Duration = Duration::from_millis(300);

/// One setting's slices in the policy A/B run.
#[derive(Default)]
struct PolicySide {
    rr_rate: Vec<f64>,
    cr_rate: Vec<f64>,
    rr_us: Vec<f64>,
    apply_ms: Vec<f64>,
}

/// `lab bench --policies N`: one terway shared-eni lab with the eBPF fast path and
/// NetworkPolicy on; the client pod (node 2) to the web pod (node 1), alternating slices
/// with N policies selecting the web pod and with none (the order swapped every turn),
/// each slice a request/response run on a connection kept open for the whole benchmark
/// and a connection-rate run (a new connection per request).
fn run_policy_ab(id: Option<&str>, o: &BenchOpts, output: &str) -> Result<ExitCode> {
    let started = Instant::now();
    let lab = sub_lab(id, "bp", "p")?;
    let pin = o.pin_cpus.then_some(Pin {
        client: 0,
        server: 1,
    });
    let n = o.policies;
    let conn_per_slice = (o.rounds / 4).max(20);
    let result = (|| -> Result<[PolicySide; 2]> {
        super::step(&format!(
            "terway shared-eni + eBPF lab {} with NetworkPolicy (2 nodes, 1 pod each)",
            lab.prefix
        ));
        let mut uo = opts(
            Backend::Terway,
            Mode::SharedEni,
            Datapath::Ebpf,
            2,
            Tuning::default(),
            o.cloud_profile,
        );
        uo.policy = true;
        let mut st = super::up_or_clean(&lab, &uo)?;
        for node in 1..=2 {
            let pod = lab.add_pod(
                Backend::Terway,
                node,
                1,
                BTreeMap::new(),
                Some("ReplicaSet"),
            )?;
            eprintln!("    pod {} in {} got {}", pod.name, pod.netns, pod.ip);
            st.pods.push(pod);
            lab.save_state(&st)?;
        }
        // The pods to the agents' manifests.
        super::policy::enable(&lab, &st)?;
        let (web, client) = (&st.pods[0], &st.pods[1]);
        let path = Path3 {
            label: "client to web".into(),
            lab: lab.prefix.clone(),
            src: client.netns.clone(),
            dst: web.netns.clone(),
            ip: web.ip.clone(),
        };
        wait_reachable(&path.src, &path.ip)?;
        let with = bench_policies(n);
        let none = bench_policies(0);
        let applied = set_policies(&lab, &st, n, &with)?;
        eprintln!("    {n} policies applied in {} ms", applied.as_millis());
        set_policies(&lab, &st, 0, &none)?;
        if let Some(pin) = pin {
            pin_current_thread(pin.client)?;
        }
        let rr = Echo::start(&path, RR_PORT, pin)?;
        let cr = Echo::start(&path, CR_PORT, pin)?;
        // Tens of thousands of short connections from one address to one port within a
        // minute: without reusing TIME_WAIT ports the client runs out of local ports, as a
        // busy HTTP client on a node would without this setting.
        client_reuses_time_wait(&path.src)?;
        let mut conn = rr.connect()?;
        rr_slice(&mut conn, 200)?;
        cr_slice(&cr, 20)?;
        super::step(&format!(
            "{} turns: {n} policies and none, swapped every turn; {} request/response rounds \
             and {conn_per_slice} new connections per slice",
            o.slices, o.rounds
        ));
        let mut sides: [PolicySide; 2] = Default::default();
        // Turns alternate none-N and N-none: each setting precedes the other equally
        // often, and every other turn starts with the setting in place.
        let mut current = 0;
        for t in 0..o.slices {
            let order = if t % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let s = &mut sides[side];
                if side != current {
                    let (count, yaml) = if side == 0 { (0, &none) } else { (n, &with) };
                    let took = set_policies(&lab, &st, count, yaml)?;
                    s.apply_ms.push(took.as_secs_f64() * 1e3);
                    current = side;
                    // The agents have just compiled and written the change: let the
                    // machine settle before measuring.
                    std::thread::sleep(SETTLE);
                }
                rr_slice(&mut conn, 50)?; // settle, unmeasured
                let t0 = Instant::now();
                let us = rr_slice(&mut conn, o.rounds)?;
                s.rr_rate.push(o.rounds as f64 / t0.elapsed().as_secs_f64());
                s.rr_us.extend(us);
                s.cr_rate.push(cr_slice(&cr, conn_per_slice)?);
            }
        }
        drop(conn);
        set_policies(&lab, &st, 0, &none)?;
        Ok(sides)
    })();
    super::step("tearing the lab down");
    if let Err(e) = super::teardown(&lab) {
        eprintln!("    warning: {}: {e:#}", lab.prefix);
    }
    let sides = result?;
    print_policy_ab(&sides, o, conn_per_slice, output);
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn print_policy_ab(sides: &[PolicySide; 2], o: &BenchOpts, conns: usize, output: &str) {
    let rr = ratios(&sides[1].rr_rate, &sides[0].rr_rate);
    let cr = ratios(&sides[1].cr_rate, &sides[0].cr_rate);
    let row = |label: String, s: &PolicySide| {
        let mut us = s.rr_us.clone();
        us.sort_by(|a, b| a.total_cmp(b));
        (
            label,
            median_of(&s.rr_rate),
            percentile(&us, 50),
            percentile(&us, 99),
            median_of(&s.cr_rate),
            median_of(&s.apply_ms),
        )
    };
    let rows = [
        row("no policy".into(), &sides[0]),
        row(format!("{} policies", o.policies), &sides[1]),
    ];
    if output == "json" {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .zip(sides)
            .map(|(r, s)| {
                serde_json::json!({
                    "setting": r.0, "rr_per_s": r.1, "rr_median_us": r.2, "rr_p99_us": r.3,
                    "conn_per_s": r.4, "apply_ms_median": r.5,
                    "rr_per_s_slices": s.rr_rate, "conn_per_s_slices": s.cr_rate,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "method": "interleaved policy A/B",
                "policies": o.policies, "slices": o.slices, "rr_rounds": o.rounds,
                "connections_per_slice": conns, "pin_cpus": o.pin_cpus,
                "results": v,
                "rr_per_s_ratio": rr,
                "conn_per_s_ratio": cr,
            })
        );
        return;
    }
    println!(
        "{:<28} {:>8} {:>9} {:>9} {:>9} {:>10}",
        "SETTING", "RR/S", "RR MED µs", "RR p99 µs", "CONN/S", "APPLY ms"
    );
    for r in &rows {
        println!(
            "{:<28} {:>8.0} {:>9.1} {:>9.1} {:>9.0} {:>10.0}",
            r.0, r.1, r.2, r.3, r.4, r.5
        );
    }
    println!(
        "{} policies / none, per pair of slices: RR/s {:.3} (p25 {:.3} - p75 {:.3}), \
         connections/s {:.3} (p25 {:.3} - p75 {:.3})",
        o.policies, rr.median, rr.p25, rr.p75, cr.median, cr.p25, cr.p75
    );
    println!(
        "(terway shared-eni + eBPF with NetworkPolicy on, client pod to web pod across nodes; \
         {} turns, the two settings swapped every turn, each slice after the agents reported \
         the change applied: {} request/response rounds on one connection kept open \
         throughout (established: conntrack), {conns} new connections of one request each \
         (every one through the policy lookup)); APPLY ms: median time from writing the \
         change to every agent reporting it (they poll their manifests directory)",
        o.slices, o.rounds
    );
}

// ---------------------------------------------------------------------------------------
// Pod ADD latency
// ---------------------------------------------------------------------------------------

/// ecs.g7.large (the lab's instance type): 3 ENIs of 6 IPv4 addresses, one ENI the node's.
const SHARED_CAPACITY: u32 = 12;
const EXCLUSIVE_CAPACITY: u32 = 2;
/// The reference's bridge and subnet inside the node namespace (apart from the lab's).
const REF_BRIDGE: &str = "urefbr0";
const REF_SUBNET: &str = "10.249.0.0/24";
/// Agent log lines that mark a cloud call changing the node's ENIs or addresses.
const CLOUD_LOG_MARKS: [&str; 4] = [
    "ENI attached",
    "assigned addresses",
    "idle addresses returned",
    "idle ENI detached and deleted",
];

#[derive(Debug, Serialize)]
struct AddSeries {
    series: String,
    lab: String,
    /// What every measured terway ADD has to do.
    each_add: String,
    pool_min: u32,
    pool_max: u32,
    samples_ms: Vec<f64>,
    median_ms: f64,
    p90_ms: f64,
    /// The reference ADDs interleaved with this series.
    reference_median_ms: f64,
    reference_p90_ms: f64,
    /// Pool cloud actions (ENI attached, addresses assigned) the agent logged during the
    /// measured ADDs (not the DELs and the drain after them).
    cloud_actions_during_adds: usize,
}

struct Plan {
    series: &'static str,
    each_add: &'static str,
    /// A pod that stays for the whole series, holding the ENI's primary address (the
    /// empty shared pool then assigns secondary addresses to that ENI).
    anchor: bool,
}

/// One lab (`<id><suffix>`) of `bench-add` and the series measured in it.
struct LabPlan {
    suffix: &'static str,
    mode: Mode,
    /// pool.min, pool.max
    pool: (u32, u32),
    series: Vec<Plan>,
}

fn plans() -> Vec<LabPlan> {
    let plan = |series, each_add, anchor| Plan {
        series,
        each_add,
        anchor,
    };
    vec![
        LabPlan {
            suffix: "sw",
            mode: Mode::SharedEni,
            pool: (SHARED_CAPACITY, SHARED_CAPACITY),
            series: vec![plan(
                "terway shared-eni, warm pool",
                "takes an idle address (no cloud call)",
                false,
            )],
        },
        LabPlan {
            suffix: "xw",
            mode: Mode::ExclusiveEni,
            pool: (EXCLUSIVE_CAPACITY, EXCLUSIVE_CAPACITY),
            series: vec![plan(
                "terway exclusive-eni, warm pool",
                "takes an idle attached ENI (no cloud call)",
                false,
            )],
        },
        LabPlan {
            suffix: "se",
            mode: Mode::SharedEni,
            pool: (0, 0),
            series: vec![
                plan(
                    "terway shared-eni, empty pool, ENI attached",
                    "assigns a secondary address to the attached ENI",
                    true,
                ),
                plan(
                    "terway shared-eni, empty pool, no ENI",
                    "creates and attaches an ENI",
                    false,
                ),
            ],
        },
        LabPlan {
            suffix: "xe",
            mode: Mode::ExclusiveEni,
            pool: (0, 0),
            series: vec![plan(
                "terway exclusive-eni, empty pool",
                "creates and attaches an ENI",
                false,
            )],
        },
    ]
}

/// The reference plugins' network config (bridge + host-local), as bench/cni runs them,
/// without IP masquerading: terway pods are not masqueraded either.
fn reference_conf(lab: &Lab) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "unicni-bench-ref", "type": "bridge",
        "bridge": REF_BRIDGE, "isGateway": true, "ipMasq": false, "hairpinMode": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": REF_SUBNET}]],
                 "routes": [{"dst": "0.0.0.0/0"}],
                 "dataDir": lab.root.join("ref-host-local")}
    })
    .to_string()
}

/// Executes a reference plugin inside node `node`'s namespace; returns how long it took.
fn reference(lab: &Lab, dir: &Path, command: &str, id: &str, netns: &str) -> Result<Duration> {
    let conf = reference_conf(lab);
    let t = Instant::now();
    let out = CniRun::new(dir.join("bridge"), command)
        .container_id(id)
        .netns(format!("/var/run/netns/{netns}"))
        .cni_path(dir)
        .stdin(conf)
        .try_run_via(&["ip", "netns", "exec", &lab.node_ns(1)])
        .with_context(|| format!("execute {}", dir.join("bridge").display()))?;
    let d = t.elapsed();
    if !out.ok {
        bail!(
            "reference bridge {command} failed: {} {}",
            out.stdout,
            out.stderr.trim()
        );
    }
    Ok(d)
}

/// One reference ADD (measured) and DEL in a fresh namespace.
fn reference_cycle(lab: &Lab, dir: &Path, n: usize) -> Result<Duration> {
    let ns = format!("{}-ref{n}", lab.prefix);
    let id = format!("{ns}-c");
    super::topology::sh(&["ip", "netns", "add", &ns])?;
    let add = reference(lab, dir, "ADD", &id, &ns);
    let del = reference(lab, dir, "DEL", &id, &ns);
    let _ = super::topology::sh(&["ip", "netns", "del", &ns]);
    let add = add?;
    del?;
    Ok(add)
}

/// A terway pod of node 1 (ReplicaSet-owned, no annotations), its manifest written and
/// its namespace created, not yet attached.
fn new_pod(lab: &Lab, j: usize) -> Result<PodState> {
    let ns = lab.pod_ns(1, j);
    super::topology::sh(&["ip", "netns", "add", &ns])?;
    let pod = PodState {
        name: lab.pod_name(1, j),
        node: 1,
        netns: ns.clone(),
        ip: String::new(),
        ip6: None,
        container_id: format!("{ns}-c"),
        annotations: BTreeMap::new(),
        owner_kind: Some("ReplicaSet".into()),
    };
    lab.write_manifest(&pod)?;
    Ok(pod)
}

/// The plugin's ADD of `pod`, timed around the process (exec to exit).
fn terway_add(lab: &Lab, pod: &PodState) -> Result<Duration> {
    let t = Instant::now();
    let out = lab.cni_run("ADD", pod)?;
    let d = t.elapsed();
    if !out.ok {
        bail!("CNI ADD of pod {} failed: {}", pod.name, out.stdout);
    }
    Ok(d)
}

fn remove_pod(lab: &Lab, pod: &PodState) -> Result<()> {
    let del = lab.del_pod(pod);
    let _ = super::topology::sh(&["ip", "netns", "del", &pod.netns]);
    del
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct PoolView {
    idle: f64,
    in_use: f64,
}

fn pool_view(lab: &Lab) -> Option<PoolView> {
    Some(PoolView {
        idle: lab.agent_metric(1, "unicni_agent_pool_idle")?,
        in_use: lab.agent_metric(1, "unicni_agent_pool_in_use")?,
    })
}

/// Waits until the agent's report (refreshed after every maintenance pass, every 2 s)
/// matches `want`.
fn wait_pool(lab: &Lab, what: &str, want: impl Fn(&PoolView) -> bool) -> Result<PoolView> {
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < until {
        last = pool_view(lab);
        if let Some(v) = last.filter(&want) {
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the pool did not reach {what} in 60 s (last seen: {last:?})")
}

/// The emulator's whole region (`GET /_sim/state`), asked from the VPC namespace.
fn cloud_state(lab: &Lab) -> Result<serde_json::Value> {
    let reply = lab.http(
        &lab.vpc_ns(),
        &format!("{}:{}", lab.outside_ip(), super::topology::CLOUD_PORT),
        "GET /_sim/state HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n",
    )?;
    let body = super::nodes::http_body(&reply);
    serde_json::from_str(&body).context("decode the emulator's /_sim/state")
}

/// Waits until the emulator shows the empty pool at rest: no pod ENI on the node, or
/// (with the anchor pod) one whose only address is its primary. The agent gives ENIs and
/// addresses back in its maintenance pass (every 2 s); the cloud call that reaches this
/// state is the pass's last, so the next ADD does not wait behind it.
fn wait_cloud_rest(lab: &Lab, anchor: bool) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while Instant::now() < until {
        let st = cloud_state(lab)?;
        let enis: Vec<&serde_json::Value> = st["enis"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|e| e["eni_type"] == "Secondary")
            .collect();
        let secondaries: usize = enis
            .iter()
            .map(|e| e["secondary_ips"].as_array().map_or(0, Vec::len))
            .sum();
        if enis.len() == usize::from(anchor) && secondaries == 0 {
            std::thread::sleep(Duration::from_millis(50));
            return Ok(());
        }
        seen = format!("{} pod ENIs, {secondaries} secondary addresses", enis.len());
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "the emulator did not return to {} in 60 s (last seen: {seen})",
        if anchor {
            "one pod ENI with only its primary address"
        } else {
            "no pod ENI"
        }
    )
}

fn cloud_actions(lab: &Lab) -> usize {
    std::fs::read_to_string(lab.node_dir(1).join("agent.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| CLOUD_LOG_MARKS.iter().any(|m| l.contains(m)))
        .count()
}

/// Runs `pods` measured cycles (and one unmeasured first) of: reference ADD + DEL, terway
/// ADD (measured), DEL, and for an empty pool the wait until the pool is empty again.
fn run_series(
    lab: &Lab,
    plan: &Plan,
    pool: (u32, u32),
    pods: usize,
    dir: &Path,
    next: &mut usize,
) -> Result<AddSeries> {
    let warm = pool.0 > 0;
    if warm {
        // The agent grows the pool to pool.min after it reports ready.
        wait_pool(lab, &format!("{} idle", pool.0), |v| {
            v.in_use == 0.0 && v.idle == f64::from(pool.0)
        })?;
    } else {
        wait_cloud_rest(lab, plan.anchor)?;
    }
    eprintln!("    {}: {pods} ADDs; each {}", plan.series, plan.each_add);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut actions = 0;
    for k in 0..=pods {
        *next += 1;
        let r = reference_cycle(lab, dir, *next)?;
        let pod = new_pod(lab, *next)?;
        let before = cloud_actions(lab);
        let added = terway_add(lab, &pod);
        let after = cloud_actions(lab);
        let added = match added {
            Ok(d) => d,
            Err(e) => {
                let _ = remove_pod(lab, &pod);
                return Err(e);
            }
        };
        remove_pod(lab, &pod)?;
        if !warm {
            wait_cloud_rest(lab, plan.anchor)?;
        }
        if k > 0 {
            ours.push(added.as_secs_f64() * 1e3);
            theirs.push(r.as_secs_f64() * 1e3);
            actions += after - before;
        }
    }
    let samples_ms = ours.clone();
    ours.sort_by(|a, b| a.total_cmp(b));
    theirs.sort_by(|a, b| a.total_cmp(b));
    Ok(AddSeries {
        series: plan.series.into(),
        lab: lab.prefix.clone(),
        each_add: plan.each_add.into(),
        pool_min: pool.0,
        pool_max: pool.1,
        samples_ms,
        median_ms: percentile(&ours, 50),
        p90_ms: percentile(&ours, 90),
        reference_median_ms: percentile(&theirs, 50),
        reference_p90_ms: percentile(&theirs, 90),
        cloud_actions_during_adds: actions,
    })
}

pub fn run_add(
    id: Option<&str>,
    pods: usize,
    attach_delay_ms: Option<u64>,
    cloud_profile: CloudProfile,
    which: &str,
    dir: &Path,
    output: &str,
) -> Result<ExitCode> {
    if pods == 0 {
        bail!("--pods 0: measure at least one ADD");
    }
    for p in ["bridge", "host-local"] {
        if !dir.join(p).exists() {
            bail!(
                "the reference plugin {} is missing (Debian: apt install containernetworking-plugins, or --reference-dir)",
                dir.join(p).display()
            );
        }
    }
    let default_delay = unicni_cloud_sim::SimConfig::default().attach_delay_ms;
    let configured = attach_delay_ms.unwrap_or(default_delay);
    // What the emulator will play (reported): the delay, unless the profile replaces it.
    let delay = unicni_cloud_sim::latency::LatencyTable::for_profile(
        cloud_profile,
        &unicni_cloud_sim::SimConfig {
            attach_delay_ms: configured,
            detach_delay_ms: configured,
            ..Default::default()
        },
    )
    .attach
    .median_ms;
    let started = Instant::now();
    let mut rows: Vec<AddSeries> = Vec::new();
    for LabPlan {
        suffix,
        mode,
        pool,
        series,
    } in plans()
        .into_iter()
        .filter(|p| which == "both" || (which == "warm") == (p.pool.0 > 0))
    {
        let lab = sub_lab(id, "ba", suffix)?;
        super::step(&format!(
            "terway {} lab {} (1 node, pool.min = {}, pool.max = {}, ENI attach/detach {delay} ms, cloud profile {cloud_profile})",
            mode.as_str(),
            lab.prefix,
            pool.0,
            pool.1
        ));
        let tuning = Tuning {
            pool: Some(pool),
            attach_delay_ms: Some(configured),
            instance_type: None,
            ip_prefix: false,
        };
        let o = opts(
            Backend::Terway,
            mode,
            Datapath::Routing,
            1,
            tuning,
            cloud_profile,
        );
        let got = with_lab(&lab, &o, |st| {
            let capacity = lab.agent_metric(1, "unicni_agent_pod_capacity");
            let want = match mode {
                Mode::ExclusiveEni => EXCLUSIVE_CAPACITY,
                _ => SHARED_CAPACITY,
            };
            if capacity != Some(f64::from(want)) {
                bail!("the node hosts {capacity:?} pods in {} mode, the bench expects {want} (ecs.g7.large)", mode.as_str());
            }
            // The reference's first ADD builds its bridge: not measured.
            reference_cycle(&lab, dir, 0)?;
            let mut next = 0;
            let mut out = Vec::new();
            for plan in &series {
                if plan.anchor && st.pods.is_empty() {
                    let pod = lab.add_pod(
                        Backend::Terway,
                        1,
                        1000,
                        BTreeMap::new(),
                        Some("ReplicaSet"),
                    )?;
                    eprintln!(
                        "    anchor pod {} holds {} (the ENI's primary address)",
                        pod.name, pod.ip
                    );
                    st.pods.push(pod);
                    lab.save_state(st)?;
                }
                if !plan.anchor {
                    for pod in std::mem::take(&mut st.pods) {
                        remove_pod(&lab, &pod)?;
                    }
                    lab.save_state(st)?;
                }
                out.push(run_series(&lab, plan, pool, pods, dir, &mut next)?);
            }
            Ok(out)
        })?;
        rows.extend(got);
    }
    print_add(
        &rows,
        pods,
        delay,
        default_delay,
        cloud_profile,
        dir,
        output,
    );
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn print_add(
    rows: &[AddSeries],
    pods: usize,
    delay: u64,
    default_delay: u64,
    cloud_profile: CloudProfile,
    dir: &Path,
    output: &str,
) {
    if output == "json" {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("serializes");
                v["ratio_to_reference"] = serde_json::json!(r.median_ms / r.reference_median_ms);
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "adds_per_series": pods,
                "eni_attach_delay_ms": delay,
                "eni_detach_delay_ms": delay,
                "emulator_default_attach_delay_ms": default_delay,
                "cloud_profile": cloud_profile.as_str(),
                "reference": format!("{}/bridge + host-local (ipMasq false), executed in the node namespace", dir.display()),
                "series": v,
            })
        );
        return;
    }
    println!(
        "{:<45} {:>8} {:>8} {:>9} {:>8} {:>7} {:>7}",
        "SERIES", "MED ms", "p90 ms", "REF MED", "REF p90", "x REF", "CLOUD"
    );
    for r in rows {
        println!(
            "{:<45} {:>8.1} {:>8.1} {:>9.1} {:>8.1} {:>7.2} {:>7}",
            r.series,
            r.median_ms,
            r.p90_ms,
            r.reference_median_ms,
            r.reference_p90_ms,
            r.median_ms / r.reference_median_ms,
            r.cloud_actions_during_adds
        );
    }
    println!(
        "({pods} ADDs per series, each followed by a DEL; REF = {}/bridge + host-local (no \
         masquerade) executed in the same node namespace, one ADD before each terway ADD; \
         emulator ENI attach/detach delay {delay} ms{}; CLOUD = pool cloud actions the agent \
         logged during the measured ADDs)",
        dir.display(),
        if delay == default_delay {
            " (the emulator's default)"
        } else {
            ""
        }
    );
    for r in rows {
        println!("  {}: each ADD {}", r.series, r.each_add);
    }
}

// ---------------------------------------------------------------------------------------
// Burst: N pods ADDed at once on a node with an empty pool
// ---------------------------------------------------------------------------------------

/// The burst bench's nodes: 4 ENIs (3 for pods) of 15 IPv4 addresses, 45 pods.
const BURST_INSTANCE_TYPE: &str = "ecs.c7.2xlarge";
const BURST_CAPACITY: usize = 45;
/// The same nodes in prefix mode: 3 pod ENIs × 14 /28 prefixes × 16 addresses.
const BURST_PREFIX_CAPACITY: usize = 3 * 14 * 16;
/// The vendor's most addresses per AssignPrivateIpAddresses call.
const ADDRESSES_PER_CALL: usize = 10;
/// The vendor's most /28 prefixes per call (CreateNetworkInterface or
/// AssignPrivateIpAddresses), in addresses.
const PREFIX_ADDRESSES_PER_CALL: usize = 10 * 16;

/// The emulator's request counts by action (`GET /_sim/requests`).
fn cloud_requests(lab: &Lab) -> Result<BTreeMap<String, u64>> {
    let reply = lab.http(
        &lab.vpc_ns(),
        &format!("{}:{}", lab.outside_ip(), super::topology::CLOUD_PORT),
        "GET /_sim/requests HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n",
    )?;
    let v: serde_json::Value = serde_json::from_str(&super::nodes::http_body(&reply))
        .context("decode the emulator's /_sim/requests")?;
    serde_json::from_value(v["counts"].clone()).context("the emulator's request counts")
}

/// What the burst cannot beat on this profile. Single addresses: one ENI created and
/// attached (the creations run in parallel), then ⌈N/10⌉ assign calls in parallel.
/// Prefix mode: ⌈N/160⌉ calls of ten /28s each; the first rides on the ENI's
/// creation (CreateNetworkInterface `Ipv4PrefixCount`), so the bound is one create +
/// attach, plus one round of parallel assign calls only when N > 160.
#[derive(Debug, Serialize)]
struct LowerBound {
    create_ms: u64,
    attach_call_ms: u64,
    attach_settle_ms: u64,
    assign_ms: u64,
    /// Address (or prefix) batches of the vendor's per-call maximum the burst needs.
    assign_calls: usize,
    /// Whether a round of assign calls after the attach is in the bound.
    assign_round: bool,
    total_ms: u64,
}

fn lower_bound(profile: CloudProfile, pods: usize, prefix: bool) -> LowerBound {
    let sim = unicni_cloud_sim::SimConfig {
        // What the lab gives the emulator (the default profile plays it).
        attach_delay_ms: 100,
        detach_delay_ms: 100,
        ..Default::default()
    };
    let t = unicni_cloud_sim::latency::LatencyTable::for_profile(profile, &sim);
    let create_ms = t.action("CreateNetworkInterface").median_ms;
    let attach_call_ms = t.action("AttachNetworkInterface").median_ms;
    let attach_settle_ms = t.attach.median_ms;
    let assign_ms = t.action("AssignPrivateIpAddresses").median_ms;
    let (assign_calls, assign_round) = if prefix {
        let calls = pods.div_ceil(PREFIX_ADDRESSES_PER_CALL);
        (calls, calls > 1)
    } else {
        (pods.div_ceil(ADDRESSES_PER_CALL), true)
    };
    LowerBound {
        create_ms,
        attach_call_ms,
        attach_settle_ms,
        assign_ms,
        assign_calls,
        assign_round,
        total_ms: create_ms
            + attach_call_ms
            + attach_settle_ms
            + if assign_round { assign_ms } else { 0 },
    }
}

#[derive(Debug, Serialize)]
struct BurstResult {
    lab: String,
    pods: usize,
    /// The pool's unit: single addresses, or /28 prefixes (`terway.ip_prefix`).
    ip_prefix: bool,
    instance_type: &'static str,
    cloud_profile: &'static str,
    wall_ms: f64,
    add_p50_ms: f64,
    add_p99_ms: f64,
    add_max_ms: f64,
    lower_bound: LowerBound,
    wall_to_lower_bound: f64,
    target: f64,
    /// Cloud API calls during the burst, by action.
    cloud_calls: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct BurstRows {
    rows: Vec<BurstResult>,
}

pub fn run_burst(
    id: Option<&str>,
    pods: usize,
    cloud_profile: CloudProfile,
    prefix: &str,
    output: &str,
) -> Result<ExitCode> {
    if pods == 0 || pods > BURST_CAPACITY {
        bail!("--pods {pods}: use 1 to {BURST_CAPACITY} (a {BURST_INSTANCE_TYPE} node's pods in shared-eni mode)");
    }
    let started = Instant::now();
    let modes: &[bool] = match prefix {
        "off" => &[false],
        "on" => &[true],
        _ => &[false, true],
    };
    let mut rows = Vec::new();
    for &ip_prefix in modes {
        rows.push(burst_row(id, pods, cloud_profile, ip_prefix)?);
    }
    let result = BurstRows { rows };
    if output == "json" {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{:<16} {:>5} {:>9} {:>9} {:>9} {:>11} {:>8}",
            "POOL", "PODS", "WALL ms", "p50 ms", "p99 ms", "BOUND ms", "x BOUND"
        );
        for r in &result.rows {
            println!(
                "{:<16} {:>5} {:>9.0} {:>9.0} {:>9.0} {:>11} {:>8.2}",
                if r.ip_prefix {
                    "/28 prefixes"
                } else {
                    "single addresses"
                },
                r.pods,
                r.wall_ms,
                r.add_p50_ms,
                r.add_p99_ms,
                r.lower_bound.total_ms,
                r.wall_to_lower_bound
            );
        }
        for r in &result.rows {
            let calls: Vec<String> = r
                .cloud_calls
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!(
                "cloud calls ({}): {}",
                if r.ip_prefix { "prefixes" } else { "addresses" },
                calls.join(", ")
            );
        }
        if let Some(r) = result.rows.first() {
            let lb = &r.lower_bound;
            println!(
                "(one {} node, empty pool, cloud profile {}; BOUND = CreateNetworkInterface {} ms + \
                 AttachNetworkInterface {} ms + attach to InUse {} ms, + AssignPrivateIpAddresses \
                 {} ms when a round of parallel assign calls is needed: single addresses \
                 ceil(N/10) calls, always; prefixes ceil(N/160) calls of ten /28s, the first \
                 carried by CreateNetworkInterface; target: wall <= {:.1} x BOUND)",
                r.instance_type,
                r.cloud_profile,
                lb.create_ms,
                lb.attach_call_ms,
                lb.attach_settle_ms,
                lb.assign_ms,
                r.target
            );
        }
    }
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// One row: a fresh one-node lab in the pool mode asked for, N ADDs at once.
fn burst_row(
    id: Option<&str>,
    pods: usize,
    cloud_profile: CloudProfile,
    ip_prefix: bool,
) -> Result<BurstResult> {
    let lab = sub_lab(id, "bb", "u")?;
    super::step(&format!(
        "terway shared-eni lab {} (1 node, {BURST_INSTANCE_TYPE}, empty pool, {}, cloud profile {cloud_profile})",
        lab.prefix,
        if ip_prefix { "/28 prefixes" } else { "single addresses" }
    ));
    let capacity = if ip_prefix {
        BURST_PREFIX_CAPACITY
    } else {
        BURST_CAPACITY
    };
    let tuning = Tuning {
        // Empty, and nothing given back while the burst runs.
        pool: Some((0, capacity as u32)),
        attach_delay_ms: None,
        instance_type: Some(BURST_INSTANCE_TYPE.into()),
        ip_prefix,
    };
    let o = opts(
        Backend::Terway,
        Mode::SharedEni,
        Datapath::Routing,
        1,
        tuning,
        cloud_profile,
    );
    with_lab(&lab, &o, |_st| {
        let reported = lab.agent_metric(1, "unicni_agent_pod_capacity");
        if reported != Some(capacity as f64) {
            bail!("the node hosts {reported:?} pods, the bench expects {capacity} ({BURST_INSTANCE_TYPE})");
        }
        wait_cloud_rest(&lab, false)?;
        let made: Vec<PodState> = (1..=pods)
            .map(|j| new_pod(&lab, j))
            .collect::<Result<_>>()?;
        let before = cloud_requests(&lab)?;
        super::step(&format!("{pods} CNI ADDs at once"));
        let t = Instant::now();
        let took: Vec<Result<Duration>> = std::thread::scope(|s| {
            let handles: Vec<_> = made
                .iter()
                .map(|pod| s.spawn(|| terway_add(&lab, pod)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("ADD thread panicked")))
                })
                .collect()
        });
        let wall = t.elapsed();
        let after = cloud_requests(&lab)?;
        eprintln!(
            "    all ADDs returned in {:.2} s; removing the pods",
            wall.as_secs_f64()
        );
        for pod in &made {
            let _ = remove_pod(&lab, pod);
        }
        let mut ms = Vec::new();
        for r in took {
            ms.push(r?.as_secs_f64() * 1e3);
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let cloud_calls: BTreeMap<String, u64> = after
            .iter()
            .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let lb = lower_bound(cloud_profile, pods, ip_prefix);
        let wall_ms = wall.as_secs_f64() * 1e3;
        Ok(BurstResult {
            lab: lab.prefix.clone(),
            pods,
            ip_prefix,
            instance_type: BURST_INSTANCE_TYPE,
            cloud_profile: cloud_profile.as_str(),
            wall_ms,
            add_p50_ms: percentile(&ms, 50),
            add_p99_ms: percentile(&ms, 99),
            add_max_ms: ms.last().copied().unwrap_or(0.0),
            wall_to_lower_bound: wall_ms / lb.total_ms.max(1) as f64,
            lower_bound: lb,
            target: 1.3,
            cloud_calls,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_lower_bounds_per_pool_mode() {
        // Realistic profile: create 1000 + attach call 300 + attach 3000 + assign 500.
        let single = lower_bound(CloudProfile::Realistic, 30, false);
        assert_eq!((single.assign_calls, single.assign_round), (3, true));
        assert_eq!(single.total_ms, 4800);
        // 30 addresses are two /28s: they come with the ENI, no assign round.
        let prefix = lower_bound(CloudProfile::Realistic, 30, true);
        assert_eq!((prefix.assign_calls, prefix.assign_round), (1, false));
        assert_eq!(prefix.total_ms, 4300);
        let big = lower_bound(CloudProfile::Realistic, 200, true);
        assert_eq!((big.assign_calls, big.assign_round), (2, true));
        assert_eq!(big.total_ms, 4800);
    }

    #[test]
    fn interleave_rotates_the_order_every_turn() {
        let mut seen = Vec::new();
        interleave(3, 3, |t, i| {
            seen.push((t, i));
            Ok(())
        })
        .unwrap();
        let order: Vec<usize> = seen.iter().map(|s| s.1).collect();
        assert_eq!(order, [0, 1, 2, 1, 2, 0, 2, 0, 1]);
    }

    #[test]
    fn ratios_are_per_slice_pair_with_quartiles() {
        // A drift that doubles both paths leaves every per-slice ratio at 0.9.
        let limit = [100.0, 200.0, 100.0, 200.0];
        let path = [90.0, 180.0, 90.0, 180.0];
        let r = ratios(&path, &limit);
        assert!(
            (r.median - 0.9).abs() < 1e-9 && (r.p25 - 0.9).abs() < 1e-9,
            "{r:?}"
        );
        let r = ratios(&[1.0, 2.0, 3.0, 4.0], &[1.0; 4]);
        assert_eq!((r.p25, r.median, r.p75), (1.0, 2.0, 3.0));
        assert!(ratios(&[], &[]).median.is_nan());
    }

    #[test]
    fn bench_policies_select_web_and_allow_the_client_last() {
        let names = super::super::policy::tests::policy_names;
        assert_eq!(
            names(&bench_policies(3)),
            ["shop/bench-00000", "shop/bench-00001", "shop/bench-00002"]
        );
        assert!(names(&bench_policies(0)).is_empty());
        let y = bench_policies(3);
        assert!(y.contains("172.16.0.0/24") && y.contains("172.16.1.0/24"));
        assert_eq!(y.matches("purpose: test").count(), 1);
    }
}
