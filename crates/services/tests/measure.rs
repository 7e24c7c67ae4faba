//! Numbers for docs/services.md (root; ignored by default, run with
//! `cargo test -p unicni-services --release --test measure -- --ignored --nocapture`):
//! connect and request/response latency from a pod to one backend, by the pod's IP with and
//! without the load balancer's hooks, through the ClusterIP with the socket-level load
//! balancer, and through a kube-proxy-like iptables DNAT (with conntrack) in the node.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use unicni_services::{BackendState, Protocol, ServiceTable};
use unicni_testkit::{in_netns, probe::ip_n};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Microseconds of connect + greeting + close, for each of `n` connections.
fn connect_us(ns: &str, to: SocketAddr, n: usize) -> Vec<f64> {
    in_netns(ns, move || {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let c = TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("connect");
            let mut line = String::new();
            BufReader::new(&c).read_line(&mut line).unwrap();
            drop(c);
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        v
    })
}

/// Microseconds of each of `n` request/responses on one established connection.
fn rr_us(ns: &str, to: SocketAddr, n: usize) -> Vec<f64> {
    in_netns(ns, move || {
        let c = TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("connect");
        c.set_nodelay(true).unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut w = c;
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            line.clear();
            let t = Instant::now();
            w.write_all(b"x\n").unwrap();
            r.read_line(&mut line).unwrap();
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        v
    })
}

#[test]
#[ignore]
fn measure_connect_and_request_latency() {
    if !require_root() {
        return;
    }
    let n: usize = std::env::var("MEASURE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let t = Topo::new("meas", 2);
    let (client, b1) = (t.pod(0), t.pod(1));
    tcp_server(b1, 8080, "b1");
    let direct: SocketAddr = SocketAddr::new(b1.v4, 8080);
    let vip: SocketAddr = "10.96.7.9:80".parse().unwrap();
    let nat_vip: SocketAddr = "10.96.8.9:80".parse().unwrap();

    // kube-proxy-like: the pod routes via the node, which DNATs the ClusterIP.
    let node = t.node_name();
    ip_n(&client.ns.name, "route add default via 10.78.0.1");
    must_in(&node, "sysctl -qw net.ipv4.ip_forward=1");
    must_in(
        &node,
        &format!(
            "iptables -t nat -A PREROUTING -d {} -p tcp --dport 80 -j DNAT --to-destination {direct}",
            nat_vip.ip()
        ),
    );

    // Rounds alternate the configurations, so the drift of a shared machine spreads
    // over all of them; the load balancer is loaded and unloaded in each round.
    let rounds = 5;
    let per = n / rounds;
    let mut samples: [Vec<f64>; 8] = Default::default();
    let ns = client.ns.name.clone();
    for _ in 0..rounds {
        // Without our hooks (other tests' may be attached; they do nothing here).
        samples[0].extend(connect_us(&ns, direct, per));
        samples[1].extend(rr_us(&ns, direct, per));
        samples[6].extend(connect_us(&ns, nat_vip, per));
        samples[7].extend(rr_us(&ns, nat_vip, per));
        let mut lb = t.lb();
        lb.register_pod(&client.ns.path_buf()).unwrap();
        let mut table = ServiceTable::new();
        table.insert(
            frontend("10.96.7.9", 80, Protocol::Tcp),
            entry(&[(b1.v4, 8080, BackendState::Ready)]),
        );
        lb.apply(&table).unwrap();
        samples[2].extend(connect_us(&ns, direct, per));
        samples[3].extend(rr_us(&ns, direct, per));
        samples[4].extend(connect_us(&ns, vip, per));
        samples[5].extend(rr_us(&ns, vip, per));
        drop(lb);
        unicni_services::Lb::unload(&t.pin_dir).unwrap();
    }
    // What the programs themselves cost, as the kernel counts it (run-time statistics on
    // only for this loop: they cost every BPF program of the machine a little).
    let mut lb = t.lb();
    lb.register_pod(&client.ns.path_buf()).unwrap();
    let mut table = ServiceTable::new();
    table.insert(
        frontend("10.96.7.9", 80, Protocol::Tcp),
        entry(&[(b1.v4, 8080, BackendState::Ready)]),
    );
    lb.apply(&table).unwrap();
    let dp = unicni_bpf::services::ServiceDatapath::open(&t.pin_dir).unwrap();
    let stats_on = unicni_bpf::services::enable_run_time_stats().unwrap();
    let before = dp.program_run_stats().unwrap();
    connect_us(&ns, vip, per);
    let mid = dp.program_run_stats().unwrap();
    lb.unregister_pod(&client.ns.path_buf()).unwrap();
    connect_us(&ns, direct, per);
    let after = dp.program_run_stats().unwrap();
    drop(stats_on);
    let ns_per_run = |a: &[(&str, u64, Duration)], b: &[(&str, u64, Duration)], name: &str| {
        let (x, y) = (
            a.iter().find(|p| p.0 == name).unwrap(),
            b.iter().find(|p| p.0 == name).unwrap(),
        );
        let runs = y.1 - x.1;
        ((y.2 - x.2).as_nanos() as f64 / runs.max(1) as f64, runs)
    };
    let (c_ns, c_runs) = ns_per_run(&before, &mid, "uc_svc_connect4");
    let (o_ns, o_runs) = ns_per_run(&mid, &after, "uc_svc_connect4");
    drop(lb);
    unicni_services::Lb::unload(&t.pin_dir).unwrap();

    let m: Vec<f64> = samples.into_iter().map(median).collect();
    println!("median over {n}, microseconds    connect+greeting+close   request/response");
    println!(
        "pod IP, no hooks                 {:>10.1}   {:>10.1}",
        m[0], m[1]
    );
    println!(
        "pod IP, hooks attached           {:>10.1}   {:>10.1}",
        m[2], m[3]
    );
    println!(
        "ClusterIP, socket LB             {:>10.1}   {:>10.1}",
        m[4], m[5]
    );
    println!(
        "ClusterIP, iptables DNAT+ct      {:>10.1}   {:>10.1}",
        m[6], m[7]
    );
    println!("connect4 to the ClusterIP (rewrite): {c_ns:.0} ns per run over {c_runs} runs");
    println!(
        "connect4 of an unregistered pod (one lookup): {o_ns:.0} ns per run over {o_runs} runs"
    );
}

fn must_in(ns: &str, cmd: &str) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore]
fn measure_apply_of_10000_services() {
    if !require_root() {
        return;
    }
    let t = Topo::new("mapl", 0);
    let mut lb = t.lb();
    let table = |backend_octet: u8| {
        let mut table = ServiceTable::new();
        for i in 0..10_000u32 {
            let ip = format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256);
            let backends: Vec<_> = (0..3u8)
                .map(|b| {
                    let octet = if b == 0 { backend_octet } else { b };
                    (
                        format!("10.200.{}.{octet}", i % 256).parse().unwrap(),
                        8080,
                        BackendState::Ready,
                    )
                })
                .collect();
            table.insert(frontend(&ip, 80, Protocol::Tcp), entry(&backends));
        }
        table
    };
    let first = table(10);
    let t0 = Instant::now();
    let r = lb.apply(&first).unwrap();
    let initial = t0.elapsed();
    assert_eq!(r.frontends_added, 10_000);
    let t0 = Instant::now();
    assert!(lb.apply(&first).unwrap().is_empty());
    let unchanged = t0.elapsed();
    // One backend of every Service replaced.
    let second = table(20);
    let t0 = Instant::now();
    let r = lb.apply(&second).unwrap();
    let changed = t0.elapsed();
    assert_eq!(r.backends_removed, 10_000);
    let t0 = Instant::now();
    let mut fresh = unicni_services::Lb::open(&t.pin_dir).unwrap();
    assert!(fresh.apply(&second).unwrap().is_empty());
    let reread = t0.elapsed();
    let t0 = Instant::now();
    lb.apply(&ServiceTable::new()).unwrap();
    let emptied = t0.elapsed();
    println!(
        "10,000 Services x 3 backends: first apply {initial:?}, unchanged {unchanged:?}, \
         one backend each replaced {changed:?}, read back + unchanged (new handle) {reread:?}, \
         all removed {emptied:?}"
    );
}
