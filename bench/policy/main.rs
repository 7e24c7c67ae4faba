//! NetworkPolicy cost: pod-to-pod TCP throughput (iperf3), request/response on one
//! connection, and connection rate (a new connection per request, so every transaction
//! goes through the policy lookup, not conntrack), with the policy program attached and
//! 1,000 NetworkPolicies loaded vs none, plus the same without the program at all.
//! Alternating rounds in one run, medians, ratios. Two pod pairs on one node: flannel's
//! shape (bridge ports) and terway's (routed veths). Root only.
//!
//! `cargo bench -p unicni-policy-agent --bench policy`
//! (BENCH_SECONDS per iperf3 run, default 1; BENCH_ROUNDS, default 12; BENCH_RR, round
//! trips per measurement, default 5000; BENCH_CRR, connections, default 500)

#[path = "../../crates/policy-agent/tests/common/mod.rs"]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use unicni_bpf::PolicyDatapath;
use unicni_policy::{compile_where, load_str};
use unicni_policy_agent::state::{Applied, Desired};
use unicni_testkit::perf::{bench_may_run, connect_nodelay, echo_once, env_or, iperf_gbit, median};
use unicni_testkit::probe::ifindex;

/// 1,000 policies: for each pair, many that select the server (ingress) and the client
/// (egress) with ipBlocks and ports that never match the benchmark's traffic, and the two
/// that allow it. The benchmark's flows are decided by the longest of hundreds of
/// prefixes in each direction's trie.
fn thousand_policies() -> String {
    let mut y = String::new();
    let pol = |name: String, ns: &str, spec: String| {
        format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"
        )
    };
    // 4 allowing policies, 996 others spread over the four pods.
    y.push_str(&pol("allow-web".into(), "shop", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: lab}}, podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: 5201}, {port: 5302}, {port: 5303}]\n".into()));
    y.push_str(&pol("allow-db".into(), "shop", "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: lab}}, podSelector: {matchLabels: {app: probe}}}]\n    ports: [{port: 5201}, {port: 5302}, {port: 5303}]\n".into()));
    y.push_str(&pol("client-out".into(), "lab", "  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {team: shop}}, podSelector: {matchLabels: {app: web}}}]\n".into()));
    y.push_str(&pol("probe-out".into(), "lab", "  podSelector: {matchLabels: {app: probe}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {team: shop}}, podSelector: {matchLabels: {app: db}}}]\n".into()));
    for i in 0..996usize {
        let (ns, app, ingress) = match i % 4 {
            0 => ("shop", "web", true),
            1 => ("shop", "db", true),
            2 => ("lab", "client", false),
            _ => ("lab", "probe", false),
        };
        let block = format!("10.{}.{}.0/24", 100 + i / 250, i % 250);
        let block6 = format!("\"fd{:02x}:{:x}::/64\"", 0x10 + i / 250, i % 250);
        let port = 10000 + i;
        let spec = if ingress {
            format!(
                "  podSelector: {{matchLabels: {{app: {app}}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: {block}}}}}, {{ipBlock: {{cidr: {block6}}}}}]\n    ports: [{{port: {port}, endPort: {}, protocol: TCP}}, {{port: {port}, protocol: UDP}}]\n",
                port + (i % 7)
            )
        } else {
            format!(
                "  podSelector: {{matchLabels: {{app: {app}}}}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{{ipBlock: {{cidr: {block}}}}}, {{ipBlock: {{cidr: {block6}}}}}]\n    ports: [{{port: {port}}}]\n"
            )
        };
        y.push_str(&pol(format!("noise-{i}"), ns, spec));
    }
    y
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    NoProgram,
    NoPolicies,
    Thousand,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::NoProgram => "no policy program",
            Setup::NoPolicies => "program, 0 policies",
            Setup::Thousand => "program, 1000 policies",
        }
    }
}

struct Bench {
    c: Cluster,
    veths: Vec<u32>,
    none: Desired,
    thousand: Desired,
}

impl Bench {
    fn apply(&self, setup: Setup) -> (usize, usize) {
        let pin = self.c.pin_dir.clone();
        let veths = self.veths.clone();
        let desired = match setup {
            Setup::Thousand => self.thousand.clone(),
            _ => self.none.clone(),
        };
        self.c.in_node(move || {
            let mut dp = PolicyDatapath::load_or_adopt(&pin).expect("load the policy program");
            let mut applied = Applied::read(&dp).unwrap();
            applied.update(&mut dp, &desired).unwrap();
            for i in &veths {
                if setup == Setup::NoProgram {
                    dp.detach(*i).unwrap();
                } else {
                    dp.attach(*i).unwrap();
                }
            }
            (applied.rules.len(), applied.sets.len())
        })
    }
}

/// 1-byte request/response on one connection: round trips per second.
fn rr(from: &str, to: &str, ip: IpAddr, rounds: usize) -> f64 {
    let echo = echo_once(
        to,
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 5302)),
    );
    let mut c = connect_nodelay(from, SocketAddr::new(ip, 5302));
    let mut b = [1u8; 1];
    for _ in 0..200 {
        c.write_all(&b).unwrap();
        c.read_exact(&mut b).unwrap();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        c.write_all(&b).unwrap();
        c.read_exact(&mut b).unwrap();
    }
    let rate = rounds as f64 / start.elapsed().as_secs_f64();
    drop(c);
    let _ = echo.join();
    rate
}

/// A new connection per 1-byte request/response: connections per second.
fn crr(from: &str, to: &str, ip: IpAddr, n: usize) -> f64 {
    let listener = in_ns(to, || TcpListener::bind(("::", 5303)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while !s.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    if c.read_exact(&mut b).is_ok() {
                        let _ = c.write_all(&b);
                    }
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    });
    let addr = SocketAddr::new(ip, 5303);
    let rate = in_ns(from, move || {
        let start = Instant::now();
        let mut b = [1u8; 1];
        for _ in 0..n {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            c.set_nodelay(true).unwrap();
            c.write_all(&b).unwrap();
            c.read_exact(&mut b).unwrap();
        }
        n as f64 / start.elapsed().as_secs_f64()
    });
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    rate
}

/// `bpf(2)` attributes of BPF_OBJ_GET.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `bpf(2)` attributes of BPF_PROG_TEST_RUN.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The pinned program at `path`, as a file descriptor.
#[allow(unsafe_code)]
fn pinned_prog(path: &std::path::Path) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let attr = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: BPF_OBJ_GET reads `attr` (size given) and the NUL-terminated path it points
    // to, both alive across the call; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGetAttr,
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    assert!(
        fd >= 0,
        "BPF_OBJ_GET {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor the kernel just returned, owned by nobody else.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// Runs the program `repeat` times on `packet` in the kernel: (verdict, ns per run).
#[allow(unsafe_code)]
fn test_run(fd: &std::os::fd::OwnedFd, packet: &[u8], repeat: u32) -> (i32, u32) {
    use std::os::fd::AsRawFd;
    let mut out = vec![0u8; packet.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: fd.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: BPF_PROG_TEST_RUN reads `attr` and the input buffer and writes the output
    // buffer (sizes given) and `attr`'s result fields; all outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    (attr.retval as i32, attr.duration)
}

/// An Ethernet + IPv4 + TCP header (checksums are not looked at).
fn tcp_packet(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut p = vec![0u8; 14];
    p[12] = 0x08; // ETH_P_IP
    p.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

fn main() {
    if !bench_may_run("bench/policy") {
        return;
    }
    let seconds: u32 = env_or("BENCH_SECONDS", 1);
    let rounds: usize = env_or("BENCH_ROUNDS", 12);
    let rr_rounds = env_or("BENCH_RR", 5000);
    let crr_n = env_or("BENCH_CRR", 500);
    let c = Cluster::quiet("bn");
    let veths = c.pods.iter().map(|p| ifindex(&c.node, &p.veth)).collect();
    let cluster = c.cluster_manifests();
    let local = |s: &str| {
        let snap = load_str("bench.yaml", s).expect("manifests");
        let t = Instant::now();
        let d = Desired::from_compiled(&compile_where(&snap, |p| p.node.as_deref() == Some("n1")));
        (d, snap.policies.len(), t.elapsed())
    };
    let (none, _, _) = local(&cluster);
    let (thousand, n_policies, compile_time) = local(&format!("{cluster}{}", thousand_policies()));
    assert_eq!(n_policies, 1000);
    let b = Bench {
        c,
        veths,
        none,
        thousand,
    };
    let pairs: [(&str, &str, &str); 2] = [
        ("bridge pods (flannel shape)", "client", "web"),
        ("routed pods (terway shape)", "probe", "db"),
    ];
    let setups = [Setup::NoProgram, Setup::NoPolicies, Setup::Thousand];
    // results[pair][setup] = (gbit, rr/s, crr/s) samples
    let mut res = vec![vec![(Vec::new(), Vec::new(), Vec::new()); 3]; 2];
    let (rules, sets) = b.apply(Setup::Thousand);
    let t = Instant::now();
    b.apply(Setup::NoPolicies);
    b.apply(Setup::Thousand);
    eprintln!(
        "1000 policies: compiled for the node in {compile_time:?}, {rules} trie entries, {sets} port sets; \
         removing and re-applying them took {:?}",
        t.elapsed()
    );
    for round in 0..rounds {
        // The order rotates every round, so slow drifts of the machine's load hit every
        // setup alike; ratios are taken within a round.
        for k in 0..setups.len() {
            let si = (round + k) % setups.len();
            let setup = &setups[si];
            b.apply(*setup);
            let s0 = b.c.stats();
            for (pi, (_, from, to)) in pairs.iter().enumerate() {
                let (src, dst) = (b.c.pod(from), b.c.pod(to));
                let g = iperf_gbit(&src.netns, &dst.netns, &dst.v4.to_string(), 5201, seconds);
                let r = rr(&src.netns, &dst.netns, dst.v4, rr_rounds);
                let cr = crr(&src.netns, &dst.netns, dst.v4, crr_n);
                eprintln!(
                    "round {} {:<24} {:<28} {g:6.2} Gbit/s {r:8.0} rr/s {cr:7.0} conn/s",
                    round + 1,
                    setup.label(),
                    pairs[pi].0
                );
                res[pi][si].0.push(g);
                res[pi][si].1.push(r);
                res[pi][si].2.push(cr);
            }
            let s1 = b.c.stats();
            // Each setup must be what it claims: the program saw the traffic or did not.
            let seen = s1.new_flows + s1.established - s0.new_flows - s0.established;
            assert_eq!(
                *setup != Setup::NoProgram,
                seen > 0,
                "{setup:?}: {seen} packets"
            );
            assert_eq!(
                s1.dropped(),
                s0.dropped(),
                "{setup:?}: the benchmark's traffic is allowed"
            );
        }
    }
    println!(
        "pod to pod on one node, {rounds} rounds (setup order rotating), medians ({seconds}s iperf3, {rr_rounds} TCP 1-byte round trips on one connection, {crr_n} connections with one round trip each)"
    );
    println!(
        "{:<28} {:<24} {:>8} {:>10} {:>10}",
        "pair", "setup", "Gbit/s", "rr/s", "conn/s"
    );
    for (pi, (name, _, _)) in pairs.iter().enumerate() {
        let row = |si: usize| {
            (
                median(res[pi][si].0.clone()),
                median(res[pi][si].1.clone()),
                median(res[pi][si].2.clone()),
            )
        };
        for (si, setup) in setups.iter().enumerate() {
            let (g, r, cr) = row(si);
            println!(
                "{name:<28} {:<24} {g:>8.2} {r:>10.0} {cr:>10.0}",
                setup.label()
            );
        }
        // Ratios of one round's measurements (seconds apart),
        // then their median and range.
        let ratio = |a: usize, b: usize, m: usize| {
            let r: Vec<f64> = (0..res[pi][a].0.len())
                .map(|i| {
                    let (x, y) = match m {
                        0 => (res[pi][a].0[i], res[pi][b].0[i]),
                        1 => (res[pi][a].1[i], res[pi][b].1[i]),
                        _ => (res[pi][a].2[i], res[pi][b].2[i]),
                    };
                    x / y
                })
                .collect();
            let lo = r.iter().copied().fold(f64::MAX, f64::min);
            let hi = r.iter().copied().fold(f64::MIN, f64::max);
            format!("{:.3}x [{lo:.2}-{hi:.2}]", median(r))
        };
        println!(
            "{name:<28} 1000 policies / 0 policies, median of per-round ratios [range]: throughput {}, rr {}, conn/s {}",
            ratio(2, 1, 0),
            ratio(2, 1, 1),
            ratio(2, 1, 2)
        );
        println!(
            "{name:<28} program (0 policies) / no program:                          throughput {}, rr {}, conn/s {}",
            ratio(1, 0, 0),
            ratio(1, 0, 1),
            ratio(1, 0, 2)
        );
    }

    // The program alone, in the kernel (BPF_PROG_TEST_RUN): the same packets judged
    // with 0 and with 1000 policies loaded, a million times each.
    let client = b.c.pod("client").v4;
    let web = b.c.pod("web").v4;
    let db = b.c.pod("db").v4;
    let fd = pinned_prog(&b.c.pin_dir.join("policy/progs/uc_pol_to_pod"));
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "established (conntrack hit)",
            tcp_packet(client, web, 40000, 5302, 0x10),
        ),
        (
            "new connection, allowed (SYN)",
            tcp_packet(client, web, 40001, 5302, 0x02),
        ),
        (
            "new connection to db (SYN)",
            tcp_packet(client, db, 40002, 5302, 0x02),
        ),
    ];
    println!("per packet in the policy program (BPF_PROG_TEST_RUN, median of 5 x 1,000,000 runs)");
    println!(
        "{:<32} {:>14} {:>16} {:>8}",
        "packet", "0 policies ns", "1000 policies ns", "ratio"
    );
    let mut per = [[0f64; 2]; 3];
    for (si, setup) in [Setup::NoPolicies, Setup::Thousand].iter().enumerate() {
        b.apply(*setup);
        // The established case needs its conntrack entry.
        test_run(&fd, &cases[1].1.clone(), 1);
        let mut syn_ack = cases[0].1.clone();
        syn_ack[47] = 0x12;
        test_run(&fd, &tcp_packet(client, web, 40000, 5302, 0x02), 1);
        test_run(&fd, &syn_ack, 1);
        for (ci, (_, pkt)) in cases.iter().enumerate() {
            let runs: Vec<f64> = (0..5)
                .map(|_| f64::from(test_run(&fd, pkt, 1_000_000).1))
                .collect();
            per[ci][si] = median(runs);
        }
    }
    for (ci, (name, pkt)) in cases.iter().enumerate() {
        let (verdict, _) = test_run(&fd, pkt, 1);
        let shown = if verdict == 2 {
            format!("{name}, dropped with 1000")
        } else {
            name.to_string()
        };
        println!(
            "{shown:<32} {:>14.1} {:>16.1} {:>8.3}",
            per[ci][0],
            per[ci][1],
            per[ci][1] / per[ci][0]
        );
    }
}
